// MergePartials: splitting the KV sequence into shards (kv_offset views), computing each shard's
// partial without sinks and merging them with the sinks must equal attention over the whole range.
#include "kernels/merge.h"

#include <cmath>
#include <limits>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/test_util.h"

namespace ragged {
namespace {

using testing::HostProblem;
using testing::MakeHostProblem;
using testing::Sinks;
using testing::TestCase;

class MergeTest : public ::testing::TestWithParam<std::tuple<int, Sinks, bool, DType>> {};

TEST_P(MergeTest, ShardedPartialsMergeToTheWhole) {
  const auto [parts, sinks, window, dtype] = GetParam();
  TestCase c;
  c.batch = 5;
  c.capacity = 48;
  c.num_q_heads = 6;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.dtype = dtype;
  c.sinks = sinks;
  c.num_sinks = 2;
  c.soft_cap = 20.0f;
  if (window) c.window = SlidingWindow{9, 0};
  testing::RandomLengths(c, /*offsets=*/true, /*allow_empty=*/true, 77 + parts);
  c.start[0] = 0;  // a row entirely inside the first shard
  c.end[0] = 3;
  c.start[1] = 20;  // an empty row
  c.end[1] = 20;
  HostProblem p = MakeHostProblem(c);
  auto ref = ComputeReference(p.args(), p.options(Platform::kReference));
  ASSERT_TRUE(ref.ok()) << ref.status();

  const int64_t B = c.batch, HQ = c.num_q_heads, D = c.head_dim;
  const int64_t shard = c.capacity / parts;
  ASSERT_EQ(shard * parts, c.capacity);
  HostBuffer partial_o = HostBuffer::Allocate(DType::kF32, {parts, B, HQ, D});
  HostBuffer partial_lse = HostBuffer::Allocate(DType::kF32, {parts, B, HQ});
  for (int i = 0; i < parts; ++i) {
    RaggedDecodeAttentionArgs a = p.args();
    a.key = a.key.Slice(1, i * shard, shard);
    a.value = a.value.Slice(1, i * shard, shard);
    a.softmax_aux.reset();
    a.output = partial_o.view().Slice(0, i, 1);
    a.output = TensorView(a.output.data(), DType::kF32, {B, HQ, D});
    a.lse = TensorView(partial_lse.view().Slice(0, i, 1).data(), DType::kF32, {B, HQ});
    RaggedDecodeAttentionOptions o = p.options(Platform::kReference);
    o.kv_offset = i * shard;
    o.kv_total_capacity = c.capacity;
    ASSERT_TRUE(RaggedDecodeAttention(a, o).ok());
  }
  MergePartialsArgs m;
  m.partial_output = partial_o.view();
  m.partial_lse = partial_lse.view();
  if (sinks != Sinks::kNone) m.softmax_aux = p.aux.view();
  m.num_kv_heads = c.num_kv_heads;
  m.output = p.output.view();
  m.lse = p.lse.view();
  ASSERT_TRUE(MergePartials(m).ok());
  TensorView lse = p.lse.view();
  EXPECT_TRUE(testing::MatchesReference(*ref, p.output.view(), &lse, dtype));
}

INSTANTIATE_TEST_SUITE_P(Shards, MergeTest,
                         ::testing::Combine(::testing::Values(1, 2, 3, 4),
                                            ::testing::Values(Sinks::kNone, Sinks::kShared,
                                                              Sinks::kPerKvHead,
                                                              Sinks::kPerQueryHead),
                                            ::testing::Bool(),
                                            ::testing::Values(DType::kF32, DType::kBF16)));

TEST(MergeErrorTest, MismatchedShapes) {
  HostBuffer o = HostBuffer::Allocate(DType::kF32, {2, 3, 4, 8});
  HostBuffer l = HostBuffer::Allocate(DType::kF32, {2, 3, 5});
  HostBuffer out = HostBuffer::Allocate(DType::kF32, {3, 4, 8});
  MergePartialsArgs m;
  m.partial_output = o.view();
  m.partial_lse = l.view();
  m.output = out.view();
  absl::Status s = MergePartials(m);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("partial_lse"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("[2, 3, 4]"), absl::string_view::npos) << s;
}

TEST(MergeErrorTest, AuxOfWrongShape) {
  HostBuffer o = HostBuffer::Allocate(DType::kF32, {2, 3, 4, 8});
  HostBuffer l = HostBuffer::Allocate(DType::kF32, {2, 3, 4});
  HostBuffer out = HostBuffer::Allocate(DType::kF32, {3, 4, 8});
  HostBuffer aux = HostBuffer::Allocate(DType::kF32, {3, 1});
  MergePartialsArgs m;
  m.partial_output = o.view();
  m.partial_lse = l.view();
  m.output = out.view();
  m.softmax_aux = aux.view();
  m.num_kv_heads = 2;
  absl::Status s = MergePartials(m);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("softmax_aux"), absl::string_view::npos) << s;
}

TEST(MergeTest, AllPartialsEmptyGivesZeroAndMinusInfinity) {
  HostBuffer o = HostBuffer::Allocate(DType::kF32, {2, 1, 1, 4});
  HostBuffer l = HostBuffer::Allocate(DType::kF32, {2, 1, 1});
  for (int i = 0; i < 2; ++i) l.data_as<float>()[i] = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < 8; ++i) o.data_as<float>()[i] = std::nanf("");  // never read
  HostBuffer out = HostBuffer::Allocate(DType::kF32, {1, 1, 4});
  HostBuffer lse = HostBuffer::Allocate(DType::kF32, {1, 1});
  MergePartialsArgs m;
  m.partial_output = o.view();
  m.partial_lse = l.view();
  m.output = out.view();
  m.lse = lse.view();
  ASSERT_TRUE(MergePartials(m).ok());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out.data_as<float>()[i], 0.0f);
  EXPECT_EQ(lse.data_as<float>()[0], -std::numeric_limits<float>::infinity());
}

}  // namespace
}  // namespace ragged
