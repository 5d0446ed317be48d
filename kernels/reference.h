// The double-precision reference: the oracle every other backend is tested against.
//
// A direct transcription of SPEC.md section 1, one (row, head) at a time, in double precision,
// with no blocking, threads or tricks. Slow on purpose. Host tensors only. Thread-safe.
#ifndef RAGGED_KERNELS_REFERENCE_H_
#define RAGGED_KERNELS_REFERENCE_H_

#include <vector>

#include "absl/status/statusor.h"
#include "kernels/problem.h"
#include "kernels/ragged_decode_attention.h"

namespace ragged {

struct ReferenceResult {
  std::vector<double> output;  // [B, HQ, D], row-major
  std::vector<double> lse;     // [B, HQ]; -inf for an empty row without sinks
};

// Computes the reference for a validated host problem (pointers readable on the host).
ReferenceResult ComputeReference(const Problem& problem);

// Validates `args` (as the CPU platform does, start/end included) and computes the reference.
// The output tensors in `args` are validated but not written.
absl::StatusOr<ReferenceResult> ComputeReference(const RaggedDecodeAttentionArgs& args,
                                                 const RaggedDecodeAttentionOptions& options = {});

namespace internal {
// Platform::kReference: computes and writes output (rounded to its dtype) and lse.
absl::Status RunReference(const Problem& problem);
}  // namespace internal

}  // namespace ragged

#endif  // RAGGED_KERNELS_REFERENCE_H_
