// A rank that really dies (exits without MPI_Finalize, or is killed) right before a collective:
// the survivors get an error within the deadline, not a hang, and finalize cleanly. Run under
// `mpirun --enable-recovery` (tests/comm.cmake), which keeps OpenMPI from killing the whole job
// when one rank dies; each run selects one case with --gtest_filter, since the case ends a rank.
#include <mpi.h>
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <ostream>
#include <string>

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

constexpr absl::Duration kDeadline = absl::Seconds(2);
constexpr absl::Duration kSlack = absl::Milliseconds(1500);

enum class Death { kExit, kKill };

void PrintTo(Death d, std::ostream* os) { *os << (d == Death::kExit ? "exit" : "kill"); }

class RankDiesTest : public ::testing::TestWithParam<Death> {};

TEST_P(RankDiesTest, SurvivorsGetAnErrorWithinTheDeadline) {
  if (TestProcess().size() < 2) GTEST_SKIP() << "needs 2 ranks: one to die";
  absl::StatusOr<std::unique_ptr<MpiCommunicator>> comm =
      MpiCommunicator::Create(MPI_COMM_WORLD, kDeadline);
  ASSERT_TRUE(comm.ok()) << comm.status();
  ASSERT_TRUE((*comm)->Barrier().ok());  // everyone is alive here
  const int dying = (*comm)->size() - 1;
  if ((*comm)->rank() == dying) {
    if (GetParam() == Death::kKill) raise(SIGKILL);
    _exit(0);  // no MPI_Finalize, no gtest report
  }
  const absl::Time start = absl::Now();
  int32_t one = 1, total = 0;
  absl::Status s = (*comm)->AllReduce(&one, &total, 1, DType::kI32, ReduceOp::kSum, nullptr);
  const absl::Duration waited = absl::Now() - start;
  // Usually DeadlineExceeded; an MPI transport that notices the closed connection first reports
  // an MPI error (Internal) instead. Either is an error with rank and host, within the deadline.
  EXPECT_TRUE(s.code() == absl::StatusCode::kDeadlineExceeded ||
              s.code() == absl::StatusCode::kInternal)
      << s;
  EXPECT_LE(waited, kDeadline + kSlack);
  EXPECT_NE(s.message().find(absl::StrCat("rank ", TestProcess().rank())), absl::string_view::npos)
      << s;
  EXPECT_NE(s.message().find(HostName()), absl::string_view::npos) << s;
  EXPECT_TRUE((*comm)->broken());
  EXPECT_EQ((*comm)->Barrier().code(), absl::StatusCode::kFailedPrecondition);
  std::fprintf(stderr, "[rank %d] survivor saw after %s: %s\n", TestProcess().rank(),
               absl::FormatDuration(waited).c_str(), s.ToString().c_str());
}

INSTANTIATE_TEST_SUITE_P(Deaths, RankDiesTest, ::testing::Values(Death::kExit, Death::kKill),
                         [](const auto& info) {
                           return std::string(info.param == Death::kExit ? "Exit" : "Kill");
                         });

}  // namespace
}  // namespace ragged
