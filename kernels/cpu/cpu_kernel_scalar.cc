// The CPU kernel in portable C++ (one float per "vector"): the fallback for machines without AVX2
// and for head dims that are not a multiple of 8. Built with the project's ordinary flags.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/cpu_kernel.h"
#include "runtime/dtype.h"

namespace ragged::internal::cpu {
namespace {

struct ScalarOps {
  static constexpr int kW = 1;
  using V = float;

  static V Zero() { return 0.0f; }
  static V Set1(float x) { return x; }
  static V Load(const float* p) { return *p; }
  static void Store(float* p, V x) { *p = x; }
  static V Fma(V a, V b, V c) { return std::fma(a, b, c); }
  static V Mul(V a, V b) { return a * b; }
  static V Add(V a, V b) { return a + b; }
  static V Sub(V a, V b) { return a - b; }
  static V Max(V a, V b) { return a > b ? a : b; }
  static float HMax(V x) { return x; }
  static float HSum(V x) { return x; }
  static V LoadF16(const uint16_t* p) { return HalfToFloat(*p); }
  static V LoadBf16(const uint16_t* p) { return BFloat16ToFloat(*p); }
  static V Exp(V x) { return std::exp(x); }
  static V SoftCap(V x, float cap, float inv_cap) { return cap * std::tanh(x * inv_cap); }
  static V TransposeReduce(const V (&v)[1]) { return v[0]; }
  static constexpr int PvChunks(int gh) { return gh >= 8 ? 1 : (gh >= 4 ? 2 : 4); }
};

}  // namespace
}  // namespace ragged::internal::cpu

// Instantiated over the Ops above.
#include "kernels/cpu/cpu_kernel_impl.h"

namespace ragged::internal::cpu {

int64_t ScratchFloats(int64_t group, int64_t head_dim) {
  // logits, q32, tile, comp, l_comp (cpu_kernel_impl.h).
  return RoundUp(group * kChunk, kMaxWidth) + 2 * RoundUp(group * head_dim, kMaxWidth) +
         kMaxWidth * head_dim + RoundUp(group, kMaxWidth);
}

PieceFn ScalarPieceFn(Elem elem, int64_t head_dim) { return SelectPiece<ScalarOps, false>(elem); }

}  // namespace ragged::internal::cpu
