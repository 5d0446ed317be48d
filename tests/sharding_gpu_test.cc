// The sharded ragged decode on GPUs: one rank per GPU under mpirun, NCCL communicators split from
// an NCCL world, device buffers, stream-ordered. For every mesh dp x sp x tp of the world's size
// the output equals its part of the double-precision reference; a step captured in a CUDA graph
// (which fails if Run allocates or synchronizes) and replayed gives the same. Skips, on every rank,
// where fewer GPUs than ranks are visible. Registered with 1 and 2 ranks (tests/sharding.cmake).
#include <cuda_runtime_api.h>

#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/reference.h"
#include "kernels/test_util.h"
#include "runtime/bootstrap.h"
#include "runtime/buffer.h"
#include "runtime/nccl_communicator.h"
#include "runtime/status.h"
#include "sharding/mesh.h"
#include "sharding/scatter.h"
#include "sharding/sharded_attention.h"
#include "tests/comm_test_main.h"
#include "tests/sharding_test_util.h"

namespace ragged {
namespace {

using testing::HostProblem;
using testing::MakeHostProblem;
using testing::MeshShape;
using testing::RefBox;
using testing::Sinks;
using testing::TestCase;
using testing::TestProcess;

bool EnoughGpus() { return CudaDeviceCount() >= TestProcess().size(); }
std::string WhyNoGpus() {
  return absl::StrCat(TestProcess().size(), " ranks need as many GPUs; ", CudaDeviceCount(),
                      " visible");
}

// The NCCL world (made once; collective) and the communicators of each mesh, freed before MPI
// ends.
struct GpuWorld {
  std::unique_ptr<NcclCommunicator> world;
  std::map<std::string, std::unique_ptr<MeshCommunicators>> meshes;
  cudaStream_t stream = nullptr;
};
GpuWorld*& TheWorld() {
  static GpuWorld* w = nullptr;
  return w;
}
class FreeWorldAtEnd : public ::testing::Environment {
 public:
  void TearDown() override {
    GpuWorld* w = TheWorld();
    if (w == nullptr) return;
    w->meshes.clear();
    w->world.reset();
    if (w->stream != nullptr) cudaStreamDestroy(w->stream);
    delete w;
    TheWorld() = nullptr;
  }
};
[[maybe_unused]] ::testing::Environment* const kFreeWorld =
    ::testing::AddGlobalTestEnvironment(new FreeWorldAtEnd());

absl::StatusOr<GpuWorld*> World() {
  if (TheWorld() != nullptr) return TheWorld();
  const int device = TestProcess().device();
  RAGGED_RETURN_IF_ERROR(CheckOneRankPerGpu(TestProcess().world(), device));
  auto w = std::make_unique<GpuWorld>();
  RAGGED_ASSIGN_OR_RETURN(w->world, NcclCommunicator::Create(TestProcess().world(), device));
  RAGGED_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  RAGGED_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&w->stream, cudaStreamNonBlocking));
  TheWorld() = w.release();
  return TheWorld();
}

absl::StatusOr<MeshCommunicators*> CommsFor(const std::string& text) {
  RAGGED_ASSIGN_OR_RETURN(GpuWorld * w, World());
  if (auto it = w->meshes.find(text); it != w->meshes.end()) return it->second.get();
  RAGGED_ASSIGN_OR_RETURN(Mesh mesh, Mesh::Parse(text));
  RAGGED_ASSIGN_OR_RETURN(auto comms, MeshCommunicators::Borrow(mesh, w->world.get()));
  return (w->meshes[text] = std::move(comms)).get();
}

std::vector<MeshShape> WorldMeshes() {
  const int n = TestProcess().size();
  std::vector<MeshShape> meshes;
  for (int dp = 1; dp <= n; dp *= 2) {
    for (int sp = 1; dp * sp <= n; sp *= 2) {
      if (n % (dp * sp) == 0) meshes.push_back({dp, sp, n / (dp * sp)});
    }
  }
  return meshes;
}

enum class Feature { kPlain, kWindowCapQSinks, kOffsetsKvSinks };
const char* FeatureName(Feature f) {
  switch (f) {
    case Feature::kPlain:
      return "Plain";
    case Feature::kWindowCapQSinks:
      return "WindowCapQSinks";
    case Feature::kOffsetsKvSinks:
      return "OffsetsKvSinks";
  }
  return "?";
}
void PrintTo(Feature f, std::ostream* os) { *os << FeatureName(f); }

const std::vector<int32_t> kStarts = {0, 3, 40, 10, 0, 20, 5, 63};
const std::vector<int32_t> kEnds = {64, 5, 45, 10, 1, 37, 64, 64};

TestCase MakeCase(Feature f, DType dtype) {
  TestCase c;
  c.batch = 8;
  c.capacity = 64;
  c.num_q_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = 128;
  c.dtype = dtype;
  c.seed = 5 + static_cast<int>(f);
  switch (f) {
    case Feature::kPlain:
      c.with_lse = false;
      break;
    case Feature::kWindowCapQSinks:
      c.start = kStarts;
      c.end = kEnds;
      c.window = SlidingWindow{9, 0};
      c.soft_cap = 20.0f;
      c.sinks = Sinks::kPerQueryHead;
      c.num_sinks = 2;
      c.with_lse = true;
      break;
    case Feature::kOffsetsKvSinks:
      testing::RandomLengths(c, /*offsets=*/true, /*allow_empty=*/true, c.seed);
      c.start[1] = c.end[1] = 33;
      c.sinks = Sinks::kPerKvHead;
      c.num_sinks = 3;
      c.with_lse = true;
      break;
  }
  return c;
}

PartitionSpec Spec(const char* text) {
  absl::StatusOr<PartitionSpec> s = PartitionSpec::Parse(text);
  EXPECT_TRUE(s.ok()) << s.status();
  return *s;
}

ShardedAttentionConfig ConfigFor(const HostProblem& p, bool gather, int device) {
  const TestCase& c = p.c;
  ShardedAttentionConfig cfg;
  cfg.shape.batch = c.batch;
  cfg.shape.capacity = c.capacity;
  cfg.shape.num_q_heads = c.num_q_heads;
  cfg.shape.num_kv_heads = c.num_kv_heads;
  cfg.shape.head_dim = c.head_dim;
  cfg.shape.dtype = c.dtype;
  cfg.shape.sinks = c.sinks == Sinks::kPerQueryHead ? SinkLayout::kPerQueryHead
                    : c.sinks == Sinks::kPerKvHead  ? SinkLayout::kPerKvHead
                                                    : SinkLayout::kNone;
  cfg.shape.num_sinks = c.sinks == Sinks::kNone ? 0 : c.num_sinks;
  cfg.shape.aux_dtype = c.aux_dtype;
  cfg.shape.with_lse = c.with_lse;
  cfg.specs.query = Spec("dp, tp");
  cfg.specs.key = cfg.specs.value = Spec("dp, sp, tp");
  cfg.specs.sequence_start = cfg.specs.sequence_end = Spec("dp");
  cfg.specs.softmax_aux = Spec(c.sinks == Sinks::kPerKvHead ? "tp" : "");
  cfg.specs.output = gather ? Spec("") : cfg.specs.query;
  cfg.options = p.options(Platform::kCuda);
  cfg.device = TestProcess().device();
  return cfg;
}

// This rank's shards on the device, and host copies of the outputs.
struct DeviceProblem {
  DeviceBuffer query, key, value, start, end, aux, output, lse;
  HostBuffer host_output, host_lse;
  RaggedDecodeAttentionArgs args() const {
    return testing::ArgsOfBuffers(query, key, value, start, end, aux, output, lse);
  }
  absl::Status FetchOutputs(Stream stream) {
    RAGGED_RETURN_IF_ERROR(output.CopyToHost(host_output.view(), stream));
    if (lse.data() != nullptr) RAGGED_RETURN_IF_ERROR(lse.CopyToHost(host_lse.view(), stream));
    return SynchronizeStream(stream);
  }
};

absl::StatusOr<DeviceBuffer> Upload(const ShardedAttention& op, ShardedTensor t,
                                    const TensorView& global, int device, Stream stream) {
  HostBuffer host = HostBuffer::Allocate(global.dtype(), op.LocalShape(t));
  RAGGED_RETURN_IF_ERROR(ExtractShard(global, op.Box(t), host.view()));
  RAGGED_ASSIGN_OR_RETURN(DeviceBuffer d,
                          DeviceBuffer::Allocate(global.dtype(), host.shape(), device));
  RAGGED_RETURN_IF_ERROR(d.CopyFromHost(host.view(), stream));
  RAGGED_RETURN_IF_ERROR(SynchronizeStream(stream));
  return d;
}

absl::StatusOr<DeviceProblem> UploadProblem(const ShardedAttention& op, const HostProblem& p,
                                            int device, Stream stream) {
  DeviceProblem d;
  RAGGED_ASSIGN_OR_RETURN(d.query,
                          Upload(op, ShardedTensor::kQuery, p.query.view(), device, stream));
  RAGGED_ASSIGN_OR_RETURN(d.key, Upload(op, ShardedTensor::kKey, p.key.view(), device, stream));
  RAGGED_ASSIGN_OR_RETURN(d.value,
                          Upload(op, ShardedTensor::kValue, p.value.view(), device, stream));
  RAGGED_ASSIGN_OR_RETURN(
      d.start, Upload(op, ShardedTensor::kSequenceStart, p.start.view(), device, stream));
  RAGGED_ASSIGN_OR_RETURN(d.end,
                          Upload(op, ShardedTensor::kSequenceEnd, p.end.view(), device, stream));
  if (p.c.sinks != Sinks::kNone) {
    RAGGED_ASSIGN_OR_RETURN(d.aux,
                            Upload(op, ShardedTensor::kSoftmaxAux, p.aux.view(), device, stream));
  }
  const Shape out = op.LocalShape(ShardedTensor::kOutput);
  RAGGED_ASSIGN_OR_RETURN(d.output, DeviceBuffer::Allocate(p.c.output_dtype, out, device));
  d.host_output = HostBuffer::Allocate(p.c.output_dtype, out);
  if (p.c.with_lse) {
    const Shape lse = op.LocalShape(ShardedTensor::kLse);
    RAGGED_ASSIGN_OR_RETURN(d.lse, DeviceBuffer::Allocate(DType::kF32, lse, device));
    d.host_lse = HostBuffer::Allocate(DType::kF32, lse);
  }
  return d;
}

class ShardedAttentionGpuTest
    : public ::testing::TestWithParam<std::tuple<MeshShape, Feature, DType, bool>> {};

TEST_P(ShardedAttentionGpuTest, MatchesTheReferenceDirectAndInAGraph) {
  if (!EnoughGpus()) GTEST_SKIP() << WhyNoGpus();
  const auto& [mesh, feature, dtype, gather] = GetParam();
  absl::StatusOr<MeshCommunicators*> comms = CommsFor(mesh.Text());
  ASSERT_TRUE(comms.ok()) << comms.status();
  const cudaStream_t stream = TheWorld()->stream;
  const HostProblem p = MakeHostProblem(MakeCase(feature, dtype));
  absl::StatusOr<ReferenceResult> ref = ComputeReference(p.args(), p.options(Platform::kReference));
  ASSERT_TRUE(ref.ok()) << ref.status();

  ShardedAttentionConfig cfg = ConfigFor(p, gather, TestProcess().device());
  cfg.stream = stream;
  absl::StatusOr<std::unique_ptr<ShardedAttention>> op = ShardedAttention::Create(*comms, cfg);
  ASSERT_TRUE(op.ok()) << op.status();
  absl::StatusOr<DeviceProblem> d = UploadProblem(**op, p, cfg.device, stream);
  ASSERT_TRUE(d.ok()) << d.status();
  const ReferenceResult want =
      RefBox(*ref, (*op)->Box(ShardedTensor::kOutput), p.c.num_q_heads, p.c.head_dim);

  // Direct.
  absl::Status s = (*op)->Run(d->args(), stream);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(d->FetchOutputs(stream).ok());
  const TensorView lse = d->host_lse.view();
  EXPECT_TRUE(testing::MatchesReference(want, d->host_output.view(), p.c.with_lse ? &lse : nullptr,
                                        p.c.dtype))
      << "direct, rank " << TestProcess().rank() << "\n"
      << (*op)->plan().ToString();

  // Captured once, replayed twice (outputs cleared in between).
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  s = (*op)->Run(d->args(), stream);
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  ASSERT_TRUE(s.ok()) << "Run while capturing: " << s;
  ASSERT_EQ(end, cudaSuccess) << cudaGetErrorString(end);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (int replay = 0; replay < 2; ++replay) {
    ASSERT_EQ(cudaMemsetAsync(d->output.data(), 0xff, d->output.nbytes(), stream), cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    ASSERT_TRUE(d->FetchOutputs(stream).ok());
    EXPECT_TRUE(testing::MatchesReference(want, d->host_output.view(),
                                          p.c.with_lse ? &lse : nullptr, p.c.dtype))
        << "graph replay " << replay << ", rank " << TestProcess().rank();
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

INSTANTIATE_TEST_SUITE_P(
    Meshes, ShardedAttentionGpuTest,
    ::testing::Combine(::testing::ValuesIn(WorldMeshes()),
                       ::testing::Values(Feature::kPlain, Feature::kWindowCapQSinks,
                                         Feature::kOffsetsKvSinks),
                       ::testing::Values(DType::kBF16, DType::kF32), ::testing::Bool()),
    [](const auto& info) {
      return absl::StrCat(std::get<0>(info.param).Name(), "_", FeatureName(std::get<1>(info.param)),
                          "_", DTypeName(std::get<2>(info.param)), "_",
                          std::get<3>(info.param) ? "OutGathered" : "OutSharded");
    });

}  // namespace
}  // namespace ragged
