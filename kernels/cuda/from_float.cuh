// f32 to a storage type on the device, rounded to nearest: the decode kernel's output stores and
// gpu_bench's input fill.
#ifndef RAGGED_KERNELS_CUDA_FROM_FLOAT_CUH_
#define RAGGED_KERNELS_CUDA_FROM_FLOAT_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace ragged::internal::cuda {

template <typename T>
__device__ __forceinline__ T FromFloat(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half FromFloat<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

}  // namespace ragged::internal::cuda

#endif  // RAGGED_KERNELS_CUDA_FROM_FLOAT_CUH_
