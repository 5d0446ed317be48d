// The CPU kernel, written once over a vector-operations class `Ops` and compiled once per
// instruction set: each cpu_kernel_<isa>.cc defines its Ops in an anonymous namespace and then
// includes this header, so every instantiation has internal linkage and none can be shared across
// instruction sets (see cpu_kernel.h). Not a public header; include it nowhere else.
//
// One piece (cpu_kernel.h) is processed in chunks of kChunk positions. For each chunk:
//   1. logits: tiles of kW key rows are dotted with each query head of the group. kW accumulators
//      (one per row) are reduced together by a transposing reduction, so one vector of kW logits
//      costs a few shuffles rather than kW horizontal sums. Each key row is read from memory once;
//      the other heads of the group find it in L1. f16 (and bf16 without hardware bf16 dot
//      products) tiles are converted to f32 once per tile, for all heads.
//   2. the online softmax: per head, the chunk's max, p = exp(x - max) in place, the running sum,
//      and the rescale of the accumulator when the max grows.
//   3. acc += p * v: a register tile of kGh heads x kCc vectors of head_dim; each value row is
//      converted once per head tile and meets every head of the tile in registers.
// Work is proportional to the positions of the piece; nothing depends on the cache capacity.
//
// `Ops` provides: kW (floats per vector), V, Zero, Set1, Load, Store, Fma(a, b, c) = a * b + c,
// Mul, Max, HMax, HSum, Exp (for x <= 0, NaN propagating), SoftCap(x, cap, 1 / cap), LoadF16,
// LoadBf16 (kW elements to f32), TransposeReduce(V (&)[kW]) (lane t = sum of lanes of vector t),
// PvChunks(kGh) (the register tile width for kGh heads), and, for the bf16 dot-product path,
// DotTileBf16.
#ifndef RAGGED_KERNELS_CPU_CPU_KERNEL_IMPL_H_
#define RAGGED_KERNELS_CPU_CPU_KERNEL_IMPL_H_

#include <cstdint>
#include <type_traits>

#include "kernels/cpu/cpu_kernel.h"

namespace ragged::internal::cpu {
namespace {

// Positions per softmax chunk: the logits of a chunk stay in L1 and the value rows of a chunk
// (64 x 256 bytes for bf16, D = 128) too, so the kCc passes of step 3 re-read them from L1.
constexpr int64_t kChunk = 64;
constexpr int64_t kMaxWidth = 16;  // the widest vector, in floats

struct F32Elem {
  using T = float;
};
struct F16Elem {
  using T = uint16_t;
};
struct Bf16Elem {
  using T = uint16_t;
};

inline int64_t MinI(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

template <class Ops, class E>
inline typename Ops::V LoadAsF32(const typename E::T* p) {
  if constexpr (std::is_same_v<E, F32Elem>) {
    return Ops::Load(p);
  } else if constexpr (std::is_same_v<E, F16Elem>) {
    return Ops::LoadF16(p);
  } else {
    return Ops::LoadBf16(p);
  }
}

// Copies `bytes` (a multiple of 4) from `src` to `dst` with vector moves (bit-exact, NaN payloads
// included), or zeroes them when `src` is null.
template <class Ops>
inline void CopyRow(void* dst, const void* src, int64_t bytes) {
  constexpr int kW = Ops::kW;
  float* o = static_cast<float*>(dst);
  const float* in = static_cast<const float*>(src);
  const int64_t n = bytes / 4;
  int64_t j = 0;
  for (; j + kW <= n; j += kW) Ops::Store(o + j, in != nullptr ? Ops::Load(in + j) : Ops::Zero());
  for (; j < n; ++j) {
    if (in != nullptr) {
      __builtin_memcpy(o + j, in + j, 4);
    } else {
      o[j] = 0.0f;
    }
  }
}

// Logits of one query (f32, [head_dim]) against kW f32 rows at `k` + t * `ks`: lane t = dot(q,
// k_t).
template <class Ops>
inline typename Ops::V DotTile(const float* q, const float* k, int64_t ks, int64_t nc) {
  using V = typename Ops::V;
  constexpr int kW = Ops::kW;
  V acc[kW];
#pragma GCC unroll 16
  for (int t = 0; t < kW; ++t) acc[t] = Ops::Zero();
  for (int64_t c = 0; c < nc; ++c) {
    const V qv = Ops::Load(q + c * kW);
    const float* kc = k + c * kW;
#pragma GCC unroll 16
    for (int t = 0; t < kW; ++t) acc[t] = Ops::Fma(qv, Ops::Load(kc + t * ks), acc[t]);
  }
  return Ops::TransposeReduce(acc);
}

// acc[h, c0 + c] += sum_t p[h, t] * v[t, c0 + c] for kGh heads and kCc vectors of the row. The
// chunk's sum is formed in registers from zero and then added to acc with Kahan's compensation
// (comp), so that a row of a million positions whose later terms are tiny next to the running sum
// (a dominant early spike) loses nothing to f32 rounding.
template <class Ops, class E, int kGh, int kCc>
inline void PvTile(const float* p, const typename E::T* v, int64_t vs, int64_t n, float* acc,
                   float* comp, int64_t head_dim, int64_t c0) {
  using V = typename Ops::V;
  constexpr int kW = Ops::kW;
  V a[kGh][kCc];
#pragma GCC unroll 16
  for (int h = 0; h < kGh; ++h) {
#pragma GCC unroll 16
    for (int c = 0; c < kCc; ++c) a[h][c] = Ops::Zero();
  }
  const typename E::T* vp = v + c0 * kW;
  for (int64_t t = 0; t < n; ++t, vp += vs) {
    V x[kCc];
#pragma GCC unroll 16
    for (int c = 0; c < kCc; ++c) x[c] = LoadAsF32<Ops, E>(vp + c * kW);
#pragma GCC unroll 16
    for (int h = 0; h < kGh; ++h) {
      const V pb = Ops::Set1(p[h * kChunk + t]);
#pragma GCC unroll 16
      for (int c = 0; c < kCc; ++c) a[h][c] = Ops::Fma(pb, x[c], a[h][c]);
    }
  }
#pragma GCC unroll 16
  for (int h = 0; h < kGh; ++h) {
#pragma GCC unroll 16
    for (int c = 0; c < kCc; ++c) {
      float* sp = acc + h * head_dim + (c0 + c) * kW;
      float* cp = comp + h * head_dim + (c0 + c) * kW;
      const V sum = Ops::Load(sp);
      const V y = Ops::Sub(a[h][c], Ops::Load(cp));
      const V t = Ops::Add(sum, y);
      Ops::Store(cp, Ops::Sub(Ops::Sub(t, sum), y));
      Ops::Store(sp, t);
    }
  }
}

// Step 3 for kGh heads (p, acc and comp already advanced to the first of them).
template <class Ops, class E, int kGh>
inline void PvHeads(const float* p, const typename E::T* v, int64_t vs, int64_t n, float* acc,
                    float* comp, int64_t head_dim) {
  constexpr int kCc = Ops::PvChunks(kGh);
  const int64_t nc = head_dim / Ops::kW;
  int64_t c = 0;
  for (; c + kCc <= nc; c += kCc) PvTile<Ops, E, kGh, kCc>(p, v, vs, n, acc, comp, head_dim, c);
  for (; c < nc; ++c) PvTile<Ops, E, kGh, 1>(p, v, vs, n, acc, comp, head_dim, c);
}

template <class Ops, class E>
void PvAllHeads(const float* p, const typename E::T* v, int64_t vs, int64_t n, float* acc,
                float* comp, int64_t group, int64_t head_dim) {
  int64_t h = 0;
  for (; h + 8 <= group; h += 8) {
    PvHeads<Ops, E, 8>(p + h * kChunk, v, vs, n, acc + h * head_dim, comp + h * head_dim, head_dim);
  }
  if (h + 4 <= group) {
    PvHeads<Ops, E, 4>(p + h * kChunk, v, vs, n, acc + h * head_dim, comp + h * head_dim, head_dim);
    h += 4;
  }
  if (h + 2 <= group) {
    PvHeads<Ops, E, 2>(p + h * kChunk, v, vs, n, acc + h * head_dim, comp + h * head_dim, head_dim);
    h += 2;
  }
  if (h < group) {
    PvHeads<Ops, E, 1>(p + h * kChunk, v, vs, n, acc + h * head_dim, comp + h * head_dim, head_dim);
  }
}

// One piece (cpu_kernel.h). kDp: bf16 logits with the hardware bf16 dot product.
template <class Ops, class E, bool kDp>
void Piece(const PieceArgs& a) {
  using V = typename Ops::V;
  using T = typename E::T;
  constexpr int kW = Ops::kW;
  // f32 inputs and the bf16 dot product read the key rows as they are; the others convert.
  constexpr bool kConvertKeys = !std::is_same_v<E, F32Elem> && !kDp;
  const int64_t d = a.head_dim, group = a.group, nc = d / kW;

  float* logits = a.scratch;                                 // [group, kChunk]
  float* q32 = logits + RoundUp(group * kChunk, kMaxWidth);  // [group, d]
  float* tile = q32 + RoundUp(group * d, kMaxWidth);         // [kMaxWidth, d]
  float* comp = tile + kMaxWidth * d;                        // [group, d]: Kahan terms of acc
  float* l_comp = comp + RoundUp(group * d, kMaxWidth);      // [group]: and of l
  const T* query = static_cast<const T*>(a.query);
  if constexpr (kConvertKeys) {
    for (int64_t h = 0; h < group; ++h) {
      for (int64_t c = 0; c < nc; ++c) {
        Ops::Store(q32 + h * d + c * kW, LoadAsF32<Ops, E>(query + h * a.q_stride_h + c * kW));
      }
    }
  }
  const float neg_inf = -__builtin_inff();
  for (int64_t h = 0; h < group; ++h) {
    a.m[h] = neg_inf;
    a.l[h] = 0.0f;
    l_comp[h] = 0.0f;
    for (int64_t c = 0; c < nc; ++c) {
      Ops::Store(a.acc + h * d + c * kW, Ops::Zero());
      Ops::Store(comp + h * d + c * kW, Ops::Zero());
    }
  }
  const bool capped = a.soft_cap > 0.0f;
  const float inv_cap = capped ? 1.0f / a.soft_cap : 0.0f;
  const V scale = Ops::Set1(a.scale);

  const T* key = static_cast<const T*>(a.key);
  const T* value = static_cast<const T*>(a.value);
  // Rows of a K tile sit a whole KV-cache row apart (often a multiple of 4 KiB), so the tile's
  // lines would share a few L1 sets and evict each other between the heads that reuse them; a
  // contiguous copy keeps them all in L1. With one head there is no reuse and no copy.
  const bool copy_tiles = group > 1;
  const int64_t row_bytes = d * static_cast<int64_t>(sizeof(T));
  for (int64_t c0 = 0; c0 < a.num_tokens; c0 += kChunk) {
    const int64_t n = MinI(kChunk, a.num_tokens - c0);
    const T* kc = key + c0 * a.k_stride;

    // 1. Logits of the chunk, kW positions at a time.
    for (int64_t t0 = 0; t0 < n; t0 += kW) {
      const int64_t tn = MinI(kW, n - t0);
      // Ask for the next chunk's rows at the same offset now, so that memory works while this
      // chunk computes (the rows are far apart, which hardware prefetchers follow poorly).
      const int64_t next = c0 + kChunk + t0;
      for (int64_t t = next; t < MinI(next + kW, a.num_tokens); ++t) {
        const char* kr = reinterpret_cast<const char*>(key + t * a.k_stride);
        const char* vr = reinterpret_cast<const char*>(value + t * a.v_stride);
        for (int64_t i = 0; i < row_bytes; i += 64) {
          __builtin_prefetch(kr + i, 0, 2);
          __builtin_prefetch(vr + i, 0, 2);
        }
      }
      const T* rows = kc + t0 * a.k_stride;
      const T* src = rows;  // f32 rows (or bf16 for kDp) of this tile
      int64_t src_stride = a.k_stride;
      const float* src32 = nullptr;
      if constexpr (kConvertKeys) {
        for (int64_t t = 0; t < kW; ++t) {
          for (int64_t c = 0; c < nc; ++c) {
            Ops::Store(tile + t * d + c * kW,
                       t < tn ? LoadAsF32<Ops, E>(rows + t * a.k_stride + c * kW) : Ops::Zero());
          }
        }
        src32 = tile;
        src_stride = d;
      } else if (tn < kW || copy_tiles) {
        // Copy the rows (zeros past the chunk's end, so the full-tile code reads valid memory).
        T* copy = reinterpret_cast<T*>(tile);
        for (int64_t t = 0; t < kW; ++t) {
          CopyRow<Ops>(copy + t * d, t < tn ? rows + t * a.k_stride : nullptr, row_bytes);
        }
        src = copy;
        src_stride = d;
      }
      for (int64_t h = 0; h < group; ++h) {
        V x;
        if constexpr (kDp) {
          x = Ops::DotTileBf16(query + h * a.q_stride_h, src, src_stride, d);
        } else if constexpr (kConvertKeys) {
          x = DotTile<Ops>(q32 + h * d, src32, src_stride, nc);
        } else {
          x = DotTile<Ops>(query + h * a.q_stride_h, src, src_stride, nc);
        }
        x = Ops::Mul(x, scale);
        if (capped) x = Ops::SoftCap(x, a.soft_cap, inv_cap);
        Ops::Store(logits + h * kChunk + t0, x);
      }
    }
    // Positions past the chunk's end get -inf: no weight, and whole vectors below.
    const int64_t n_pad = RoundUp(n, kW);
    for (int64_t h = 0; h < group; ++h) {
      for (int64_t t = n; t < n_pad; ++t) logits[h * kChunk + t] = neg_inf;
    }

    // 2. Online softmax.
    for (int64_t h = 0; h < group; ++h) {
      float* x = logits + h * kChunk;
      V vmax = Ops::Load(x);
      for (int64_t t = kW; t < n_pad; t += kW) vmax = Ops::Max(vmax, Ops::Load(x + t));
      const float chunk_max = Ops::HMax(vmax);
      const float m_old = a.m[h];
      const float m_new = chunk_max > m_old ? chunk_max : m_old;
      if (m_new == neg_inf) {
        // Every logit so far is -inf or NaN (only with non-finite inputs): no weight, and no
        // -inf - -inf; a NaN logit makes l NaN, so the head's output is NaN as the spec asks.
        bool any_nan = false;
        for (int64_t t = 0; t < n; ++t) any_nan = any_nan || x[t] != x[t];
        if (any_nan) a.l[h] = __builtin_nanf("");
        for (int64_t t = 0; t < n_pad; t += kW) Ops::Store(x + t, Ops::Zero());
        continue;
      }
      const V vm = Ops::Set1(m_new);
      V vsum = Ops::Zero();
      for (int64_t t = 0; t < n_pad; t += kW) {
        const V e = Ops::Exp(Ops::Sub(Ops::Load(x + t), vm));
        Ops::Store(x + t, e);
        vsum = Ops::Add(vsum, e);
      }
      const float alpha = __builtin_expf(m_old - m_new);  // 0 when m_old = -inf
      a.m[h] = m_new;
      // l = l * alpha + sum, compensated as acc is (PvTile).
      const float l_old = a.l[h] * alpha;
      const float y = Ops::HSum(vsum) - l_comp[h] * alpha;
      const float l_new = l_old + y;
      l_comp[h] = (l_new - l_old) - y;
      a.l[h] = l_new;
      if (alpha != 1.0f) {
        const V va = Ops::Set1(alpha);
        float* acc = a.acc + h * d;
        float* cmp = comp + h * d;
        for (int64_t c = 0; c < nc; ++c) {
          Ops::Store(acc + c * kW, Ops::Mul(Ops::Load(acc + c * kW), va));
          Ops::Store(cmp + c * kW, Ops::Mul(Ops::Load(cmp + c * kW), va));
        }
      }
    }

    // 3. acc += p * v.
    PvAllHeads<Ops, E>(logits, value + c0 * a.v_stride, a.v_stride, n, a.acc, comp, group, d);
  }
}

template <class Ops, bool kDp>
PieceFn SelectPiece(Elem elem) {
  switch (elem) {
    case Elem::kF32:
      return &Piece<Ops, F32Elem, false>;
    case Elem::kF16:
      return &Piece<Ops, F16Elem, false>;
    case Elem::kBF16:
      return &Piece<Ops, Bf16Elem, kDp>;
  }
  return nullptr;
}

}  // namespace
}  // namespace ragged::internal::cpu

#endif  // RAGGED_KERNELS_CPU_CPU_KERNEL_IMPL_H_
