// NcclCommunicator in one process (no MPI): one communicator per GPU from CreateForDevices, each
// driven by its own thread. Cases that need more GPUs than are visible skip with the reason, so
// the binary passes (skipping) on machines without a GPU. Labelled "gpu" in ctest.
#include "runtime/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstdint>
#include <functional>
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
#include "runtime/buffer.h"
#include "runtime/communicator.h"
#include "runtime/dtype.h"
#include "runtime/status.h"
#include "runtime/stream.h"

namespace ragged {

static void PrintTo(DType t, std::ostream* os) { *os << DTypeName(t); }
static void PrintTo(ReduceOp op, std::ostream* os) { *os << ReduceOpName(op); }

namespace {

bool Contains(absl::string_view haystack, absl::string_view needle) {
  return haystack.find(needle) != absl::string_view::npos;
}

// Small integers, exact in every dtype, sums included.
float Value(int rank, int64_t i) { return static_cast<float>((rank * 7 + i * 3) % 11 - 5); }

HostBuffer HostValues(DType dtype, int64_t count, int rank) {
  HostBuffer h = HostBuffer::Allocate(dtype, {count});
  for (int64_t i = 0; i < count; ++i) StoreFromFloat(h.data(), dtype, i, Value(rank, i));
  return h;
}

DeviceBuffer ToDevice(const HostBuffer& h, int device) {
  absl::StatusOr<DeviceBuffer> d = DeviceBuffer::Allocate(h.dtype(), h.shape(), device);
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

// Runs fn(rank) on one thread per communicator and returns the statuses.
std::vector<absl::Status> OnEachRank(int n, const std::function<absl::Status(int)>& fn) {
  std::vector<absl::Status> statuses(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) threads.emplace_back([&, r] { statuses[r] = fn(r); });
  for (std::thread& t : threads) t.join();
  return statuses;
}

std::vector<int> FirstDevices(int n) {
  std::vector<int> d(n);
  for (int i = 0; i < n; ++i) d[i] = i;
  return d;
}

absl::StatusOr<std::vector<std::unique_ptr<NcclCommunicator>>> MakeComms(
    int n, absl::Duration timeout = absl::Seconds(60)) {
  NcclOptions options;
  options.timeout = timeout;
  return NcclCommunicator::CreateForDevices(FirstDevices(n), options);
}

#define REQUIRE_GPUS(n)                                                                          \
  do {                                                                                           \
    if (CudaDeviceCount() < (n)) {                                                               \
      GTEST_SKIP() << "needs " << (n) << " CUDA device(s), " << CudaDeviceCount() << " visible"; \
    }                                                                                            \
  } while (0)

constexpr int64_t kCounts[] = {0, 1, 7, 1001, (int64_t{1} << 20) + 3};
constexpr DType kDTypes[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kI32};

// ---------------------------------------------------------------------------------------------

using CollectiveParam = std::tuple<int, int64_t, DType>;  // (GPUs, count, dtype)

std::string CollectiveName(const ::testing::TestParamInfo<CollectiveParam>& info) {
  return absl::StrCat(std::get<0>(info.param), "gpu_n", std::get<1>(info.param), "_",
                      DTypeName(std::get<2>(info.param)));
}

class NcclAllGatherTest : public ::testing::TestWithParam<CollectiveParam> {};

TEST_P(NcclAllGatherTest, RankMajorResult) {
  const auto [n, count, dtype] = GetParam();
  REQUIRE_GPUS(n);
  absl::StatusOr<std::vector<std::unique_ptr<NcclCommunicator>>> comms = MakeComms(n);
  ASSERT_TRUE(comms.ok()) << comms.status();
  std::vector<DeviceBuffer> send, recv;
  for (int r = 0; r < n; ++r) {
    send.push_back(ToDevice(HostValues(dtype, count, r), r));
    recv.push_back(ToDevice(HostBuffer::Allocate(dtype, {n * count}), r));
  }
  std::vector<absl::Status> s = OnEachRank(n, [&](int r) {
    return (*comms)[r]->AllGather(send[r].data(), recv[r].data(), count, dtype, nullptr);
  });
  for (int r = 0; r < n; ++r) {
    ASSERT_TRUE(s[r].ok()) << "rank " << r << ": " << s[r];
    HostBuffer got = ToHost(recv[r]);
    for (int q = 0; q < n; ++q) {
      for (int64_t i = 0; i < count; ++i) {
        ASSERT_EQ(LoadAsFloat(got.data(), dtype, q * count + i), Value(q, i))
            << "rank " << r << ", block " << q << ", element " << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, NcclAllGatherTest,
                         ::testing::Combine(::testing::Values(1, 2), ::testing::ValuesIn(kCounts),
                                            ::testing::ValuesIn(kDTypes)),
                         CollectiveName);

using AllReduceParam = std::tuple<int, int64_t, DType, ReduceOp>;
class NcclAllReduceTest : public ::testing::TestWithParam<AllReduceParam> {};

TEST_P(NcclAllReduceTest, ElementwiseOverRanks) {
  const auto [n, count, dtype, op] = GetParam();
  REQUIRE_GPUS(n);
  absl::StatusOr<std::vector<std::unique_ptr<NcclCommunicator>>> comms = MakeComms(n);
  ASSERT_TRUE(comms.ok()) << comms.status();
  std::vector<DeviceBuffer> buf;
  for (int r = 0; r < n; ++r) buf.push_back(ToDevice(HostValues(dtype, count, r), r));
  // In place: send == recv.
  std::vector<absl::Status> s = OnEachRank(n, [&](int r) {
    return (*comms)[r]->AllReduce(buf[r].data(), buf[r].data(), count, dtype, op, nullptr);
  });
  for (int r = 0; r < n; ++r) {
    ASSERT_TRUE(s[r].ok()) << "rank " << r << ": " << s[r];
    HostBuffer got = ToHost(buf[r]);
    for (int64_t i = 0; i < count; ++i) {
      float expected = Value(0, i);
      for (int q = 1; q < n; ++q) {
        expected = op == ReduceOp::kSum ? expected + Value(q, i) : std::max(expected, Value(q, i));
      }
      ASSERT_EQ(LoadAsFloat(got.data(), dtype, i), expected) << "rank " << r << ", element " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, NcclAllReduceTest,
                         ::testing::Combine(::testing::Values(1, 2), ::testing::ValuesIn(kCounts),
                                            ::testing::ValuesIn(kDTypes),
                                            ::testing::Values(ReduceOp::kSum, ReduceOp::kMax)),
                         [](const ::testing::TestParamInfo<AllReduceParam>& info) {
                           return absl::StrCat(std::get<0>(info.param), "gpu_n",
                                               std::get<1>(info.param), "_",
                                               DTypeName(std::get<2>(info.param)), "_",
                                               ReduceOpName(std::get<3>(info.param)));
                         });

class NcclBroadcastTest : public ::testing::TestWithParam<CollectiveParam> {};

TEST_P(NcclBroadcastTest, EveryRankGetsRoots) {
  const auto [n, count, dtype] = GetParam();
  REQUIRE_GPUS(n);
  absl::StatusOr<std::vector<std::unique_ptr<NcclCommunicator>>> comms = MakeComms(n);
  ASSERT_TRUE(comms.ok()) << comms.status();
  const int root = n - 1;
  std::vector<DeviceBuffer> buf;
  for (int r = 0; r < n; ++r) buf.push_back(ToDevice(HostValues(dtype, count, r), r));
  std::vector<absl::Status> s = OnEachRank(
      n, [&](int r) { return (*comms)[r]->Broadcast(buf[r].data(), count, dtype, root, nullptr); });
  for (int r = 0; r < n; ++r) {
    ASSERT_TRUE(s[r].ok()) << "rank " << r << ": " << s[r];
    HostBuffer got = ToHost(buf[r]);
    for (int64_t i = 0; i < count; ++i) {
      ASSERT_EQ(LoadAsFloat(got.data(), dtype, i), Value(root, i)) << "rank " << r;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, NcclBroadcastTest,
                         ::testing::Combine(::testing::Values(1, 2), ::testing::ValuesIn(kCounts),
                                            ::testing::ValuesIn(kDTypes)),
                         CollectiveName);

// ---------------------------------------------------------------------------------------------

TEST(NcclCommunicatorTest, BarrierAndQueuedModeWithWait) {
  REQUIRE_GPUS(1);
  absl::StatusOr<std::vector<std::unique_ptr<NcclCommunicator>>> comms = MakeComms(1);
  ASSERT_TRUE(comms.ok()) << comms.status();
  NcclCommunicator& c = *(*comms)[0];
  EXPECT_EQ(c.rank(), 0);
  EXPECT_EQ(c.size(), 1);
  EXPECT_EQ(c.device(), 0);
  EXPECT_EQ(c.backend(), CommBackend::kNccl);
  EXPECT_TRUE(c.Barrier().ok());
  c.set_wait_for_completion(false);
  DeviceBuffer d = ToDevice(HostValues(DType::kF32, 1000, 0), 0);
  ASSERT_TRUE(c.AllReduce(d.data(), d.data(), 1000, DType::kF32, ReduceOp::kSum, nullptr).ok());
  ASSERT_TRUE(c.Wait(nullptr).ok());
  HostBuffer got = ToHost(d);
  EXPECT_EQ(LoadAsFloat(got.data(), DType::kF32, 999), Value(0, 999));
}

TEST(NcclCommunicatorTest, CapturedIntoCudaGraph) {
  REQUIRE_GPUS(1);
  absl::StatusOr<std::vector<std::unique_ptr<NcclCommunicator>>> comms = MakeComms(1);
  ASSERT_TRUE(comms.ok()) << comms.status();
  NcclCommunicator& c = *(*comms)[0];
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  DeviceBuffer send = ToDevice(HostValues(DType::kF32, 64, 0), 0);
  DeviceBuffer recv = ToDevice(HostBuffer::Allocate(DType::kF32, {64}), 0);
  cudaGraph_t graph;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  // wait_for_completion is on: the wait is skipped while capturing.
  absl::Status s = c.AllGather(send.data(), recv.data(), 64, DType::kF32, stream);
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  ASSERT_TRUE(s.ok()) << s;
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  ASSERT_TRUE(c.Wait(stream).ok());
  HostBuffer got = ToHost(recv);
  EXPECT_EQ(LoadAsFloat(got.data(), DType::kF32, 63), Value(0, 63));
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST(NcclCommunicatorTest, BorrowedCommAndStreamAreNeverDestroyed) {
  REQUIRE_GPUS(1);
  ncclComm_t raw = nullptr;
  const int dev = 0;
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  ASSERT_EQ(ncclCommInitAll(&raw, 1, &dev), ncclSuccess);  // an engine's blocking communicator
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  DeviceBuffer d = ToDevice(HostValues(DType::kBF16, 333, 0), 0);
  {
    absl::StatusOr<std::unique_ptr<NcclCommunicator>> borrowed =
        NcclCommunicator::Borrow(raw, stream);
    ASSERT_TRUE(borrowed.ok()) << borrowed.status();
    EXPECT_FALSE((*borrowed)->owned());
    EXPECT_EQ((*borrowed)->comm(), raw);
    EXPECT_EQ((*borrowed)->stream(), stream);
    EXPECT_EQ((*borrowed)->device(), 0);
    // nullptr: the borrowed stream.
    ASSERT_TRUE((*borrowed)
                    ->AllReduce(d.data(), d.data(), 333, DType::kBF16, ReduceOp::kMax, nullptr)
                    .ok());
    // A split of a borrowed communicator is owned.
    absl::StatusOr<std::unique_ptr<NcclCommunicator>> child = (*borrowed)->SplitNccl(0, 0);
    ASSERT_TRUE(child.ok()) << child.status();
    EXPECT_TRUE((*child)->owned());
  }
  // The engine's communicator and stream still work.
  EXPECT_EQ(ncclAllReduce(d.data(), d.data(), 333, ncclBfloat16, ncclSum, raw, stream),
            ncclSuccess);
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(ncclCommDestroy(raw), ncclSuccess);
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

TEST(NcclCommunicatorTest, SplitIntoSingletonsAndReversedPair) {
  REQUIRE_GPUS(2);
  absl::StatusOr<std::vector<std::unique_ptr<NcclCommunicator>>> comms = MakeComms(2);
  ASSERT_TRUE(comms.ok()) << comms.status();
  std::vector<std::unique_ptr<NcclCommunicator>> singles(2), reversed(2);
  std::vector<absl::Status> s = OnEachRank(2, [&](int r) -> absl::Status {
    RAGGED_ASSIGN_OR_RETURN(singles[r], (*comms)[r]->SplitNccl(r, 0));
    RAGGED_ASSIGN_OR_RETURN(reversed[r], (*comms)[r]->SplitNccl(0, 1 - r));
    return absl::OkStatus();
  });
  for (int r = 0; r < 2; ++r) {
    ASSERT_TRUE(s[r].ok()) << "rank " << r << ": " << s[r];
    EXPECT_EQ(singles[r]->size(), 1);
    EXPECT_EQ(reversed[r]->size(), 2);
    EXPECT_EQ(reversed[r]->rank(), 1 - r);
    EXPECT_EQ(reversed[r]->device(), r);
  }
}

TEST(NcclCommunicatorTest, NegativeColorIsInvalidArgumentForThatRankOnly) {
  REQUIRE_GPUS(2);
  absl::StatusOr<std::vector<std::unique_ptr<NcclCommunicator>>> comms = MakeComms(2);
  ASSERT_TRUE(comms.ok()) << comms.status();
  std::vector<absl::StatusOr<std::unique_ptr<NcclCommunicator>>> out;
  out.emplace_back(absl::UnknownError("not run"));
  out.emplace_back(absl::UnknownError("not run"));
  OnEachRank(2, [&](int r) {
    out[r] = (*comms)[r]->SplitNccl(r == 1 ? -1 : 0, 0);
    return absl::OkStatus();
  });
  ASSERT_TRUE(out[0].ok()) << out[0].status();
  EXPECT_EQ((*out[0])->size(), 1);
  EXPECT_EQ(out[1].status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(out[1].status().message(), "NCCL_SPLIT_NOCOLOR")) << out[1].status();
}

TEST(NcclCommunicatorTest, AbsentPeerGivesDeadlineExceededAndAborts) {
  REQUIRE_GPUS(2);
  constexpr absl::Duration kDeadline = absl::Seconds(2);
  absl::StatusOr<std::vector<std::unique_ptr<NcclCommunicator>>> comms = MakeComms(2, kDeadline);
  ASSERT_TRUE(comms.ok()) << comms.status();
  DeviceBuffer d = ToDevice(HostValues(DType::kF32, 4096, 0), 0);
  // Rank 1 never arrives.
  const absl::Time start = absl::Now();
  absl::Status s =
      (*comms)[0]->AllReduce(d.data(), d.data(), 4096, DType::kF32, ReduceOp::kSum, nullptr);
  const absl::Duration waited = absl::Now() - start;
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_GE(waited, kDeadline);
  EXPECT_LE(waited, kDeadline + absl::Seconds(3));  // + the drain after the abort
  EXPECT_TRUE(Contains(s.message(), "aborted")) << s;
  EXPECT_TRUE(Contains(s.message(), "AllReduce(sum) of 4096 x f32")) << s;
  EXPECT_TRUE(Contains(s.message(), HostName())) << s;
  EXPECT_TRUE((*comms)[0]->broken());
  absl::Status later = (*comms)[0]->Barrier();
  EXPECT_EQ(later.code(), absl::StatusCode::kFailedPrecondition) << later;
  // The GPU is usable afterwards: the aborted kernel exited.
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

TEST(NcclCommunicatorTest, ArgumentErrors) {
  REQUIRE_GPUS(1);
  absl::StatusOr<std::vector<std::unique_ptr<NcclCommunicator>>> comms = MakeComms(1);
  ASSERT_TRUE(comms.ok()) << comms.status();
  NcclCommunicator& c = *(*comms)[0];
  std::vector<float> host(8);
  DeviceBuffer d = ToDevice(HostValues(DType::kF32, 8, 0), 0);
  absl::Status s = c.AllGather(host.data(), d.data(), 8, DType::kF32, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(s.message(), "send is host memory")) << s;
  s = c.AllReduce(d.data(), d.data(), -2, DType::kF32, ReduceOp::kSum, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(s.message(), "count must be >= 0, got -2")) << s;
  s = c.Broadcast(d.data(), 8, DType::kF32, 1, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(s.message(), "root 1")) << s;
  EXPECT_FALSE(c.broken());
}

TEST(NcclCreateTest, BadDeviceListsAreRejected) {
  const int visible = CudaDeviceCount();
  absl::StatusOr<std::vector<std::unique_ptr<NcclCommunicator>>> none =
      NcclCommunicator::CreateForDevices({});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::vector<std::unique_ptr<NcclCommunicator>>> missing =
      NcclCommunicator::CreateForDevices({visible});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(missing.status().message(), absl::StrCat(visible, " visible")));
  if (visible < 1) return;
  absl::StatusOr<std::vector<std::unique_ptr<NcclCommunicator>>> twice =
      NcclCommunicator::CreateForDevices({0, 0});
  EXPECT_EQ(twice.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(twice.status().message(), "ncclInvalidUsage")) << twice.status();
}

}  // namespace
}  // namespace ragged
