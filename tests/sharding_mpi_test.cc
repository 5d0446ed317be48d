// The sharded ragged decode under mpirun, on the CPU over MPI: for every mesh dp x sp x tp of the
// world's size, head layouts with and without KV-head replication, windows, soft caps, sinks of
// every layout, ragged rows (some entirely inside one sequence shard, some empty), and output specs
// that keep the shards or gather them, every rank's output equals its part of the single-process
// double-precision reference. Also: scatter/gather helpers, the ranks' agreement check, platform
// and shape errors, and the communicator cache. Run with 1, 2, 4 and 8 ranks
// (tests/sharding.cmake); the parameters are built from the world size, so every rank runs the same
// tests in the same order.
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
#include "runtime/buffer.h"
#include "sharding/mesh.h"
#include "sharding/scatter.h"
#include "sharding/sharded_attention.h"
#include "tests/comm_test_main.h"
#include "tests/sharding_test_util.h"

namespace ragged {
namespace {

using testing::CutProblem;
using ::testing::HasSubstr;
using testing::HostProblem;
using testing::LayoutOf;
using testing::LocalProblem;
using testing::MakeHostProblem;
using testing::MeshShape;
using testing::RefBox;
using testing::Sinks;
using testing::TestCase;
using testing::TestProcess;

constexpr int64_t kBatch = 8, kCapacity = 64, kHeadDim = 64;

// Every dp x sp x tp with product `n` (n a power of two up to 8).
std::vector<MeshShape> MeshesOf(int n) {
  std::vector<MeshShape> meshes;
  for (int dp = 1; dp <= n; dp *= 2) {
    for (int sp = 1; dp * sp <= n; sp *= 2) {
      if (n % (dp * sp) == 0) meshes.push_back({dp, sp, n / (dp * sp)});
    }
  }
  return meshes;
}
std::vector<MeshShape> WorldMeshes() { return MeshesOf(TestProcess().size()); }

// The communicators of each mesh, made once per run (Split is collective: every rank asks for the
// same meshes in the same order since the tests run in the same order) and freed before MPI ends.
std::map<std::string, std::unique_ptr<MeshCommunicators>>& CommsCache() {
  static auto* cache = new std::map<std::string, std::unique_ptr<MeshCommunicators>>();
  return *cache;
}
class FreeCommsAtEnd : public ::testing::Environment {
 public:
  void TearDown() override { CommsCache().clear(); }
};
[[maybe_unused]] ::testing::Environment* const kFreeComms =
    ::testing::AddGlobalTestEnvironment(new FreeCommsAtEnd());

MeshCommunicators* CommsFor(const std::string& text) {
  auto& cache = CommsCache();
  if (auto it = cache.find(text); it != cache.end()) return it->second.get();
  absl::StatusOr<Mesh> mesh = Mesh::Parse(text);
  EXPECT_TRUE(mesh.ok()) << mesh.status();
  auto comms = MeshCommunicators::Borrow(*mesh, &TestProcess().world());
  EXPECT_TRUE(comms.ok()) << comms.status();
  if (!comms.ok()) return nullptr;
  return (cache[text] = std::move(*comms)).get();
}

enum class Feature {
  kPlain,              // full rows; bf16
  kWindowCapQSinks,    // ragged rows, window (9, 0), soft cap, sinks [HQ, NS] replicated; f32
  kOffsetsKvSinks,     // rows with offsets and empty rows, sinks [HKV, NS] split; bf16; lse
  kWindowSharedSinks,  // ragged rows, window (5, -1), sinks [NS]; f16; f32 output; lse
};
const char* FeatureName(Feature f) {
  switch (f) {
    case Feature::kPlain:
      return "Plain";
    case Feature::kWindowCapQSinks:
      return "WindowCapQSinks";
    case Feature::kOffsetsKvSinks:
      return "OffsetsKvSinks";
    case Feature::kWindowSharedSinks:
      return "WindowSharedSinks";
  }
  return "?";
}

enum class OutMode { kSharded, kGathered, kBatchKept };
const char* OutModeName(OutMode m) {
  switch (m) {
    case OutMode::kSharded:
      return "OutSharded";
    case OutMode::kGathered:
      return "OutGathered";
    case OutMode::kBatchKept:
      return "OutBatchKept";
  }
  return "?";
}

void PrintTo(Feature f, std::ostream* os) { *os << FeatureName(f); }
void PrintTo(OutMode m, std::ostream* os) { *os << OutModeName(m); }

// Rows chosen against the sequence shards of S = 64 (shards of 8, 16, 32 or 64 positions): whole,
// inside the first shard, inside one middle shard, empty, one position, across shards, long, last.
const std::vector<int32_t> kStarts = {0, 3, 40, 10, 0, 20, 5, 63};
const std::vector<int32_t> kEnds = {64, 5, 45, 10, 1, 37, 64, 64};

TestCase MakeCase(Feature f, int64_t hq, int64_t hkv) {
  TestCase c;
  c.batch = kBatch;
  c.capacity = kCapacity;
  c.num_q_heads = hq;
  c.num_kv_heads = hkv;
  c.head_dim = kHeadDim;
  c.seed = 11 + static_cast<int>(f) * 7 + hq + hkv;
  switch (f) {
    case Feature::kPlain:
      c.dtype = DType::kBF16;
      c.with_lse = false;
      break;
    case Feature::kWindowCapQSinks:
      c.dtype = DType::kF32;
      c.start = kStarts;
      c.end = kEnds;
      c.window = SlidingWindow{9, 0};
      c.soft_cap = 20.0f;
      c.sinks = Sinks::kPerQueryHead;
      c.num_sinks = 2;
      c.with_lse = false;
      break;
    case Feature::kOffsetsKvSinks:
      c.dtype = DType::kBF16;
      testing::RandomLengths(c, /*offsets=*/true, /*allow_empty=*/true, c.seed);
      c.start[1] = c.end[1] = 33;  // empty
      c.start[2] = 61;             // inside the last shard
      c.end[2] = 63;
      c.sinks = Sinks::kPerKvHead;
      c.num_sinks = 3;
      c.aux_dtype = DType::kBF16;
      c.with_lse = true;
      break;
    case Feature::kWindowSharedSinks:
      c.dtype = DType::kF16;
      c.f32_output = true;
      c.start = kStarts;
      c.end = kEnds;
      c.window = SlidingWindow{5, -1};
      c.sinks = Sinks::kShared;
      c.num_sinks = 1;
      c.with_lse = true;
      break;
  }
  return c;
}

AttentionShape ShapeOf(const HostProblem& p) {
  const TestCase& c = p.c;
  AttentionShape s;
  s.batch = c.batch;
  s.capacity = c.capacity;
  s.num_q_heads = c.num_q_heads;
  s.num_kv_heads = c.num_kv_heads;
  s.head_dim = c.head_dim;
  s.dtype = c.dtype;
  s.output_dtype = c.output_dtype;
  s.sinks = LayoutOf(c.sinks);
  s.num_sinks = c.sinks == Sinks::kNone ? 0 : c.num_sinks;
  s.aux_dtype = c.aux_dtype;
  s.with_lse = c.with_lse;
  return s;
}

PartitionSpec Spec(const char* text) {
  absl::StatusOr<PartitionSpec> s = PartitionSpec::Parse(text);
  EXPECT_TRUE(s.ok()) << s.status();
  return *s;
}

ShardedAttentionSpecs SpecsFor(Feature f, OutMode out) {
  ShardedAttentionSpecs s;
  s.query = Spec("dp, tp");
  s.key = s.value = Spec("dp, sp, tp");
  s.sequence_start = s.sequence_end = Spec("dp");
  // Per-query-head sinks replicated (each rank reads its rows), per-KV-head sinks split.
  s.softmax_aux = Spec(f == Feature::kOffsetsKvSinks ? "tp" : "");
  switch (out) {
    case OutMode::kSharded:
      s.output = s.query;
      break;
    case OutMode::kGathered:
      s.output = Spec("");
      break;
    case OutMode::kBatchKept:
      s.output = Spec("dp");
      break;
  }
  return s;
}

// ---------------------------------------------------------------------------------------------

using Heads = std::pair<int64_t, int64_t>;  // (HQ, HKV)

// GQA groups of 4 (KV heads replicated when tp > 2) and MQA (replicated when tp > 1). With 8
// oversubscribed ranks, MQA is left out to keep the run short: tp = 4 and 8 replicate already.
std::vector<Heads> WorldHeads() {
  if (TestProcess().size() >= 8) return {Heads{8, 2}};
  return {Heads{8, 2}, Heads{8, 1}};
}

class ShardedAttentionMpiTest
    : public ::testing::TestWithParam<std::tuple<MeshShape, Heads, Feature, OutMode>> {};

TEST_P(ShardedAttentionMpiTest, MatchesTheReference) {
  const auto& [mesh, heads, feature, out] = GetParam();
  MeshCommunicators* comms = CommsFor(mesh.Text());
  ASSERT_NE(comms, nullptr);
  const HostProblem p = MakeHostProblem(MakeCase(feature, heads.first, heads.second));
  absl::StatusOr<ReferenceResult> ref = ComputeReference(p.args(), p.options(Platform::kReference));
  ASSERT_TRUE(ref.ok()) << ref.status();

  ShardedAttentionConfig cfg;
  cfg.shape = ShapeOf(p);
  cfg.specs = SpecsFor(feature, out);
  cfg.options = p.options(Platform::kCpu);
  absl::StatusOr<std::unique_ptr<ShardedAttention>> op = ShardedAttention::Create(comms, cfg);
  ASSERT_TRUE(op.ok()) << op.status();
  EXPECT_EQ((*op)->plan().kv_heads_replicated, mesh.tp > heads.second);

  LocalProblem local = CutProblem(**op, p);
  // Twice: the second step reuses every buffer and must give the same result.
  for (int step = 0; step < 2; ++step) {
    absl::Status s = (*op)->Run(local.args());
    ASSERT_TRUE(s.ok()) << s;
    const ReferenceResult want =
        RefBox(*ref, (*op)->Box(ShardedTensor::kOutput), p.c.num_q_heads, p.c.head_dim);
    const TensorView lse = local.lse.view();
    EXPECT_TRUE(testing::MatchesReference(want, local.output.view(), p.c.with_lse ? &lse : nullptr,
                                          p.c.dtype))
        << "rank " << TestProcess().rank() << " step " << step << " " << p.c.ToString() << "\n"
        << (*op)->plan().ToString();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Meshes, ShardedAttentionMpiTest,
    ::testing::Combine(::testing::ValuesIn(WorldMeshes()), ::testing::ValuesIn(WorldHeads()),
                       ::testing::Values(Feature::kPlain, Feature::kWindowCapQSinks,
                                         Feature::kOffsetsKvSinks, Feature::kWindowSharedSinks),
                       ::testing::Values(OutMode::kSharded, OutMode::kGathered,
                                         OutMode::kBatchKept)),
    [](const auto& info) {
      const Heads heads = std::get<1>(info.param);
      return absl::StrCat(std::get<0>(info.param).Name(), "_hq", heads.first, "hkv", heads.second,
                          "_", FeatureName(std::get<2>(info.param)), "_",
                          OutModeName(std::get<3>(info.param)));
    });

// ---------------------------------------------------------------------------------------------
// Tuples of axes: a dimension split over two axes, the output keeping the major one.

struct TupleCase {
  const char* name;
  const char* mesh;
  const char* query;  // key: batch and heads alike, no sequence split
  const char* key;
  const char* batch;
  const char* out;
};

void PrintTo(const TupleCase& c, std::ostream* os) { *os << c.name; }

class ShardedAttentionTupleTest : public ::testing::TestWithParam<TupleCase> {};

std::vector<TupleCase> WorldTupleCases() {
  const int n = TestProcess().size();
  std::vector<TupleCase> cases;
  if (n == 4) {
    cases.push_back({"BatchOverAB_KeepA", "a=2,b=2", "((a,b))", "((a,b))", "((a,b))", "a"});
    cases.push_back({"HeadsOverAB_KeepA", "a=2,b=2", "_,(a,b)", "_,_,(a,b)", "_", "_,a"});
    cases.push_back({"HeadsOverBA_GatherAll", "a=2,b=2", "_,(b,a)", "_,_,(b,a)", "_", ""});
  }
  if (n == 8) {
    cases.push_back({"BatchA_HeadsBC_KeepAB", "a=2,b=2,c=2", "a,(b,c)", "a,_,(b,c)", "a", "a,b"});
    cases.push_back({"BatchAC_SeqB_KeepNone", "a=2,b=2,c=2", "((a,c))", "(a,c),b", "((a,c))", ""});
  }
  return cases;
}

TEST_P(ShardedAttentionTupleTest, MatchesTheReference) {
  const TupleCase& tc = GetParam();
  MeshCommunicators* comms = CommsFor(tc.mesh);
  ASSERT_NE(comms, nullptr);
  const HostProblem p = MakeHostProblem(MakeCase(Feature::kOffsetsKvSinks, 8, 2));
  absl::StatusOr<ReferenceResult> ref = ComputeReference(p.args(), p.options(Platform::kReference));
  ASSERT_TRUE(ref.ok()) << ref.status();
  ShardedAttentionConfig cfg;
  cfg.shape = ShapeOf(p);
  cfg.specs.query = Spec(tc.query);
  cfg.specs.key = cfg.specs.value = Spec(tc.key);
  cfg.specs.sequence_start = cfg.specs.sequence_end = Spec(tc.batch);
  cfg.specs.output = Spec(tc.out);
  cfg.options = p.options(Platform::kCpu);
  absl::StatusOr<std::unique_ptr<ShardedAttention>> op = ShardedAttention::Create(comms, cfg);
  ASSERT_TRUE(op.ok()) << op.status();
  LocalProblem local = CutProblem(**op, p);
  ASSERT_TRUE((*op)->Run(local.args()).ok());
  const ReferenceResult want =
      RefBox(*ref, (*op)->Box(ShardedTensor::kOutput), p.c.num_q_heads, p.c.head_dim);
  const TensorView lse = local.lse.view();
  EXPECT_TRUE(testing::MatchesReference(want, local.output.view(), &lse, p.c.dtype))
      << (*op)->plan().ToString();
}

INSTANTIATE_TEST_SUITE_P(Specs, ShardedAttentionTupleTest, ::testing::ValuesIn(WorldTupleCases()),
                         [](const auto& info) { return std::string(info.param.name); });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ShardedAttentionTupleTest);

// ---------------------------------------------------------------------------------------------
// Scatter from rank 0, run, gather to rank 0: only rank 0 ever holds the global tensors.

class ScatterGatherMpiTest : public ::testing::TestWithParam<std::tuple<MeshShape, OutMode>> {};

TEST_P(ScatterGatherMpiTest, RootSeesTheWholeReference) {
  const auto& [mesh, out] = GetParam();
  MeshCommunicators* comms = CommsFor(mesh.Text());
  ASSERT_NE(comms, nullptr);
  const bool root = comms->rank() == 0;
  const TestCase c = MakeCase(Feature::kWindowCapQSinks, 8, 2);
  // Shapes are known everywhere; values only on the root.
  HostProblem p = MakeHostProblem(c);
  if (!root) p = HostProblem{};
  ShardedAttentionConfig cfg;
  cfg.shape.batch = c.batch;
  cfg.shape.capacity = c.capacity;
  cfg.shape.num_q_heads = c.num_q_heads;
  cfg.shape.num_kv_heads = c.num_kv_heads;
  cfg.shape.head_dim = c.head_dim;
  cfg.shape.dtype = c.dtype;
  cfg.shape.sinks = SinkLayout::kPerQueryHead;
  cfg.shape.num_sinks = c.num_sinks;
  cfg.specs = SpecsFor(Feature::kWindowCapQSinks, out);
  cfg.specs.softmax_aux = Spec("tp");
  cfg.options.platform = Platform::kCpu;
  cfg.options.sliding_window = c.window;
  cfg.options.logits_soft_cap = c.soft_cap;
  absl::StatusOr<std::unique_ptr<ShardedAttention>> op = ShardedAttention::Create(comms, cfg);
  ASSERT_TRUE(op.ok()) << op.status();
  const ShardPlan& plan = (*op)->plan();
  Communicator& world = comms->world();

  LocalProblem l;
  auto scatter = [&](ShardedTensor t, HostBuffer* local, const HostBuffer& global) {
    *local = HostBuffer::Allocate(
        t == ShardedTensor::kSequenceStart || t == ShardedTensor::kSequenceEnd ? DType::kI32
                                                                               : c.dtype,
        (*op)->LocalShape(t));
    absl::Status s = ScatterFromRoot(world, 0, global.view(), BoxesOf(plan, t), local->view());
    EXPECT_TRUE(s.ok()) << ShardedTensorName(t) << ": " << s;
  };
  scatter(ShardedTensor::kQuery, &l.query, p.query);
  scatter(ShardedTensor::kKey, &l.key, p.key);
  scatter(ShardedTensor::kValue, &l.value, p.value);
  scatter(ShardedTensor::kSequenceStart, &l.start, p.start);
  scatter(ShardedTensor::kSequenceEnd, &l.end, p.end);
  scatter(ShardedTensor::kSoftmaxAux, &l.aux, p.aux);
  l.output = HostBuffer::Allocate(c.dtype, (*op)->LocalShape(ShardedTensor::kOutput));
  ASSERT_TRUE((*op)->Run(l.args()).ok());

  HostBuffer global_out;
  if (root) {
    global_out = HostBuffer::Allocate(c.dtype, {c.batch, c.num_q_heads, c.head_dim});
    testing::PoisonWithNaN(global_out);
  }
  absl::Status s = GatherToRoot(world, 0, l.output.view(), BoxesOf(plan, ShardedTensor::kOutput),
                                global_out.view());
  ASSERT_TRUE(s.ok()) << s;
  if (!root) return;
  absl::StatusOr<ReferenceResult> ref = ComputeReference(p.args(), p.options(Platform::kReference));
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_TRUE(testing::MatchesReference(*ref, global_out.view(), nullptr, c.dtype));
}

INSTANTIATE_TEST_SUITE_P(Meshes, ScatterGatherMpiTest,
                         ::testing::Combine(::testing::ValuesIn(WorldMeshes()),
                                            ::testing::Values(OutMode::kSharded,
                                                              OutMode::kGathered)),
                         [](const auto& info) {
                           return absl::StrCat(std::get<0>(info.param).Name(), "_",
                                               OutModeName(std::get<1>(info.param)));
                         });

// ---------------------------------------------------------------------------------------------
// Errors and the communicator cache.

ShardedAttentionConfig SmallConfig(const MeshCommunicators& comms) {
  ShardedAttentionConfig cfg;
  cfg.shape.batch = 4;
  cfg.shape.capacity = 32;
  cfg.shape.num_q_heads = 8;
  cfg.shape.num_kv_heads = 8;
  cfg.shape.head_dim = kHeadDim;
  cfg.shape.dtype = DType::kF32;
  cfg.specs = ShardedAttentionSpecs::Typical(comms.mesh(), SinkLayout::kNone, true);
  cfg.options.platform = Platform::kCpu;
  return cfg;
}

std::string TpMesh() { return absl::StrCat("tp=", TestProcess().size()); }

TEST(ShardedAttentionMpi, RanksThatDisagreeFailTogether) {
  if (TestProcess().size() < 2) GTEST_SKIP() << "needs 2 or more ranks";
  MeshCommunicators* comms = CommsFor(TpMesh());
  ASSERT_NE(comms, nullptr);
  ShardedAttentionConfig cfg = SmallConfig(*comms);
  if (comms->rank() == 0) cfg.shape.capacity = 64;
  absl::StatusOr<std::unique_ptr<ShardedAttention>> op = ShardedAttention::Create(comms, cfg);
  ASSERT_FALSE(op.ok());
  EXPECT_EQ(op.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(op.status().message(), HasSubstr("the ranks disagree about the configuration"));
  EXPECT_THAT(op.status().message(), HasSubstr(comms->rank() == 0 ? "S=64" : "S=32"));
  // The world is still usable: the check left no collective pending.
  cfg = SmallConfig(*comms);
  EXPECT_TRUE(ShardedAttention::Create(comms, cfg).ok());
}

TEST(ShardedAttentionMpi, ARankThatFailsAloneFailsEveryRank) {
  if (TestProcess().size() < 2) GTEST_SKIP() << "needs 2 or more ranks";
  MeshCommunicators* comms = CommsFor(TpMesh());
  ASSERT_NE(comms, nullptr);
  ShardedAttentionConfig cfg = SmallConfig(*comms);
  // kv_offset is the runtime's to set; only the last rank gets it wrong.
  const int last = TestProcess().size() - 1;
  if (comms->rank() == last) cfg.options.kv_offset = 8;
  absl::StatusOr<std::unique_ptr<ShardedAttention>> op = ShardedAttention::Create(comms, cfg);
  ASSERT_FALSE(op.ok());
  if (comms->rank() == last) {
    EXPECT_EQ(op.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(op.status().message(), HasSubstr("options: kv_offset (8)"));
  } else {
    EXPECT_EQ(op.status().code(), absl::StatusCode::kAborted);
    EXPECT_THAT(op.status().message(), HasSubstr(absl::StrCat("rank ", last, " could not set up")));
  }
}

TEST(ShardedAttentionMpi, CudaPlatformNeedsCudaAndNccl) {
  MeshCommunicators* comms = CommsFor(TpMesh());
  ASSERT_NE(comms, nullptr);
  ShardedAttentionConfig cfg = SmallConfig(*comms);
  cfg.options.platform = Platform::kCuda;
  absl::StatusOr<std::unique_ptr<ShardedAttention>> op = ShardedAttention::Create(comms, cfg);
  if (TestProcess().size() == 1 && CudaDeviceCount() > 0) {
    // One rank communicates with no one: the MPI world is no obstacle.
    EXPECT_TRUE(op.ok()) << op.status();
    return;
  }
  ASSERT_FALSE(op.ok());
  EXPECT_EQ(op.status().code(), absl::StatusCode::kFailedPrecondition);
  // Which precondition fails depends on the build and the machine; each names the platform.
  EXPECT_THAT(op.status().message(), HasSubstr("platform cuda"));
  if (BuiltWithCuda() && CudaDeviceCount() > 0) {
    EXPECT_THAT(op.status().message(), HasSubstr("needs nccl communicators"));
  }
}

TEST(ShardedAttentionMpi, WrongLocalShapeIsRejectedBeforeAnyWork) {
  MeshCommunicators* comms = CommsFor(TpMesh());
  ASSERT_NE(comms, nullptr);
  ShardedAttentionConfig cfg = SmallConfig(*comms);
  absl::StatusOr<std::unique_ptr<ShardedAttention>> op = ShardedAttention::Create(comms, cfg);
  ASSERT_TRUE(op.ok()) << op.status();
  TestCase c;
  c.batch = 4;
  c.capacity = 32;
  c.num_q_heads = 8;
  c.num_kv_heads = 8;
  c.head_dim = kHeadDim;
  c.with_lse = false;
  HostProblem p = MakeHostProblem(c);
  LocalProblem l = CutProblem(**op, p);
  RaggedDecodeAttentionArgs args = l.args();
  args.key = p.key.view();  // the global key, not this rank's shard
  absl::Status s = (*op)->Run(args);
  if (TestProcess().size() == 1) {
    EXPECT_TRUE(s.ok()) << s;  // one rank: the shard is the whole
    return;
  }
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("key: expected the local shard f32[4, 32, "));
}

TEST(ShardedAttentionMpi, CommunicatorsAreSplitOnceAndReused) {
  const int n = TestProcess().size();
  if (n < 2) GTEST_SKIP() << "needs 2 or more ranks";
  // A fresh MeshCommunicators (not the shared cache): sp=2 and tp = n / 2.
  absl::StatusOr<Mesh> mesh = Mesh::Parse(absl::StrCat("sp=2,tp=", n / 2));
  ASSERT_TRUE(mesh.ok());
  auto comms = MeshCommunicators::Borrow(*mesh, &TestProcess().world());
  ASSERT_TRUE(comms.ok()) << comms.status();
  ShardedAttentionConfig cfg = SmallConfig(**comms);  // gathers over tp, merges over sp
  auto first = ShardedAttention::Create(comms->get(), cfg);
  ASSERT_TRUE(first.ok()) << first.status();
  // With tp = 1 the sp group is the world: no split; otherwise one for sp and one for tp.
  const int splits = n / 2 == 1 ? 0 : 2;
  EXPECT_EQ((*comms)->num_splits(), splits);
  auto second = ShardedAttention::Create(comms->get(), cfg);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ((*comms)->num_splits(), splits);
}

}  // namespace
}  // namespace ragged
