// The CPU kernel, written once over a vector-operations class `Ops` and compiled once per
// instruction set: each cpu_kernel_<isa>.cc defines its Ops in an anonymous namespace and then
// includes this header, so every instantiation has internal linkage and none can be shared across
// instruction sets (see cpu_kernel.h). Not a public header; include it nowhere else.
//
// One piece (cpu_kernel.h) is processed in chunks of up to kChunk positions (ChunkTokens). Each
// chunk's key and value rows, all KV heads, are first staged (copied, head-major) into scratch by a
// Stager, whose small steps run between the steps of the previous chunk's computation and read
// the cache in address order, one chunk of prefetch ahead. Then, for each KV head in turn:
//   1. logits: tiles of kW staged key rows are dotted with each query head of the group. kW
//      accumulators (one per row) are reduced together by a transposing reduction, so one vector
//      of kW logits costs a few shuffles rather than kW horizontal sums. f16 (and bf16 without
//      hardware bf16 dot products) tiles are converted to f32 once per tile, for all heads.
//   2. the online softmax: per head, the chunk's max, p = exp(x - max) in place, the running sum,
//      and the rescale of the accumulator when the max grows.
//   3. acc += p * v: a register tile of kGh heads x kCc vectors of head_dim; each value row is
//      converted once per head tile and meets every head of the tile in registers; the chunk's sum
//      is added to acc with Kahan's compensation.
// So each key and value row is read from memory once, for all the query heads of its group.
// Work is proportional to the positions of the piece; nothing depends on the cache capacity.
// Everything here is stateless; thread-safety and ownership are those of cpu_kernel.h.
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

// The most positions per chunk (the logits buffer is sized for it).
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

// Copies `bytes` (even) from `src` to `dst` with vector moves (bit-exact, NaN payloads included),
// or zeroes them when `src` is null.
template <class Ops>
inline void CopyRow(void* dst, const void* src, int64_t bytes) {
  constexpr int kW = Ops::kW;
  if constexpr (kW == 1) {
    // Scalar code: rows of 2-byte elements need not be 4-byte aligned for a float copy.
    if (src != nullptr) {
      __builtin_memcpy(dst, src, bytes);
    } else {
      __builtin_memset(dst, 0, bytes);
    }
    return;
  }
  float* o = static_cast<float*>(dst);
  const float* in = static_cast<const float*>(src);
  const int64_t n = bytes / 4;
  int64_t j = 0;
  for (; j + kW <= n; j += kW) Ops::Store(o + j, in != nullptr ? Ops::Load(in + j) : Ops::Zero());
  for (int64_t b = j * 4; b < bytes; b += 2) {  // the rest, 2 bytes at a time
    char* ob = reinterpret_cast<char*>(dst) + b;
    if (in != nullptr) {
      __builtin_memcpy(ob, reinterpret_cast<const char*>(src) + b, 2);
    } else {
      __builtin_memset(ob, 0, 2);
    }
  }
}

// Dots of one query (f32, [head_dim]) with kW f32 rows k_t at `k` + t * `ks`: lane t = q . k_t.
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

// Copies ("stages") one chunk of key and value rows, all KV heads, into scratch laid out head-major
// ([num_kv_heads, chunk, d] each), a few row segments at a time and in address order (for each
// position: its keys, then its values). Piece() interleaves these steps with the computation on
// the previous chunk, so that memory is read as one steady sequential stream that hardware
// prefetchers run ahead of, while the arithmetic goes on. Key rows from `rows` up to `rows_pad`
// are zero (the logits code reads whole tiles).
template <class Ops, class E>
struct Stager {
  using T = typename E::T;
  const T* key = nullptr;  // position 0 of the chunk, KV head 0
  const T* value = nullptr;
  int64_t k_stride = 0, k_stride_h = 0, v_stride = 0, v_stride_h = 0;
  int64_t num_kv_heads = 0, head_dim = 0, chunk = 0, rows = 0;
  int64_t pf_rows = 0;   // rows of the chunk after this one, prefetched while this one is copied
  T* stage_k = nullptr;  // [num_kv_heads, chunk, head_dim]
  T* stage_v = nullptr;  // [num_kv_heads, chunk, head_dim]
  int64_t done = 0, total = 0;     // segments: 2 * num_kv_heads per position, to rows_pad
  int64_t quantum = 0;             // segments per Step()
  int64_t next_t = 0, next_r = 0;  // the next segment: position next_t, K of head next_r (V of
                                   // head next_r - num_kv_heads)

  void Init(int64_t rows_pad) {
    done = 0;
    total = 2 * num_kv_heads * rows_pad;
    next_t = 0;
    next_r = 0;
  }
  // Copies segments until `target` (at most total) are done.
  void StepTo(int64_t target) {
    if (target > total) target = total;
    const int64_t row_bytes = head_dim * static_cast<int64_t>(sizeof(T));
    for (; done < target; ++done) {
      if (next_t < pf_rows) {
        // The same segment one chunk later: it has a whole chunk's computation to arrive.
        const bool k = next_r < num_kv_heads;
        const int64_t g = k ? next_r : next_r - num_kv_heads;
        const char* p =
            reinterpret_cast<const char*>(k ? key + (chunk + next_t) * k_stride + g * k_stride_h
                                            : value + (chunk + next_t) * v_stride + g * v_stride_h);
        for (int64_t i = 0; i < row_bytes; i += 64) __builtin_prefetch(p + i, 0, 2);
      }
      if (next_r < num_kv_heads) {
        CopyRow<Ops>(stage_k + (next_r * chunk + next_t) * head_dim,
                     next_t < rows ? key + next_t * k_stride + next_r * k_stride_h : nullptr,
                     row_bytes);
      } else if (next_t < rows) {
        const int64_t g = next_r - num_kv_heads;
        CopyRow<Ops>(stage_v + (g * chunk + next_t) * head_dim,
                     value + next_t * v_stride + g * v_stride_h, row_bytes);
      }
      if (++next_r == 2 * num_kv_heads) {
        next_r = 0;
        ++next_t;
      }
    }
  }
  void Step() { StepTo(done + quantum); }
};

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
                    float* comp, int64_t head_dim, Stager<Ops, E>* st) {
  constexpr int kCc = Ops::PvChunks(kGh);
  const int64_t nc = head_dim / Ops::kW;
  int64_t c = 0;
  for (; c + kCc <= nc; c += kCc) {
    PvTile<Ops, E, kGh, kCc>(p, v, vs, n, acc, comp, head_dim, c);
    st->Step();
  }
  for (; c < nc; ++c) {
    PvTile<Ops, E, kGh, 1>(p, v, vs, n, acc, comp, head_dim, c);
    st->Step();
  }
}

// How many PvTile calls PvAllHeads makes (Stager steps), for a group and nc vectors per row.
template <class Ops>
int64_t PvTileCalls(int64_t group, int64_t nc) {
  auto per_tile = [nc](int gh) {
    const int64_t cc = Ops::PvChunks(gh);
    return nc / cc + nc % cc;
  };
  const int64_t g8 = group / 8, rest = group % 8;
  return g8 * per_tile(8) + (rest >= 4 ? per_tile(4) : 0) + ((rest % 4) >= 2 ? per_tile(2) : 0) +
         (rest % 2 ? per_tile(1) : 0);
}

template <class Ops, class E>
void PvAllHeads(const float* p, const typename E::T* v, int64_t vs, int64_t n, float* acc,
                float* comp, int64_t group, int64_t head_dim, Stager<Ops, E>* st) {
  int64_t h = 0;
  for (; h + 8 <= group; h += 8) {
    PvHeads<Ops, E, 8>(p + h * kChunk, v, vs, n, acc + h * head_dim, comp + h * head_dim, head_dim,
                       st);
  }
  if (h + 4 <= group) {
    PvHeads<Ops, E, 4>(p + h * kChunk, v, vs, n, acc + h * head_dim, comp + h * head_dim, head_dim,
                       st);
    h += 4;
  }
  if (h + 2 <= group) {
    PvHeads<Ops, E, 2>(p + h * kChunk, v, vs, n, acc + h * head_dim, comp + h * head_dim, head_dim,
                       st);
    h += 2;
  }
  if (h < group) {
    PvHeads<Ops, E, 1>(p + h * kChunk, v, vs, n, acc + h * head_dim, comp + h * head_dim, head_dim,
                       st);
  }
}

// Positions per chunk: kChunk, or fewer (a multiple of kMaxWidth, at least kMaxWidth) so that the
// key and value rows of a chunk, all KV heads, stay within about 128 KiB: two staged chunks and
// one being prefetched fit in L2.
inline int64_t ChunkTokens(int64_t num_kv_heads, int64_t head_dim, int64_t elem_bytes) {
  const int64_t row = 2 * num_kv_heads * head_dim * elem_bytes;  // one position's K and V
  int64_t n = (int64_t{128} << 10) / row / kMaxWidth * kMaxWidth;
  return n < kMaxWidth ? kMaxWidth : (n > kChunk ? kChunk : n);
}

// Step 1: logits[h, t] for one KV head's query heads (`query` [group, d] at q_stride_h, or
// `q32` [group, d] in f32 where converted) and the chunk's staged keys (`keys` [n_pad, d]
// contiguous, zero past n), scaled and capped; positions past n up to a multiple of kW get -inf.
template <class Ops, class E, bool kDp>
void ChunkLogits(const PieceArgs& a, const typename E::T* query, const float* q32,
                 const typename E::T* keys, int64_t n, float* logits, float* tile,
                 Stager<Ops, E>* st) {
  using V = typename Ops::V;
  constexpr int kW = Ops::kW;
  // f32 inputs and the bf16 dot product read the staged rows as they are; the others convert
  // each tile once, for all the heads of the group.
  constexpr bool kConvertKeys = !std::is_same_v<E, F32Elem> && !kDp;
  const int64_t d = a.head_dim, nc = d / kW, group = a.group;
  const bool capped = a.soft_cap > 0.0f;
  const float inv_cap = capped ? 1.0f / a.soft_cap : 0.0f;
  const V scale = Ops::Set1(a.scale);
  for (int64_t t0 = 0; t0 < n; t0 += kW) {
    const typename E::T* rows = keys + t0 * d;
    if constexpr (kConvertKeys) {
      for (int64_t i = 0; i < kW * nc; ++i) {
        Ops::Store(tile + i * kW, LoadAsF32<Ops, E>(rows + i * kW));
      }
    }
    for (int64_t h = 0; h < group; ++h) {
      V x;
      if constexpr (kDp) {
        x = Ops::DotTileBf16(query + h * a.q_stride_h, rows, d, d);
      } else if constexpr (kConvertKeys) {
        x = DotTile<Ops>(q32 + h * d, tile, d, nc);
      } else {
        x = DotTile<Ops>(query + h * a.q_stride_h, rows, d, nc);
      }
      x = Ops::Mul(x, scale);
      if (capped) x = Ops::SoftCap(x, a.soft_cap, inv_cap);
      Ops::Store(logits + h * kChunk + t0, x);
      st->Step();
    }
  }
  const float neg_inf = -__builtin_inff();
  for (int64_t h = 0; h < group; ++h) {
    for (int64_t t = n; t < RoundUp(n, kW); ++t) logits[h * kChunk + t] = neg_inf;
  }
}

// Step 2, the online softmax, for the group's heads: logits become p = exp(x - m) in place; m, l
// (with its Kahan term l_comp), acc and comp [group, d] are updated.
template <class Ops>
void ChunkSoftmax(int64_t n, int64_t group, int64_t d, float* logits, float* m, float* l,
                  float* l_comp, float* acc, float* comp) {
  using V = typename Ops::V;
  constexpr int kW = Ops::kW;
  const int64_t n_pad = RoundUp(n, kW), nc = d / kW;
  const float neg_inf = -__builtin_inff();
  for (int64_t h = 0; h < group; ++h) {
    float* x = logits + h * kChunk;
    V vmax = Ops::Load(x);
    for (int64_t t = kW; t < n_pad; t += kW) vmax = Ops::Max(vmax, Ops::Load(x + t));
    const float chunk_max = Ops::HMax(vmax);
    const float m_old = m[h];
    const float m_new = chunk_max > m_old ? chunk_max : m_old;
    if (m_new == neg_inf) {
      // Every logit so far is -inf or NaN (only with non-finite inputs): no weight, and no
      // -inf - -inf; a NaN logit makes l NaN, so the head's output is NaN as the spec asks.
      bool any_nan = false;
      for (int64_t t = 0; t < n; ++t) any_nan = any_nan || x[t] != x[t];
      if (any_nan) l[h] = __builtin_nanf("");
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
    m[h] = m_new;
    // l = l * alpha + sum, compensated as acc is (PvTile).
    const float l_old = l[h] * alpha;
    const float y = Ops::HSum(vsum) - l_comp[h] * alpha;
    const float l_new = l_old + y;
    l_comp[h] = (l_new - l_old) - y;
    l[h] = l_new;
    if (alpha != 1.0f) {
      const V va = Ops::Set1(alpha);
      for (int64_t c = 0; c < nc; ++c) {
        float* ap = acc + h * d + c * kW;
        float* cp = comp + h * d + c * kW;
        Ops::Store(ap, Ops::Mul(Ops::Load(ap), va));
        Ops::Store(cp, Ops::Mul(Ops::Load(cp), va));
      }
    }
  }
}

// One piece (cpu_kernel.h). kDp: bf16 logits with the hardware bf16 dot product.
//
// Memory: the chunks are staged (Stager) into two scratch buffers in turn: while one chunk
// computes, the next is copied in small steps between the computation's own steps, reading the
// cache in whole rows in address order. The computation reads only the staged copy (L2/L1):
// contiguous rows, no cache-set conflicts between the rows of a tile, and each key and value row
// read once for all the query heads of its group.
template <class Ops, class E, bool kDp>
void Piece(const PieceArgs& a) {
  using T = typename E::T;
  constexpr int kW = Ops::kW;
  constexpr bool kConvertQuery = !std::is_same_v<E, F32Elem> && !kDp;
  const int64_t d = a.head_dim, group = a.group, hkv = a.num_kv_heads, heads = group * hkv;
  const int64_t nc = d / kW;
  const int64_t chunk = ChunkTokens(hkv, d, sizeof(T));

  float* logits = a.scratch;                                 // [group, kChunk]
  float* q32 = logits + RoundUp(group * kChunk, kMaxWidth);  // [heads, d]
  float* tile = q32 + RoundUp(heads * d, kMaxWidth);         // [kMaxWidth, d]
  float* comp = tile + kMaxWidth * d;                        // [heads, d]: Kahan terms of acc
  float* l_comp = comp + RoundUp(heads * d, kMaxWidth);      // [heads]: and of l
  // Two stages, each keys then values, [hkv, chunk, d] in T.
  T* stages = reinterpret_cast<T*>(l_comp + RoundUp(heads, kMaxWidth));
  const int64_t stage_elems = RoundUp(hkv * chunk * d, 2 * kMaxWidth);
  const T* query = static_cast<const T*>(a.query);
  if constexpr (kConvertQuery) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t c = 0; c < nc; ++c) {
        Ops::Store(q32 + h * d + c * kW, LoadAsF32<Ops, E>(query + h * a.q_stride_h + c * kW));
      }
    }
  }
  for (int64_t h = 0; h < heads; ++h) {
    a.m[h] = -__builtin_inff();
    a.l[h] = 0.0f;
    l_comp[h] = 0.0f;
    for (int64_t c = 0; c < nc; ++c) {
      Ops::Store(a.acc + h * d + c * kW, Ops::Zero());
      Ops::Store(comp + h * d + c * kW, Ops::Zero());
    }
  }

  Stager<Ops, E> st;
  st.k_stride = a.k_stride;
  st.k_stride_h = a.k_stride_h;
  st.v_stride = a.v_stride;
  st.v_stride_h = a.v_stride_h;
  st.num_kv_heads = hkv;
  st.head_dim = d;
  st.chunk = chunk;
  auto start_stage = [&](int64_t c0, int64_t buffer) {
    st.rows = c0 < a.num_tokens ? MinI(chunk, a.num_tokens - c0) : 0;
    st.key = st.rows > 0 ? static_cast<const T*>(a.key) + c0 * a.k_stride : nullptr;
    st.value = st.rows > 0 ? static_cast<const T*>(a.value) + c0 * a.v_stride : nullptr;
    st.pf_rows = c0 + chunk < a.num_tokens ? MinI(chunk, a.num_tokens - c0 - chunk) : 0;
    st.stage_k = stages + 2 * buffer * stage_elems;
    st.stage_v = st.stage_k + stage_elems;
    st.Init(RoundUp(st.rows, kMaxWidth));
  };
  start_stage(0, 0);
  st.StepTo(st.total);  // the first chunk has nothing to overlap with
  // Steps per KV head of the computation: one per (tile, head) of the logits and per PvTile.
  const int64_t steps_per_head = RoundUp(chunk, kW) / kW * group + PvTileCalls<Ops>(group, nc);
  for (int64_t c0 = 0, buffer = 0; c0 < a.num_tokens; c0 += chunk, buffer ^= 1) {
    const int64_t n = MinI(chunk, a.num_tokens - c0);
    const T* stage_k = stages + 2 * buffer * stage_elems;
    const T* stage_v = stage_k + stage_elems;
    start_stage(c0 + chunk, buffer ^ 1);  // the next chunk, copied while this one computes
    const int64_t per_head = (st.total + hkv - 1) / hkv;
    st.quantum = (per_head + steps_per_head - 1) / steps_per_head;
    for (int64_t g = 0; g < hkv; ++g) {
      const int64_t h0 = g * group;  // the group's first query head
      ChunkLogits<Ops, E, kDp>(a, query + h0 * a.q_stride_h, q32 + h0 * d, stage_k + g * chunk * d,
                               n, logits, tile, &st);
      ChunkSoftmax<Ops>(n, group, d, logits, a.m + h0, a.l + h0, l_comp + h0, a.acc + h0 * d,
                        comp + h0 * d);
      PvAllHeads<Ops, E>(logits, stage_v + g * chunk * d, d, n, a.acc + h0 * d, comp + h0 * d,
                         group, d, &st);
      st.StepTo(per_head * (g + 1));
    }
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
