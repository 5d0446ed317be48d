// MpiCommunicator and Process under mpirun (registered with 1, 2 and 4 ranks): every collective
// with 0, 1, odd and large counts, every dtype, chunked calls (what counts past INT_MAX take),
// in place and out of place; sub-communicators split like mesh axes; owned versus borrowed MPI
// communicators; argument errors; the one-rank-per-GPU check.
#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "runtime/bootstrap.h"
#include "runtime/communicator.h"
#include "runtime/dtype.h"
#include "runtime/mpi_communicator.h"
#include "runtime/status.h"
#include "runtime/stream.h"
#include "tests/comm_test_main.h"

namespace ragged {

// Readable parameters in GoogleTest's messages (static: found by ADL, private to this file).
static void PrintTo(DType t, std::ostream* os) { *os << DTypeName(t); }
static void PrintTo(ReduceOp op, std::ostream* os) { *os << ReduceOpName(op); }

namespace {

using ::ragged::testing::TestProcess;

MpiCommunicator& World() { return TestProcess().world(); }

bool Contains(absl::string_view haystack, absl::string_view needle) {
  return haystack.find(needle) != absl::string_view::npos;
}

// Small integers, exact in every dtype, and their sums over up to 8 ranks too (|x| <= 40 < 256).
float Value(int rank, int64_t i) { return static_cast<float>((rank * 7 + i * 3) % 11 - 5); }

std::vector<uint8_t> Fill(DType dtype, int64_t count, int rank) {
  std::vector<uint8_t> buf(static_cast<size_t>(count * DTypeSize(dtype)) + 1);
  for (int64_t i = 0; i < count; ++i) StoreFromFloat(buf.data(), dtype, i, Value(rank, i));
  return buf;
}

// Counts: none, one, odd, and large (more than a megabyte of f32 per rank, not a multiple of
// anything). Chunking: whole calls, or about six chunks per call with a remainder, which is how
// counts past INT_MAX travel (set_max_count_per_call lowers the limit so that CI can afford it).
constexpr int64_t kCounts[] = {0, 1, 7, 1001, (int64_t{1} << 20) + 3};
constexpr DType kDTypes[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kI32};
enum class Chunking { kWhole, kSixths };
enum class Placement { kOutOfPlace, kInPlace };

void ApplyChunking(MpiCommunicator& comm, Chunking chunking, int64_t count) {
  comm.set_max_count_per_call(chunking == Chunking::kWhole ? INT_MAX : count / 6 + 1);
}

std::string ChunkingName(Chunking c) { return c == Chunking::kWhole ? "whole" : "sixths"; }
std::string PlacementName(Placement p) {
  return p == Placement::kInPlace ? "inplace" : "outofplace";
}
void PrintTo(Chunking c, std::ostream* os) { *os << ChunkingName(c); }
void PrintTo(Placement p, std::ostream* os) { *os << PlacementName(p); }

// Each test gets a fresh owned communicator so that chunk settings do not leak between tests.
std::unique_ptr<MpiCommunicator> FreshWorld() {
  absl::StatusOr<std::unique_ptr<MpiCommunicator>> c =
      MpiCommunicator::Create(MPI_COMM_WORLD, ragged::testing::kTestTimeout);
  RAGGED_CHECK(c.ok());
  return *std::move(c);
}

// ---------------------------------------------------------------------------------------------
// AllGather

using AllGatherParam = std::tuple<int64_t, DType, Chunking, Placement>;
class MpiAllGatherTest : public ::testing::TestWithParam<AllGatherParam> {};

TEST_P(MpiAllGatherTest, RankMajorResult) {
  const auto [count, dtype, chunking, placement] = GetParam();
  std::unique_ptr<MpiCommunicator> comm = FreshWorld();
  ApplyChunking(*comm, chunking, count);
  const int n = comm->size(), me = comm->rank();
  const int64_t esize = DTypeSize(dtype);
  std::vector<uint8_t> recv(static_cast<size_t>(n * count * esize) + 1, 0xAB);
  std::vector<uint8_t> send = Fill(dtype, count, me);
  const void* send_ptr = send.data();
  if (placement == Placement::kInPlace) {
    std::copy(send.begin(), send.end() - 1, recv.begin() + me * count * esize);
    send_ptr = recv.data() + me * count * esize;
  }
  ASSERT_TRUE(comm->AllGather(send_ptr, recv.data(), count, dtype, nullptr).ok());
  for (int r = 0; r < n; ++r) {
    for (int64_t i = 0; i < count; ++i) {
      ASSERT_EQ(LoadAsFloat(recv.data(), dtype, r * count + i), Value(r, i))
          << "block of rank " << r << ", element " << i;
    }
  }
  EXPECT_EQ(recv.back(), 0xAB) << "wrote past the end of recv";
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, MpiAllGatherTest,
    ::testing::Combine(::testing::ValuesIn(kCounts), ::testing::ValuesIn(kDTypes),
                       ::testing::Values(Chunking::kWhole, Chunking::kSixths),
                       ::testing::Values(Placement::kOutOfPlace, Placement::kInPlace)),
    [](const ::testing::TestParamInfo<AllGatherParam>& info) {
      return absl::StrCat("n", std::get<0>(info.param), "_", DTypeName(std::get<1>(info.param)),
                          "_", ChunkingName(std::get<2>(info.param)), "_",
                          PlacementName(std::get<3>(info.param)));
    });

// ---------------------------------------------------------------------------------------------
// AllReduce

using AllReduceParam = std::tuple<int64_t, DType, ReduceOp, Chunking, Placement>;
class MpiAllReduceTest : public ::testing::TestWithParam<AllReduceParam> {};

TEST_P(MpiAllReduceTest, ElementwiseOverRanks) {
  const auto [count, dtype, op, chunking, placement] = GetParam();
  std::unique_ptr<MpiCommunicator> comm = FreshWorld();
  ApplyChunking(*comm, chunking, count);
  const int n = comm->size(), me = comm->rank();
  std::vector<uint8_t> send = Fill(dtype, count, me);
  std::vector<uint8_t> recv(send.size(), 0xCD);
  recv.back() = 0xAB;
  void* recv_ptr = placement == Placement::kInPlace ? send.data() : recv.data();
  ASSERT_TRUE(comm->AllReduce(send.data(), recv_ptr, count, dtype, op, nullptr).ok());
  for (int64_t i = 0; i < count; ++i) {
    float expected = Value(0, i);
    for (int r = 1; r < n; ++r) {
      expected = op == ReduceOp::kSum ? expected + Value(r, i) : std::max(expected, Value(r, i));
    }
    ASSERT_EQ(LoadAsFloat(recv_ptr, dtype, i), expected) << "element " << i;
  }
  EXPECT_EQ(static_cast<uint8_t*>(recv_ptr)[count * DTypeSize(dtype)],
            placement == Placement::kInPlace ? 0 : 0xAB)
      << "wrote past the end of recv";
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, MpiAllReduceTest,
    ::testing::Combine(::testing::ValuesIn(kCounts), ::testing::ValuesIn(kDTypes),
                       ::testing::Values(ReduceOp::kSum, ReduceOp::kMax),
                       ::testing::Values(Chunking::kWhole, Chunking::kSixths),
                       ::testing::Values(Placement::kOutOfPlace, Placement::kInPlace)),
    [](const ::testing::TestParamInfo<AllReduceParam>& info) {
      return absl::StrCat("n", std::get<0>(info.param), "_", DTypeName(std::get<1>(info.param)),
                          "_", ReduceOpName(std::get<2>(info.param)), "_",
                          ChunkingName(std::get<3>(info.param)), "_",
                          PlacementName(std::get<4>(info.param)));
    });

// f16 and bf16 sums round once per pairwise step: 1 + 2^-11 ... is where f16 and bf16 differ
// from f32; check that the reduction really computes in the 16-bit type's precision and does not
// pass the bits through as integers.
class MpiHalfSumTest : public ::testing::TestWithParam<DType> {};

TEST_P(MpiHalfSumTest, FractionsAddAsFloats) {
  const DType dtype = GetParam();
  std::unique_ptr<MpiCommunicator> comm = FreshWorld();
  const int n = comm->size();
  uint16_t x = 0, sum = 0;
  StoreFromFloat(&x, dtype, 0, 0.25f);
  ASSERT_TRUE(comm->AllReduce(&x, &sum, 1, dtype, ReduceOp::kSum, nullptr).ok());
  EXPECT_EQ(LoadAsFloat(&sum, dtype, 0), 0.25f * n);
}

INSTANTIATE_TEST_SUITE_P(Halves, MpiHalfSumTest, ::testing::Values(DType::kF16, DType::kBF16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

// ---------------------------------------------------------------------------------------------
// Broadcast

enum class Root { kFirst, kLast };
void PrintTo(Root r, std::ostream* os) { *os << (r == Root::kFirst ? "first" : "last"); }
using BroadcastParam = std::tuple<int64_t, DType, Root, Chunking>;
class MpiBroadcastTest : public ::testing::TestWithParam<BroadcastParam> {};

TEST_P(MpiBroadcastTest, EveryRankGetsRoots) {
  const auto [count, dtype, which_root, chunking] = GetParam();
  std::unique_ptr<MpiCommunicator> comm = FreshWorld();
  ApplyChunking(*comm, chunking, count);
  const int root = which_root == Root::kFirst ? 0 : comm->size() - 1;
  std::vector<uint8_t> buf = Fill(dtype, count, comm->rank());
  buf.back() = 0xAB;
  ASSERT_TRUE(comm->Broadcast(buf.data(), count, dtype, root, nullptr).ok());
  for (int64_t i = 0; i < count; ++i) {
    ASSERT_EQ(LoadAsFloat(buf.data(), dtype, i), Value(root, i)) << "element " << i;
  }
  EXPECT_EQ(buf.back(), 0xAB);
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, MpiBroadcastTest,
    ::testing::Combine(::testing::ValuesIn(kCounts), ::testing::ValuesIn(kDTypes),
                       ::testing::Values(Root::kFirst, Root::kLast),
                       ::testing::Values(Chunking::kWhole, Chunking::kSixths)),
    [](const ::testing::TestParamInfo<BroadcastParam>& info) {
      return absl::StrCat("n", std::get<0>(info.param), "_", DTypeName(std::get<1>(info.param)),
                          "_root", std::get<2>(info.param) == Root::kFirst ? "first" : "last", "_",
                          ChunkingName(std::get<3>(info.param)));
    });

// ---------------------------------------------------------------------------------------------
// Barrier

TEST(MpiBarrierTest, WaitsForTheLastRank) {
  std::unique_ptr<MpiCommunicator> comm = FreshWorld();
  if (comm->size() < 2) GTEST_SKIP() << "needs 2 ranks to wait for one";
  constexpr absl::Duration kLate = absl::Milliseconds(400);
  ASSERT_TRUE(comm->Barrier().ok());
  const absl::Time start = absl::Now();
  if (comm->rank() == 0) absl::SleepFor(kLate);
  ASSERT_TRUE(comm->Barrier().ok());
  // Every rank leaves the barrier only after rank 0 entered it, kLate after the first barrier.
  EXPECT_GE(absl::Now() - start, kLate - absl::Milliseconds(50));
}

// ---------------------------------------------------------------------------------------------
// Split: groups along the axes of a (outer, inner) mesh, like dp x tp.

enum class Axis { kInner, kOuter };
void PrintTo(Axis a, std::ostream* os) { *os << (a == Axis::kInner ? "inner" : "outer"); }
using SplitParam = std::tuple<int, Axis>;  // (inner axis size, axis to group along)
class MpiSplitTest : public ::testing::TestWithParam<SplitParam> {};

TEST_P(MpiSplitTest, GroupsAlongMeshAxis) {
  const auto [inner_size_param, axis] = GetParam();
  MpiCommunicator& world = World();
  const int n = world.size();
  const int inner = inner_size_param == 0 ? n : inner_size_param;  // 0: the whole world
  if (n % inner != 0) GTEST_SKIP() << "inner axis " << inner << " does not divide " << n;
  const int outer = n / inner;
  const int me = world.rank();
  const int i_outer = me / inner, i_inner = me % inner;  // row-major, inner fastest
  // Ranks along an axis share the other coordinate: the color is the other coordinate.
  const int color = axis == Axis::kInner ? i_outer : i_inner;
  const int key = axis == Axis::kInner ? i_inner : i_outer;
  const int group_size = axis == Axis::kInner ? inner : outer;

  absl::StatusOr<std::unique_ptr<Communicator>> group = world.Split(color, key);
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_EQ((*group)->size(), group_size);
  EXPECT_EQ((*group)->rank(), key);
  EXPECT_EQ((*group)->backend(), CommBackend::kMpi);

  // The members, in group order, are the world ranks along the axis.
  int32_t mine = me;
  std::vector<int32_t> members(group_size, -1);
  ASSERT_TRUE((*group)->AllGather(&mine, members.data(), 1, DType::kI32, nullptr).ok());
  for (int k = 0; k < group_size; ++k) {
    const int expected = axis == Axis::kInner ? i_outer * inner + k : k * inner + i_inner;
    EXPECT_EQ(members[k], expected) << "member " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Meshes, MpiSplitTest,
    ::testing::Combine(::testing::Values(1, 2, 0), ::testing::Values(Axis::kInner, Axis::kOuter)),
    [](const ::testing::TestParamInfo<SplitParam>& info) {
      return absl::StrCat(
          "inner",
          std::get<0>(info.param) == 0 ? std::string("all") : absl::StrCat(std::get<0>(info.param)),
          std::get<1>(info.param) == Axis::kInner ? "_alonginner" : "_alongouter");
    });

TEST(MpiSplitOrderTest, KeyOrdersRanksThenRankBreaksTies) {
  MpiCommunicator& world = World();
  const int n = world.size();
  // Descending keys reverse the order.
  absl::StatusOr<std::unique_ptr<Communicator>> reversed = world.Split(0, n - world.rank());
  ASSERT_TRUE(reversed.ok()) << reversed.status();
  EXPECT_EQ((*reversed)->rank(), n - 1 - world.rank());
  // Equal keys keep the parent's order.
  absl::StatusOr<std::unique_ptr<Communicator>> tied = world.Split(0, 7);
  ASSERT_TRUE(tied.ok()) << tied.status();
  EXPECT_EQ((*tied)->rank(), world.rank());
}

TEST(MpiSplitErrorTest, NegativeColorIsInvalidArgumentOnEveryRank) {
  std::unique_ptr<MpiCommunicator> comm = FreshWorld();
  const int bad_rank = comm->size() - 1;
  const int color = comm->rank() == bad_rank ? -3 : 0;
  absl::StatusOr<std::unique_ptr<Communicator>> group = comm->Split(color, 0);
  ASSERT_EQ(group.status().code(), absl::StatusCode::kInvalidArgument) << group.status();
  EXPECT_TRUE(Contains(group.status().message(), absl::StrCat("rank ", bad_rank, " gave -3")))
      << group.status();
  EXPECT_TRUE(Contains(group.status().message(), HostName())) << group.status();
  // The parent is not broken by a rejected split.
  EXPECT_FALSE(comm->broken());
  EXPECT_TRUE(comm->Barrier().ok());
}

TEST(MpiSplitTest, ChildOutlivesParentAndInheritsSettings) {
  std::unique_ptr<MpiCommunicator> parent = FreshWorld();
  parent->set_timeout(absl::Seconds(17));
  parent->set_max_count_per_call(3);
  absl::StatusOr<std::unique_ptr<MpiCommunicator>> child =
      parent->SplitMpi(parent->rank() % 2, parent->rank());
  ASSERT_TRUE(child.ok()) << child.status();
  parent.reset();
  EXPECT_TRUE((*child)->owned());
  EXPECT_EQ((*child)->timeout(), absl::Seconds(17));
  EXPECT_EQ((*child)->max_count_per_call(), 3);
  // A grandchild of the child still works after the parent is gone.
  absl::StatusOr<std::unique_ptr<Communicator>> grandchild = (*child)->Split(0, 0);
  ASSERT_TRUE(grandchild.ok()) << grandchild.status();
  int32_t one = 1, total = 0;
  ASSERT_TRUE((*grandchild)->AllReduce(&one, &total, 1, DType::kI32, ReduceOp::kSum, nullptr).ok());
  EXPECT_EQ(total, (*child)->size());
}

// ---------------------------------------------------------------------------------------------
// Owned and borrowed communicators

TEST(MpiOwnershipTest, CreateDuplicatesWithErrorsReturn) {
  std::unique_ptr<MpiCommunicator> comm = FreshWorld();
  EXPECT_TRUE(comm->owned());
  EXPECT_NE(comm->comm(), MPI_COMM_WORLD);
  int relation = MPI_UNEQUAL;
  ASSERT_EQ(MPI_Comm_compare(comm->comm(), MPI_COMM_WORLD, &relation), MPI_SUCCESS);
  EXPECT_EQ(relation, MPI_CONGRUENT);
  MPI_Errhandler handler;
  ASSERT_EQ(MPI_Comm_get_errhandler(comm->comm(), &handler), MPI_SUCCESS);
  EXPECT_EQ(handler, MPI_ERRORS_RETURN);
  MPI_Errhandler_free(&handler);
}

TEST(MpiOwnershipTest, BorrowedCommIsUsedAsIsAndNeverFreed) {
  // The engine's communicator, with MPI's default error handler.
  MPI_Comm engine = MPI_COMM_NULL;
  ASSERT_EQ(MPI_Comm_dup(MPI_COMM_WORLD, &engine), MPI_SUCCESS);
  ASSERT_EQ(MPI_Comm_set_errhandler(engine, MPI_ERRORS_ARE_FATAL), MPI_SUCCESS);
  {
    absl::StatusOr<std::unique_ptr<MpiCommunicator>> borrowed = MpiCommunicator::Borrow(engine);
    ASSERT_TRUE(borrowed.ok()) << borrowed.status();
    EXPECT_FALSE((*borrowed)->owned());
    EXPECT_EQ((*borrowed)->comm(), engine);
    EXPECT_EQ((*borrowed)->rank(), World().rank());
    int32_t mine = (*borrowed)->rank() + 1, total = 0;
    ASSERT_TRUE(
        (*borrowed)->AllReduce(&mine, &total, 1, DType::kI32, ReduceOp::kSum, nullptr).ok());
    const int n = (*borrowed)->size();
    EXPECT_EQ(total, n * (n + 1) / 2);
    // Split of a borrowed communicator gives an owned one.
    absl::StatusOr<std::unique_ptr<Communicator>> child = (*borrowed)->Split(0, 0);
    ASSERT_TRUE(child.ok()) << child.status();
  }  // the wrapper is destroyed here
  // The engine's communicator is alive, usable, and its error handler untouched.
  MPI_Errhandler handler;
  ASSERT_EQ(MPI_Comm_get_errhandler(engine, &handler), MPI_SUCCESS);
  EXPECT_EQ(handler, MPI_ERRORS_ARE_FATAL);
  MPI_Errhandler_free(&handler);
  int32_t one = 1, total = 0;
  ASSERT_EQ(MPI_Allreduce(&one, &total, 1, MPI_INT32_T, MPI_SUM, engine), MPI_SUCCESS);
  EXPECT_EQ(total, World().size());
  ASSERT_EQ(MPI_Comm_free(&engine), MPI_SUCCESS);
}

TEST(MpiOwnershipTest, NullCommIsInvalidArgument) {
  absl::StatusOr<std::unique_ptr<MpiCommunicator>> created = MpiCommunicator::Create(MPI_COMM_NULL);
  EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(created.status().message(), "MPI_COMM_NULL"));
  absl::StatusOr<std::unique_ptr<MpiCommunicator>> borrowed =
      MpiCommunicator::Borrow(MPI_COMM_NULL);
  EXPECT_EQ(borrowed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(borrowed.status().message(), "MPI_COMM_NULL"));
}

// ---------------------------------------------------------------------------------------------
// Argument errors: local, before any communication, the same on every rank.

TEST(MpiArgumentTest, NegativeCountIsInvalidArgument) {
  float x = 0;
  absl::Status s = World().AllGather(&x, &x, -1, DType::kF32, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(s.message(), "count must be >= 0, got -1")) << s;
  EXPECT_TRUE(Contains(s.message(), absl::StrCat("rank ", World().rank()))) << s;
  EXPECT_TRUE(Contains(s.message(), HostName())) << s;
  EXPECT_FALSE(World().broken());
}

TEST(MpiArgumentTest, NullBufferIsInvalidArgument) {
  float x = 0;
  absl::Status s = World().AllReduce(&x, nullptr, 4, DType::kF32, ReduceOp::kSum, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(s.message(), "recv null")) << s;
}

TEST(MpiArgumentTest, RootOutOfRangeIsInvalidArgument) {
  float x = 0;
  absl::Status s = World().Broadcast(&x, 1, DType::kF32, World().size(), nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(s.message(), absl::StrCat("root ", World().size()))) << s;
}

TEST(MpiArgumentTest, ZeroCountWithNullBuffersIsFine) {
  EXPECT_TRUE(World().AllGather(nullptr, nullptr, 0, DType::kF32, nullptr).ok());
  EXPECT_TRUE(World().AllReduce(nullptr, nullptr, 0, DType::kBF16, ReduceOp::kMax, nullptr).ok());
  EXPECT_TRUE(World().Broadcast(nullptr, 0, DType::kI32, 0, nullptr).ok());
}

// With set_check_arguments, ranks that disagree fail together, before any data moves.

TEST(MpiCheckArgumentsTest, CountMismatchIsInvalidArgumentOnEveryRank) {
  std::unique_ptr<MpiCommunicator> comm = FreshWorld();
  if (comm->size() < 2) GTEST_SKIP() << "needs 2 ranks to disagree";
  comm->set_check_arguments(true);
  const int odd_one = comm->size() - 1;
  const int64_t count = comm->rank() == odd_one ? 6 : 5;
  std::vector<float> send(6, 1.0f), recv(6 * comm->size(), 0.0f);
  absl::Status s = comm->AllGather(send.data(), recv.data(), count, DType::kF32, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_TRUE(Contains(s.message(), "rank 0: AllGather of 5 x f32")) << s;
  EXPECT_TRUE(Contains(s.message(), absl::StrCat("rank ", odd_one, ": AllGather of 6 x f32"))) << s;
  EXPECT_EQ(recv[0], 0.0f) << "data moved despite the mismatch";
  // Nothing is broken: agreeing calls go on.
  EXPECT_FALSE(comm->broken());
  EXPECT_TRUE(comm->AllGather(send.data(), recv.data(), 5, DType::kF32, nullptr).ok());
}

TEST(MpiCheckArgumentsTest, DifferentCollectivesAreInvalidArgumentOnEveryRank) {
  std::unique_ptr<MpiCommunicator> comm = FreshWorld();
  if (comm->size() < 2) GTEST_SKIP() << "needs 2 ranks to disagree";
  comm->set_check_arguments(true);
  float x[4] = {1, 2, 3, 4};
  absl::Status s = comm->rank() == 0
                       ? comm->Broadcast(x, 4, DType::kBF16, 0, nullptr)
                       : comm->AllReduce(x, x, 4, DType::kF32, ReduceOp::kSum, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_TRUE(Contains(s.message(), "rank 0: Broadcast of 4 x bf16 from root 0")) << s;
  EXPECT_TRUE(Contains(s.message(), "rank 1: AllReduce(sum) of 4 x f32")) << s;
  EXPECT_TRUE(Contains(s.message(), HostName())) << s;
}

TEST(MpiCheckArgumentsTest, AgreeingCallsPassAndSplitInheritsTheCheck) {
  std::unique_ptr<MpiCommunicator> comm = FreshWorld();
  comm->set_check_arguments(true);
  int32_t one = 1, total = 0;
  ASSERT_TRUE(comm->AllReduce(&one, &total, 1, DType::kI32, ReduceOp::kSum, nullptr).ok());
  EXPECT_EQ(total, comm->size());
  EXPECT_TRUE(comm->Barrier().ok());
  absl::StatusOr<std::unique_ptr<MpiCommunicator>> child = comm->SplitMpi(0, 0);
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_TRUE((*child)->check_arguments());
}

// ---------------------------------------------------------------------------------------------
// Process

TEST(ProcessTest, PlaceMatchesMpi) {
  Process& p = TestProcess();
  int rank = -1, size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ(p.rank(), rank);
  EXPECT_EQ(p.size(), size);
  EXPECT_EQ(ErrorRank(), rank);
  EXPECT_EQ(p.world().rank(), rank);
  EXPECT_EQ(p.world().size(), size);
  EXPECT_TRUE(p.owns_mpi());
  // mpirun on one host: every rank is local, in world order.
  EXPECT_EQ(p.local_size(), size);
  EXPECT_EQ(p.local_rank(), rank);
  const int devices = CudaDeviceCount();
  EXPECT_EQ(p.device(), devices == 0 ? -1 : p.local_rank() % devices);
}

TEST(ProcessTest, SecondInitAdoptsMpiAndDoesNotFinalizeIt) {
  int argc = 0;
  char** argv = nullptr;
  {
    absl::StatusOr<std::unique_ptr<Process>> again = Process::Init(&argc, &argv);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_FALSE((*again)->owns_mpi());
    EXPECT_EQ((*again)->rank(), TestProcess().rank());
  }
  int finalized = 1;
  MPI_Finalized(&finalized);
  EXPECT_EQ(finalized, 0);
  EXPECT_TRUE(World().Barrier().ok());
}

TEST(ProcessTest, WorldCommunicatorOverMpiIsANewOwnedCopy) {
  absl::StatusOr<std::unique_ptr<Communicator>> c =
      TestProcess().CreateWorldCommunicator(CommBackend::kMpi);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->backend(), CommBackend::kMpi);
  EXPECT_EQ((*c)->rank(), TestProcess().rank());
  EXPECT_EQ((*c)->size(), TestProcess().size());
  EXPECT_EQ((*c)->timeout(), TestProcess().world().timeout());
  auto* mpi = dynamic_cast<MpiCommunicator*>(c->get());
  ASSERT_NE(mpi, nullptr);
  EXPECT_TRUE(mpi->owned());
  EXPECT_NE(mpi->comm(), TestProcess().world().comm());
}

TEST(ProcessTest, NcclWithoutGpuIsRefusedOnEveryRank) {
  if (CudaDeviceCount() > 0) GTEST_SKIP() << "a GPU is visible; tests/comm_nccl_test.cc covers it";
  absl::StatusOr<std::unique_ptr<Communicator>> c =
      TestProcess().CreateWorldCommunicator(CommBackend::kNccl);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition) << c.status();
  EXPECT_TRUE(Contains(c.status().message(), absl::StrCat(TestProcess().size(), " of ",
                                                          TestProcess().size(), " rank(s)")))
      << c.status();
  EXPECT_TRUE(Contains(c.status().message(), "use the MPI backend")) << c.status();
  // Nobody was left waiting: the world still works.
  EXPECT_TRUE(TestProcess().world().Barrier().ok());
}

// ---------------------------------------------------------------------------------------------
// One rank per GPU. Device ordinals stand in for GPUs here: without CUDA, ranks on one host that
// name the same ordinal share it.

TEST(OneRankPerGpuTest, CpuRanksNeverConflict) {
  EXPECT_TRUE(CheckOneRankPerGpu(World(), -1).ok());
}

TEST(OneRankPerGpuTest, DistinctDevicesPass) {
  EXPECT_TRUE(CheckOneRankPerGpu(World(), World().rank()).ok());
}

TEST(OneRankPerGpuTest, SharedDeviceFailsNamingBothRanks) {
  if (World().size() < 2) GTEST_SKIP() << "needs 2 ranks to share a device";
  // Ranks 0 and 1 claim device 0; the others keep their own.
  const int device = World().rank() < 2 ? 0 : World().rank();
  absl::Status s = CheckOneRankPerGpu(World(), device);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_TRUE(Contains(s.message(), "ranks 0 and 1 both use")) << s;
  EXPECT_TRUE(Contains(s.message(), HostName())) << s;
  EXPECT_TRUE(Contains(s.message(), "MPI backend")) << s;
}

}  // namespace
}  // namespace ragged
