// Explicit instantiations of the bf16 decode kernels (tensor-core path), one per head dim.
#include "kernels/cuda/decode_kernel.cuh"
#include "kernels/cuda/decode_launch.h"

namespace ragged::internal {

const void* DecodeKernelBF16(int head_dim) {
  using T = __nv_bfloat16;
  switch (head_dim) {
    case 64:
      return reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 64, true>);
    case 80:
      return reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 80, true>);
    case 96:
      return reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 96, true>);
    case 128:
      return reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 128, true>);
    case 256:
      return reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 256, true>);
    default:
      return nullptr;
  }
}

}  // namespace ragged::internal
