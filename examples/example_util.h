// Shared pieces of the example programs: the inputs of a decode step (generated from a seed or
// loaded from .npy files), their flag-level descriptions (lengths, window, sinks), the valid-byte
// count used for effective bandwidth, verification against the double-precision reference,
// timing summaries, and a two-column text table.
//
// Everything here works on host tensors. DecodeInputs owns its buffers; the TensorViews it hands
// out stay valid while it lives. Functions are thread-compatible (no shared state).
//
//   RAGGED_ASSIGN_OR_RETURN(DecodeInputs in, GenerateInputs(spec));
//   HostBuffer out = in.AllocateOutput();
//   RAGGED_RETURN_IF_ERROR(RaggedDecodeAttention(in.Args(out.view(), std::nullopt), options));
//   RAGGED_ASSIGN_OR_RETURN(VerifyResult v, Verify(in, out.view(), nullptr, options, rows));
#ifndef RAGGED_EXAMPLES_EXAMPLE_UTIL_H_
#define RAGGED_EXAMPLES_EXAMPLE_UTIL_H_

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/ragged_decode_attention.h"
#include "runtime/buffer.h"
#include "runtime/tensor.h"

namespace ragged::examples {

// How the per-row valid ranges [start, end) are drawn (BENCHMARKS.md's definitions).
enum class LengthMode {
  kFull,     // [0, S) for every row
  kUniform,  // start 0, end uniform in [1, S]
  kOffset,   // length uniform in [1, S], start uniform so that end <= S
  kFile,     // read from a text file: one row per line, "end" or "start end"; '#' comments
};
struct LengthsSpec {
  LengthMode mode = LengthMode::kFull;
  std::string path;  // kFile
};
// "full", "uniform", "offset" or "file:PATH".
absl::StatusOr<LengthsSpec> ParseLengths(absl::string_view text);

// "none" (or empty) -> no window; "L,R" -> SlidingWindow{L, R} (a negative side is unbounded).
absl::StatusOr<std::optional<SlidingWindow>> ParseWindow(absl::string_view text);

// The shape of the sinks table (SPEC.md section 1, step 6).
enum class SinkMode { kNone, kShared, kPerKvHead, kPerQueryHead };
// "none", "shared" ([NS]), "kv_head" ([HKV, NS]) or "q_head" ([HQ, NS]).
absl::StatusOr<SinkMode> ParseSinks(absl::string_view text);

// What GenerateInputs draws.
struct InputSpec {
  int64_t batch = 8;
  int64_t capacity = 1024;  // S
  int64_t num_q_heads = 32;
  int64_t num_kv_heads = 8;
  int64_t head_dim = 128;
  DType dtype = DType::kBF16;
  LengthsSpec lengths;
  SinkMode sinks = SinkMode::kNone;
  int64_t num_sinks = 1;
  uint64_t seed = 1;
};

// The host inputs of one decode step.
struct DecodeInputs {
  HostBuffer query;               // [B, HQ, D] or [B, T, HQ, D]
  HostBuffer key;                 // [B, S, HKV, D]
  HostBuffer value;               // [B, S, HKV, D]
  HostBuffer start;               // [B]; i32
  HostBuffer end;                 // [B]; i32
  std::optional<HostBuffer> aux;  // [NS], [HKV, NS] or [HQ, NS]

  int64_t batch() const { return key.shape()[0]; }
  int64_t capacity() const { return key.shape()[1]; }
  int64_t num_kv_heads() const { return key.shape()[2]; }
  int64_t head_dim() const { return key.shape()[3]; }
  int64_t num_q_heads() const { return query.shape()[query.shape().size() - 2]; }
  DType dtype() const { return query.dtype(); }
  // [B, HQ, D] (or [B, 1, HQ, D] for a 4-D query).
  Shape OutputShape() const;
  // A zero-filled output of the query's dtype, and an f32 lse [B, HQ].
  HostBuffer AllocateOutput() const;
  HostBuffer AllocateLse() const;
  // The arguments of the step on these (host) inputs.
  RaggedDecodeAttentionArgs Args(const TensorView& output, std::optional<TensorView> lse) const;
};

// Draws random normal inputs (never zeros) from spec.seed; the same seed gives the same inputs on
// every machine and thread count. InvalidArgument for non-positive sizes or a bad lengths file.
absl::StatusOr<DecodeInputs> GenerateInputs(const InputSpec& spec);

// Loads DIR/query.npy, key.npy, value.npy, sequence_start.npy, sequence_end.npy and, when it
// exists, softmax_aux.npy. Checks the ranks (the library checks the rest when the step runs).
absl::StatusOr<DecodeInputs> LoadInputs(const std::string& dir);

// The K and V bytes that the step must read: for every row, the positions valid after the window,
// times HKV * D * 2 * element size.
int64_t ValidKvBytes(const DecodeInputs& in, const std::optional<SlidingWindow>& window);

// Rows to verify: `count` distinct rows including the first, the last and the longest; all rows
// when count <= 0 or count >= B. Sorted.
std::vector<int64_t> SampleRows(const DecodeInputs& in, int64_t count, uint64_t seed);

// The tolerance of the examples' checks on max |out - ref| / max(1, max |ref|) (and on lse
// relative to max(1, |ref lse|)): f32 1e-4, f16 2e-3, bf16 1e-2.
double ExampleTolerance(DType dtype);

struct VerifyResult {
  int64_t rows = 0;            // rows compared
  double max_error = 0.0;      // output, relative as above
  double max_lse_error = 0.0;  // 0 when no lse was given
  double tolerance = 0.0;
  bool passed = false;
  std::string detail;  // where the largest error is, or what failed
};

// Compares `output` (host, the step's output for all rows) and `lse` (host [B, HQ] f32, or null)
// with the double-precision reference on `rows`, computed one row at a time.
absl::StatusOr<VerifyResult> Verify(const DecodeInputs& in, const TensorView& output,
                                    const TensorView* lse,
                                    const RaggedDecodeAttentionOptions& options,
                                    const std::vector<int64_t>& rows);

// The CPU threads a step uses: `requested`, or OpenMP's default when 0.
int HostThreads(int requested);

struct TimeStats {
  int64_t count = 0;
  double median_ms = 0.0, min_ms = 0.0, mean_ms = 0.0, max_ms = 0.0;
};
TimeStats Summarize(std::vector<double> samples_ms);

// "1.23 GB/s" style formatting helpers.
std::string FormatBytes(double bytes);
std::string FormatRate(double bytes_per_second);

// A two-column table printed with aligned values, and section rules.
class Table {
 public:
  explicit Table(std::string title) : title_(std::move(title)) {}
  void Add(std::string key, std::string value);
  void Rule();
  void Print(std::FILE* out) const;

 private:
  std::string title_;
  std::vector<std::pair<std::string, std::string>> rows_;  // a key of "\x01" is a rule
};

}  // namespace ragged::examples

#endif  // RAGGED_EXAMPLES_EXAMPLE_UTIL_H_
