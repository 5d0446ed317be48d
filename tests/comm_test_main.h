// The main() of the multi-rank GoogleTest binaries run under mpirun (tests/comm_*.cc).
//
// It starts the Process (MPI and this rank's place) before the tests and finalizes MPI after
// them. Rank 0 prints GoogleTest's usual report; other ranks print only their failures, each line
// prefixed with the rank, in GoogleTest's "[  FAILED  ]" form so that ctest notices them. Every
// rank runs the same tests in the same order (no shuffling), so collectives inside tests line up;
// a test that skips must skip on every rank (decide from the world size, not from the rank).
// Thread-safety: TestProcess() may be called from any test thread once main has started.
#ifndef RAGGED_TESTS_COMM_TEST_MAIN_H_
#define RAGGED_TESTS_COMM_TEST_MAIN_H_

#include "absl/time/time.h"
#include "runtime/bootstrap.h"

namespace ragged::testing {

// The process of this rank (valid for the whole test run).
Process& TestProcess();
// The world communicator's deadline in these tests: long enough for a loaded CI machine, short
// enough that a test that goes wrong fails instead of hanging.
inline constexpr absl::Duration kTestTimeout = absl::Seconds(60);

}  // namespace ragged::testing

#endif  // RAGGED_TESTS_COMM_TEST_MAIN_H_
