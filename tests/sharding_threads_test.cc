// The sharded ragged decode with N ranks as threads of one process (ThreadCommunicator): on the
// CPU (host buffers, as over MPI) and on one GPU (device buffers, as over NCCL, which cannot put
// several ranks on one GPU). This runs the device data paths of several ranks where only one GPU
// is available: the merge of packed sequence partials on the device and the re-layout of gathered
// heads with cudaMemcpy2DAsync. Every rank's output equals its part of the double-precision
// reference. Two binaries: the CPU cases, and (RAGGED_THREADS_TEST_GPU) the GPU cases, which skip
// without a GPU.
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
#include "tests/sharding_thread_comm.h"

#if RAGGED_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace ragged {
namespace {

using testing::HostProblem;
using testing::MakeHostProblem;
using testing::Sinks;
using testing::TestCase;

struct MeshShape {
  int dp = 1, sp = 1, tp = 1;
  int size() const { return dp * sp * tp; }
  std::string Text() const { return absl::StrCat("dp=", dp, ",sp=", sp, ",tp=", tp); }
  std::string Name() const { return absl::StrCat("dp", dp, "sp", sp, "tp", tp); }
};
void PrintTo(const MeshShape& m, std::ostream* os) { *os << m.Text(); }

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

ReferenceResult RefBox(const ReferenceResult& ref, const ShardBox& box, int64_t hq, int64_t d) {
  ReferenceResult r;
  for (int64_t b = 0; b < box.shape[0]; ++b) {
    for (int64_t h = 0; h < box.shape[1]; ++h) {
      const int64_t gb = b + box.offset[0], gh = h + box.offset[1];
      for (int64_t x = 0; x < d; ++x) r.output.push_back(ref.output[(gb * hq + gh) * d + x]);
      r.lse.push_back(ref.lse[gb * hq + gh]);
    }
  }
  return r;
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
