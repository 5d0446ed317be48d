// NcclCommunicator under mpirun, one rank per GPU (labelled "gpu"; registered with 2 and 4
// ranks). What runs depends on the machine, the same way on every rank:
//   - no GPU: the NCCL backend is refused on every rank with FailedPrecondition (no hang);
//   - fewer GPUs than ranks on the host: the shared GPU is detected before NCCL init, naming
//     both ranks;
//   - a GPU per rank: collectives with 0, 1, odd and large counts and every dtype, mesh splits, a
//     borrowed ncclComm_t, and a peer that never arrives (DeadlineExceeded, then aborted).
#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "runtime/bootstrap.h"
#include "runtime/buffer.h"
#include "runtime/communicator.h"
#include "runtime/dtype.h"
#include "runtime/nccl_communicator.h"
#include "runtime/status.h"
#include "runtime/stream.h"
#include "tests/comm_test_main.h"

namespace ragged {

static void PrintTo(DType t, std::ostream* os) { *os << DTypeName(t); }
static void PrintTo(ReduceOp op, std::ostream* os) { *os << ReduceOpName(op); }

namespace {

using ::ragged::testing::TestProcess;

bool Contains(absl::string_view haystack, absl::string_view needle) {
  return haystack.find(needle) != absl::string_view::npos;
}

enum class Setup { kNoGpu, kSharedGpu, kReady };

// The same answer on every rank of a host.
Setup MachineSetup() {
  const int devices = CudaDeviceCount();
  if (devices == 0) return Setup::kNoGpu;
  if (TestProcess().local_size() > devices) return Setup::kSharedGpu;
  return Setup::kReady;
}

#define REQUIRE_GPU_PER_RANK()                                                           \
  do {                                                                                   \
    if (MachineSetup() != Setup::kReady) {                                               \
      GTEST_SKIP() << "needs a GPU per rank: " << TestProcess().local_size()             \
                   << " ranks on this host, " << CudaDeviceCount() << " GPU(s) visible"; \
    }                                                                                    \
  } while (0)

// The world over NCCL, made once (by the first test that needs it, on every rank) and kept until
// exit, like the process. An error is kept too, so that every later test reports it.
absl::StatusOr<NcclCommunicator*> NcclWorld() {
  static const absl::StatusOr<NcclCommunicator*> world = []() -> absl::StatusOr<NcclCommunicator*> {
    RAGGED_RETURN_IF_ERROR(CheckOneRankPerGpu(TestProcess().world(), TestProcess().device()));
    RAGGED_ASSIGN_OR_RETURN(
        std::unique_ptr<NcclCommunicator> c,
        NcclCommunicator::Create(TestProcess().world(), TestProcess().device()));
    return c.release();
  }();
  return world;
}

#define ASSIGN_NCCL_WORLD(name)                                        \
  absl::StatusOr<NcclCommunicator*> name##_or = NcclWorld();           \
  ASSERT_TRUE(name##_or.ok()) << "NCCL world: " << name##_or.status(); \
  NcclCommunicator& name = **name##_or

float Value(int rank, int64_t i) { return static_cast<float>((rank * 7 + i * 3) % 11 - 5); }

DeviceBuffer DeviceValues(DType dtype, int64_t count, int rank, int64_t capacity) {
  HostBuffer h = HostBuffer::Allocate(dtype, {capacity});
  for (int64_t i = 0; i < count; ++i) StoreFromFloat(h.data(), dtype, i, Value(rank, i));
  absl::StatusOr<DeviceBuffer> d =
      DeviceBuffer::Allocate(dtype, {capacity}, TestProcess().device());
  RAGGED_CHECK(d.ok());
  RAGGED_CHECK(d->CopyFromHost(h.view()).ok());
  RAGGED_CHECK(SynchronizeStream(nullptr).ok());
  return *std::move(d);
}

HostBuffer ToHost(const DeviceBuffer& d) {
  HostBuffer h = HostBuffer::Allocate(d.dtype(), d.shape());
  RAGGED_CHECK(d.CopyToHost(h.view()).ok());
  RAGGED_CHECK(SynchronizeStream(nullptr).ok());
  return h;
}

// ---------------------------------------------------------------------------------------------
// Refusals, before NCCL is touched.

TEST(NcclWorldTest, NoGpuIsRefusedOnEveryRank) {
  if (MachineSetup() != Setup::kNoGpu) GTEST_SKIP() << "a GPU is visible";
  absl::StatusOr<std::unique_ptr<Communicator>> c =
      TestProcess().CreateWorldCommunicator(CommBackend::kNccl);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition) << c.status();
  EXPECT_TRUE(Contains(c.status().message(), "needs a GPU on every rank")) << c.status();
  EXPECT_TRUE(Contains(c.status().message(), "use the MPI backend")) << c.status();
}

TEST(NcclWorldTest, SharedGpuIsRefusedNamingBothRanks) {
  if (MachineSetup() != Setup::kSharedGpu) {
    GTEST_SKIP() << "needs more ranks on this host than GPUs";
  }
  absl::StatusOr<std::unique_ptr<Communicator>> c =
      TestProcess().CreateWorldCommunicator(CommBackend::kNccl);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition) << c.status();
  // Local ranks r and r + devices share a GPU; the first such pair is (0, devices).
  EXPECT_TRUE(Contains(c.status().message(), absl::StrCat("ranks 0 and ", CudaDeviceCount())))
      << c.status();
  EXPECT_TRUE(Contains(c.status().message(), "MPI backend")) << c.status();
}

// ---------------------------------------------------------------------------------------------
// Collectives

constexpr int64_t kCounts[] = {0, 1, 7, 1001, (int64_t{1} << 20) + 3};
constexpr DType kDTypes[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kI32};

using Param = std::tuple<int64_t, DType>;
std::string ParamName(const ::testing::TestParamInfo<Param>& info) {
  return absl::StrCat("n", std::get<0>(info.param), "_", DTypeName(std::get<1>(info.param)));
}

class NcclMpiAllGatherTest : public ::testing::TestWithParam<Param> {};

TEST_P(NcclMpiAllGatherTest, RankMajorResult) {
  REQUIRE_GPU_PER_RANK();
  const auto [count, dtype] = GetParam();
  ASSIGN_NCCL_WORLD(c);
  const int n = c.size();
  DeviceBuffer send = DeviceValues(dtype, count, c.rank(), count);
  DeviceBuffer recv = DeviceValues(dtype, 0, 0, n * count);
  ASSERT_TRUE(c.AllGather(send.data(), recv.data(), count, dtype, nullptr).ok());
  HostBuffer got = ToHost(recv);
  for (int q = 0; q < n; ++q) {
    for (int64_t i = 0; i < count; ++i) {
      ASSERT_EQ(LoadAsFloat(got.data(), dtype, q * count + i), Value(q, i))
          << "block " << q << ", element " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, NcclMpiAllGatherTest,
                         ::testing::Combine(::testing::ValuesIn(kCounts),
                                            ::testing::ValuesIn(kDTypes)),
                         ParamName);

using ReduceParam = std::tuple<int64_t, DType, ReduceOp>;
class NcclMpiAllReduceTest : public ::testing::TestWithParam<ReduceParam> {};

TEST_P(NcclMpiAllReduceTest, ElementwiseOverRanks) {
  REQUIRE_GPU_PER_RANK();
  const auto [count, dtype, op] = GetParam();
  ASSIGN_NCCL_WORLD(c);
  DeviceBuffer send = DeviceValues(dtype, count, c.rank(), count);
  DeviceBuffer recv = DeviceValues(dtype, 0, 0, count);
  ASSERT_TRUE(c.AllReduce(send.data(), recv.data(), count, dtype, op, nullptr).ok());
  HostBuffer got = ToHost(recv);
  for (int64_t i = 0; i < count; ++i) {
    float expected = Value(0, i);
    for (int q = 1; q < c.size(); ++q) {
      expected = op == ReduceOp::kSum ? expected + Value(q, i) : std::max(expected, Value(q, i));
    }
    ASSERT_EQ(LoadAsFloat(got.data(), dtype, i), expected) << "element " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, NcclMpiAllReduceTest,
                         ::testing::Combine(::testing::ValuesIn(kCounts),
                                            ::testing::ValuesIn(kDTypes),
                                            ::testing::Values(ReduceOp::kSum, ReduceOp::kMax)),
                         [](const ::testing::TestParamInfo<ReduceParam>& info) {
                           return absl::StrCat("n", std::get<0>(info.param), "_",
                                               DTypeName(std::get<1>(info.param)), "_",
                                               ReduceOpName(std::get<2>(info.param)));
                         });

class NcclMpiBroadcastTest : public ::testing::TestWithParam<Param> {};

TEST_P(NcclMpiBroadcastTest, EveryRankGetsRoots) {
  REQUIRE_GPU_PER_RANK();
  const auto [count, dtype] = GetParam();
  ASSIGN_NCCL_WORLD(c);
  const int root = c.size() - 1;
  DeviceBuffer buf = DeviceValues(dtype, count, c.rank(), count);
  ASSERT_TRUE(c.Broadcast(buf.data(), count, dtype, root, nullptr).ok());
  HostBuffer got = ToHost(buf);
  for (int64_t i = 0; i < count; ++i) {
    ASSERT_EQ(LoadAsFloat(got.data(), dtype, i), Value(root, i)) << "element " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, NcclMpiBroadcastTest,
                         ::testing::Combine(::testing::ValuesIn(kCounts),
                                            ::testing::ValuesIn(kDTypes)),
                         ParamName);

// ---------------------------------------------------------------------------------------------
// Splits along the axes of an (outer, inner) mesh.

enum class Axis { kInner, kOuter };
void PrintTo(Axis a, std::ostream* os) { *os << (a == Axis::kInner ? "inner" : "outer"); }
using SplitParam = std::tuple<int, Axis>;  // (inner size, 0 = all; axis to group along)
class NcclMpiSplitTest : public ::testing::TestWithParam<SplitParam> {};

TEST_P(NcclMpiSplitTest, GroupsAlongMeshAxis) {
  REQUIRE_GPU_PER_RANK();
  const auto [inner_param, axis] = GetParam();
  ASSIGN_NCCL_WORLD(world);
  const int n = world.size();
  const int inner = inner_param == 0 ? n : inner_param;
  if (n % inner != 0) GTEST_SKIP() << "inner axis " << inner << " does not divide " << n;
  const int outer = n / inner, me = world.rank();
  const int i_outer = me / inner, i_inner = me % inner;
  const int color = axis == Axis::kInner ? i_outer : i_inner;
  const int key = axis == Axis::kInner ? i_inner : i_outer;
  const int group_size = axis == Axis::kInner ? inner : outer;
  absl::StatusOr<std::unique_ptr<Communicator>> group = world.Split(color, key);
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_EQ((*group)->size(), group_size);
  EXPECT_EQ((*group)->rank(), key);
  EXPECT_EQ((*group)->device(), TestProcess().device());
  absl::StatusOr<DeviceBuffer> mine = DeviceBuffer::Allocate(DType::kI32, {1}, world.device());
  absl::StatusOr<DeviceBuffer> members =
      DeviceBuffer::Allocate(DType::kI32, {group_size}, world.device());
  ASSERT_TRUE(mine.ok() && members.ok());
  HostBuffer me_host = HostBuffer::Allocate(DType::kI32, {1});
  me_host.data_as<int32_t>()[0] = me;
  ASSERT_TRUE(mine->CopyFromHost(me_host.view()).ok());
  ASSERT_TRUE(SynchronizeStream(nullptr).ok());
  ASSERT_TRUE((*group)->AllGather(mine->data(), members->data(), 1, DType::kI32, nullptr).ok());
  HostBuffer got = ToHost(*members);
  for (int k = 0; k < group_size; ++k) {
    const int expected = axis == Axis::kInner ? i_outer * inner + k : k * inner + i_inner;
    EXPECT_EQ(got.data_as<int32_t>()[k], expected) << "member " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Meshes, NcclMpiSplitTest,
    ::testing::Combine(::testing::Values(1, 2, 0), ::testing::Values(Axis::kInner, Axis::kOuter)),
    [](const ::testing::TestParamInfo<SplitParam>& info) {
      return absl::StrCat(
          "inner",
          std::get<0>(info.param) == 0 ? std::string("all") : absl::StrCat(std::get<0>(info.param)),
          std::get<1>(info.param) == Axis::kInner ? "_alonginner" : "_alongouter");
    });

// ---------------------------------------------------------------------------------------------

TEST(NcclMpiTest, BorrowedEngineCommIsNeverDestroyed) {
  REQUIRE_GPU_PER_RANK();
  MpiCommunicator& world = TestProcess().world();
  // The engine's own communicator: blocking, made without the library.
  ncclUniqueId id;
  if (world.rank() == 0) ASSERT_EQ(ncclGetUniqueId(&id), ncclSuccess);
  ASSERT_EQ(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, world.comm()), MPI_SUCCESS);
  ncclComm_t engine = nullptr;
  ASSERT_EQ(cudaSetDevice(TestProcess().device()), cudaSuccess);
  ASSERT_EQ(ncclCommInitRank(&engine, world.size(), id, world.rank()), ncclSuccess);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  DeviceBuffer d = DeviceValues(DType::kF32, 100, world.rank(), 100);
  {
    absl::StatusOr<std::unique_ptr<NcclCommunicator>> borrowed =
        NcclCommunicator::Borrow(engine, stream);
    ASSERT_TRUE(borrowed.ok()) << borrowed.status();
    EXPECT_FALSE((*borrowed)->owned());
    EXPECT_EQ((*borrowed)->rank(), world.rank());
    EXPECT_EQ((*borrowed)->size(), world.size());
    EXPECT_EQ((*borrowed)->device(), TestProcess().device());
    ASSERT_TRUE(
        (*borrowed)->AllReduce(d.data(), d.data(), 100, DType::kF32, ReduceOp::kSum, nullptr).ok());
  }
  // Still the engine's, still working.
  EXPECT_EQ(ncclAllReduce(d.data(), d.data(), 100, ncclFloat32, ncclMax, engine, stream),
            ncclSuccess);
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  HostBuffer got = ToHost(d);
  float expected = 0;
  for (int q = 0; q < world.size(); ++q) expected += Value(q, 42);
  EXPECT_EQ(got.data_as<float>()[42], expected);
  EXPECT_EQ(ncclCommDestroy(engine), ncclSuccess);
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

TEST(NcclMpiFaultTest, AbsentRankGivesDeadlineExceededAndAborts) {
  REQUIRE_GPU_PER_RANK();
  MpiCommunicator& world = TestProcess().world();
  if (world.size() < 2) GTEST_SKIP() << "needs 2 ranks: one to be absent";
  constexpr absl::Duration kDeadline = absl::Seconds(2);
  NcclOptions options;
  options.timeout = kDeadline;
  absl::StatusOr<std::unique_ptr<NcclCommunicator>> c =
      NcclCommunicator::Create(world, TestProcess().device(), options);
  ASSERT_TRUE(c.ok()) << c.status();
  const int absent = world.size() - 1;
  if (world.rank() != absent) {
    DeviceBuffer d = DeviceValues(DType::kF32, 4096, world.rank(), 4096);
    const absl::Time start = absl::Now();
    absl::Status s =
        (*c)->AllReduce(d.data(), d.data(), 4096, DType::kF32, ReduceOp::kSum, nullptr);
    const absl::Duration waited = absl::Now() - start;
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
    EXPECT_GE(waited, kDeadline);
    EXPECT_LE(waited, kDeadline + absl::Seconds(3));  // + the drain after the abort
    EXPECT_TRUE(Contains(s.message(), "aborted")) << s;
    EXPECT_TRUE(Contains(s.message(), absl::StrCat("rank ", TestProcess().rank()))) << s;
    EXPECT_TRUE(Contains(s.message(), HostName())) << s;
    EXPECT_EQ((*c)->Barrier().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  c->reset();  // the absent rank's healthy communicator: finalize, bounded, then abort
  EXPECT_TRUE(world.Barrier().ok());
}

}  // namespace
}  // namespace ragged
