// Faults at the level of the sharded op (ShardedAttention over MPI on the CPU), under mpirun with
// 2 and 4 ranks: a rank that never joins Create or a step, a rank that rejects its own views
// while the others go on, ranks that disagree about the mesh, shapes, specs or options, and (in
// runs of their own, under mpirun --enable-recovery) a rank killed in the middle of a step. Every
// case ends, on every surviving rank, with the right answer or an error within the deadline that
// names the rank and the host: never a hang, never a wrong answer.
//
// The communicator engineer's tests (tests/comm_fault_test.cc, tests/comm_exit_test.cc) cover the
// same faults at single collectives, and tests/sharding_mpi_test.cc a disagreement about S and a
// rank whose own setup fails; these cases are the sharded op's own: its setup collective, its
// merge and gather collectives, and its checks of the local views.
//
// Each case uses a fresh duplicate of MPI_COMM_WORLD with a short deadline, so that a fault
// breaks only that case's communicators; afterwards every rank, the absent one included, meets
// on another fresh duplicate (Recover) so that the next case starts together. Broken
// communicators and the ops that used them are kept alive until the end of the process (MPI may
// still complete an abandoned request into their buffers).
#include <signal.h>

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
#include "kernels/reference.h"
#include "kernels/test_util.h"
#include "runtime/buffer.h"
#include "runtime/mpi_communicator.h"
#include "runtime/status.h"
#include "sharding/mesh.h"
#include "sharding/scatter.h"
#include "sharding/sharded_attention.h"
#include "tests/comm_test_main.h"
#include "tests/sharding_test_util.h"

namespace ragged {
namespace {

using testing::CutProblem;
using testing::HostProblem;
using testing::LayoutOf;
using testing::LocalProblem;
using testing::MakeHostProblem;
using testing::Sinks;
using testing::TestCase;
using testing::TestProcess;

// The deadline of every communicator here, and what a loaded, oversubscribed CI machine (or the
// sanitized build) may add to it before the error comes back.
constexpr absl::Duration kDeadline = absl::Seconds(2);
constexpr absl::Duration kSlack = absl::Seconds(3);

bool Contains(absl::string_view haystack, absl::string_view needle) {
  return haystack.find(needle) != absl::string_view::npos;
}

// Things kept alive until the process ends (see the file comment).
struct Graveyard {
  std::vector<std::unique_ptr<MpiCommunicator>> worlds;
  std::vector<std::unique_ptr<MeshCommunicators>> comms;
  std::vector<std::unique_ptr<ShardedAttention>> ops;
  std::vector<std::unique_ptr<HostProblem>> problems;
};
Graveyard& Graves() {
  static auto* g = new Graveyard();  // never destroyed: see above
  return *g;
}

// A fresh duplicate of MPI_COMM_WORLD with the short deadline (collective over the world).
MpiCommunicator* FreshWorld() {
  absl::StatusOr<std::unique_ptr<MpiCommunicator>> w =
      MpiCommunicator::Create(MPI_COMM_WORLD, kDeadline);
  EXPECT_TRUE(w.ok()) << w.status();
  if (!w.ok()) return nullptr;
  Graves().worlds.push_back(std::move(*w));
  return Graves().worlds.back().get();
}

MeshCommunicators* CommsOver(MpiCommunicator* world, const std::string& mesh_text) {
  absl::StatusOr<Mesh> mesh = Mesh::Parse(mesh_text);
  EXPECT_TRUE(mesh.ok()) << mesh.status();
  if (!mesh.ok() || world == nullptr) return nullptr;
  auto comms = MeshCommunicators::Borrow(*mesh, world);
  EXPECT_TRUE(comms.ok()) << comms.status();
  if (!comms.ok()) return nullptr;
  Graves().comms.push_back(std::move(*comms));
  return Graves().comms.back().get();
}

// Every rank meets on another fresh duplicate of the world, with a generous deadline, and agrees
// that all ranks are there.
void Recover() {
  absl::StatusOr<std::unique_ptr<MpiCommunicator>> w =
      MpiCommunicator::Create(MPI_COMM_WORLD, absl::Seconds(60));
  ASSERT_TRUE(w.ok()) << w.status();
  int32_t one = 1, total = 0;
  absl::Status s = (*w)->AllReduce(&one, &total, 1, DType::kI32, ReduceOp::kSum, nullptr);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(total, (*w)->size());
  Graves().worlds.push_back(std::move(*w));
}

// The meshes: the KV sequence split over every rank (each step merges partials over the world),
// or the heads split with the output gathered (each step all-gathers over the world).
enum class MeshKind { kSequence, kHeads };
const char* MeshKindName(MeshKind k) {
  return k == MeshKind::kSequence ? "SeqMerge" : "HeadGather";
}
void PrintTo(MeshKind k, std::ostream* os) { *os << MeshKindName(k); }
std::string MeshText(MeshKind k) {
  return absl::StrCat(k == MeshKind::kSequence ? "sp=" : "tp=", TestProcess().size());
}

// The global problem: the same on every rank (same seed). B=4, S=32, HQ=8, HKV=4, D=16, f32,
// ragged rows (one empty, one of one token).
TestCase GlobalCase() {
  TestCase c;
  c.batch = 4;
  c.capacity = 32;
  c.num_q_heads = 8;
  c.num_kv_heads = 4;
  c.head_dim = 16;
  c.dtype = DType::kF32;
  c.start = {0, 5, 17, 31};
  c.end = {32, 21, 17, 32};
  c.with_lse = true;
  c.seed = 29;
  return c;
}

ShardedAttentionConfig ConfigFor(const MeshCommunicators& comms, const TestCase& c) {
  ShardedAttentionConfig cfg;
  cfg.shape.batch = c.batch;
  cfg.shape.capacity = c.capacity;
  cfg.shape.num_q_heads = c.num_q_heads;
  cfg.shape.num_kv_heads = c.num_kv_heads;
  cfg.shape.head_dim = c.head_dim;
  cfg.shape.dtype = c.dtype;
  cfg.shape.sinks = LayoutOf(c.sinks);
  cfg.shape.num_sinks = c.sinks == Sinks::kNone ? 0 : c.num_sinks;
  cfg.shape.aux_dtype = c.aux_dtype;
  cfg.shape.with_lse = c.with_lse;
  cfg.specs = ShardedAttentionSpecs::Typical(comms.mesh(), cfg.shape.sinks,
                                             /*gather_output=*/true);
  cfg.options.platform = Platform::kCpu;
  cfg.options.sliding_window = c.window;
  cfg.options.logits_soft_cap = c.soft_cap;
  cfg.options.softmax_scale = c.softmax_scale;
  return cfg;
}

// The output (gathered: the whole [B, HQ, D]) against the single-process reference.
void ExpectRightAnswer(const HostProblem& p, const LocalProblem& l) {
  auto ref = ComputeReference(p.args(), p.options(Platform::kReference));
  ASSERT_TRUE(ref.ok()) << ref.status();
  TensorView lse = l.lse.view();
  EXPECT_TRUE(
      testing::MatchesReference(*ref, l.output.view(), p.c.with_lse ? &lse : nullptr, p.c.dtype));
}

// What a surviving rank must see after a peer's fault: an error, within the deadline, naming
// this rank and host.
void ExpectPeerFault(const absl::Status& s, absl::Duration waited) {
  EXPECT_FALSE(s.ok()) << "a step without its peer reported success";
  EXPECT_TRUE(s.code() == absl::StatusCode::kDeadlineExceeded ||
              s.code() == absl::StatusCode::kInternal ||
              s.code() == absl::StatusCode::kFailedPrecondition)
      << s;
  EXPECT_LE(waited, kDeadline + kSlack) << s;
  EXPECT_TRUE(Contains(s.message(), absl::StrCat("rank ", TestProcess().rank()))) << s;
  EXPECT_TRUE(Contains(s.message(), HostName())) << s;
}

// A set-up op of this case: comms, op and the local views, with one good step done on every rank.
struct SteppedOp {
  MeshCommunicators* comms = nullptr;
  ShardedAttention* op = nullptr;
  HostProblem* problem = nullptr;
  std::unique_ptr<LocalProblem> local;
};

void SetUpAndStepOnce(MeshKind kind, SteppedOp* out) {
  out->comms = CommsOver(FreshWorld(), MeshText(kind));
  ASSERT_NE(out->comms, nullptr);
  Graves().problems.push_back(std::make_unique<HostProblem>(MakeHostProblem(GlobalCase())));
  out->problem = Graves().problems.back().get();
  auto op = ShardedAttention::Create(out->comms, ConfigFor(*out->comms, out->problem->c));
  ASSERT_TRUE(op.ok()) << op.status();
  Graves().ops.push_back(std::move(*op));
  out->op = Graves().ops.back().get();
  out->local = std::make_unique<LocalProblem>(CutProblem(*out->op, *out->problem));
  absl::Status s = out->op->Run(out->local->args());
  ASSERT_TRUE(s.ok()) << s;
  ExpectRightAnswer(*out->problem, *out->local);
}

// ---------------------------------------------------------------------------------------------

class AbsentRankTest : public ::testing::TestWithParam<MeshKind> {};

// The last rank never calls Create: the others' setup collective gives up at the deadline.
TEST_P(AbsentRankTest, NeverJoinsCreate) {
  if (TestProcess().size() < 2) GTEST_SKIP() << "needs 2 ranks: one to be absent";
  MeshCommunicators* comms = CommsOver(FreshWorld(), MeshText(GetParam()));
  ASSERT_NE(comms, nullptr);
  Graves().problems.push_back(std::make_unique<HostProblem>(MakeHostProblem(GlobalCase())));
  const HostProblem& p = *Graves().problems.back();
  if (TestProcess().rank() != TestProcess().size() - 1) {
    const absl::Time start = absl::Now();
    auto op = ShardedAttention::Create(comms, ConfigFor(*comms, p.c));
    ExpectPeerFault(op.status(), absl::Now() - start);
    EXPECT_EQ(op.status().code(), absl::StatusCode::kDeadlineExceeded) << op.status();
  }
  Recover();
}

// Every rank set up and stepped once; then the last rank skips a step. The others' step fails at
// the deadline, and their next step fails at once (the communicator is broken), not after
// another deadline.
TEST_P(AbsentRankTest, NeverJoinsAStep) {
  if (TestProcess().size() < 2) GTEST_SKIP() << "needs 2 ranks: one to be absent";
  SteppedOp setup;
  ASSERT_NO_FATAL_FAILURE(SetUpAndStepOnce(GetParam(), &setup));
  if (TestProcess().rank() != TestProcess().size() - 1) {
    absl::Time start = absl::Now();
    absl::Status s = setup.op->Run(setup.local->args());
    ExpectPeerFault(s, absl::Now() - start);
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
    start = absl::Now();
    absl::Status again = setup.op->Run(setup.local->args());
    EXPECT_FALSE(again.ok());
    EXPECT_LT(absl::Now() - start, kDeadline / 2) << again;
  }
  Recover();
}

// The last rank passes the global key instead of its shard: it gets InvalidArgument at once,
// before any communication; the others, already in the step's collective, get an error within
// the deadline (they cannot know why their peer stayed away).
TEST_P(AbsentRankTest, OneRankRejectsItsViews) {
  if (TestProcess().size() < 2) GTEST_SKIP() << "needs 2 ranks: one with wrong views";
  SteppedOp setup;
  ASSERT_NO_FATAL_FAILURE(SetUpAndStepOnce(GetParam(), &setup));
  const bool wrong = TestProcess().rank() == TestProcess().size() - 1;
  RaggedDecodeAttentionArgs args = setup.local->args();
  if (wrong) args.key = setup.problem->key.view();
  const absl::Time start = absl::Now();
  absl::Status s = setup.op->Run(args);
  const absl::Duration waited = absl::Now() - start;
  if (wrong) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_TRUE(Contains(s.message(), "key: expected the local shard")) << s;
    EXPECT_LT(waited, kDeadline / 2) << s;
  } else {
    ExpectPeerFault(s, waited);
  }
  Recover();
}

INSTANTIATE_TEST_SUITE_P(Meshes, AbsentRankTest,
                         ::testing::Values(MeshKind::kSequence, MeshKind::kHeads),
                         [](const auto& info) { return std::string(MeshKindName(info.param)); });

// ---------------------------------------------------------------------------------------------
// Ranks that disagree: rank 0 differs in one thing. Every rank gets InvalidArgument from Create's
// one setup collective (so before any split or step, and without waiting for a deadline), with
// this rank's configuration in the message; the communicator stays usable, and an agreeing
// Create then computes the right answer.

enum class Disagreement {
  kMeshLayout,  // rank 0: sp=n where the others have tp=n
  kOutputSpec,  // rank 0: output kept sharded instead of gathered
  kKeySpec,     // rank 0: key/value not split along the sequence (on sp=n)
  kDtype,       // rank 0: bf16
  kKvHeads,     // rank 0: HKV = 2
  kBatch,       // rank 0: B = 8
  kWindow,      // rank 0: window (8, 0)
  kSoftCap,     // rank 0: soft cap 30
  kSinks,       // rank 0: sinks [NS]
  kScale,       // rank 0: softmax_scale 0.5
  kLse,         // rank 0: no lse
  kPlatform,    // rank 0: the reference platform
};

const char* DisagreementName(Disagreement d) {
  switch (d) {
    case Disagreement::kMeshLayout:
      return "MeshLayout";
    case Disagreement::kOutputSpec:
      return "OutputSpec";
    case Disagreement::kKeySpec:
      return "KeySpec";
    case Disagreement::kDtype:
      return "Dtype";
    case Disagreement::kKvHeads:
      return "KvHeads";
    case Disagreement::kBatch:
      return "Batch";
    case Disagreement::kWindow:
      return "Window";
    case Disagreement::kSoftCap:
      return "SoftCap";
    case Disagreement::kSinks:
      return "Sinks";
    case Disagreement::kScale:
      return "Scale";
    case Disagreement::kLse:
      return "Lse";
    case Disagreement::kPlatform:
      return "Platform";
  }
  return "?";
}
void PrintTo(Disagreement d, std::ostream* os) { *os << DisagreementName(d); }

class DisagreeTest : public ::testing::TestWithParam<Disagreement> {};

TEST_P(DisagreeTest, EveryRankFailsAtSetupThenAgreesAndComputes) {
  if (TestProcess().size() < 2) GTEST_SKIP() << "needs 2 ranks to disagree";
  const Disagreement what = GetParam();
  const bool odd_one = TestProcess().rank() == 0;
  MpiCommunicator* world = FreshWorld();
  ASSERT_NE(world, nullptr);
  // The heads mesh, where the output spec and the head counts matter; the sequence mesh where
  // the key's spec does. The odd rank's mesh differs in kMeshLayout.
  MeshKind kind = what == Disagreement::kKeySpec ? MeshKind::kSequence : MeshKind::kHeads;
  if (odd_one && what == Disagreement::kMeshLayout) kind = MeshKind::kSequence;
  MeshCommunicators* comms = CommsOver(world, MeshText(kind));
  ASSERT_NE(comms, nullptr);
  TestCase c = GlobalCase();
  if (odd_one) {
    switch (what) {
      case Disagreement::kDtype:
        c.dtype = DType::kBF16;
        break;
      case Disagreement::kKvHeads:
        c.num_kv_heads = 2;
        break;
      case Disagreement::kBatch:
        c.batch = 8;
        c.start.resize(8, 0);
        c.end.resize(8, 32);
        break;
      case Disagreement::kWindow:
        c.window = SlidingWindow{8, 0};
        break;
      case Disagreement::kSoftCap:
        c.soft_cap = 30.0f;
        break;
      case Disagreement::kSinks:
        c.sinks = Sinks::kShared;
        break;
      case Disagreement::kScale:
        c.softmax_scale = 0.5f;
        break;
      case Disagreement::kLse:
        c.with_lse = false;
        break;
      default:
        break;
    }
  }
  ShardedAttentionConfig cfg = ConfigFor(*comms, c);
  if (odd_one) {
    if (what == Disagreement::kOutputSpec) cfg.specs.output = cfg.specs.query;
    if (what == Disagreement::kKeySpec) {
      cfg.specs.key = cfg.specs.value = PartitionSpec({{}, {}, cfg.specs.key.entry(2)});
    }
    if (what == Disagreement::kPlatform) cfg.options.platform = Platform::kReference;
  }
  const absl::Time start = absl::Now();
  auto op = ShardedAttention::Create(comms, cfg);
  const absl::Duration waited = absl::Now() - start;
  ASSERT_FALSE(op.ok()) << "ranks that disagree about " << DisagreementName(what)
                        << " set up an op";
  EXPECT_EQ(op.status().code(), absl::StatusCode::kInvalidArgument) << op.status();
  EXPECT_TRUE(Contains(op.status().message(), "the ranks disagree about the configuration"))
      << op.status();
  EXPECT_TRUE(Contains(op.status().message(), absl::StrCat("Rank ", TestProcess().rank(), " has")))
      << op.status();
  // Found by the setup collective itself, not by a peer's absence.
  EXPECT_LT(waited, kDeadline) << op.status();

  // The same world, now with one configuration for all: it works and is right.
  MeshCommunicators* agreed = CommsOver(world, MeshText(MeshKind::kSequence));
  ASSERT_NE(agreed, nullptr);
  Graves().problems.push_back(std::make_unique<HostProblem>(MakeHostProblem(GlobalCase())));
  const HostProblem& p = *Graves().problems.back();
  auto good = ShardedAttention::Create(agreed, ConfigFor(*agreed, p.c));
  ASSERT_TRUE(good.ok()) << good.status();
  std::unique_ptr<LocalProblem> local = std::make_unique<LocalProblem>(CutProblem(**good, p));
  absl::Status s = (*good)->Run(local->args());
  ASSERT_TRUE(s.ok()) << s;
  ExpectRightAnswer(p, *local);
  Graves().ops.push_back(std::move(*good));
}

INSTANTIATE_TEST_SUITE_P(
    Configs, DisagreeTest,
    ::testing::Values(Disagreement::kMeshLayout, Disagreement::kOutputSpec, Disagreement::kKeySpec,
                      Disagreement::kDtype, Disagreement::kKvHeads, Disagreement::kBatch,
                      Disagreement::kWindow, Disagreement::kSoftCap, Disagreement::kSinks,
                      Disagreement::kScale, Disagreement::kLse, Disagreement::kPlatform),
    [](const auto& info) { return std::string(DisagreementName(info.param)); });

// Specs that say the same thing in different words are not a disagreement: rank 0 spells out
// the trailing replicated dimensions of the key and the output, and the op computes as usual.
TEST(AgreeTest, EquivalentSpecsWrittenDifferentlyAgree) {
  if (TestProcess().size() < 2) GTEST_SKIP() << "needs 2 ranks";
  MeshCommunicators* comms = CommsOver(FreshWorld(), MeshText(MeshKind::kSequence));
  ASSERT_NE(comms, nullptr);
  Graves().problems.push_back(std::make_unique<HostProblem>(MakeHostProblem(GlobalCase())));
  const HostProblem& p = *Graves().problems.back();
  ShardedAttentionConfig cfg = ConfigFor(*comms, p.c);
  if (TestProcess().rank() == 0) {
    cfg.specs.key = cfg.specs.value = PartitionSpec({{}, {"sp"}, {}, {}});
    cfg.specs.output = PartitionSpec({{}, {}, {}});
  }
  auto op = ShardedAttention::Create(comms, cfg);
  ASSERT_TRUE(op.ok()) << op.status();
  std::unique_ptr<LocalProblem> local = std::make_unique<LocalProblem>(CutProblem(**op, p));
  absl::Status s = (*op)->Run(local->args());
  ASSERT_TRUE(s.ok()) << s;
  ExpectRightAnswer(p, *local);
  Graves().ops.push_back(std::move(*op));
}

// ---------------------------------------------------------------------------------------------
// A rank killed in the middle of a step (run alone, under mpirun --enable-recovery: the case ends
// a rank). After one good step, the last rank enters the next step at once and is killed 300 ms
// later, while it waits in the step's collective for the others, who enter 1 s late. Each
// survivor's step then either completes with the right answer (the dead rank's data may have
// arrived before it died) or fails within the deadline; the step after that must fail.

class RankKilledTest : public ::testing::TestWithParam<MeshKind> {};

TEST_P(RankKilledTest, InTheMiddleOfAStep) {
  if (TestProcess().size() < 2) GTEST_SKIP() << "needs 2 ranks: one to be killed";
  SteppedOp setup;
  ASSERT_NO_FATAL_FAILURE(SetUpAndStepOnce(GetParam(), &setup));
  testing::PoisonWithNaN(setup.local->output);
  if (TestProcess().rank() == TestProcess().size() - 1) {
    std::thread killer([] {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      raise(SIGKILL);
    });
    killer.detach();
    (void)setup.op->Run(setup.local->args());  // killed while in here (or just after)
    std::this_thread::sleep_for(std::chrono::seconds(60));
    ADD_FAILURE() << "the rank to be killed survived";
    return;
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));
  bool failed = false;
  for (int step = 2; step <= 3 && !failed; ++step) {
    const absl::Time start = absl::Now();
    absl::Status s = setup.op->Run(setup.local->args());
    const absl::Duration waited = absl::Now() - start;
    std::fprintf(stderr, "[rank %d] step %d after the kill: %s after %s\n", TestProcess().rank(),
                 step, s.ToString().c_str(), absl::FormatDuration(waited).c_str());
    if (s.ok()) {
      ExpectRightAnswer(*setup.problem, *setup.local);
    } else {
      ExpectPeerFault(s, waited);
      failed = true;
    }
  }
  EXPECT_TRUE(failed) << "two steps completed without the killed rank";
}

INSTANTIATE_TEST_SUITE_P(Meshes, RankKilledTest,
                         ::testing::Values(MeshKind::kSequence, MeshKind::kHeads),
                         [](const auto& info) { return std::string(MeshKindName(info.param)); });

}  // namespace
}  // namespace ragged
