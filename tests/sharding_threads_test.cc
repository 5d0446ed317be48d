// The sharded ragged decode with N ranks as threads of one process. Three suites:
// - ThreadCommunicator (tests/sharding_thread_comm.h), CPU: host buffers, as over MPI.
// - ThreadCommunicator, one GPU (RAGGED_THREADS_TEST_GPU): device buffers shared by N ranks on one
//   GPU, which NCCL refuses; this runs the device merge of packed sequence partials and the
//   re-layout of gathered heads (cudaMemcpy2DAsync) where only one GPU is available. Also a step
//   captured in a CUDA graph.
// - Real NCCL (RAGGED_THREADS_TEST_GPU): one process, one thread and one GPU per rank
//   (NcclCommunicator::CreateForDevices), no MPI needed: splits, all-gathers, and a captured step
//   replayed. Skips where fewer GPUs than ranks are visible.
// Every rank's output equals its part of the double-precision reference. Two binaries: the CPU
// suite, and the GPU suites (which skip without a GPU).
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/reference.h"
#include "kernels/test_util.h"
#include "runtime/buffer.h"
#include "sharding/mesh.h"
#include "sharding/scatter.h"
#include "sharding/sharded_attention.h"
#include "tests/sharding_test_util.h"
#include "tests/sharding_thread_comm.h"

#if RAGGED_WITH_CUDA
#include <cuda_runtime_api.h>

#include <map>

#include "runtime/nccl_communicator.h"
#include "runtime/status.h"
#endif

namespace ragged {
namespace {

using testing::HostProblem;
using testing::MakeHostProblem;
using testing::MeshShape;
using testing::RefBox;
using testing::Sinks;
using testing::TestCase;

std::vector<MeshShape> MeshesOf(std::vector<int> sizes) {
  std::vector<MeshShape> meshes;
  for (int n : sizes) {
    for (int dp = 1; dp <= n; dp *= 2) {
      for (int sp = 1; dp * sp <= n; sp *= 2) {
        if (n % (dp * sp) == 0) meshes.push_back({dp, sp, n / (dp * sp)});
      }
    }
  }
  return meshes;
}

enum class Feature { kWindowCapQSinks, kOffsetsKvSinks };
const char* FeatureName(Feature f) {
  return f == Feature::kWindowCapQSinks ? "WindowCapQSinks" : "OffsetsKvSinks";
}
void PrintTo(Feature f, std::ostream* os) { *os << FeatureName(f); }

enum class OutMode { kSharded, kGathered, kBatchKept };
const char* OutModeName(OutMode m) {
  return m == OutMode::kSharded ? "OutSharded"
                                : (m == OutMode::kGathered ? "OutGathered" : "OutBatchKept");
}
void PrintTo(OutMode m, std::ostream* os) { *os << OutModeName(m); }

TestCase MakeCase(Feature f, DType dtype) {
  TestCase c;
  c.batch = 8;
  c.capacity = 64;
  c.num_q_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = 128;
  c.dtype = dtype;
  c.seed = 3 + static_cast<int>(f);
  if (f == Feature::kWindowCapQSinks) {
    c.start = {0, 3, 40, 10, 0, 20, 5, 63};
    c.end = {64, 5, 45, 10, 1, 37, 64, 64};
    c.window = SlidingWindow{9, 0};
    c.soft_cap = 20.0f;
    c.sinks = Sinks::kPerQueryHead;
    c.num_sinks = 2;
  } else {
    testing::RandomLengths(c, /*offsets=*/true, /*allow_empty=*/true, c.seed);
    c.start[1] = c.end[1] = 33;
    c.sinks = Sinks::kPerKvHead;
    c.num_sinks = 3;
  }
  c.with_lse = true;
  return c;
}

PartitionSpec Spec(const char* text) { return *PartitionSpec::Parse(text); }

ShardedAttentionConfig ConfigFor(const HostProblem& p, OutMode out, Platform platform) {
  const TestCase& c = p.c;
  ShardedAttentionConfig cfg;
  cfg.shape.batch = c.batch;
  cfg.shape.capacity = c.capacity;
  cfg.shape.num_q_heads = c.num_q_heads;
  cfg.shape.num_kv_heads = c.num_kv_heads;
  cfg.shape.head_dim = c.head_dim;
  cfg.shape.dtype = c.dtype;
  cfg.shape.sinks =
      c.sinks == Sinks::kPerQueryHead ? SinkLayout::kPerQueryHead : SinkLayout::kPerKvHead;
  cfg.shape.num_sinks = c.num_sinks;
  cfg.shape.aux_dtype = c.aux_dtype;
  cfg.shape.with_lse = c.with_lse;
  cfg.specs.query = Spec("dp, tp");
  cfg.specs.key = cfg.specs.value = Spec("dp, sp, tp");
  cfg.specs.sequence_start = cfg.specs.sequence_end = Spec("dp");
  cfg.specs.softmax_aux = Spec(c.sinks == Sinks::kPerKvHead ? "tp" : "");
  cfg.specs.output = Spec(out == OutMode::kSharded    ? "dp, tp"
                          : out == OutMode::kGathered ? ""
                                                      : "dp");
  cfg.options = p.options(platform);
  cfg.options.num_threads = 1;  // ranks are threads already
  cfg.device = 0;
  return cfg;
}

// A tensor of this rank on the platform's device (host for the CPU), and its host copy.
struct Local {
  HostBuffer host;
  DeviceBuffer device;
  TensorView view() const { return device.data() != nullptr ? device.view() : host.view(); }
};

absl::StatusOr<Local> Place(const ShardedAttention& op, ShardedTensor t, const TensorView* global,
                            DType dtype, bool cuda) {
  Local l;
  l.host = HostBuffer::Allocate(dtype, op.LocalShape(t));
  if (global != nullptr) RAGGED_RETURN_IF_ERROR(ExtractShard(*global, op.Box(t), l.host.view()));
  if (cuda) {
    RAGGED_ASSIGN_OR_RETURN(l.device, DeviceBuffer::Allocate(dtype, l.host.shape(), 0));
    RAGGED_RETURN_IF_ERROR(l.device.CopyFromHost(l.host.view(), nullptr));
  }
  return l;
}

// One rank: create, place its shards, run, fetch and compare. Returns the comparison.
absl::StatusOr<::testing::AssertionResult> RunRank(Communicator* world, const MeshShape& mesh,
                                                   const HostProblem& p, const ReferenceResult& ref,
                                                   OutMode out, bool cuda) {
#if RAGGED_WITH_CUDA
  if (cuda) RAGGED_CUDA_RETURN_IF_ERROR(cudaSetDevice(0));
#endif
  RAGGED_ASSIGN_OR_RETURN(Mesh m, Mesh::Parse(mesh.Text()));
  RAGGED_ASSIGN_OR_RETURN(auto comms, MeshCommunicators::Borrow(m, world));
  const ShardedAttentionConfig cfg = ConfigFor(p, out, cuda ? Platform::kCuda : Platform::kCpu);
  RAGGED_ASSIGN_OR_RETURN(auto op, ShardedAttention::Create(comms.get(), cfg));
  const TensorView q = p.query.view(), k = p.key.view(), v = p.value.view(), s = p.start.view(),
                   e = p.end.view(), a = p.aux.view();
  RAGGED_ASSIGN_OR_RETURN(Local lq, Place(*op, ShardedTensor::kQuery, &q, p.c.dtype, cuda));
  RAGGED_ASSIGN_OR_RETURN(Local lk, Place(*op, ShardedTensor::kKey, &k, p.c.dtype, cuda));
  RAGGED_ASSIGN_OR_RETURN(Local lv, Place(*op, ShardedTensor::kValue, &v, p.c.dtype, cuda));
  RAGGED_ASSIGN_OR_RETURN(Local ls,
                          Place(*op, ShardedTensor::kSequenceStart, &s, DType::kI32, cuda));
  RAGGED_ASSIGN_OR_RETURN(Local le, Place(*op, ShardedTensor::kSequenceEnd, &e, DType::kI32, cuda));
  RAGGED_ASSIGN_OR_RETURN(Local la,
                          Place(*op, ShardedTensor::kSoftmaxAux, &a, p.c.aux_dtype, cuda));
  RAGGED_ASSIGN_OR_RETURN(Local lo,
                          Place(*op, ShardedTensor::kOutput, nullptr, p.c.output_dtype, cuda));
  RAGGED_ASSIGN_OR_RETURN(Local ll, Place(*op, ShardedTensor::kLse, nullptr, DType::kF32, cuda));
  testing::PoisonWithNaN(lo.host);
  RaggedDecodeAttentionArgs args;
  args.query = lq.view();
  args.key = lk.view();
  args.value = lv.view();
  args.sequence_start = ls.view();
  args.sequence_end = le.view();
  args.softmax_aux = la.view();
  args.output = lo.view();
  args.lse = ll.view();
  RAGGED_RETURN_IF_ERROR(op->Run(args, nullptr));
  if (cuda) {
    RAGGED_RETURN_IF_ERROR(lo.device.CopyToHost(lo.host.view(), nullptr));
    RAGGED_RETURN_IF_ERROR(ll.device.CopyToHost(ll.host.view(), nullptr));
    RAGGED_RETURN_IF_ERROR(SynchronizeStream(nullptr));
  }
  const ReferenceResult want =
      RefBox(ref, op->Box(ShardedTensor::kOutput), p.c.num_q_heads, p.c.head_dim);
  const TensorView lse = ll.host.view();
  return testing::MatchesReference(want, lo.host.view(), &lse, p.c.dtype)
         << " rank " << world->rank() << "\n"
         << op->plan().ToString();
}

class ShardedAttentionThreadsTest
    : public ::testing::TestWithParam<std::tuple<bool, MeshShape, Feature, OutMode>> {};

TEST_P(ShardedAttentionThreadsTest, MatchesTheReference) {
  const auto& [cuda, mesh, feature, out] = GetParam();
  if (cuda && CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device visible";
  const HostProblem p = MakeHostProblem(MakeCase(feature, cuda ? DType::kBF16 : DType::kF32));
  absl::StatusOr<ReferenceResult> ref = ComputeReference(p.args(), p.options(Platform::kReference));
  ASSERT_TRUE(ref.ok()) << ref.status();

  const int n = mesh.size();
  auto group = std::make_shared<testing::ThreadGroup>(n);
  std::vector<absl::StatusOr<::testing::AssertionResult>> results(n, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      testing::ThreadCommunicator world(group, r, cuda ? CommBackend::kNccl : CommBackend::kMpi, 0);
      results[r] = RunRank(&world, mesh, p, *ref, out, cuda);
    });
  }
  for (std::thread& t : threads) t.join();
  for (int r = 0; r < n; ++r) {
    ASSERT_TRUE(results[r].ok()) << "rank " << r << ": " << results[r].status();
    EXPECT_TRUE(*results[r]);
  }
}

#if !RAGGED_THREADS_TEST_GPU
INSTANTIATE_TEST_SUITE_P(
    Cpu, ShardedAttentionThreadsTest,
    ::testing::Combine(::testing::Values(false), ::testing::ValuesIn(MeshesOf({4})),
                       ::testing::Values(Feature::kWindowCapQSinks, Feature::kOffsetsKvSinks),
                       ::testing::Values(OutMode::kSharded, OutMode::kGathered,
                                         OutMode::kBatchKept)),
    [](const auto& info) {
      return absl::StrCat(std::get<1>(info.param).Name(), "_", FeatureName(std::get<2>(info.param)),
                          "_", OutModeName(std::get<3>(info.param)));
    });

#else
// A step of one rank with a sequence-free plan, captured into a CUDA graph: Run must neither
// allocate nor synchronize (either would fail the capture), and the replay must give the result.
TEST(ShardedAttentionThreadsGpu, OneRankStepCapturesInACudaGraph) {
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device visible";
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  const HostProblem p = MakeHostProblem(MakeCase(Feature::kWindowCapQSinks, DType::kBF16));
  absl::StatusOr<ReferenceResult> ref = ComputeReference(p.args(), p.options(Platform::kReference));
  ASSERT_TRUE(ref.ok()) << ref.status();
  testing::ThreadCommunicator world(std::make_shared<testing::ThreadGroup>(1), 0,
                                    CommBackend::kNccl, 0);
  auto comms = MeshCommunicators::Borrow(*Mesh::Parse("dp=1,sp=1,tp=1"), &world);
  ASSERT_TRUE(comms.ok()) << comms.status();
  auto op =
      ShardedAttention::Create(comms->get(), ConfigFor(p, OutMode::kGathered, Platform::kCuda));
  ASSERT_TRUE(op.ok()) << op.status();
  const TensorView q = p.query.view(), k = p.key.view(), v = p.value.view(), s = p.start.view(),
                   e = p.end.view(), a = p.aux.view();
  absl::StatusOr<Local> lq = Place(**op, ShardedTensor::kQuery, &q, p.c.dtype, true);
  absl::StatusOr<Local> lk = Place(**op, ShardedTensor::kKey, &k, p.c.dtype, true);
  absl::StatusOr<Local> lv = Place(**op, ShardedTensor::kValue, &v, p.c.dtype, true);
  absl::StatusOr<Local> ls = Place(**op, ShardedTensor::kSequenceStart, &s, DType::kI32, true);
  absl::StatusOr<Local> le = Place(**op, ShardedTensor::kSequenceEnd, &e, DType::kI32, true);
  absl::StatusOr<Local> la = Place(**op, ShardedTensor::kSoftmaxAux, &a, p.c.aux_dtype, true);
  absl::StatusOr<Local> lo = Place(**op, ShardedTensor::kOutput, nullptr, p.c.output_dtype, true);
  absl::StatusOr<Local> ll = Place(**op, ShardedTensor::kLse, nullptr, DType::kF32, true);
  for (auto* l : {&lq, &lk, &lv, &ls, &le, &la, &lo, &ll}) ASSERT_TRUE(l->ok()) << l->status();
  RaggedDecodeAttentionArgs args;
  args.query = lq->view();
  args.key = lk->view();
  args.value = lv->view();
  args.sequence_start = ls->view();
  args.sequence_end = le->view();
  args.softmax_aux = la->view();
  args.output = lo->view();
  args.lse = ll->view();

  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(nullptr), cudaSuccess);  // the uploads
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  const absl::Status run = (*op)->Run(args, stream);
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  ASSERT_TRUE(run.ok()) << "Run while capturing: " << run;
  ASSERT_EQ(end, cudaSuccess) << cudaGetErrorString(end);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaMemsetAsync(lo->device.data(), 0xff, lo->device.nbytes(), stream), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  ASSERT_TRUE(lo->device.CopyToHost(lo->host.view(), stream).ok());
  ASSERT_TRUE(ll->device.CopyToHost(ll->host.view(), stream).ok());
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  const TensorView lse = ll->host.view();
  EXPECT_TRUE(testing::MatchesReference(*ref, lo->host.view(), &lse, p.c.dtype));
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

// Real NCCL: one process drives N GPUs, one thread and one NcclCommunicator (CreateForDevices) per
// rank, so the NCCL path (ncclCommSplit, all-gathers on the ranks' streams) runs without MPI. Each
// rank runs a step directly, then captures one into a CUDA graph (thread-local capture mode, since
// the other ranks' threads keep working) and replays it. Skips where fewer GPUs than ranks.
std::vector<std::unique_ptr<NcclCommunicator>>& NcclWorld(int n) {
  static auto* worlds = new std::map<int, std::vector<std::unique_ptr<NcclCommunicator>>>();
  auto& w = (*worlds)[n];
  if (w.empty()) {
    std::vector<int> devices(n);
    for (int i = 0; i < n; ++i) devices[i] = i;
    auto made = NcclCommunicator::CreateForDevices(devices);
    EXPECT_TRUE(made.ok()) << made.status();
    if (made.ok()) w = std::move(*made);
  }
  return w;
}

absl::StatusOr<::testing::AssertionResult> RunNcclRank(NcclCommunicator* world,
                                                       const MeshShape& mesh, const HostProblem& p,
                                                       const ReferenceResult& ref, OutMode out) {
  const int device = world->device();
  RAGGED_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  cudaStream_t stream = nullptr;
  RAGGED_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  struct StreamGuard {
    cudaStream_t s;
    ~StreamGuard() { cudaStreamDestroy(s); }
  } guard{stream};
  RAGGED_ASSIGN_OR_RETURN(Mesh m, Mesh::Parse(mesh.Text()));
  RAGGED_ASSIGN_OR_RETURN(auto comms, MeshCommunicators::Borrow(m, world));
  ShardedAttentionConfig cfg = ConfigFor(p, out, Platform::kCuda);
  cfg.device = device;
  cfg.stream = stream;
  RAGGED_ASSIGN_OR_RETURN(auto op, ShardedAttention::Create(comms.get(), cfg));
  const TensorView q = p.query.view(), k = p.key.view(), v = p.value.view(), s = p.start.view(),
                   e = p.end.view(), a = p.aux.view();
  std::vector<Local> l(8);
  const ShardedTensor order[] = {ShardedTensor::kQuery,       ShardedTensor::kKey,
                                 ShardedTensor::kValue,       ShardedTensor::kSequenceStart,
                                 ShardedTensor::kSequenceEnd, ShardedTensor::kSoftmaxAux,
                                 ShardedTensor::kOutput,      ShardedTensor::kLse};
  const TensorView* globals[] = {&q, &k, &v, &s, &e, &a, nullptr, nullptr};
  const DType dtypes[] = {p.c.dtype,   p.c.dtype,     p.c.dtype,        DType::kI32,
                          DType::kI32, p.c.aux_dtype, p.c.output_dtype, DType::kF32};
  for (int i = 0; i < 8; ++i) {
    Local x;
    x.host = HostBuffer::Allocate(dtypes[i], op->LocalShape(order[i]));
    if (globals[i] != nullptr) {
      RAGGED_RETURN_IF_ERROR(ExtractShard(*globals[i], op->Box(order[i]), x.host.view()));
    }
    RAGGED_ASSIGN_OR_RETURN(x.device, DeviceBuffer::Allocate(dtypes[i], x.host.shape(), device));
    RAGGED_RETURN_IF_ERROR(x.device.CopyFromHost(x.host.view(), stream));
    l[i] = std::move(x);
  }
  RaggedDecodeAttentionArgs args;
  args.query = l[0].view();
  args.key = l[1].view();
  args.value = l[2].view();
  args.sequence_start = l[3].view();
  args.sequence_end = l[4].view();
  args.softmax_aux = l[5].view();
  args.output = l[6].view();
  args.lse = l[7].view();
  const ReferenceResult want =
      RefBox(ref, op->Box(ShardedTensor::kOutput), p.c.num_q_heads, p.c.head_dim);
  auto check = [&](const char* what) -> absl::StatusOr<::testing::AssertionResult> {
    RAGGED_RETURN_IF_ERROR(l[6].device.CopyToHost(l[6].host.view(), stream));
    RAGGED_RETURN_IF_ERROR(l[7].device.CopyToHost(l[7].host.view(), stream));
    RAGGED_RETURN_IF_ERROR(SynchronizeStream(stream));
    const TensorView lse = l[7].host.view();
    return testing::MatchesReference(want, l[6].host.view(), &lse, p.c.dtype)
           << " " << what << ", rank " << world->rank() << "\n"
           << op->plan().ToString();
  };

  RAGGED_RETURN_IF_ERROR(op->Run(args, stream));
  RAGGED_ASSIGN_OR_RETURN(::testing::AssertionResult direct, check("direct"));
  if (!direct) return direct;

  cudaGraph_t graph = nullptr;
  RAGGED_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const absl::Status run = op->Run(args, stream);
  const absl::Status end = RAGGED_CUDA_STATUS(cudaStreamEndCapture(stream, &graph));
  RAGGED_RETURN_IF_ERROR(run);
  RAGGED_RETURN_IF_ERROR(end);
  cudaGraphExec_t exec = nullptr;
  RAGGED_CUDA_RETURN_IF_ERROR(cudaGraphInstantiate(&exec, graph, 0));
  RAGGED_CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(l[6].device.data(), 0xff, l[6].device.nbytes(), stream));
  RAGGED_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(exec, stream));
  absl::StatusOr<::testing::AssertionResult> replay = check("graph replay");
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return replay;
}

class ShardedAttentionNcclThreadsTest
    : public ::testing::TestWithParam<std::tuple<MeshShape, Feature, OutMode>> {};

TEST_P(ShardedAttentionNcclThreadsTest, MatchesTheReferenceDirectAndInAGraph) {
  const auto& [mesh, feature, out] = GetParam();
  const int n = mesh.size();
  if (CudaDeviceCount() < n) {
    GTEST_SKIP() << n << " ranks need " << n << " GPUs; " << CudaDeviceCount() << " visible";
  }
  const HostProblem p = MakeHostProblem(MakeCase(feature, DType::kBF16));
  absl::StatusOr<ReferenceResult> ref = ComputeReference(p.args(), p.options(Platform::kReference));
  ASSERT_TRUE(ref.ok()) << ref.status();
  std::vector<std::unique_ptr<NcclCommunicator>>& world = NcclWorld(n);
  ASSERT_EQ(static_cast<int>(world.size()), n);
  std::vector<absl::StatusOr<::testing::AssertionResult>> results(n, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] { results[r] = RunNcclRank(world[r].get(), mesh, p, *ref, out); });
  }
  for (std::thread& t : threads) t.join();
  for (int r = 0; r < n; ++r) {
    ASSERT_TRUE(results[r].ok()) << "rank " << r << ": " << results[r].status();
    EXPECT_TRUE(*results[r]);
  }
}

INSTANTIATE_TEST_SUITE_P(Nccl, ShardedAttentionNcclThreadsTest,
                         ::testing::Combine(::testing::ValuesIn(MeshesOf({2, 4, 8})),
                                            ::testing::Values(Feature::kWindowCapQSinks,
                                                              Feature::kOffsetsKvSinks),
                                            ::testing::Values(OutMode::kSharded, OutMode::kGathered,
                                                              OutMode::kBatchKept)),
                         [](const auto& info) {
                           return absl::StrCat(std::get<0>(info.param).Name(), "_",
                                               FeatureName(std::get<1>(info.param)), "_",
                                               OutModeName(std::get<2>(info.param)));
                         });

INSTANTIATE_TEST_SUITE_P(
    Gpu, ShardedAttentionThreadsTest,
    ::testing::Combine(::testing::Values(true), ::testing::ValuesIn(MeshesOf({2, 4, 8})),
                       ::testing::Values(Feature::kWindowCapQSinks, Feature::kOffsetsKvSinks),
                       ::testing::Values(OutMode::kSharded, OutMode::kGathered,
                                         OutMode::kBatchKept)),
    [](const auto& info) {
      return absl::StrCat(std::get<1>(info.param).Name(), "_", FeatureName(std::get<2>(info.param)),
                          "_", OutModeName(std::get<3>(info.param)));
    });
#endif

}  // namespace
}  // namespace ragged
