// FuzzInput: turns the fuzzer's bytes into the choices of a harness.
//
// Every read consumes bytes from the front; once the bytes run out, every read returns 0 (the
// first entry of every choice), so that a short input is still a complete, and mostly valid,
// description. Harnesses are written so that "all zeros" means "the plain, valid case" and every
// non-zero byte moves away from it: the fuzzer then starts from valid calls and mutates them.
// Not thread-safe; one per input.
#ifndef RAGGED_FUZZ_FUZZ_INPUT_H_
#define RAGGED_FUZZ_FUZZ_INPUT_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>

namespace ragged::fuzz {

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  size_t remaining() const { return size_ - pos_; }

  uint8_t Byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  bool Bool() { return (Byte() & 1) != 0; }
  // True with probability about 1/n (never when the bytes are exhausted).
  bool OneIn(int n) { return remaining() > 0 && Byte() % n == n - 1; }

  uint32_t U32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(Byte()) << (8 * i);
    return v;
  }
  uint64_t U64() {
    uint64_t v = U32();
    return v | (static_cast<uint64_t>(U32()) << 32);
  }
  // Uniform-ish in [lo, hi] (hi - lo < 2^32).
  int64_t IntInRange(int64_t lo, int64_t hi) {
    const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
    const uint64_t r = span <= 256 ? Byte() : U32();
    return lo + static_cast<int64_t>(r % span);
  }
  // One of `choices`; the first when the bytes are exhausted.
  template <typename T>
  T Pick(std::initializer_list<T> choices) {
    const size_t i = Byte() % choices.size();
    return *(choices.begin() + i);
  }
  float RawFloat() {
    const uint32_t bits = U32();
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace ragged::fuzz

#endif  // RAGGED_FUZZ_FUZZ_INPUT_H_
