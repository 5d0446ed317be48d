// Mesh: parsing, coordinates, groups; MeshCommunicators: caching and hand-in, over a fake world.
#include "sharding/mesh.h"

#include <memory>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ragged {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(MeshParse, ReadsAxesInOrder) {
  absl::StatusOr<Mesh> mesh = Mesh::Parse(" dp = 2, sp=1 ,tp=4");
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  ASSERT_EQ(mesh->num_axes(), 3);
  EXPECT_EQ(mesh->axes()[0], (MeshAxis{"dp", 2}));
  EXPECT_EQ(mesh->axes()[1], (MeshAxis{"sp", 1}));
  EXPECT_EQ(mesh->axes()[2], (MeshAxis{"tp", 4}));
  EXPECT_EQ(mesh->size(), 8);
  EXPECT_EQ(mesh->ToString(), "dp=2,sp=1,tp=4");
  EXPECT_EQ(mesh->AxisIndex("tp"), 2);
  EXPECT_EQ(mesh->AxisIndex("xp"), -1);
}

TEST(MeshParse, EmptyIsOneRank) {
  absl::StatusOr<Mesh> mesh = Mesh::Parse("");
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  EXPECT_EQ(mesh->size(), 1);
  EXPECT_EQ(mesh->num_axes(), 0);
  EXPECT_THAT(mesh->Coordinates(0), ElementsAre());
}

struct BadMesh {
  const char* text;
  const char* message_part;
};

void PrintTo(const BadMesh& c, std::ostream* os) { *os << c.text; }

class MeshParseErrorTest : public ::testing::TestWithParam<BadMesh> {};

TEST_P(MeshParseErrorTest, IsInvalidArgumentNamingThePart) {
  absl::StatusOr<Mesh> mesh = Mesh::Parse(GetParam().text);
  ASSERT_FALSE(mesh.ok());
  EXPECT_EQ(mesh.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mesh.status().message(), HasSubstr(GetParam().message_part));
  EXPECT_THAT(mesh.status().message(), HasSubstr(GetParam().text));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MeshParseErrorTest,
    ::testing::Values(BadMesh{"dp", "expected name=size, got \"dp\""},
                      BadMesh{"dp=2,,tp=2", "expected name=size, got \"\""},
                      BadMesh{"dp=2=3", "expected name=size"},
                      BadMesh{"dp=two", "the size of axis \"dp\" is not an integer: \"two\""},
                      BadMesh{"dp=0", "axis \"dp\": size must be >= 1, got 0"},
                      BadMesh{"dp=-2", "size must be >= 1, got -2"},
                      BadMesh{"dp=2,dp=2", "mesh axis \"dp\" appears twice"},
                      BadMesh{"2x=2", "is not an identifier"},
                      BadMesh{"None=2", "\"None\" is reserved"},
                      BadMesh{"_=2", "\"_\" is reserved"}),
    [](const auto& info) { return absl::StrCat("case", info.index); });

// (mesh, rank, coordinates)
class MeshCoordinatesTest
    : public ::testing::TestWithParam<std::tuple<const char*, int, std::vector<int>>> {};

TEST_P(MeshCoordinatesTest, RowMajorLastAxisFastest) {
  const auto& [text, rank, coords] = GetParam();
  absl::StatusOr<Mesh> mesh = Mesh::Parse(text);
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  EXPECT_EQ(mesh->Coordinates(rank), coords);
  EXPECT_EQ(mesh->RankAt(coords), rank);
}

INSTANTIATE_TEST_SUITE_P(Cases, MeshCoordinatesTest,
                         ::testing::Values(std::tuple{"dp=2,tp=4", 0, std::vector<int>{0, 0}},
                                           std::tuple{"dp=2,tp=4", 1, std::vector<int>{0, 1}},
                                           std::tuple{"dp=2,tp=4", 4, std::vector<int>{1, 0}},
                                           std::tuple{"dp=2,tp=4", 7, std::vector<int>{1, 3}},
                                           std::tuple{"a=2,b=3,c=2", 7, std::vector<int>{1, 0, 1}},
                                           std::tuple{"a=2,b=3,c=2", 11, std::vector<int>{1, 2, 1}},
                                           std::tuple{"x=5", 3, std::vector<int>{3}}));

struct GroupCase {
  const char* mesh;
  int rank;
  std::vector<std::string> axes;
  std::vector<int> ranks;  // the group, in IndexInGroup order
  int group_index;
};

void PrintTo(const GroupCase& c, std::ostream* os) {
  *os << c.mesh << " rank " << c.rank << " axes " << c.axes.size();
}

class MeshGroupTest : public ::testing::TestWithParam<GroupCase> {};

TEST_P(MeshGroupTest, GroupRanksIndexAndPosition) {
  const GroupCase& c = GetParam();
  absl::StatusOr<Mesh> mesh = Mesh::Parse(c.mesh);
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  EXPECT_EQ(mesh->GroupRanks(c.rank, c.axes), c.ranks);
  EXPECT_EQ(mesh->GroupIndex(c.rank, c.axes), c.group_index);
  // Every member agrees on the group and finds itself at its position.
  for (size_t k = 0; k < c.ranks.size(); ++k) {
    EXPECT_EQ(mesh->IndexInGroup(c.ranks[k], c.axes), static_cast<int>(k));
    EXPECT_EQ(mesh->GroupIndex(c.ranks[k], c.axes), c.group_index);
    EXPECT_EQ(mesh->GroupRanks(c.ranks[k], c.axes), c.ranks);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MeshGroupTest,
    ::testing::Values(GroupCase{"dp=2,tp=4", 5, {"tp"}, {4, 5, 6, 7}, 1},
                      GroupCase{"dp=2,tp=4", 5, {"dp"}, {1, 5}, 1},
                      GroupCase{"dp=2,tp=4", 5, {"dp", "tp"}, {0, 1, 2, 3, 4, 5, 6, 7}, 0},
                      // The order given is the major-to-minor order of the group.
                      GroupCase{"dp=2,tp=4", 5, {"tp", "dp"}, {0, 4, 1, 5, 2, 6, 3, 7}, 0},
                      GroupCase{"dp=2,tp=4", 6, {}, {6}, 6},
                      GroupCase{"a=2,b=2,c=2", 5, {"a", "c"}, {0, 1, 4, 5}, 0},
                      GroupCase{"a=2,b=2,c=2", 6, {"a", "c"}, {2, 3, 6, 7}, 1},
                      GroupCase{"a=2,b=2,c=2", 6, {"b"}, {4, 6}, 2}));

TEST(MeshCheckAxes, UnknownAndRepeatedAxes) {
  absl::StatusOr<Mesh> mesh = Mesh::Parse("dp=2,tp=2");
  ASSERT_TRUE(mesh.ok());
  EXPECT_TRUE(mesh->CheckAxes({"tp", "dp"}).ok());
  absl::Status s = mesh->CheckAxes({"dp", "sp"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("axis 'sp' is not in the mesh (dp=2,tp=2)"));
  s = mesh->CheckAxes({"tp", "tp"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("axis 'tp' is named twice"));
}

// A world of `size` ranks seen from `rank`, in one process: records Split calls and returns a
// communicator of the size that the split's color implies in `mesh`. Collectives are not used.
class FakeCommunicator : public Communicator {
 public:
  FakeCommunicator(int rank, int size, std::vector<std::pair<int, int>>* splits,
                   std::vector<int> group_sizes = {})
      : rank_(rank), size_(size), splits_(splits), group_sizes_(std::move(group_sizes)) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  CommBackend backend() const override { return CommBackend::kMpi; }
  absl::Status AllGather(const void*, void*, int64_t, DType, Stream) override {
    return absl::UnimplementedError("fake");
  }
  absl::Status AllReduce(const void*, void*, int64_t, DType, ReduceOp, Stream) override {
    return absl::UnimplementedError("fake");
  }
  absl::Status Broadcast(void*, int64_t, DType, int, Stream) override {
    return absl::UnimplementedError("fake");
  }
  absl::Status Barrier(Stream) override { return absl::UnimplementedError("fake"); }
  absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key) override {
    splits_->push_back({color, key});
    // The test tells the size of the next group; the key is the rank within it.
    const int size = group_sizes_.empty() ? 1 : group_sizes_.front();
    if (!group_sizes_.empty()) group_sizes_.erase(group_sizes_.begin());
    return std::unique_ptr<Communicator>(new FakeCommunicator(key, size, splits_));
  }

 private:
  int rank_, size_;
  std::vector<std::pair<int, int>>* splits_;
  std::vector<int> group_sizes_;
};

TEST(MeshCommunicators, SplitsOnceAndCaches) {
  absl::StatusOr<Mesh> mesh = Mesh::Parse("dp=2,sp=1,tp=4");
  ASSERT_TRUE(mesh.ok());
  std::vector<std::pair<int, int>> splits;
  FakeCommunicator world(6, 8, &splits, {4, 2});
  auto comms = MeshCommunicators::Borrow(*mesh, &world);
  ASSERT_TRUE(comms.ok()) << comms.status();
  absl::StatusOr<Communicator*> tp = (*comms)->ForAxes({"tp"});
  ASSERT_TRUE(tp.ok()) << tp.status();
  EXPECT_EQ((*tp)->size(), 4);
  EXPECT_EQ((*tp)->rank(), 2);
  // Rank 6 = (dp 1, sp 0, tp 2): group 1 of the tp groups, position 2.
  ASSERT_EQ(splits.size(), 1u);
  EXPECT_EQ(splits[0], std::make_pair(1, 2));
  // Again, and with a size-1 axis added: the same communicator, no new Split.
  EXPECT_EQ(*(*comms)->ForAxes({"tp"}), *tp);
  EXPECT_EQ(*(*comms)->ForAxes({"sp", "tp"}), *tp);
  EXPECT_EQ((*comms)->num_splits(), 1);
  // dp: a new split (color = tp coordinate 2, key = dp coordinate 1).
  absl::StatusOr<Communicator*> dp = (*comms)->ForAxes({"dp"});
  ASSERT_TRUE(dp.ok()) << dp.status();
  EXPECT_EQ(splits.back(), std::make_pair(2, 1));
  // Every axis of size > 1 in mesh order: the world itself.
  EXPECT_EQ(*(*comms)->ForAxes({"dp", "tp"}), &world);
  EXPECT_EQ((*comms)->num_splits(), 2);
}

TEST(MeshCommunicators, WorldSizeMustMatchTheMesh) {
  absl::StatusOr<Mesh> mesh = Mesh::Parse("dp=2,tp=2");
  ASSERT_TRUE(mesh.ok());
  std::vector<std::pair<int, int>> splits;
  FakeCommunicator world(0, 2, &splits);
  auto comms = MeshCommunicators::Borrow(*mesh, &world);
  ASSERT_FALSE(comms.ok());
  EXPECT_EQ(comms.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(comms.status().message(),
              HasSubstr("mesh (dp=2,tp=2) has 4 ranks but the world communicator has 2"));
}

TEST(MeshCommunicators, ProvidedCommunicatorIsUsedAndChecked) {
  absl::StatusOr<Mesh> mesh = Mesh::Parse("dp=2,tp=2");
  ASSERT_TRUE(mesh.ok());
  std::vector<std::pair<int, int>> splits;
  FakeCommunicator world(3, 4, &splits);
  auto comms = MeshCommunicators::Borrow(*mesh, &world);
  ASSERT_TRUE(comms.ok());
  FakeCommunicator wrong(0, 2, &splits);  // rank 3 is position 1 of its tp group
  absl::Status s = (*comms)->Provide({"tp"}, &wrong);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("is rank 0 of 2"));
  EXPECT_THAT(s.message(), HasSubstr("needs rank 1 of 2"));
  FakeCommunicator engine_tp(1, 2, &splits);
  ASSERT_TRUE((*comms)->Provide({"tp"}, &engine_tp).ok());
  EXPECT_EQ(*(*comms)->ForAxes({"tp"}), &engine_tp);
  EXPECT_EQ((*comms)->num_splits(), 0);
  s = (*comms)->Provide({"tp"}, &engine_tp);
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  s = (*comms)->ForAxes({"ep"}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("axis 'ep' is not in the mesh"));
}

TEST(MeshCommunicators, OwnsTheWorld) {
  absl::StatusOr<Mesh> mesh = Mesh::Parse("tp=1");
  ASSERT_TRUE(mesh.ok());
  std::vector<std::pair<int, int>> splits;
  auto comms = MeshCommunicators::Own(*mesh, std::make_unique<FakeCommunicator>(0, 1, &splits));
  ASSERT_TRUE(comms.ok()) << comms.status();
  EXPECT_EQ((*comms)->world().size(), 1);
  EXPECT_EQ(*(*comms)->ForAxes({"tp"}), &(*comms)->world());
}

}  // namespace
}  // namespace ragged
