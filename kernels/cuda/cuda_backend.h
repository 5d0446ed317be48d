// The CUDA backend of RaggedDecodeAttention: split-KV flash-decoding kernels and their combine.
//
// Entry points for Platform::kCuda, called by RaggedDecodeAttention after ValidateProblem. The
// tensors are device memory owned by the caller; the backend owns nothing across calls but a
// process-wide cache of device properties and tuned configs. Stream-ordered: no host
// synchronization (unless options.validate_ranges, or the first call of a shape under
// RAGGED_AUTOTUNE=autotune, which times candidate configs) and no allocation inside the call; the
// grid depends on shapes only, so a call can be captured in a CUDA graph and replayed with new
// start/end values. Results are bitwise identical run to run. Thread-safe: concurrent calls on
// distinct outputs and workspaces are fine.
//
// Kernel design, schedule and tuning notes: kernels/cuda/decode_kernel.cuh and NOTES.md.
#ifndef RAGGED_KERNELS_CUDA_CUDA_BACKEND_H_
#define RAGGED_KERNELS_CUDA_CUDA_BACKEND_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/autotune.h"
#include "kernels/problem.h"
#include "kernels/ragged_decode_attention.h"
#include "runtime/stream.h"

namespace ragged::internal {

// Launches the decode and combine kernels for `problem` on `stream` (a cudaStream_t), using
// args.workspace. On success the work is queued and OK returned. InvalidArgument for what the
// kernels do not handle (head dims other than 64/80/96/128/256, Q/K/V not 16-byte aligned, a bad
// kernel config, a small workspace); FailedPrecondition when the tensors' device is not visible;
// CUDA launch errors as Internal/InvalidArgument with the failing call.
absl::Status RunCuda(const Problem& problem, const RaggedDecodeAttentionArgs& args,
                     const RaggedDecodeAttentionOptions& options, Stream stream);

// Workspace bytes for `problem` on its device: depends on shapes and the SM count only (never on
// the lengths or the config), so one workspace serves every config and every replay.
absl::StatusOr<int64_t> CudaWorkspaceSize(const Problem& problem,
                                          const RaggedDecodeAttentionOptions& options);

// What the config rules see of CUDA device `device` (cached per process), as the backend uses it:
// for the heuristic, the candidates and the cache keys of benchmarks and tests.
absl::StatusOr<DeviceInfo> CudaDeviceInfo(int device);

}  // namespace ragged::internal

#endif  // RAGGED_KERNELS_CUDA_CUDA_BACKEND_H_
