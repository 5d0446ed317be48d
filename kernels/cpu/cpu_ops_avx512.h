// Avx512Ops: the vector operations of cpu_kernel_impl.h on AVX-512 F/BW/VL/DQ (16 floats), and
// Avx512Bf16Ops, which adds bf16 dot products (AVX512_BF16) for the logits.
//
// Included only by cpu_kernel_avx512.cc and cpu_kernel_avx512bf16.cc, which are compiled with the
// matching -m flags; everything here has internal linkage (see cpu_kernel.h). Stateless.
#ifndef RAGGED_KERNELS_CPU_CPU_OPS_AVX512_H_
#define RAGGED_KERNELS_CPU_CPU_OPS_AVX512_H_

// GCC 12's AVX-512 headers build "undefined" vectors from themselves, which -Wall reports at every
// use (GCC bug 105593, fixed in GCC 13); the warnings are located in the header, so this silences
// them there only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <cstdint>

namespace ragged::internal::cpu {
namespace {

struct Avx512Ops {
  static constexpr int kW = 16;
  using V = __m512;

  static V Zero() { return _mm512_setzero_ps(); }
  static V Set1(float x) { return _mm512_set1_ps(x); }
  static V Load(const float* p) { return _mm512_loadu_ps(p); }
  static void Store(float* p, V x) { _mm512_storeu_ps(p, x); }
  static V Fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V Mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V Add(V a, V b) { return _mm512_add_ps(a, b); }
  static V Sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V Max(V a, V b) { return _mm512_max_ps(a, b); }
  static float HMax(V x) { return _mm512_reduce_max_ps(x); }
  static float HSum(V x) { return _mm512_reduce_add_ps(x); }

  static V LoadF16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  // bf16 is the top half of an f32: widen to 32 bits and shift into place.
  static V LoadBf16(const uint16_t* p) {
    const __m512i w =
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
  }

  // exp(x) for x <= 0 (Cephes expf: relative error about 2e-7). Below -87.3 (where the result would
  // be denormal) it returns 0; NaN stays NaN (min/max return their second operand on NaN).
  static V Exp(V x) {
    const __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3365f), _CMP_LT_OQ);
    x = _mm512_min_ps(_mm512_set1_ps(88.0f), x);
    x = _mm512_max_ps(_mm512_set1_ps(-87.3365f), x);
    const V n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    V y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_maskz_mov_ps(static_cast<__mmask16>(~tiny), _mm512_scalef_ps(y, n));
  }

  // cap * tanh(x * inv_cap) (Cephes tanhf: a polynomial below 0.625, 1 - 2 / (exp(2|y|) + 1)
  // above).
  static V SoftCap(V x, float cap, float inv_cap) {
    const V y = _mm512_mul_ps(x, _mm512_set1_ps(inv_cap));
    const V ay = _mm512_abs_ps(y);
    const V z = _mm512_mul_ps(y, y);
    V p = _mm512_set1_ps(-5.70498872745e-3f);
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.06390887954e-2f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.37397155531e-2f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.33314422036e-1f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.33332819422e-1f));
    const V small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), y, y);
    // For |y| >= 0.625, -2|y| <= -1.25 is in Exp's domain: tanh|y| = (1 - e) / (1 + e), e =
    // exp(-2|y|).
    const V e = Exp(_mm512_mul_ps(ay, _mm512_set1_ps(-2.0f)));
    V big = _mm512_div_ps(_mm512_sub_ps(_mm512_set1_ps(1.0f), e),
                          _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    // Give big the sign of y.
    big = _mm512_castsi512_ps(
        _mm512_or_si512(_mm512_castps_si512(big),
                        _mm512_and_si512(_mm512_castps_si512(y),
                                         _mm512_set1_epi32(static_cast<int>(0x80000000u)))));
    const __mmask16 is_small = _mm512_cmp_ps_mask(ay, _mm512_set1_ps(0.625f), _CMP_LT_OQ);
    return _mm512_mul_ps(_mm512_mask_blend_ps(is_small, big, small), _mm512_set1_ps(cap));
  }

  // Lane t of the result = sum of the lanes of v[t]. A tree of shuffles: after it, lane 4j + i
  // holds the sum of input slot 4i + j, so slot n is fed from v[4 (n % 4) + n / 4].
  static V TransposeReduce(const V (&v)[16]) {
    V w[8];
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      const V a = v[Src(2 * k)], b = v[Src(2 * k + 1)];
      w[k] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
    }
    V x[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const V a = w[2 * k], b = w[2 * k + 1];
      x[k] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xDD));
    }
    V y[2];
#pragma GCC unroll 2
    for (int k = 0; k < 2; ++k) {
      const V a = x[2 * k], b = x[2 * k + 1];
      y[k] = _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x44), _mm512_shuffle_ps(a, b, 0xEE));
    }
    return _mm512_add_ps(_mm512_shuffle_ps(y[0], y[1], 0x88), _mm512_shuffle_ps(y[0], y[1], 0xDD));
  }
  static constexpr int Src(int n) { return 4 * (n % 4) + n / 4; }

  // Register tile of step 3: kGh x kCc accumulators + kCc values + 1 broadcast of 32 registers.
  static constexpr int PvChunks(int gh) { return gh >= 8 ? 2 : (gh >= 4 ? 4 : 8); }
};

#if defined(__AVX512BF16__)
struct Avx512Bf16Ops : Avx512Ops {
  // Logits of one bf16 query against 16 bf16 rows: vdpbf16ps multiplies pairs of bf16 exactly
  // and accumulates in f32, 32 products per instruction. head_dim is a multiple of 16; an odd
  // half (16 elements) is loaded with the upper half zeroed.
  static V DotTileBf16(const uint16_t* q, const uint16_t* k, int64_t ks, int64_t d) {
    V acc[16];
#pragma GCC unroll 16
    for (int t = 0; t < 16; ++t) acc[t] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= d; i += 32) {
      const __m512bh qv = reinterpret_cast<__m512bh>(_mm512_loadu_si512(q + i));
      const uint16_t* kc = k + i;
#pragma GCC unroll 16
      for (int t = 0; t < 16; ++t) {
        acc[t] = _mm512_dpbf16_ps(acc[t], qv,
                                  reinterpret_cast<__m512bh>(_mm512_loadu_si512(kc + t * ks)));
      }
    }
    if (i < d) {
      const __mmask32 half = 0xFFFFu;
      const __m512bh qv = reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi16(half, q + i));
      const uint16_t* kc = k + i;
#pragma GCC unroll 16
      for (int t = 0; t < 16; ++t) {
        acc[t] = _mm512_dpbf16_ps(
            acc[t], qv, reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi16(half, kc + t * ks)));
      }
    }
    return TransposeReduce(acc);
  }
};
#endif  // __AVX512BF16__

}  // namespace
}  // namespace ragged::internal::cpu

#endif  // RAGGED_KERNELS_CPU_CPU_OPS_AVX512_H_
