// Placeholder until the CUDA kernels land (issue 4): the platform reports that it is missing.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/merge_cuda.h"

namespace ragged::internal {

absl::Status RunCuda(const Problem&, const RaggedDecodeAttentionArgs&,
                     const RaggedDecodeAttentionOptions&, Stream) {
  return absl::UnimplementedError("platform cuda: kernels not built yet");
}
absl::StatusOr<int64_t> CudaWorkspaceSize(const Problem&, const RaggedDecodeAttentionOptions&) {
  return int64_t{0};
}
absl::Status MergePartialsCuda(const MergePartialsArgs&, Stream) {
  return absl::UnimplementedError("MergePartials on CUDA: not built yet");
}

}  // namespace ragged::internal
