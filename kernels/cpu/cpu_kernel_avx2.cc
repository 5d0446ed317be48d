// The CPU kernel compiled for AVX2 + FMA + F16C (this file is built with -mavx2 -mfma -mf16c; the
// backend calls it only where the CPU has them). 8 floats per vector, 16 registers.
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/cpu_kernel.h"

namespace ragged::internal::cpu {
namespace {

struct Avx2Ops {
  static constexpr int kW = 8;
  using V = __m256;

  static V Zero() { return _mm256_setzero_ps(); }
  static V Set1(float x) { return _mm256_set1_ps(x); }
  static V Load(const float* p) { return _mm256_loadu_ps(p); }
  static void Store(float* p, V x) { _mm256_storeu_ps(p, x); }
  static V Fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V Mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V Add(V a, V b) { return _mm256_add_ps(a, b); }
  static V Sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V Max(V a, V b) { return _mm256_max_ps(a, b); }
  static float HMax(V x) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
  }
  static float HSum(V x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }

  static V LoadF16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static V LoadBf16(const uint16_t* p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }

  // exp(x) for x <= 0 (Cephes expf, as Avx512Ops::Exp); 0 below -87.3, NaN stays NaN.
  static V Exp(V x) {
    const V tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3365f), _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), x);
    x = _mm256_max_ps(_mm256_set1_ps(-87.3365f), x);
    const V n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    V y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // 2^n through the exponent field; n is in [-126, 127] after the clamps.
    const __m256i bits =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(tiny, _mm256_mul_ps(y, _mm256_castsi256_ps(bits)));
  }

  // cap * tanh(x * inv_cap), as Avx512Ops::SoftCap.
  static V SoftCap(V x, float cap, float inv_cap) {
    const V sign_bit = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(0x80000000u)));
    const V y = _mm256_mul_ps(x, _mm256_set1_ps(inv_cap));
    const V ay = _mm256_andnot_ps(sign_bit, y);
    const V z = _mm256_mul_ps(y, y);
    V p = _mm256_set1_ps(-5.70498872745e-3f);
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
    const V small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), y, y);
    const V e = Exp(_mm256_mul_ps(ay, _mm256_set1_ps(-2.0f)));
    V big = _mm256_div_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), e),
                          _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    big = _mm256_or_ps(big, _mm256_and_ps(y, sign_bit));
    const V is_small = _mm256_cmp_ps(ay, _mm256_set1_ps(0.625f), _CMP_LT_OQ);
    return _mm256_mul_ps(_mm256_blendv_ps(big, small, is_small), _mm256_set1_ps(cap));
  }

  // Lane t of the result = sum of the lanes of v[t]. After the tree, lane 4j + i holds the sum of
  // input slot 2i + j, so slot n is fed from v[4 (n % 2) + n / 2].
  static V TransposeReduce(const V (&v)[8]) {
    V w[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const V a = v[Src(2 * k)], b = v[Src(2 * k + 1)];
      w[k] = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
    }
    V x[2];
#pragma GCC unroll 2
    for (int k = 0; k < 2; ++k) {
      const V a = w[2 * k], b = w[2 * k + 1];
      x[k] = _mm256_add_ps(_mm256_shuffle_ps(a, b, 0x44), _mm256_shuffle_ps(a, b, 0xEE));
    }
    return _mm256_add_ps(_mm256_shuffle_ps(x[0], x[1], 0x88), _mm256_shuffle_ps(x[0], x[1], 0xDD));
  }
  static constexpr int Src(int n) { return 4 * (n % 2) + n / 2; }

  // Register tile of step 3 within 16 registers: kGh x kCc accumulators + kCc values + 1.
  static constexpr int PvChunks(int gh) { return gh >= 8 ? 1 : (gh >= 4 ? 2 : 4); }
};

}  // namespace
}  // namespace ragged::internal::cpu

// Instantiated over the Ops above.
#include "kernels/cpu/cpu_kernel_impl.h"

namespace ragged::internal::cpu {

PieceFn Avx2PieceFn(Elem elem, int64_t head_dim) {
  if (head_dim % Avx2Ops::kW != 0) return nullptr;
  return SelectPiece<Avx2Ops, false>(elem);
}

}  // namespace ragged::internal::cpu
