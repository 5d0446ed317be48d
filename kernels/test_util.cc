#include "kernels/test_util.h"

#include <cmath>
#include <limits>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ragged::testing {

std::string TestCase::ToString() const {
  return absl::StrFormat(
      "%s B=%d S=%d HQ=%d HKV=%d D=%d%s%s%s", DTypeName(dtype), batch, capacity, num_q_heads,
      num_kv_heads, head_dim,
      window ? absl::StrFormat(" window=(%d,%d)", window->left, window->right) : "",
      soft_cap ? absl::StrCat(" cap=", *soft_cap) : "",
      sinks != Sinks::kNone ? absl::StrCat(" sinks=", static_cast<int>(sinks)) : "");
}

void RandomLengths(TestCase& c, bool offsets, bool allow_empty, uint64_t seed) {
  std::mt19937_64 rng(seed);
  c.start.assign(c.batch, 0);
  c.end.assign(c.batch, 0);
  for (int64_t b = 0; b < c.batch; ++b) {
    std::uniform_int_distribution<int64_t> len_dist(allow_empty ? 0 : 1, c.capacity);
    const int64_t len = len_dist(rng);
    int64_t s = 0;
    if (offsets) s = std::uniform_int_distribution<int64_t>(0, c.capacity - len)(rng);
    c.start[b] = static_cast<int32_t>(s);
    c.end[b] = static_cast<int32_t>(s + len);
  }
}

void FillRandomNormal(const HostBuffer& buf, uint64_t seed, double stddev) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(0.0, stddev);
  for (int64_t i = 0; i < buf.num_elements(); ++i) {
    StoreFromFloat(buf.data(), buf.dtype(), i, static_cast<float>(dist(rng)));
  }
}

void PoisonWithNaN(const HostBuffer& buf) {
  for (int64_t i = 0; i < buf.num_elements(); ++i) {
    StoreFromFloat(buf.data(), buf.dtype(), i, std::numeric_limits<float>::quiet_NaN());
  }
}

HostProblem MakeHostProblem(const TestCase& tc) {
  HostProblem p;
  p.c = tc;
  TestCase& c = p.c;
  if (c.start.empty()) {
    c.start.assign(c.batch, 0);
    c.end.assign(c.batch, static_cast<int32_t>(c.capacity));
  }
  c.output_dtype = c.f32_output ? DType::kF32 : c.dtype;
  const int64_t B = c.batch, S = c.capacity, HQ = c.num_q_heads, HKV = c.num_kv_heads,
                D = c.head_dim;
  if (c.query_tokens > 0) {
    p.query = HostBuffer::Allocate(c.dtype, {B, c.query_tokens, HQ, D});
  } else {
    p.query = HostBuffer::Allocate(c.dtype, {B, HQ, D});
  }
  p.key = HostBuffer::Allocate(c.dtype, {B, S, HKV, D});
  p.value = HostBuffer::Allocate(c.dtype, {B, S, HKV, D});
  FillRandomNormal(p.query, c.seed * 7 + 1, c.input_scale);
  FillRandomNormal(p.key, c.seed * 7 + 2, c.input_scale);
  FillRandomNormal(p.value, c.seed * 7 + 3, 1.0);
  p.start = HostBuffer::Allocate(DType::kI32, {B});
  p.end = HostBuffer::Allocate(DType::kI32, {B});
  for (int64_t b = 0; b < B; ++b) {
    p.start.data_as<int32_t>()[b] = c.start[b];
    p.end.data_as<int32_t>()[b] = c.end[b];
  }
  switch (c.sinks) {
    case Sinks::kNone:
      break;
    case Sinks::kShared:
      p.aux = HostBuffer::Allocate(c.aux_dtype, {c.num_sinks});
      break;
    case Sinks::kPerKvHead:
      p.aux = HostBuffer::Allocate(c.aux_dtype, {HKV, c.num_sinks});
      break;
    case Sinks::kPerQueryHead:
      p.aux = HostBuffer::Allocate(c.aux_dtype, {HQ, c.num_sinks});
      break;
  }
  if (c.sinks != Sinks::kNone) FillRandomNormal(p.aux, c.seed * 7 + 4, 2.0);
  if (c.query_tokens > 0) {
    p.output = HostBuffer::Allocate(c.output_dtype, {B, 1, HQ, D});
  } else {
    p.output = HostBuffer::Allocate(c.output_dtype, {B, HQ, D});
  }
  PoisonWithNaN(p.output);
  p.lse = HostBuffer::Allocate(DType::kF32, {B, HQ});
  PoisonWithNaN(p.lse);
  return p;
}

RaggedDecodeAttentionArgs HostProblem::args() const {
  RaggedDecodeAttentionArgs a;
  a.query = query.view();
  a.key = key.view();
  a.value = value.view();
  a.sequence_start = start.view();
  a.sequence_end = end.view();
  if (c.sinks != Sinks::kNone) a.softmax_aux = aux.view();
  a.output = output.view();
  if (c.with_lse) a.lse = lse.view();
  return a;
}

RaggedDecodeAttentionOptions HostProblem::options(Platform platform) const {
  RaggedDecodeAttentionOptions o;
  o.platform = platform;
  o.softmax_scale = c.softmax_scale;
  o.sliding_window = c.window;
  o.logits_soft_cap = c.soft_cap;
  return o;
}

double Tolerance(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 1e-5;
    case DType::kF16:
      return 2e-3;
    case DType::kBF16:
      return 1e-2;
    default:
      return 0.0;
  }
}

::testing::AssertionResult MatchesReference(const ReferenceResult& ref, const TensorView& output,
                                            const TensorView* lse, DType dtype) {
  const double tol = Tolerance(dtype);
  const int64_t n = static_cast<int64_t>(ref.output.size());
  if (output.num_elements() != n) {
    return ::testing::AssertionFailure()
           << "output has " << output.num_elements() << " elements, reference " << n;
  }
  double max_ref = 0.0, max_err = 0.0;
  int64_t worst = -1;
  for (int64_t i = 0; i < n; ++i) max_ref = std::max(max_ref, std::abs(ref.output[i]));
  const double denom = std::max(1.0, max_ref);
  for (int64_t i = 0; i < n; ++i) {
    const double got = LoadAsFloat(output.data(), output.dtype(), i);
    const double want = ref.output[i];
    if (std::isnan(got) != std::isnan(want)) {
      return ::testing::AssertionFailure() << "output[" << i << "] = " << got << ", reference "
                                           << want << " (NaN mismatch: unwritten output?)";
    }
    const double err = std::isnan(want) ? 0.0 : std::abs(got - want) / denom;
    if (err > max_err) {
      max_err = err;
      worst = i;
    }
  }
  if (max_err > tol) {
    return ::testing::AssertionFailure()
           << "output error " << max_err << " > tolerance " << tol << " at element " << worst
           << " (got " << LoadAsFloat(output.data(), output.dtype(), worst) << ", reference "
           << ref.output[worst] << ")";
  }
  if (lse != nullptr) {
    for (int64_t i = 0; i < static_cast<int64_t>(ref.lse.size()); ++i) {
      const double got = lse->data_as<float>()[i];
      const double want = ref.lse[i];
      if (std::isinf(want) || std::isnan(want)) {
        if (!(got == want || (std::isnan(got) && std::isnan(want)))) {
          return ::testing::AssertionFailure()
                 << "lse[" << i << "] = " << got << ", reference " << want;
        }
        continue;
      }
      const double err = std::abs(got - want) / std::max(1.0, std::abs(want));
      if (!(err <= tol)) {
        return ::testing::AssertionFailure() << "lse[" << i << "] = " << got << ", reference "
                                             << want << " (error " << err << " > " << tol << ")";
      }
    }
  }
  return ::testing::AssertionSuccess() << "max error " << max_err;
}

}  // namespace ragged::testing
