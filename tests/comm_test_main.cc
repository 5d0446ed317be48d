#include "tests/comm_test_main.h"

#include <cstdio>
#include <memory>
#include <utility>

#include "gtest/gtest.h"

namespace ragged::testing {
namespace {

Process* g_process = nullptr;

// The report of a rank other than 0: its failures only, prefixed with the rank.
class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}

  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_,
                 result.file_name() ? result.file_name() : "unknown", result.line_number(),
                 result.message());
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (!info.result()->Failed()) return;
    std::fprintf(stderr, "[  FAILED  ] [rank %d] %s.%s\n", rank_, info.test_suite_name(),
                 info.name());
  }

 private:
  int rank_;
};

}  // namespace

Process& TestProcess() { return *g_process; }

}  // namespace ragged::testing

int main(int argc, char** argv) {
  ragged::ProcessOptions options;
  options.timeout = ragged::testing::kTestTimeout;
  options.finalize_timeout = absl::Seconds(5);
  absl::StatusOr<std::unique_ptr<ragged::Process>> process =
      ragged::Process::Init(&argc, &argv, options);
  if (!process.ok()) {
    std::fprintf(stderr, "[  FAILED  ] Process::Init: %s\n", process.status().ToString().c_str());
    return 1;
  }
  ragged::testing::g_process = process->get();
  ::testing::InitGoogleTest(&argc, argv);
  const int rank = (*process)->rank();
  if (rank != 0) {
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new ragged::testing::FailurePrinter(rank));
  }
  int result = RUN_ALL_TESTS();
  ragged::testing::g_process = nullptr;
  // Bounded: after a test in which a rank died, MPI_Finalize may never return.
  (*process)->Finalize(result);
  return result;
}
