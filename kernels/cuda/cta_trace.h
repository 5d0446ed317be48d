// Host side of the CTA trace (diagnostic build, CMake option RAGGED_CTA_TRACE; see
// cta_trace.cuh): copies the per-CTA records of the last bf16 decode call and of the last combine
// call to `out` (kCtaTraceEntries x kCtaTraceFields values) and clears them.
#ifndef RAGGED_KERNELS_CUDA_CTA_TRACE_H_
#define RAGGED_KERNELS_CUDA_CTA_TRACE_H_

#ifdef RAGGED_CTA_TRACE
#include <cuda_runtime.h>

namespace ragged::internal {

constexpr int kCtaTraceEntries = 16384;
constexpr int kCtaTraceFields = 12;
cudaError_t ReadDecodeTraceBF16(unsigned long long* out);
cudaError_t ReadCombineTrace(unsigned long long* out);

}  // namespace ragged::internal

#endif  // RAGGED_CTA_TRACE
#endif  // RAGGED_KERNELS_CUDA_CTA_TRACE_H_
