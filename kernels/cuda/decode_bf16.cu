// Explicit instantiations of the bf16 decode kernels (tensor-core path), one per head dim.
#include "kernels/cuda/decode_kernel.cuh"
#include "kernels/cuda/decode_launch.h"

namespace ragged::internal {

const void* DecodeKernelBF16(int head_dim, bool wide_scratch) {
  using T = __nv_bfloat16;
  switch (head_dim) {
    case 64:
      return wide_scratch ? reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 64, true, true>)
                          : reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 64, true, false>);
    case 80:
      return wide_scratch ? nullptr
                          : reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 80, true, false>);
    case 96:
      return wide_scratch ? nullptr
                          : reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 96, true, false>);
    case 128:
      return wide_scratch ? reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 128, true, true>)
                          : reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 128, true, false>);
    case 256:
      return wide_scratch ? reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 256, true, true>)
                          : reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 256, true, false>);
    default:
      return nullptr;
  }
}

}  // namespace ragged::internal
