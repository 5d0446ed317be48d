#include "runtime/status.h"

#include "gtest/gtest.h"

namespace ragged {
namespace {

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  RAGGED_ASSIGN_OR_RETURN(int h, Half(x));
  RAGGED_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

absl::Status CheckEven(int x) {
  RAGGED_RETURN_IF_ERROR(Half(x));
  return absl::OkStatus();
}

TEST(StatusTest, MacrosPropagate) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CheckEven(2).ok());
  EXPECT_FALSE(CheckEven(3).ok());
}

TEST(StatusTest, LibraryErrorsNameCallFileRankAndHost) {
  SetErrorRank(3);
  absl::Status s = RAGGED_MPI_STATUS(17);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("17"), absl::string_view::npos);
  EXPECT_NE(s.message().find("status_test.cc"), absl::string_view::npos);
  EXPECT_NE(s.message().find("rank 3"), absl::string_view::npos);
  EXPECT_NE(s.message().find(HostName()), absl::string_view::npos);
  EXPECT_TRUE(RAGGED_CUDA_STATUS(0).ok());
  EXPECT_TRUE(RAGGED_NCCL_STATUS(0).ok());
  EXPECT_EQ(RAGGED_NCCL_STATUS(3).code(), absl::StatusCode::kInternal);  // ncclInternalError
  SetErrorRank(-1);
}

}  // namespace
}  // namespace ragged
