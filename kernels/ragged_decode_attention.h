// RaggedDecodeAttention: one decode step of attention over a padded, ragged KV cache.
//
// Every sequence b of the batch has one new query token and attends to its own valid range
// [sequence_start[b], sequence_end[b]) of a dense KV cache of capacity S, with GQA/MQA, an
// optional sliding window, logit soft cap and attention sinks. The exact contract is
// ../shared/SPEC.md section 1; this header is its C++ form.
//
//   RaggedDecodeAttentionArgs args;
//   args.query = q;                // bf16[B, HQ, D]
//   args.key = k; args.value = v;  // bf16[B, S, HKV, D]
//   args.sequence_start = start; args.sequence_end = end;  // i32[B]
//   args.output = out;             // bf16[B, HQ, D]
//   RAGGED_RETURN_IF_ERROR(RaggedDecodeAttention(args, {}, stream));
//
// Platforms: kCpu runs the multi-threaded CPU backend on host tensors; kCuda runs the CUDA
// kernels on device tensors, stream-ordered, without host synchronization or allocation (a
// workspace, sized by RaggedDecodeAttentionWorkspaceSize, is passed in args.workspace); kAuto
// picks by where the tensors live; kReference runs the double-precision reference (host only).
// All tensors of one call must live on the same device.
//
// Choices where SPEC.md is silent (recorded here as it asks):
// - `output` may be f32 as well as the query dtype (sharded merges keep partials in f32).
// - The innermost (head_dim) stride of every tensor must be 1; other strides are free (so that
//   slices of a larger cache, such as a sequence shard, are valid inputs).
// - `kv_offset` (options): key/value hold the global positions [kv_offset, kv_offset + S) of a
//   longer cache, while start/end, the query position and the window stay global. This is how a
//   sequence shard computes its partial; 0 for an ordinary call.
// - On CUDA, start/end are not read by the host: they are clamped on the device to [0, S_total]
//   (S_total = kv_offset + S) and e < s is an empty row. With options.validate_ranges (or on the
//   CPU platforms, whose host can see them) out-of-range rows are an InvalidArgument naming the
//   row.
// - A 4-D query [B, T, HQ, D] uses token T-1; the output is then [B, 1, HQ, D] (or [B, HQ, D]).
//
// Thread-safety: the function is reentrant; concurrent calls must not share output or workspace.
#ifndef RAGGED_KERNELS_RAGGED_DECODE_ATTENTION_H_
#define RAGGED_KERNELS_RAGGED_DECODE_ATTENTION_H_

#include <cstdint>
#include <optional>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/kernel_config.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace ragged {

enum class Platform : uint8_t { kAuto = 0, kCpu = 1, kCuda = 2, kReference = 3 };
absl::string_view PlatformName(Platform p);
absl::StatusOr<Platform> ParsePlatform(
    absl::string_view name);  // "auto", "cpu", "cuda", "reference"

struct RaggedDecodeAttentionArgs {
  TensorView query;                       // [B, HQ, D] or [B, T, HQ, D]; f32, f16 or bf16
  TensorView key;                         // [B, S, HKV, D]; query's dtype
  TensorView value;                       // [B, S, HKV, D]; query's dtype
  TensorView sequence_start;              // [B]; i32
  TensorView sequence_end;                // [B]; i32
  std::optional<TensorView> softmax_aux;  // sinks: [NS], [HKV, NS] or [HQ, NS]; f32 or query's
  TensorView output;                      // [B, HQ, D] (or [B, 1, HQ, D]); query's dtype or f32
  std::optional<TensorView> lse;          // [B, HQ]; f32
  // CUDA only: scratch of at least RaggedDecodeAttentionWorkspaceSize bytes, 256-byte aligned,
  // on the tensors' device. May be null when that size is 0.
  void* workspace = nullptr;
  int64_t workspace_bytes = 0;
};

struct SlidingWindow {
  int64_t left = -1;   // positions before the query that may be attended; < 0: unbounded
  int64_t right = -1;  // positions after the query; < 0: unbounded
};

struct RaggedDecodeAttentionOptions {
  std::optional<float> softmax_scale;           // default 1/sqrt(D); finite and > 0
  std::optional<SlidingWindow> sliding_window;  // default none
  std::optional<float> logits_soft_cap;         // finite and > 0 when set
  Platform platform = Platform::kAuto;
  std::optional<KernelConfig> kernel_config;  // CUDA; default: tuned or heuristic
  int64_t kv_offset = 0;          // global position of key/value row 0 (sequence sharding)
  int64_t kv_total_capacity = 0;  // global capacity start/end may reach; 0: kv_offset + S
  bool validate_ranges = false;   // CUDA: copy start/end to the host and check them (synchronizes)
  int num_threads = 0;            // CPU: 0 = OpenMP's default (OMP_NUM_THREADS)
};

// Computes the step. On success the output (and lse, when given) is written and OK is returned;
// on the CUDA platform the work is queued on `stream` and OK means it was launched. Bad input
// gives InvalidArgument naming the argument, the expected and the actual value, before any work.
absl::Status RaggedDecodeAttention(const RaggedDecodeAttentionArgs& args,
                                   const RaggedDecodeAttentionOptions& options = {},
                                   Stream stream = nullptr);

// Bytes of workspace the CUDA platform needs for these shapes and options (0 on the CPU). Depends
// on shapes and the config only, never on the lengths, so one workspace serves a captured graph.
absl::StatusOr<int64_t> RaggedDecodeAttentionWorkspaceSize(
    const RaggedDecodeAttentionArgs& args, const RaggedDecodeAttentionOptions& options = {});

}  // namespace ragged

#endif  // RAGGED_KERNELS_RAGGED_DECODE_ATTENTION_H_
