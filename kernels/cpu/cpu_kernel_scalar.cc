// The CPU kernel in portable C++ (one float per "vector"): the fallback for machines without AVX2
// and for head dims that are not a multiple of 8. Built with the project's ordinary flags.
#include <algorithm>
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
  // Not std::fma: without FMA hardware (baseline x86-64) that is a slow library call.
  static V Fma(V a, V b, V c) { return a * b + c; }
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

int64_t ScratchFloats(int64_t group, int64_t num_kv_heads, int64_t head_dim) {
  // logits, q32, tile, comp, l_comp, then two stages of keys and values (cpu_kernel_impl.h), for
  // the larger of the 2- and 4-byte elements.
  const int64_t heads = group * num_kv_heads;
  int64_t stage = 0;
  for (int64_t bytes : {2, 4}) {
    const int64_t elems = RoundUp(
        num_kv_heads * ChunkTokens(num_kv_heads, head_dim, bytes) * head_dim, 2 * kMaxWidth);
    stage = std::max(stage, 4 * elems * bytes / 4);
  }
  return RoundUp(group * kChunk, kMaxWidth) + 2 * RoundUp(heads * head_dim, kMaxWidth) +
         kMaxWidth * head_dim + RoundUp(heads, kMaxWidth) + stage;
}

PieceFn ScalarPieceFn(Elem elem, int64_t head_dim) { return SelectPiece<ScalarOps, false>(elem); }

}  // namespace ragged::internal::cpu
