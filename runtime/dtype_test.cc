#include "runtime/dtype.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace ragged {
namespace {

TEST(DTypeTest, SizesAndNames) {
  EXPECT_EQ(DTypeSize(DType::kF32), 4);
  EXPECT_EQ(DTypeSize(DType::kF16), 2);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2);
  EXPECT_EQ(DTypeSize(DType::kI32), 4);
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kI32}) {
    auto parsed = ParseDType(DTypeName(t));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, t);
  }
}

TEST(DTypeTest, ParseRejectsUnknown) {
  auto s = ParseDType("f64");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("f64"), absl::string_view::npos);
}

TEST(DTypeTest, HalfRoundTripsExactValues) {
  for (float f : {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.960464477539063e-08f}) {
    EXPECT_EQ(HalfToFloat(FloatToHalf(f)), f) << f;
  }
  EXPECT_EQ(FloatToHalf(1.0f), 0x3c00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xc000);
}

TEST(DTypeTest, HalfRoundsToNearestEven) {
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1.0).
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  // 1 + 3 * 2^-11 is halfway between 1 + 2^-10 and 1 + 2^-9: ties to even (1 + 2^-9).
  EXPECT_EQ(FloatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7c00);  // rounds up to infinity
  EXPECT_EQ(FloatToHalf(1e6f), 0x7c00);
  EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isinf(HalfToFloat(0xfc00)));
}

TEST(DTypeTest, BFloat16RoundsToNearestEven) {
  EXPECT_EQ(FloatToBFloat16(1.0f), 0x3f80);
  EXPECT_EQ(BFloat16ToFloat(0x3f80), 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even.
  EXPECT_EQ(FloatToBFloat16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(FloatToBFloat16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_TRUE(std::isnan(BFloat16ToFloat(FloatToBFloat16(std::nanf("")))));
  EXPECT_TRUE(std::isinf(BFloat16ToFloat(FloatToBFloat16(std::numeric_limits<float>::infinity()))));
}

TEST(DTypeTest, LoadStoreThroughEveryType) {
  float f32[1];
  uint16_t h16[1];
  int32_t i32[1];
  StoreFromFloat(f32, DType::kF32, 0, 1.5f);
  StoreFromFloat(h16, DType::kF16, 0, 1.5f);
  StoreFromFloat(i32, DType::kI32, 0, 7.0f);
  EXPECT_EQ(LoadAsFloat(f32, DType::kF32, 0), 1.5f);
  EXPECT_EQ(LoadAsFloat(h16, DType::kF16, 0), 1.5f);
  EXPECT_EQ(LoadAsFloat(i32, DType::kI32, 0), 7.0f);
  StoreFromFloat(h16, DType::kBF16, 0, -3.0f);
  EXPECT_EQ(LoadAsFloat(h16, DType::kBF16, 0), -3.0f);
}

}  // namespace
}  // namespace ragged
