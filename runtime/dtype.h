// DType: the element types the library handles, and host-side conversions between them.
//
// f16 and bf16 are stored as raw 16-bit patterns (uint16_t) on the host; conversions round to
// nearest even and keep NaN and infinity. All functions are pure and thread-safe.
#ifndef RAGGED_RUNTIME_DTYPE_H_
#define RAGGED_RUNTIME_DTYPE_H_

#include <cstdint>
#include <cstring>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ragged {

enum class DType : uint8_t { kF32 = 0, kF16 = 1, kBF16 = 2, kI32 = 3 };

// Bytes per element.
constexpr int64_t DTypeSize(DType t) { return t == DType::kF16 || t == DType::kBF16 ? 2 : 4; }
// "f32", "f16", "bf16", "i32".
absl::string_view DTypeName(DType t);
// Parses the names above (also "float32", "float16", "bfloat16", "int32"); InvalidArgument
// otherwise.
absl::StatusOr<DType> ParseDType(absl::string_view name);
// True for f32, f16 and bf16.
constexpr bool IsFloating(DType t) { return t != DType::kI32; }

inline float BitsToFloat(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline uint32_t FloatToBits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return bits;
}

// bfloat16 is the top half of an f32.
inline float BFloat16ToFloat(uint16_t h) { return BitsToFloat(static_cast<uint32_t>(h) << 16); }
inline uint16_t FloatToBFloat16(float f) {
  uint32_t bits = FloatToBits(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((bits >> 16) | 0x40u);  // NaN
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

// IEEE 754 binary16.
float HalfToFloat(uint16_t h);
uint16_t FloatToHalf(float f);

// Reads element `i` of a floating-point buffer of type `t` as float (i32 is converted too).
inline float LoadAsFloat(const void* data, DType t, int64_t i) {
  switch (t) {
    case DType::kF32:
      return static_cast<const float*>(data)[i];
    case DType::kF16:
      return HalfToFloat(static_cast<const uint16_t*>(data)[i]);
    case DType::kBF16:
      return BFloat16ToFloat(static_cast<const uint16_t*>(data)[i]);
    case DType::kI32:
      return static_cast<float>(static_cast<const int32_t*>(data)[i]);
  }
  return 0.0f;
}
// Writes `v` to element `i`, rounding to the type.
inline void StoreFromFloat(void* data, DType t, int64_t i, float v) {
  switch (t) {
    case DType::kF32:
      static_cast<float*>(data)[i] = v;
      return;
    case DType::kF16:
      static_cast<uint16_t*>(data)[i] = FloatToHalf(v);
      return;
    case DType::kBF16:
      static_cast<uint16_t*>(data)[i] = FloatToBFloat16(v);
      return;
    case DType::kI32:
      static_cast<int32_t*>(data)[i] = static_cast<int32_t>(v);
      return;
  }
}

}  // namespace ragged

#endif  // RAGGED_RUNTIME_DTYPE_H_
