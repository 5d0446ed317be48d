// Faults on the MPI path, under mpirun (2 and 4 ranks): a rank that never arrives at a collective
// gives the others DeadlineExceeded within the deadline, never a hang; the communicator is then
// broken and fails fast; the survivors go on with a new communicator. The "absent" rank stays
// alive (it skips the collective and joins the recovery), so every rank finalizes MPI and the
// run passes. tests/comm_exit_test.cc covers a rank that really dies.
#include <mpi.h>

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
#include "runtime/communicator.h"
#include "runtime/dtype.h"
#include "runtime/mpi_communicator.h"
#include "runtime/status.h"
#include "tests/comm_test_main.h"

namespace ragged {
namespace {

using ::ragged::testing::TestProcess;

// Short deadlines keep CI fast; the slack absorbs an oversubscribed, loaded machine.
constexpr absl::Duration kDeadline = absl::Milliseconds(1500);
constexpr absl::Duration kSlack = absl::Milliseconds(1500);

bool Contains(absl::string_view haystack, absl::string_view needle) {
  return haystack.find(needle) != absl::string_view::npos;
}

enum class Op { kAllGather, kAllReduce, kBroadcast, kBarrier, kSplit };

std::string OpName(Op op) {
  switch (op) {
    case Op::kAllGather:
      return "Allgather";
    case Op::kAllReduce:
      return "Allreduce";
    case Op::kBroadcast:
      return "Bcast";
    case Op::kBarrier:
      return "Barrier";
    case Op::kSplit:
      return "Split";
  }
  return "";
}

// Runs `op` on `comm` with a few elements; the last rank is the absent one.
absl::Status RunOp(Communicator& comm, Op op) {
  std::vector<float> send(5, 1.0f), recv(5 * comm.size());
  switch (op) {
    case Op::kAllGather:
      return comm.AllGather(send.data(), recv.data(), 5, DType::kF32, nullptr);
    case Op::kAllReduce:
      return comm.AllReduce(send.data(), recv.data(), 5, DType::kF32, ReduceOp::kSum, nullptr);
    case Op::kBroadcast:
      // From the absent rank: a root may finish its broadcast without the receivers (MPI
      // lets the sends buffer), but receivers cannot finish without their root.
      return comm.Broadcast(send.data(), 5, DType::kF32, comm.size() - 1, nullptr);
    case Op::kBarrier:
      return comm.Barrier();
    case Op::kSplit:
      return comm.Split(0, comm.rank()).status();
  }
  return absl::InternalError("unknown op");
}

// After a fault: every rank (the absent one included) makes a new communicator and agrees.
void ExpectRecovery() {
  absl::StatusOr<std::unique_ptr<MpiCommunicator>> fresh =
      MpiCommunicator::Create(MPI_COMM_WORLD, absl::Seconds(30));
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  int32_t one = 1, total = 0;
  ASSERT_TRUE((*fresh)->AllReduce(&one, &total, 1, DType::kI32, ReduceOp::kSum, nullptr).ok());
  EXPECT_EQ(total, (*fresh)->size());
}

void PrintTo(Op op, std::ostream* os) { *os << OpName(op); }

class AbsentRankTest : public ::testing::TestWithParam<Op> {};

TEST_P(AbsentRankTest, OthersGetDeadlineExceededThenFailFast) {
  const Op op = GetParam();
  if (TestProcess().size() < 2) GTEST_SKIP() << "needs 2 ranks: one to be absent";
  absl::StatusOr<std::unique_ptr<MpiCommunicator>> comm =
      MpiCommunicator::Create(MPI_COMM_WORLD, kDeadline);
  ASSERT_TRUE(comm.ok()) << comm.status();
  const int absent = (*comm)->size() - 1;

  if ((*comm)->rank() != absent) {
    const absl::Time start = absl::Now();
    absl::Status s = RunOp(**comm, op);
    const absl::Duration waited = absl::Now() - start;
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
    EXPECT_GE(waited, kDeadline);
    EXPECT_LE(waited, kDeadline + kSlack);
    // The error says what, where and who.
    EXPECT_TRUE(Contains(s.message(), OpName(op))) << s;
    EXPECT_TRUE(Contains(s.message(), "did not complete within 1.5s")) << s;
    EXPECT_TRUE(Contains(s.message(), absl::StrCat("rank ", TestProcess().rank()))) << s;
    EXPECT_TRUE(Contains(s.message(), HostName())) << s;
    EXPECT_TRUE((*comm)->broken());

    // Later calls fail at once, quoting the first error.
    const absl::Time again = absl::Now();
    absl::Status later = RunOp(**comm, Op::kAllReduce);
    EXPECT_LT(absl::Now() - again, absl::Milliseconds(100));
    EXPECT_EQ(later.code(), absl::StatusCode::kFailedPrecondition) << later;
    EXPECT_TRUE(Contains(later.message(), "broken")) << later;
    EXPECT_TRUE(Contains(later.message(), "did not complete")) << later;
    absl::Status split = (*comm)->Split(0, 0).status();
    EXPECT_EQ(split.code(), absl::StatusCode::kFailedPrecondition) << split;
  }
  // The absent rank never calls the collective; it goes straight to the recovery, where it waits
  // (bounded) for the others.
  ExpectRecovery();
}

INSTANTIATE_TEST_SUITE_P(Ops, AbsentRankTest,
                         ::testing::Values(Op::kAllGather, Op::kAllReduce, Op::kBroadcast,
                                           Op::kBarrier, Op::kSplit),
                         [](const auto& info) { return OpName(info.param); });

// A fault in one group does not disturb another: groups of two ranks, the second rank of the
// last group absent; the other groups complete their collective.
TEST(AbsentRankInGroupTest, OnlyTheAffectedGroupTimesOut) {
  const int n = TestProcess().size();
  if (n < 4 || n % 2 != 0) GTEST_SKIP() << "needs an even number >= 4 of ranks, got " << n;
  absl::StatusOr<std::unique_ptr<MpiCommunicator>> world =
      MpiCommunicator::Create(MPI_COMM_WORLD, kDeadline);
  ASSERT_TRUE(world.ok()) << world.status();
  const int me = (*world)->rank();
  absl::StatusOr<std::unique_ptr<Communicator>> pair = (*world)->Split(me / 2, me % 2);
  ASSERT_TRUE(pair.ok()) << pair.status();
  const bool faulty_group = me / 2 == n / 2 - 1;
  const bool absent = me == n - 1;
  if (!absent) {
    const absl::Time start = absl::Now();
    int32_t one = 1, total = 0;
    absl::Status s = (*pair)->AllReduce(&one, &total, 1, DType::kI32, ReduceOp::kSum, nullptr);
    if (faulty_group) {
      EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
      EXPECT_LE(absl::Now() - start, kDeadline + kSlack);
    } else {
      EXPECT_TRUE(s.ok()) << s;
      EXPECT_EQ(total, 2);
    }
  }
  ExpectRecovery();
}

// The deadline is per communicator and can be changed between calls.
TEST(DeadlineTest, ShorterTimeoutIsHonoured) {
  if (TestProcess().size() < 2) GTEST_SKIP() << "needs 2 ranks: one to be absent";
  absl::StatusOr<std::unique_ptr<MpiCommunicator>> comm =
      MpiCommunicator::Create(MPI_COMM_WORLD, absl::Seconds(30));
  ASSERT_TRUE(comm.ok()) << comm.status();
  (*comm)->set_timeout(absl::Milliseconds(300));
  if ((*comm)->rank() != 0) {
    const absl::Time start = absl::Now();
    absl::Status s = (*comm)->Barrier();
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
    EXPECT_LE(absl::Now() - start, absl::Milliseconds(300) + kSlack);
    EXPECT_TRUE(Contains(s.message(), "within 300ms")) << s;
  }
  ExpectRecovery();
}

}  // namespace
}  // namespace ragged
