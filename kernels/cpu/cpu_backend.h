// The CPU backend of RaggedDecodeAttention: multi-threaded (OpenMP) and vectorized.
//
// Entry point for Platform::kCpu. Reads host tensors described by a validated Problem and writes
// the output and lse. Thread-safe: concurrent calls on distinct outputs are fine.
#ifndef RAGGED_KERNELS_CPU_CPU_BACKEND_H_
#define RAGGED_KERNELS_CPU_CPU_BACKEND_H_

#include "absl/status/status.h"
#include "kernels/problem.h"
#include "kernels/ragged_decode_attention.h"

namespace ragged::internal {

// Computes the problem on the host. `options.num_threads` (0: OpenMP's default) sets the threads.
absl::Status RunCpu(const Problem& problem, const RaggedDecodeAttentionOptions& options);

}  // namespace ragged::internal

#endif  // RAGGED_KERNELS_CPU_CPU_BACKEND_H_
