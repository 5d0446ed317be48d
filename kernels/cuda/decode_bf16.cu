// Explicit instantiations of the bf16 decode kernels (tensor-core path), one per head dim.
#include "kernels/cuda/cta_trace.h"
#include "kernels/cuda/decode_kernel.cuh"
#include "kernels/cuda/decode_launch.h"

namespace ragged::internal {
namespace {

template <int kD>
const void* Pick(bool wide_scratch) {
  using T = __nv_bfloat16;
  return wide_scratch
             ? reinterpret_cast<const void*>(&cuda::DecodeKernel<T, kD, true, true, false>)
             : reinterpret_cast<const void*>(&cuda::DecodeKernel<T, kD, true, false, false>);
}

}  // namespace

const void* DecodeKernelBF16(int head_dim, bool wide_scratch, bool wgmma) {
  using T = __nv_bfloat16;
  if (wgmma) {
    // Only head_dim 128 with the wide scratch (64 heads x 64 positions) has a wgmma variant.
    return head_dim == 128 && wide_scratch
               ? reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 128, true, true, true>)
               : nullptr;
  }
  switch (head_dim) {
    case 64:
      return Pick<64>(wide_scratch);
    case 80:
      return wide_scratch
                 ? nullptr
                 : reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 80, true, false, false>);
    case 96:
      return wide_scratch
                 ? nullptr
                 : reinterpret_cast<const void*>(&cuda::DecodeKernel<T, 96, true, false, false>);
    case 128:
      return Pick<128>(wide_scratch);
    case 256:
      return Pick<256>(wide_scratch);
    default:
      return nullptr;
  }
}

#ifdef RAGGED_CTA_TRACE
cudaError_t ReadDecodeTraceBF16(unsigned long long* out) {
  static_assert(kCtaTraceEntries == cuda::kTraceMax && kCtaTraceFields == cuda::kTraceFields);
  return cuda::ReadCtaTrace(cuda::kTraceDecode, out);
}
#endif

}  // namespace ragged::internal
