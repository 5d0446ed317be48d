// The reference on hand-computed cases and on properties that any correct attention satisfies.
#include "kernels/reference.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"
#include "kernels/test_util.h"

namespace ragged {
namespace {

using testing::HostProblem;
using testing::MakeHostProblem;
using testing::Sinks;
using testing::TestCase;

float* F(const HostBuffer& b) { return b.data_as<float>(); }

// A tiny f32 problem: B=1, HQ=HKV=1, D=2, S=4, all inputs set by hand.
HostProblem Tiny(int32_t start, int32_t end) {
  TestCase c;
  c.batch = 1;
  c.capacity = 4;
  c.num_q_heads = 1;
  c.num_kv_heads = 1;
  c.head_dim = 2;
  c.start = {start};
  c.end = {end};
  c.softmax_scale = 1.0f;
  HostProblem p = MakeHostProblem(c);
  F(p.query)[0] = 1.0f;
  F(p.query)[1] = 0.0f;
  for (int t = 0; t < 4; ++t) {
    F(p.key)[t * 2 + 0] = static_cast<float>(t);  // logit of position t is t
    F(p.key)[t * 2 + 1] = 100.0f;                 // multiplied by q[1] = 0
    F(p.value)[t * 2 + 0] = static_cast<float>(10 * t);
    F(p.value)[t * 2 + 1] = -1.0f;
  }
  return p;
}

ReferenceResult Ref(const HostProblem& p, const RaggedDecodeAttentionOptions& o) {
  auto r = ComputeReference(p.args(), o);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : ReferenceResult{};
}

TEST(ReferenceTest, OneValidToken) {
  HostProblem p = Tiny(2, 3);
  ReferenceResult r = Ref(p, p.options(Platform::kReference));
  EXPECT_DOUBLE_EQ(r.output[0], 20.0);
  EXPECT_DOUBLE_EQ(r.output[1], -1.0);
  EXPECT_DOUBLE_EQ(r.lse[0], 2.0);  // log(exp(2))
}

TEST(ReferenceTest, TwoTokensWeighByExpOfLogits) {
  HostProblem p = Tiny(0, 2);  // logits 0 and 1
  ReferenceResult r = Ref(p, p.options(Platform::kReference));
  const double w0 = 1.0, w1 = std::exp(1.0);
  EXPECT_NEAR(r.output[0], (0 * w0 + 10 * w1) / (w0 + w1), 1e-12);
  EXPECT_NEAR(r.lse[0], std::log(w0 + w1), 1e-12);
}

TEST(ReferenceTest, WindowEdges) {
  HostProblem p = Tiny(0, 4);  // query at position 3
  RaggedDecodeAttentionOptions o = p.options(Platform::kReference);
  o.sliding_window = SlidingWindow{1, 0};  // positions 2 and 3
  ReferenceResult r = Ref(p, o);
  const double w2 = std::exp(2.0), w3 = std::exp(3.0);
  EXPECT_NEAR(r.output[0], (20 * w2 + 30 * w3) / (w2 + w3), 1e-12);
  o.sliding_window = SlidingWindow{0, -1};  // only the query's own position
  r = Ref(p, o);
  EXPECT_NEAR(r.output[0], 30.0, 1e-12);
  o.sliding_window = SlidingWindow{-1, 0};  // unbounded left: everything
  ReferenceResult all = Ref(p, o);
  ReferenceResult none = Ref(p, p.options(Platform::kReference));
  EXPECT_NEAR(all.output[0], none.output[0], 1e-12);
  o.sliding_window = SlidingWindow{100, 0};  // a window larger than the range
  r = Ref(p, o);
  EXPECT_NEAR(r.output[0], none.output[0], 1e-12);
}

TEST(ReferenceTest, EmptyRowGivesZerosAndMinusInfinity) {
  HostProblem p = Tiny(2, 2);
  ReferenceResult r = Ref(p, p.options(Platform::kReference));
  EXPECT_EQ(r.output[0], 0.0);
  EXPECT_EQ(r.output[1], 0.0);
  EXPECT_EQ(r.lse[0], -std::numeric_limits<double>::infinity());
}

TEST(ReferenceTest, SinksOnlyRow) {
  TestCase c;
  c.batch = 1;
  c.capacity = 4;
  c.num_q_heads = 1;
  c.num_kv_heads = 1;
  c.head_dim = 2;
  c.start = {1};
  c.end = {1};
  c.sinks = Sinks::kShared;
  c.num_sinks = 2;
  HostProblem p = MakeHostProblem(c);
  F(p.aux)[0] = 0.5f;
  F(p.aux)[1] = -1.0f;
  ReferenceResult r = Ref(p, p.options(Platform::kReference));
  EXPECT_EQ(r.output[0], 0.0);
  EXPECT_NEAR(r.lse[0], std::log(std::exp(0.5) + std::exp(-1.0)), 1e-12);
}

TEST(ReferenceTest, SinkAddsToDenominatorOnly) {
  HostProblem base = Tiny(2, 3);  // one token, logit 2, value 20
  TestCase c = base.c;
  c.sinks = Sinks::kShared;
  HostProblem p = MakeHostProblem(c);
  std::copy(F(base.query), F(base.query) + 2, F(p.query));
  std::copy(F(base.key), F(base.key) + 8, F(p.key));
  std::copy(F(base.value), F(base.value) + 8, F(p.value));
  F(p.aux)[0] = 1.0f;
  ReferenceResult r = Ref(p, p.options(Platform::kReference));
  const double w = std::exp(2.0), a = std::exp(1.0);
  EXPECT_NEAR(r.output[0], 20.0 * w / (w + a), 1e-12);
  EXPECT_NEAR(r.lse[0], std::log(w + a), 1e-12);
}

TEST(ReferenceTest, SoftCap) {
  HostProblem p = Tiny(0, 4);  // logits 0, 1, 2, 3
  RaggedDecodeAttentionOptions o = p.options(Platform::kReference);
  o.logits_soft_cap = 2.0f;
  ReferenceResult r = Ref(p, o);
  double num = 0, den = 0;
  for (int t = 0; t < 4; ++t) {
    const double x = 2.0 * std::tanh(t / 2.0);
    num += std::exp(x) * 10 * t;
    den += std::exp(x);
  }
  EXPECT_NEAR(r.output[0], num / den, 1e-9);
  EXPECT_NEAR(r.lse[0], std::log(den), 1e-9);
}

TEST(ReferenceTest, FourDimensionalQueryUsesLastToken) {
  TestCase c;
  c.query_tokens = 3;
  HostProblem p4 = MakeHostProblem(c);
  c.query_tokens = 0;
  HostProblem p3 = MakeHostProblem(c);
  const int64_t per_token = c.num_q_heads * c.head_dim;
  for (int64_t b = 0; b < c.batch; ++b) {
    std::copy(F(p4.query) + (b * 3 + 2) * per_token, F(p4.query) + (b * 3 + 3) * per_token,
              F(p3.query) + b * per_token);
  }
  EXPECT_EQ(Ref(p4, p4.options(Platform::kReference)).output,
            Ref(p3, p3.options(Platform::kReference)).output);
}

// Properties on random inputs.
TEST(ReferencePropertyTest, PermutingPositionsInsideTheRangeChangesNothing) {
  TestCase c;
  c.batch = 1;
  c.capacity = 16;
  c.start = {3};
  c.end = {13};
  HostProblem p = MakeHostProblem(c);
  ReferenceResult before = Ref(p, p.options(Platform::kReference));
  // Reverse the rows 3..12 of key and value together.
  const int64_t row = c.num_kv_heads * c.head_dim;
  for (int i = 0; i < 5; ++i) {
    for (int64_t x = 0; x < row; ++x) {
      std::swap(F(p.key)[(3 + i) * row + x], F(p.key)[(12 - i) * row + x]);
      std::swap(F(p.value)[(3 + i) * row + x], F(p.value)[(12 - i) * row + x]);
    }
  }
  ReferenceResult after = Ref(p, p.options(Platform::kReference));
  for (size_t i = 0; i < before.output.size(); ++i) {
    EXPECT_NEAR(before.output[i], after.output[i], 1e-9);
  }
  for (size_t i = 0; i < before.lse.size(); ++i) EXPECT_NEAR(before.lse[i], after.lse[i], 1e-9);
}

TEST(ReferencePropertyTest, ShiftingRangeAndCacheTogetherChangesNothing) {
  TestCase c;
  c.batch = 1;
  c.capacity = 32;
  c.start = {0};
  c.end = {20};
  c.window = SlidingWindow{7, 0};
  c.soft_cap = 5.0f;
  HostProblem p = MakeHostProblem(c);
  ReferenceResult before = Ref(p, p.options(Platform::kReference));
  const int64_t row = c.num_kv_heads * c.head_dim;
  const int shift = 9;
  for (int64_t t = c.capacity - 1; t >= shift; --t) {
    std::copy(F(p.key) + (t - shift) * row, F(p.key) + (t - shift + 1) * row, F(p.key) + t * row);
    std::copy(F(p.value) + (t - shift) * row, F(p.value) + (t - shift + 1) * row,
              F(p.value) + t * row);
  }
  p.start.data_as<int32_t>()[0] = shift;
  p.end.data_as<int32_t>()[0] = 20 + shift;
  ReferenceResult after = Ref(p, p.options(Platform::kReference));
  for (size_t i = 0; i < before.output.size(); ++i) {
    EXPECT_NEAR(before.output[i], after.output[i], 1e-9);
  }
}

TEST(ReferencePropertyTest, MqaEqualsGqaWithRepeatedKv) {
  TestCase mqa;
  mqa.num_q_heads = 4;
  mqa.num_kv_heads = 1;
  mqa.sinks = Sinks::kPerQueryHead;
  testing::RandomLengths(mqa, true, true, 5);
  HostProblem a = MakeHostProblem(mqa);
  TestCase gqa = mqa;
  gqa.num_kv_heads = 2;
  HostProblem b = MakeHostProblem(gqa);
  std::copy(F(a.query), F(a.query) + a.query.num_elements(), F(b.query));
  std::copy(F(a.aux), F(a.aux) + a.aux.num_elements(), F(b.aux));
  const int64_t D = mqa.head_dim;
  for (int64_t bt = 0; bt < mqa.batch * mqa.capacity; ++bt) {
    for (int g = 0; g < 2; ++g) {
      std::copy(F(a.key) + bt * D, F(a.key) + (bt + 1) * D, F(b.key) + (bt * 2 + g) * D);
      std::copy(F(a.value) + bt * D, F(a.value) + (bt + 1) * D, F(b.value) + (bt * 2 + g) * D);
    }
  }
  ReferenceResult ra = Ref(a, a.options(Platform::kReference));
  ReferenceResult rb = Ref(b, b.options(Platform::kReference));
  EXPECT_EQ(ra.output, rb.output);
  EXPECT_EQ(ra.lse, rb.lse);
}

TEST(ReferencePropertyTest, PerKvHeadSinksEqualPerQueryHeadRepeated) {
  TestCase kv;
  kv.sinks = Sinks::kPerKvHead;
  kv.num_sinks = 2;
  HostProblem a = MakeHostProblem(kv);
  TestCase q = kv;
  q.sinks = Sinks::kPerQueryHead;
  HostProblem b = MakeHostProblem(q);
  const int64_t group = kv.num_q_heads / kv.num_kv_heads;
  for (int64_t h = 0; h < kv.num_q_heads; ++h) {
    for (int j = 0; j < 2; ++j) F(b.aux)[h * 2 + j] = F(a.aux)[(h / group) * 2 + j];
  }
  EXPECT_EQ(Ref(a, a.options(Platform::kReference)).output,
            Ref(b, b.options(Platform::kReference)).output);
}

TEST(ReferencePlatformTest, WritesOutputThroughThePublicApi) {
  TestCase c;
  c.sinks = Sinks::kPerKvHead;
  testing::RandomLengths(c, true, true, 9);
  HostProblem p = MakeHostProblem(c);
  ReferenceResult r = Ref(p, p.options(Platform::kReference));
  ASSERT_TRUE(RaggedDecodeAttention(p.args(), p.options(Platform::kReference)).ok());
  TensorView lse = p.lse.view();
  EXPECT_TRUE(testing::MatchesReference(r, p.output.view(), &lse, c.dtype));
}

}  // namespace
}  // namespace ragged
