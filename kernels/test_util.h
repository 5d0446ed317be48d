// Test helpers for the operation: random host problems, and comparison with the reference.
//
// TestCase describes one problem; MakeHostProblem draws random normal inputs (never zeros) from
// the case's seed and owns every host buffer; ExpectMatchesReference compares a backend's output
// and lse with the double-precision reference, with the tolerance of the dtype stated once in
// Tolerance(). Used by the CPU, CUDA and sharding tests. Not thread-safe.
#ifndef RAGGED_KERNELS_TEST_UTIL_H_
#define RAGGED_KERNELS_TEST_UTIL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/ragged_decode_attention.h"
#include "kernels/reference.h"
#include "runtime/buffer.h"

namespace ragged::testing {

enum class Sinks { kNone, kShared, kPerKvHead, kPerQueryHead };

struct TestCase {
  int64_t batch = 2;
  int64_t capacity = 64;  // S
  int64_t num_q_heads = 4;
  int64_t num_kv_heads = 2;
  int64_t head_dim = 64;
  DType dtype = DType::kF32;
  // Per-row [start, end). Empty: every row is [0, capacity).
  std::vector<int32_t> start, end;
  std::optional<SlidingWindow> window;
  std::optional<float> soft_cap;
  std::optional<float> softmax_scale;
  Sinks sinks = Sinks::kNone;
  int64_t num_sinks = 1;
  DType aux_dtype = DType::kF32;
  int64_t query_tokens = 0;  // > 0: a 4-D query [B, T, HQ, D]
  bool with_lse = true;
  DType output_dtype = DType::kF32;  // set to dtype by MakeHostProblem unless f32 was asked
  bool f32_output = false;
  uint64_t seed = 1;
  double input_scale = 1.0;  // standard deviation of the inputs

  std::string ToString() const;
};

// Random ragged lengths: end uniform in [1, S] (0 allowed when allow_empty), start 0, or a random
// start with end <= S when `offsets`.
void RandomLengths(TestCase& c, bool offsets, bool allow_empty, uint64_t seed);

struct HostProblem {
  TestCase c;
  HostBuffer query, key, value, start, end, aux, output, lse;
  RaggedDecodeAttentionArgs args() const;
  RaggedDecodeAttentionOptions options(Platform platform) const;
};

HostProblem MakeHostProblem(const TestCase& c);
// Fills `buf` (a floating host buffer) with NaN, so that unwritten outputs are caught.
void PoisonWithNaN(const HostBuffer& buf);
// Fills a floating host buffer with normal(0, stddev) values rounded to its dtype.
void FillRandomNormal(const HostBuffer& buf, uint64_t seed, double stddev = 1.0);

// The tolerance of a dtype: max |out - ref| / max(1, max |ref|) for outputs, and the same bound
// on |lse - ref_lse| / max(1, |ref_lse|).
double Tolerance(DType dtype);

// Compares `output` (host, [B, HQ, D] or [B, 1, HQ, D]) and `lse` (host [B, HQ], optional) with
// `ref`. Fails on any NaN where the reference is finite. `dtype` selects the tolerance.
::testing::AssertionResult MatchesReference(const ReferenceResult& ref, const TensorView& output,
                                            const TensorView* lse, DType dtype);

}  // namespace ragged::testing

#endif  // RAGGED_KERNELS_TEST_UTIL_H_
