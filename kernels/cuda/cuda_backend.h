// The CUDA backend of RaggedDecodeAttention: split-KV flash-decoding kernels and their combine.
//
// Entry points for Platform::kCuda. Stream-ordered: no host synchronization (unless
// options.validate_ranges) and no allocation inside the call; the grid depends on shapes only.
#ifndef RAGGED_KERNELS_CUDA_CUDA_BACKEND_H_
#define RAGGED_KERNELS_CUDA_CUDA_BACKEND_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/problem.h"
#include "kernels/ragged_decode_attention.h"
#include "runtime/stream.h"

namespace ragged::internal {

absl::Status RunCuda(const Problem& problem, const RaggedDecodeAttentionArgs& args,
                     const RaggedDecodeAttentionOptions& options, Stream stream);
absl::StatusOr<int64_t> CudaWorkspaceSize(const Problem& problem,
                                          const RaggedDecodeAttentionOptions& options);

}  // namespace ragged::internal

#endif  // RAGGED_KERNELS_CUDA_CUDA_BACKEND_H_
