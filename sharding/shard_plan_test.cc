// ShardPlan: SPEC.md section 3's rules (one case per violated rule, with its message) and the
// per-rank layouts they give (local shapes, boxes, KV-head replication, output gathers).
#include "sharding/shard_plan.h"

#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ragged {
namespace {

using ::testing::HasSubstr;

// Specs as text; sinks and shape tweaks per case.
struct SpecText {
  const char* query = "dp,tp";
  const char* key = "dp,sp,tp";
  const char* value = nullptr;  // the key's
  const char* start = "dp";
  const char* end = "dp";
  const char* aux = "";
  const char* out = "dp,tp";
};

AttentionShape DefaultShape() {
  AttentionShape s;
  s.batch = 8;
  s.capacity = 64;
  s.num_q_heads = 8;
  s.num_kv_heads = 2;
  s.head_dim = 16;
  s.dtype = DType::kBF16;
  return s;
}

ShardedAttentionSpecs ParseSpecs(const SpecText& t) {
  auto parse = [](const char* text) {
    absl::StatusOr<PartitionSpec> s = PartitionSpec::Parse(text);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : PartitionSpec();
  };
  ShardedAttentionSpecs s;
  s.query = parse(t.query);
  s.key = parse(t.key);
  s.value = parse(t.value != nullptr ? t.value : t.key);
  s.sequence_start = parse(t.start);
  s.sequence_end = parse(t.end);
  s.softmax_aux = parse(t.aux);
  s.output = parse(t.out);
  return s;
}

absl::StatusOr<ShardPlan> Plan(const char* mesh_text, const SpecText& t,
                               const AttentionShape& shape) {
  absl::StatusOr<Mesh> mesh = Mesh::Parse(mesh_text);
  EXPECT_TRUE(mesh.ok()) << mesh.status();
  return PlanShardedAttention(*mesh, ParseSpecs(t), shape);
}

struct ErrorCase {
  const char* name;
  const char* mesh;
  SpecText specs;
  AttentionShape shape;
  const char* message_part;
};

AttentionShape With(void (*f)(AttentionShape&)) {
  AttentionShape s = DefaultShape();
  f(s);
  return s;
}

void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.name; }

class PlanErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(PlanErrorTest, IsInvalidArgumentWithTheMessage) {
  const ErrorCase& c = GetParam();
  absl::StatusOr<ShardPlan> plan = Plan(c.mesh, c.specs, c.shape);
  ASSERT_FALSE(plan.ok()) << plan->ToString();
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(plan.status().message(), HasSubstr(c.message_part));
}

constexpr const char* kMesh = "dp=2,sp=2,tp=2";

INSTANTIATE_TEST_SUITE_P(
    Rules, PlanErrorTest,
    ::testing::Values(
        ErrorCase{"UnknownAxis",
                  kMesh,
                  {.query = "dp,xp"},
                  DefaultShape(),
                  "query: PartitionSpec(dp, xp): axis 'xp' is not in the mesh (dp=2,sp=2,tp=2)"},
        ErrorCase{"SpecLongerThanTensor",
                  kMesh,
                  {.start = "dp,_"},
                  DefaultShape(),
                  "sequence_start: PartitionSpec(dp, None) has 2 entries, but the tensor has "
                  "rank 1 (global shape [8])"},
        ErrorCase{"HeadDimSplit",
                  kMesh,
                  {.query = "dp,_,tp"},
                  DefaultShape(),
                  "query: dimension 2 (head_dim) may not be split, but PartitionSpec(dp, None, "
                  "tp) splits it over (tp=2)"},
        ErrorCase{"KeyValueDiffer",
                  kMesh,
                  {.value = "dp,_,tp"},
                  DefaultShape(),
                  "value: PartitionSpec(dp, None, tp) differs from the key's PartitionSpec(dp, "
                  "sp, tp)"},
        ErrorCase{"QueryNamesSequenceAxis",
                  kMesh,
                  {.query = "dp,(tp,sp)"},
                  DefaultShape(),
                  "query: PartitionSpec(dp, (tp, sp)) names axis 'sp', which splits the "
                  "key/value sequence; only key and value may be split along the sequence"},
        ErrorCase{"StartNamesSequenceAxis",
                  kMesh,
                  {.start = "((dp,sp))"},
                  DefaultShape(),
                  "sequence_start: PartitionSpec((dp, sp)) names axis 'sp'"},
        ErrorCase{"OutputNamesSp",
                  kMesh,
                  {.out = "(dp,sp),tp"},
                  DefaultShape(),
                  "output: the output spec may not name 'sp'"},
        ErrorCase{"BatchAxesDisagree",
                  kMesh,
                  {.end = "_"},
                  DefaultShape(),
                  "sequence_end: the batch dimension is split over (), but the query's over "
                  "(dp=2); every batched tensor must split the batch over the same axes"},
        ErrorCase{"KeyBatchAxesDisagree",
                  kMesh,
                  {.key = "_,sp,tp"},
                  DefaultShape(),
                  "key: the batch dimension is split over (), but the query's over (dp=2)"},
        ErrorCase{"HeadAxesDisagree",
                  kMesh,
                  {.key = "dp,sp"},
                  DefaultShape(),
                  "key: the KV heads (dimension 2) are split over (), but the query heads over "
                  "(tp=2); query and KV heads must be split over the same axes"},
        ErrorCase{"BatchNotDivisible",
                  kMesh,
                  {},
                  With([](AttentionShape& s) { s.batch = 5; }),
                  "query: dimension 0 (batch) of size 5 (global shape [5, 8, 16]) is split over "
                  "axes (dp) of sizes (2), 2 shards; 5 is not divisible by 2"},
        ErrorCase{"QueryHeadsNotDivisible",
                  "dp=1,sp=2,tp=4",
                  {},
                  With([](AttentionShape& s) {
                    s.num_q_heads = 6;
                    s.num_kv_heads = 2;
                  }),
                  "query: dimension 1 (num_q_heads) of size 6"},
        ErrorCase{"KvHeadsNeitherDivideNorMultiple",
                  "dp=1,sp=1,tp=6",
                  {},
                  With([](AttentionShape& s) {
                    s.num_q_heads = 12;
                    s.num_kv_heads = 4;
                  }),
                  "key: the 4 KV heads cannot be split over (tp=6), 6 shards"},
        ErrorCase{"SequenceNotDivisible",
                  kMesh,
                  {},
                  With([](AttentionShape& s) { s.capacity = 63; }),
                  "key: dimension 1 (seq) of size 63 (global shape [8, 63, 2, 16]) is split "
                  "over axes (sp) of sizes (2), 2 shards"},
        ErrorCase{"SharedSinksSplit",
                  kMesh,
                  {.aux = "tp"},
                  With([](AttentionShape& s) {
                    s.sinks = SinkLayout::kShared;
                    s.num_sinks = 2;
                  }),
                  "softmax_aux: dimension 0 (NS) may not be split"},
        ErrorCase{"PerHeadSinksSplitOverOtherAxes",
                  kMesh,
                  {.aux = "dp"},
                  With([](AttentionShape& s) {
                    s.sinks = SinkLayout::kPerQueryHead;
                    s.num_sinks = 1;
                  }),
                  "softmax_aux: the heads (dimension 0) are split over (dp=2), but the query "
                  "heads over (tp=2)"},
        ErrorCase{"SinksDimensionSplit",
                  kMesh,
                  {.aux = "tp,dp"},
                  With([](AttentionShape& s) {
                    s.sinks = SinkLayout::kPerKvHead;
                    s.num_sinks = 2;
                  }),
                  "softmax_aux: dimension 1 (NS) may not be split"},
        ErrorCase{"AuxSpecWithoutSinks",
                  kMesh,
                  {.aux = "tp"},
                  DefaultShape(),
                  "softmax_aux: PartitionSpec(tp) is given, but the call has no sinks"},
        ErrorCase{"OutputNotALeadingPart",
                  kMesh,
                  {.query = "((dp,tp))",
                   .key = "(dp,tp),sp",
                   .start = "((dp,tp))",
                   .end = "((dp,tp))",
                   .out = "tp"},
                  DefaultShape(),
                  "output: the batch is split over (dp=2, tp=2) per shard; the output spec may "
                  "keep a leading part of these axes (major first) and gather the rest, but "
                  "names (tp=2)"},
        ErrorCase{"OutputNamesAnUnusedAxis",
                  "dp=2,tp=2,ep=2",
                  {.key = "dp,_,tp", .out = "dp,(tp,ep)"},
                  DefaultShape(),
                  "output: the heads are split over (tp=2) per shard"},
        ErrorCase{"OutputHeadDimSplit",
                  kMesh,
                  {.out = "dp,_,tp"},
                  DefaultShape(),
                  "output: dimension 2 (head_dim) may not be split"},
        ErrorCase{"GroupsNotWhole",
                  kMesh,
                  {},
                  With([](AttentionShape& s) {
                    s.num_q_heads = 6;
                    s.num_kv_heads = 4;
                  }),
                  "query/key: num_q_heads (6) must be a multiple of num_kv_heads (4)"},
        ErrorCase{"OutputDtype",
                  kMesh,
                  {},
                  With([](AttentionShape& s) { s.output_dtype = DType::kF16; }),
                  "output: expected dtype bf16 or f32, got f16"},
        ErrorCase{"ZeroSize",
                  kMesh,
                  {},
                  With([](AttentionShape& s) { s.head_dim = 0; }),
                  "sharded attention: every size must be >= 1"}),
    [](const auto& info) { return std::string(info.param.name); });

// PartitionSpec::Parse refuses a repeated axis itself; a spec built in code meets the plan's check.
TEST(ShardPlan, AxisUsedTwice) {
  absl::StatusOr<Mesh> mesh = Mesh::Parse(kMesh);
  ASSERT_TRUE(mesh.ok());
  ShardedAttentionSpecs specs = ParseSpecs({});
  specs.key = specs.value = PartitionSpec({{"dp"}, {"sp"}, {"dp"}});
  absl::Status s = PlanShardedAttention(*mesh, specs, DefaultShape()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("key: PartitionSpec(dp, sp, dp): axis 'dp' is used more "
                                     "than once (dimensions 0 and 2)"));
}

TEST(ShardPlan, TypicalSplitsAndBoxes) {
  absl::StatusOr<ShardPlan> plan = Plan(kMesh, {.out = ""}, DefaultShape());
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->batch_axes, std::vector<std::string>{"dp"});
  EXPECT_EQ(plan->head_axes, std::vector<std::string>{"tp"});
  EXPECT_EQ(plan->seq_axes, std::vector<std::string>{"sp"});
  EXPECT_FALSE(plan->kv_heads_replicated);
  EXPECT_EQ(plan->LocalShape(ShardedTensor::kQuery), (Shape{4, 4, 16}));
  EXPECT_EQ(plan->LocalShape(ShardedTensor::kKey), (Shape{4, 32, 1, 16}));
  EXPECT_EQ(plan->LocalShape(ShardedTensor::kSequenceEnd), (Shape{4}));
  // Output replicated: gathered over dp then tp.
  EXPECT_EQ(plan->LocalShape(ShardedTensor::kOutput), (Shape{8, 8, 16}));
  EXPECT_EQ(plan->gather_axes(), (std::vector<std::string>{"dp", "tp"}));
  // Rank 5 = (dp 1, sp 0, tp 1).
  EXPECT_EQ(plan->Box(ShardedTensor::kQuery, 5), (ShardBox{{4, 4, 0}, {4, 4, 16}}));
  EXPECT_EQ(plan->Box(ShardedTensor::kKey, 5), (ShardBox{{4, 0, 1, 0}, {4, 32, 1, 16}}));
  // Rank 6 = (dp 1, sp 1, tp 0): the second half of the sequence.
  EXPECT_EQ(plan->Box(ShardedTensor::kValue, 6), (ShardBox{{4, 32, 0, 0}, {4, 32, 1, 16}}));
  EXPECT_EQ(plan->Box(ShardedTensor::kOutput, 6), (ShardBox{{0, 0, 0}, {8, 8, 16}}));
}

TEST(ShardPlan, OutputKeepsALeadingPartOfTheBatchAxes) {
  absl::StatusOr<ShardPlan> plan = Plan(
      "a=2,b=2,tp=2",
      {.query = "(a,b),tp", .key = "(a,b),_,tp", .start = "((a,b))", .end = "((a,b))", .out = "a"},
      DefaultShape());
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->gather_batch_axes, std::vector<std::string>{"b"});
  EXPECT_EQ(plan->gather_head_axes, std::vector<std::string>{"tp"});
  // Rank 5 = (a 1, b 0, tp 1) holds rows [4, 8) and all heads.
  EXPECT_EQ(plan->Box(ShardedTensor::kOutput, 5), (ShardBox{{4, 0, 0}, {4, 8, 16}}));
  EXPECT_EQ(plan->Box(ShardedTensor::kQuery, 5), (ShardBox{{4, 4, 0}, {2, 4, 16}}));
}

TEST(ShardPlan, KvHeadsReplicatedWhenHeadShardsExceedKvHeads) {
  AttentionShape shape = DefaultShape();
  shape.sinks = SinkLayout::kPerKvHead;
  shape.num_sinks = 2;
  shape.with_lse = true;
  // tp=8 over HQ=8, HKV=2: one query head per rank; ranks 0-3 read KV head 0, 4-7 KV head 1.
  absl::StatusOr<ShardPlan> plan =
      Plan("tp=8",
           {.query = "_,tp", .key = "_,_,tp", .start = "", .end = "", .aux = "tp", .out = "_,tp"},
           shape);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(plan->kv_heads_replicated);
  EXPECT_EQ(plan->local_q_heads, 1);
  EXPECT_EQ(plan->local_kv_heads, 1);
  EXPECT_EQ(plan->FirstKvHead(3), 0);
  EXPECT_EQ(plan->FirstKvHead(4), 1);
  EXPECT_EQ(plan->Box(ShardedTensor::kKey, 5), (ShardBox{{0, 0, 1, 0}, {8, 64, 1, 16}}));
  EXPECT_EQ(plan->Box(ShardedTensor::kSoftmaxAux, 5), (ShardBox{{1, 0}, {1, 2}}));
  EXPECT_EQ(plan->KernelAuxRows(5), std::make_pair(int64_t{0}, int64_t{1}));
  EXPECT_EQ(plan->Box(ShardedTensor::kLse, 5), (ShardBox{{0, 5}, {8, 1}}));
}

TEST(ShardPlan, ReplicatedPerHeadSinksAreReadAtTheRanksRows) {
  AttentionShape shape = DefaultShape();
  shape.sinks = SinkLayout::kPerQueryHead;
  shape.num_sinks = 3;
  // tp=4 over HQ=8, HKV=2: 2 query heads per rank, KV heads replicated (4 > 2).
  absl::StatusOr<ShardPlan> plan =
      Plan("tp=4", {.query = "_,tp", .key = "_,_,tp", .start = "", .end = "", .aux = "", .out = ""},
           shape);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(plan->kv_heads_replicated);
  EXPECT_FALSE(plan->aux_split);
  EXPECT_EQ(plan->Box(ShardedTensor::kSoftmaxAux, 3), (ShardBox{{0, 0}, {8, 3}}));
  EXPECT_EQ(plan->KernelAuxRows(3), std::make_pair(int64_t{6}, int64_t{2}));
  EXPECT_EQ(plan->FirstKvHead(3), 1);
}

TEST(ShardPlan, TypicalSpecsFollowTheMeshAxes) {
  absl::StatusOr<Mesh> mesh = Mesh::Parse("dp=2,tp=2");
  ASSERT_TRUE(mesh.ok());
  ShardedAttentionSpecs s =
      ShardedAttentionSpecs::Typical(*mesh, SinkLayout::kPerQueryHead, /*gather_output=*/false);
  EXPECT_EQ(s.query.ToString(), "(dp, tp)");
  EXPECT_EQ(s.key.ToString(), "(dp, None, tp)");
  EXPECT_EQ(s.softmax_aux.ToString(), "(tp)");
  EXPECT_EQ(s.output, s.query);
  // DefaultShape has no sinks: the aux spec is refused.
  EXPECT_THAT(PlanShardedAttention(*mesh, s, DefaultShape()).status().message(),
              HasSubstr("softmax_aux: PartitionSpec(tp) is given, but the call has no sinks"));
}

}  // namespace
}  // namespace ragged
