// Problem: a validated, normalized description of one RaggedDecodeAttention call.
//
// Every backend (reference, CPU, CUDA) starts from a Problem: the shapes as named integers, the
// resolved options, element strides, and raw pointers (the 4-D query already advanced to token
// T-1). ValidateProblem is the single place where bad input becomes InvalidArgument, so all
// backends reject the same inputs with the same messages. A Problem borrows the caller's pointers
// and owns nothing. Thread-safety: a value type.
#ifndef RAGGED_KERNELS_PROBLEM_H_
#define RAGGED_KERNELS_PROBLEM_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "kernels/internal/host_device.h"
#include "kernels/ragged_decode_attention.h"
#include "runtime/dtype.h"
#include "runtime/tensor.h"

namespace ragged {

enum class SinkLayout : uint8_t {
  kNone = 0,
  kShared = 1,        // aux [NS]: every head
  kPerKvHead = 2,     // aux [HKV, NS]: row g
  kPerQueryHead = 3,  // aux [HQ, NS]: row h
};

struct Problem {
  // Shapes.
  int64_t batch = 0;           // B
  int64_t num_q_heads = 0;     // HQ
  int64_t num_kv_heads = 0;    // HKV
  int64_t group_size = 0;      // HQ / HKV
  int64_t head_dim = 0;        // D
  int64_t capacity = 0;        // S of the key/value tensors given (local to a sequence shard)
  int64_t kv_offset = 0;       // global position of key/value row 0
  int64_t total_capacity = 0;  // global capacity that start/end are clamped to (device side)
  int64_t num_sinks = 0;       // NS (0 without sinks)
  bool query_is_4d = false;

  // Types.
  DType dtype = DType::kBF16;         // query, key, value
  DType output_dtype = DType::kBF16;  // dtype or f32
  DType aux_dtype = DType::kF32;
  SinkLayout sink_layout = SinkLayout::kNone;

  // Resolved options.
  float softmax_scale = 0.0f;
  float soft_cap = 0.0f;      // 0: none
  int64_t window_left = -1;   // < 0: unbounded
  int64_t window_right = -1;  // < 0: unbounded
  Device device;

  // Pointers, advanced to the first element used. Strides are in elements.
  const void* query = nullptr;  // [B, HQ, D] (token T-1 of a 4-D query)
  int64_t q_stride_b = 0, q_stride_h = 0;
  const void* key = nullptr;  // [B, S, HKV, D]
  int64_t k_stride_b = 0, k_stride_s = 0, k_stride_h = 0;
  const void* value = nullptr;  // [B, S, HKV, D]
  int64_t v_stride_b = 0, v_stride_s = 0, v_stride_h = 0;
  const int32_t* sequence_start = nullptr;  // [B]
  int64_t start_stride = 0;
  const int32_t* sequence_end = nullptr;  // [B]
  int64_t end_stride = 0;
  const void* aux = nullptr;  // [NS] or [rows, NS]
  int64_t aux_stride_row = 0, aux_stride_sink = 0;
  void* output = nullptr;  // [B, HQ, D]
  int64_t o_stride_b = 0, o_stride_h = 0;
  float* lse = nullptr;  // [B, HQ]
  int64_t lse_stride_b = 0, lse_stride_h = 0;

  bool has_sinks() const { return sink_layout != SinkLayout::kNone; }
  // Row of the aux table that query head h uses (0 for kShared).
  int64_t AuxRow(int64_t h) const {
    switch (sink_layout) {
      case SinkLayout::kPerKvHead:
        return h / group_size;
      case SinkLayout::kPerQueryHead:
        return h;
      default:
        return 0;
    }
  }
  // Sum over rows of valid positions would need the lengths; this is the padded bound.
  int64_t MaxKvBytes() const {
    return batch * capacity * num_kv_heads * head_dim * 2 * DTypeSize(dtype);
  }
};

// Checks every argument against SPEC.md and returns the normalized problem. Shapes, dtypes, ranks,
// divisibility, options and aux are checked; start/end values are not read (see
// ValidateRangesOnHost). `platform` must already be resolved (not kAuto); it decides on which
// device the tensors must live.
absl::StatusOr<Problem> ValidateProblem(const RaggedDecodeAttentionArgs& args,
                                        const RaggedDecodeAttentionOptions& options,
                                        Platform platform);

// Checks 0 <= start[b] <= end[b] <= total_capacity for every row, reading host copies of start and
// end (`start`/`end` are host arrays of `problem.batch` values, contiguous). InvalidArgument names
// the first bad row and its values.
absl::Status ValidateRangesOnHost(const Problem& problem, const int32_t* start, const int32_t* end);

// The local key/value rows [begin, end) that row b attends, with the query's global position.
struct KvRange {
  int64_t begin = 0;      // local row index in key/value
  int64_t end = 0;        // exclusive; end >= begin
  int64_t query_pos = 0;  // global position e - 1 (meaningful when end > begin)
};

// Applies SPEC.md steps 1-3 to a row: clamps start/end to [0, total_capacity] (e < s is empty),
// applies the window in global positions, and intersects with this tensor's rows
// [kv_offset, kv_offset + capacity). Shared by every backend, host and device.
RAGGED_HOST_DEVICE KvRange ComputeKvRange(int64_t s, int64_t e, int64_t capacity, int64_t kv_offset,
                                          int64_t total_capacity, int64_t window_left,
                                          int64_t window_right) {
  KvRange r;
  s = s < 0 ? 0 : (s > total_capacity ? total_capacity : s);
  e = e < 0 ? 0 : (e > total_capacity ? total_capacity : e);
  if (e <= s) return r;
  r.query_pos = e - 1;
  int64_t lo = s, hi = e;
  if (window_left >= 0 && window_left < r.query_pos - lo) lo = r.query_pos - window_left;
  // Compared as distances, so that a window side near INT64_MAX cannot overflow.
  if (window_right >= 0 && window_right < hi - 1 - r.query_pos) hi = r.query_pos + window_right + 1;
  lo -= kv_offset;
  hi -= kv_offset;
  if (lo < 0) lo = 0;
  if (hi > capacity) hi = capacity;
  if (hi > lo) {
    r.begin = lo;
    r.end = hi;
  }
  return r;
}

}  // namespace ragged

#endif  // RAGGED_KERNELS_PROBLEM_H_
