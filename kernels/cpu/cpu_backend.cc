#include "kernels/cpu/cpu_backend.h"

#include "kernels/reference.h"

namespace ragged::internal {

// Placeholder until the vectorized backend lands (issue 3): correct but slow.
absl::Status RunCpu(const Problem& problem, const RaggedDecodeAttentionOptions& options) {
  return RunReference(problem);
}

}  // namespace ragged::internal
