// Explicit instantiations of the f32 decode kernels (SIMT path), one per head dim.
#include "kernels/cuda/decode_kernel.cuh"
#include "kernels/cuda/decode_launch.h"

namespace ragged::internal {

const void* DecodeKernelF32(int head_dim, bool wide_scratch, bool wgmma) {
  using T = float;
  if (wgmma) return nullptr;
  switch (head_dim) {
    case 64:
      return wide_scratch
                 ? nullptr
                 : reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 64, false, false, false>);
    case 80:
      return wide_scratch
                 ? nullptr
                 : reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 80, false, false, false>);
    case 96:
      return wide_scratch
                 ? nullptr
                 : reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 96, false, false, false>);
    case 128:
      return wide_scratch
                 ? nullptr
                 : reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 128, false, false, false>);
    case 256:
      return wide_scratch
                 ? nullptr
                 : reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 256, false, false, false>);
    default:
      return nullptr;
  }
}

}  // namespace ragged::internal
