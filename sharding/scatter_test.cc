// ExtractShard / InsertShard: local copies between a global tensor and a box of it.
#include "sharding/scatter.h"

#include <ostream>
#include <tuple>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/buffer.h"

namespace ragged {
namespace {

using ::testing::HasSubstr;

// Element (i, j, k) of a [4, 6, 8] global tensor holds i * 100 + j * 10 + k (exact in f32 and f16,
// not in bf16, whose 8-bit mantissa rounds 357).
HostBuffer Iota(DType dtype) {
  HostBuffer b = HostBuffer::Allocate(dtype, {4, 6, 8});
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 6; ++j) {
      for (int k = 0; k < 8; ++k)
        StoreFromFloat(b.data(), dtype, (i * 6 + j) * 8 + k, i * 100 + j * 10 + k);
    }
  }
  return b;
}

}  // namespace

// Printed in test names.
void PrintTo(const ShardBox& b, std::ostream* os) {
  *os << "offset " << ShapeToString(b.offset) << " shape " << ShapeToString(b.shape);
}

namespace {

class ShardCopyTest : public ::testing::TestWithParam<std::tuple<DType, ShardBox>> {};

TEST_P(ShardCopyTest, ExtractThenInsertRoundTrips) {
  const auto& [dtype, box] = GetParam();
  HostBuffer global = Iota(dtype);
  HostBuffer local = HostBuffer::Allocate(dtype, box.shape);
  ASSERT_TRUE(ExtractShard(global.view(), box, local.view()).ok());
  for (int64_t i = 0; i < box.shape[0]; ++i) {
    for (int64_t j = 0; j < box.shape[1]; ++j) {
      for (int64_t k = 0; k < box.shape[2]; ++k) {
        const float got =
            LoadAsFloat(local.data(), dtype, (i * box.shape[1] + j) * box.shape[2] + k);
        EXPECT_EQ(got, (i + box.offset[0]) * 100 + (j + box.offset[1]) * 10 + k + box.offset[2]);
      }
    }
  }
  HostBuffer back = HostBuffer::Allocate(dtype, {4, 6, 8});
  ASSERT_TRUE(InsertShard(local.view(), box, back.view()).ok());
  int64_t written = 0;
  for (int64_t e = 0; e < back.num_elements(); ++e) {
    const float v = LoadAsFloat(back.data(), dtype, e);
    if (v != 0) {
      EXPECT_EQ(v, LoadAsFloat(global.data(), dtype, e));
      ++written;
    }
  }
  // Element (0, 0, 0) is 0 in the global tensor too; every other element of the box was written.
  const bool has_origin = box.offset[0] == 0 && box.offset[1] == 0 && box.offset[2] == 0;
  EXPECT_EQ(written, NumElements(box.shape) - (has_origin ? 1 : 0));
}

INSTANTIATE_TEST_SUITE_P(Boxes, ShardCopyTest,
                         ::testing::Combine(::testing::Values(DType::kF32, DType::kF16),
                                            ::testing::Values(ShardBox{{0, 0, 0}, {4, 6, 8}},
                                                              ShardBox{{2, 0, 0}, {2, 6, 8}},
                                                              ShardBox{{1, 3, 0}, {2, 3, 8}},
                                                              ShardBox{{0, 2, 4}, {4, 2, 4}})));

TEST(ShardCopy, StridedLocalView) {
  HostBuffer global = Iota(DType::kF32);
  // The local view is every other row of a [4, 8] buffer: rows 0, 2 hold the [2, 8] shard.
  HostBuffer storage = HostBuffer::Allocate(DType::kF32, {4, 8});
  const int64_t shape[] = {2, 1, 8}, strides[] = {16, 8, 1};
  TensorView local(storage.data(), DType::kF32, shape, strides);
  ASSERT_TRUE(ExtractShard(global.view(), ShardBox{{2, 5, 0}, {2, 1, 8}}, local).ok());
  EXPECT_EQ(storage.data_as<float>()[0], 250.0f);
  EXPECT_EQ(storage.data_as<float>()[7], 257.0f);
  EXPECT_EQ(storage.data_as<float>()[8], 0.0f);  // untouched
  EXPECT_EQ(storage.data_as<float>()[16], 350.0f);
  EXPECT_EQ(storage.data_as<float>()[23], 357.0f);
}

TEST(ShardCopy, BoxOutsideTheTensor) {
  HostBuffer global = Iota(DType::kF32);
  HostBuffer local = HostBuffer::Allocate(DType::kF32, {2, 6, 8});
  absl::Status s = ExtractShard(global.view(), ShardBox{{3, 0, 0}, {2, 6, 8}}, local.view());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("leaves the global shape [4, 6, 8]"));
}

TEST(ShardCopy, DtypeMismatch) {
  HostBuffer global = Iota(DType::kF32);
  HostBuffer local = HostBuffer::Allocate(DType::kF16, {2, 6, 8});
  absl::Status s = InsertShard(local.view(), ShardBox{{0, 0, 0}, {2, 6, 8}}, global.view());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("dtypes differ: global f32, local f16"));
}

}  // namespace
}  // namespace ragged
