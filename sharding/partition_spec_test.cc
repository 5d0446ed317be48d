// PartitionSpec parsing and NamedSharding: local shapes, offsets, and JAX-style errors.
#include "sharding/partition_spec.h"

#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ragged {
namespace {

using ::testing::HasSubstr;
using Entries = std::vector<PartitionSpec::Entry>;

struct GoodSpec {
  const char* text;
  Entries entries;
};

void PrintTo(const GoodSpec& c, std::ostream* os) { *os << c.text; }

class PartitionSpecParseTest : public ::testing::TestWithParam<GoodSpec> {};

TEST_P(PartitionSpecParseTest, ParsesAndRoundTrips) {
  absl::StatusOr<PartitionSpec> spec = PartitionSpec::Parse(GetParam().text);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->entries(), GetParam().entries);
  absl::StatusOr<PartitionSpec> again = PartitionSpec::Parse(spec->ToString());
  ASSERT_TRUE(again.ok()) << again.status() << " for " << spec->ToString();
  EXPECT_EQ(again->entries(), GetParam().entries) << spec->ToString();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, PartitionSpecParseTest,
    ::testing::Values(
        GoodSpec{"", {}}, GoodSpec{"()", {}}, GoodSpec{"dp", {{"dp"}}},
        GoodSpec{"dp,tp,_", {{"dp"}, {"tp"}, {}}}, GoodSpec{"(dp, tp, None)", {{"dp"}, {"tp"}, {}}},
        GoodSpec{"(dp, tp)", {{"dp"}, {"tp"}}}, GoodSpec{"((dp, tp))", {{"dp", "tp"}}},
        GoodSpec{"(dp, tp),", {{"dp", "tp"}}},
        GoodSpec{"dp, (sp, tp), None", {{"dp"}, {"sp", "tp"}, {}}},
        GoodSpec{"dp,(),tp", {{"dp"}, {}, {"tp"}}}, GoodSpec{"(sp,tp,),dp", {{"sp", "tp"}, {"dp"}}},
        GoodSpec{"PartitionSpec('dp', None, 'tp')", {{"dp"}, {}, {"tp"}}},
        GoodSpec{"P(\"dp\", ('sp', 'tp'))", {{"dp"}, {"sp", "tp"}}}, GoodSpec{"P", {{"P"}}}),
    [](const auto& info) { return absl::StrCat("case", info.index); });

struct BadSpec {
  const char* text;
  const char* message_part;
};

void PrintTo(const BadSpec& c, std::ostream* os) { *os << c.text; }

class PartitionSpecParseErrorTest : public ::testing::TestWithParam<BadSpec> {};

TEST_P(PartitionSpecParseErrorTest, IsInvalidArgumentNamingTheProblem) {
  absl::StatusOr<PartitionSpec> spec = PartitionSpec::Parse(GetParam().text);
  ASSERT_FALSE(spec.ok()) << spec->ToString();
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(spec.status().message(), HasSubstr(GetParam().message_part));
  EXPECT_THAT(spec.status().message(), HasSubstr(absl::StrCat("\"", GetParam().text, "\"")));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, PartitionSpecParseErrorTest,
    ::testing::Values(
        BadSpec{"dp,,tp", "empty entry; write None or _ for a replicated dimension at position 3"},
        BadSpec{",dp", "empty entry"}, BadSpec{"(dp, tp", "unbalanced '('"},
        BadSpec{"dp, tp)", "unbalanced ')'"}, BadSpec{"dp, ((sp, tp))", "nested tuples"},
        BadSpec{"dp, (sp, None)", "None inside a tuple"}, BadSpec{"dp tp", "expected ','"},
        BadSpec{"dp, (sp tp)", "expected ',' or ')'"},
        BadSpec{"dp; tp", "unexpected character ';'"},
        BadSpec{"dp, 'tp", "unterminated or invalid quoted axis name"},
        BadSpec{"dp, tp, dp", "axis 'dp' is used more than once"},
        BadSpec{"(sp, tp), tp", "axis 'tp' is used more than once"},
        BadSpec{"P(dp) tp", "unexpected text after the spec's ')'"}),
    [](const auto& info) { return absl::StrCat("case", info.index); });

TEST(PartitionSpec, EntriesPastTheEndAreReplicated) {
  PartitionSpec spec({{"dp"}, {}});
  EXPECT_TRUE(spec.entry(1).empty());
  EXPECT_TRUE(spec.entry(7).empty());
  EXPECT_EQ(spec, PartitionSpec({{"dp"}}));
  EXPECT_NE(spec, PartitionSpec({{}, {"dp"}}));
  EXPECT_EQ(spec.ToString(), "(dp, None)");
  EXPECT_TRUE(spec.Names("dp"));
  EXPECT_FALSE(spec.Names("tp"));
}

// (mesh, spec, global shape, rank, local shape, offset)
struct BoxCase {
  const char* mesh;
  const char* spec;
  Shape global;
  int rank;
  Shape local;
  Shape offset;
};

void PrintTo(const BoxCase& c, std::ostream* os) {
  *os << c.mesh << " " << c.spec << " rank " << c.rank;
}

class NamedShardingBoxTest : public ::testing::TestWithParam<BoxCase> {};

TEST_P(NamedShardingBoxTest, LocalShapeAndOffset) {
  const BoxCase& c = GetParam();
  absl::StatusOr<Mesh> mesh = Mesh::Parse(c.mesh);
  ASSERT_TRUE(mesh.ok());
  absl::StatusOr<PartitionSpec> spec = PartitionSpec::Parse(c.spec);
  ASSERT_TRUE(spec.ok()) << spec.status();
  absl::StatusOr<NamedSharding> sharding = NamedSharding::Create(*mesh, *spec);
  ASSERT_TRUE(sharding.ok()) << sharding.status();
  absl::StatusOr<ShardBox> box = sharding->Box(c.global, c.rank);
  ASSERT_TRUE(box.ok()) << box.status();
  EXPECT_EQ(box->shape, c.local);
  EXPECT_EQ(box->offset, c.offset);
  absl::StatusOr<Shape> local = sharding->LocalShape(c.global);
  ASSERT_TRUE(local.ok());
  EXPECT_EQ(*local, c.local);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, NamedShardingBoxTest,
    ::testing::Values(
        // rank 5 of dp=2,tp=4 is (dp 1, tp 1).
        BoxCase{"dp=2,tp=4", "dp,tp", {8, 16, 64}, 5, {4, 4, 64}, {4, 4, 0}},
        BoxCase{"dp=2,tp=4", "_,tp", {8, 16, 64}, 5, {8, 4, 64}, {0, 4, 0}},
        BoxCase{"dp=2,tp=4", "", {8, 16, 64}, 5, {8, 16, 64}, {0, 0, 0}},
        // A tuple: (dp, tp) cuts dimension 0 in 8 blocks, block = dp * 4 + tp = 5.
        BoxCase{"dp=2,tp=4", "((dp, tp))", {16, 3}, 5, {2, 3}, {10, 0}},
        // (tp, dp): block = tp * 2 + dp = 3.
        BoxCase{"dp=2,tp=4", "((tp, dp))", {16, 3}, 5, {2, 3}, {6, 0}},
        BoxCase{
            "dp=2,sp=2,tp=2", "dp,sp,tp,_", {4, 64, 8, 16}, 6, {2, 32, 4, 16}, {2, 32, 0, 16 * 0}},
        BoxCase{"dp=2,sp=2,tp=2", "dp,sp,tp", {4, 64, 8, 16}, 7, {2, 32, 4, 16}, {2, 32, 4, 0}}));

TEST(NamedSharding, ReplicatedAxesAreTheOnesNotNamed) {
  absl::StatusOr<Mesh> mesh = Mesh::Parse("dp=2,sp=2,tp=2");
  ASSERT_TRUE(mesh.ok());
  absl::StatusOr<NamedSharding> s = NamedSharding::Create(*mesh, PartitionSpec({{"dp"}, {"tp"}}));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->ReplicatedAxes(), std::vector<std::string>{"sp"});
  EXPECT_EQ(s->NumShards(0), 2);
  EXPECT_EQ(s->NumShards(2), 1);
  EXPECT_EQ(s->ToString(), "NamedSharding(mesh=(dp=2,sp=2,tp=2), spec=(dp, tp))");
}

TEST(NamedSharding, UnknownAxis) {
  absl::StatusOr<Mesh> mesh = Mesh::Parse("dp=2,tp=2");
  ASSERT_TRUE(mesh.ok());
  absl::StatusOr<NamedSharding> s = NamedSharding::Create(*mesh, PartitionSpec({{"dp"}, {"xp"}}));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(),
              HasSubstr("PartitionSpec(dp, xp): axis 'xp' is not in the mesh (dp=2,tp=2)"));
}

TEST(NamedSharding, AxisUsedTwice) {
  absl::StatusOr<Mesh> mesh = Mesh::Parse("dp=2,tp=2");
  ASSERT_TRUE(mesh.ok());
  absl::StatusOr<NamedSharding> s =
      NamedSharding::Create(*mesh, PartitionSpec({{"dp"}, {"tp", "dp"}}));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(),
              HasSubstr("axis 'dp' is used more than once (dimensions 0 and 1)"));
}

TEST(NamedSharding, SpecLongerThanTheTensor) {
  absl::StatusOr<Mesh> mesh = Mesh::Parse("dp=2,tp=2");
  ASSERT_TRUE(mesh.ok());
  absl::StatusOr<NamedSharding> s =
      NamedSharding::Create(*mesh, PartitionSpec({{"dp"}, {"tp"}, {}, {}}));
  ASSERT_TRUE(s.ok());
  const int64_t shape[] = {4, 8, 64};
  absl::Status st = s->CheckShape(shape, "query");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("query: PartitionSpec(dp, tp, None, None) has 4 entries, "
                                      "but the tensor has rank 3 (global shape [4, 8, 64])"));
}

TEST(NamedSharding, NotDivisibleNamesTensorDimensionAxesAndSizes) {
  absl::StatusOr<Mesh> mesh = Mesh::Parse("dp=2,sp=2,tp=3");
  ASSERT_TRUE(mesh.ok());
  absl::StatusOr<NamedSharding> s =
      NamedSharding::Create(*mesh, PartitionSpec({{"dp"}, {"sp", "tp"}}));
  ASSERT_TRUE(s.ok());
  const int64_t shape[] = {4, 10, 2, 16};
  const std::vector<std::string> dims = {"batch", "seq", "num_kv_heads", "head_dim"};
  absl::Status st = s->CheckShape(shape, "key", dims);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(),
              HasSubstr("key: dimension 1 (seq) of size 10 (global shape [4, 10, 2, 16]) is split "
                        "over axes (sp, tp) of sizes (2, 3), 6 shards; 10 is not divisible by 6"));
  absl::StatusOr<Shape> local = s->LocalShape(shape, "key");
  EXPECT_EQ(local.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ragged
