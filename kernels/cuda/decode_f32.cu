// Explicit instantiations of the f32 decode kernels (SIMT path), one per head dim.
#include "kernels/cuda/decode_kernel.cuh"
#include "kernels/cuda/decode_launch.h"

namespace ragged::internal {

const void* DecodeKernelF32(int head_dim) {
  using T = float;
  switch (head_dim) {
    case 64:
      return reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 64, false>);
    case 80:
      return reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 80, false>);
    case 96:
      return reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 96, false>);
    case 128:
      return reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 128, false>);
    case 256:
      return reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 256, false>);
    default:
      return nullptr;
  }
}

}  // namespace ragged::internal
