#include "kernels/ragged_decode_attention.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/problem.h"
#include "kernels/reference.h"
#include "runtime/status.h"

#if RAGGED_WITH_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace ragged {
namespace {

Platform Resolve(const RaggedDecodeAttentionArgs& args, Platform requested) {
  if (requested != Platform::kAuto) return requested;
  return args.query.device().is_cuda() ? Platform::kCuda : Platform::kCpu;
}

absl::StatusOr<Problem> Prepare(const RaggedDecodeAttentionArgs& args,
                                const RaggedDecodeAttentionOptions& options, Platform platform) {
  if (platform == Platform::kCuda && !BuiltWithCuda()) {
    return absl::FailedPreconditionError(
        "platform cuda: this build of ragged has no CUDA support (configure with "
        "RAGGED_WITH_CUDA=ON where nvcc is present)");
  }
  RAGGED_ASSIGN_OR_RETURN(Problem p, ValidateProblem(args, options, platform));
  if (platform != Platform::kCuda) {
    // Host platforms can see start/end: check them (strided, so copy to contiguous).
    std::vector<int32_t> start(p.batch), end(p.batch);
    for (int64_t b = 0; b < p.batch; ++b) {
      start[b] = p.sequence_start[b * p.start_stride];
      end[b] = p.sequence_end[b * p.end_stride];
    }
    RAGGED_RETURN_IF_ERROR(ValidateRangesOnHost(p, start.data(), end.data()));
  }
  return p;
}

}  // namespace

absl::Status RaggedDecodeAttention(const RaggedDecodeAttentionArgs& args,
                                   const RaggedDecodeAttentionOptions& options, Stream stream) {
  const Platform platform = Resolve(args, options.platform);
  RAGGED_ASSIGN_OR_RETURN(Problem p, Prepare(args, options, platform));
  switch (platform) {
    case Platform::kReference:
      return internal::RunReference(p);
    case Platform::kCpu:
      return internal::RunCpu(p, options);
    case Platform::kCuda:
#if RAGGED_WITH_CUDA
      return internal::RunCuda(p, args, options, stream);
#else
      break;
#endif
    case Platform::kAuto:
      break;
  }
  return absl::InternalError("unreachable platform");
}

absl::StatusOr<int64_t> RaggedDecodeAttentionWorkspaceSize(
    const RaggedDecodeAttentionArgs& args, const RaggedDecodeAttentionOptions& options) {
  const Platform platform = Resolve(args, options.platform);
  if (platform != Platform::kCuda) return int64_t{0};
#if RAGGED_WITH_CUDA
  RAGGED_ASSIGN_OR_RETURN(Problem p, Prepare(args, options, platform));
  return internal::CudaWorkspaceSize(p, options);
#else
  return absl::FailedPreconditionError("platform cuda: this build of ragged has no CUDA support");
#endif
}

}  // namespace ragged
