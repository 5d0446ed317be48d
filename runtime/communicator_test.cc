#include "runtime/communicator.h"

#include <tuple>

#include "gtest/gtest.h"

namespace ragged {
namespace {

class CommBackendNameTest : public ::testing::TestWithParam<CommBackend> {};

TEST_P(CommBackendNameTest, NameParsesBack) {
  absl::StatusOr<CommBackend> parsed = ParseCommBackend(CommBackendName(GetParam()));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, GetParam());
}

INSTANTIATE_TEST_SUITE_P(Backends, CommBackendNameTest,
                         ::testing::Values(CommBackend::kMpi, CommBackend::kNccl),
                         [](const auto& info) { return std::string(CommBackendName(info.param)); });

TEST(CommBackendTest, UnknownNameIsInvalidArgumentNamingIt) {
  absl::StatusOr<CommBackend> parsed = ParseCommBackend("gloo");
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find("\"gloo\""), absl::string_view::npos);
}

TEST(ReduceOpTest, Names) {
  EXPECT_EQ(ReduceOpName(ReduceOp::kSum), "sum");
  EXPECT_EQ(ReduceOpName(ReduceOp::kMax), "max");
}

}  // namespace
}  // namespace ragged
