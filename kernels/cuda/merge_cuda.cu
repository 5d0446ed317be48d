// The combine kernel of the decode (instantiated here) and MergePartials on CUDA.
#include <cuda_runtime.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cta_trace.h"
#include "kernels/cuda/decode_kernel.cuh"
#include "kernels/cuda/decode_launch.h"
#include "kernels/cuda/decode_params.h"
#include "kernels/cuda/merge_cuda.h"
#include "runtime/status.h"

namespace ragged::internal {
namespace cuda {

// ---------------------------------------------------------------------------------------------
// The combine kernel: one CTA per (row, KV head) pair. Writes empty rows (zeros, lse of the sinks
// or -inf) and merges the partials of pairs split over several CTAs, in CTA order.

// The sinks' row of aux for query head h of KV head g, and their maximum (-inf without sinks).
template <typename Params>
__device__ __forceinline__ void SinkStats(const Params& p, int64_t g, int64_t h, float* max_out,
                                          int64_t* row_out) {
  int64_t arow = 0;
  if (p.sink_layout == kSinkPerKvHead) arow = g;
  if (p.sink_layout == kSinkPerQHead) arow = h;
  float mx = -INFINITY;
  for (int j = 0; j < p.num_sinks; ++j) {
    mx = fmaxf(mx, LoadElem(p.aux, arow * p.aux_stride_row + j * p.aux_stride_sink, p.aux_elem));
  }
  *max_out = mx;
  *row_out = arow;
}

// denom + the sum over the sinks of aux row `arow` of exp(sink - t), added in sink order.
template <typename Params>
__device__ __forceinline__ float AddSinks(const Params& p, int64_t arow, float t, float denom) {
  for (int j = 0; j < p.num_sinks; ++j) {
    denom += expf(LoadElem(p.aux, arow * p.aux_stride_row + j * p.aux_stride_sink, p.aux_elem) - t);
  }
  return denom;
}

// The pieces of pair (b, g): the CTAs c0..c1 whose shares hold its tiles (partials in slots
// pair + c); none (c0 > c1) for a row without valid positions. Not `split` when one CTA holds the
// whole pair: the decode kernel wrote its output. Computed by one warp (every lane gets the result)
// from start/end as ComputeSchedule counts them, which a combine kernel may read before its
// griddepcontrol.wait: the decode kernel does not write them, and they were final when it let the
// combine launch (after its own griddepcontrol.wait for the stream's previous kernel). So the round
// trip to memory is off the critical path, and a pair held whole leaves at once.
struct Pieces {
  int64_t c0, c1;
  bool split;
};
__device__ __forceinline__ Pieces PairPieces(const DecodeParams& p, int64_t b, int64_t g,
                                             int lane) {
  int64_t total = 0, before = 0, tiles = 0, lo = INT64_MAX, hi = 0;
  for (int64_t row = lane; row < p.batch; row += 32) {
    const RowInfo ri = LoadRowInfo(p, row);
    const int64_t t = (ri.len + p.block_n - 1) / p.block_n;
    total += t;
    lo = min(lo, t);
    hi = max(hi, t);
    if (row < b) before += t;
    if (row == b) tiles = t;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    total += __shfl_xor_sync(0xffffffffu, total, o);
    before += __shfl_xor_sync(0xffffffffu, before, o);
    tiles += __shfl_xor_sync(0xffffffffu, tiles, o);
    lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, o));
    hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, o));
  }
  if (tiles == 0) return Pieces{0, -1, true};
  const int64_t hkv = p.num_kv_heads;
  total *= hkv;
  const int64_t active = ActiveCtas(p, total, lo == hi ? hi : 0);  // as ComputeSchedule
  const int64_t f0 = before * hkv + g * tiles;
  Pieces c;
  c.c0 = CtaOfTile(f0, total, active);
  c.c1 = CtaOfTile(f0 + tiles - 1, total, active);
  c.split = c.c0 != c.c1;
  return c;
}

// One CTA of 4 warps per (row, KV head, query head of the group), for pairs of many pieces
// (S_full: ~34). Its time is a chain of memory round trips, kept short: the pieces are known
// before griddepcontrol.wait (PairPieces); after it, each warp issues the loads of its first
// pieces' partial O (up to kBatch) together with those of all pieces' lse, reduces the lse itself
// (no barrier), then accumulates. Warp w takes pieces w, w + 4, ... in order (float4 per lane) and
// the four warp sums are added in a fixed order: deterministic.
__global__ void __launch_bounds__(128) CombineKernel(const __grid_constant__ DecodeParams p) {
  constexpr int kBatch = 8;
  __shared__ float4 s_acc[4][64];  // [warp][head_dim / 4]
  TraceScope trace(kTraceCombine, blockIdx.x);
  const int G = p.group_size;
  const int64_t pair = blockIdx.x / G;
  const int r = static_cast<int>(blockIdx.x % G);
  const int64_t b = pair / p.num_kv_heads, g = pair % p.num_kv_heads;
  const int64_t h = g * G + r;
  const int kD = p.head_dim;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const Pieces pc = PairPieces(p, b, g, lane);
  if (!pc.split) return;  // the same in every warp
  const int64_t c0 = pc.c0, c1 = pc.c1;
  // The decode kernel's partials are read only past this wait; the next decode call may be
  // scheduled once every CTA is past it.
  WaitForPreviousGridThenReleaseNext();
  trace.Mark(2);
  const int64_t n = c1 - c0 + 1;  // pieces (0 for a row without valid positions)
  const int64_t slot0 = pair + c0;
  const int d4 = kD / 4;
  const float* lse_of = p.part_lse + r;  // piece i: lse_of[(slot0 + i) * G]
  auto o_of = [&](int64_t i, int j) {
    return reinterpret_cast<const float4*>(p.part_o + ((slot0 + i) * G + r) * kD)[j];
  };
  // This warp's first pieces (column `lane`), issued before the lse reduction needs them.
  float4 ov[kBatch];
  float lv[kBatch];
#pragma unroll
  for (int k = 0; k < kBatch; ++k) {
    const int64_t i = warp + 4 * k;
    if (i < n && lane < d4) {
      ov[k] = o_of(i, lane);
      lv[k] = lse_of[(slot0 + i) * G];
    }
  }
  float smax;
  int64_t arow;
  SinkStats(p, g, h, &smax, &arow);
  const float l0 = lane < n ? lse_of[(slot0 + lane) * G] : -INFINITY;
  float mx = l0;
  for (int64_t i = lane + 32; i < n; i += 32) mx = fmaxf(mx, lse_of[(slot0 + i) * G]);
  mx = WarpMax(mx);
  const float top = fmaxf(mx, smax);
  const float tu = top == -INFINITY ? 0.0f : top;
  float denom = lane < n ? expf(l0 - tu) : 0.0f;
  for (int64_t i = lane + 32; i < n; i += 32) denom += expf(lse_of[(slot0 + i) * G] - tu);
  denom = WarpSum(denom);
  denom = AddSinks(p, arow, tu, denom);
  for (int j = lane; j < d4; j += 32) {
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int64_t i0 = warp; i0 < n; i0 += 4 * kBatch) {
      if (i0 != warp || j != lane) {  // the first batch of the first column is in flight already
#pragma unroll
        for (int k = 0; k < kBatch; ++k) {
          const int64_t i = i0 + 4 * k;
          if (i < n) {
            ov[k] = o_of(i, j);
            lv[k] = lse_of[(slot0 + i) * G];
          }
        }
      }
#pragma unroll
      for (int k = 0; k < kBatch; ++k) {
        if (i0 + 4 * k < n) {
          Fma4(expf(lv[k] - tu), ov[k], acc);
        }
      }
    }
    s_acc[warp][j] = acc;
  }
  if (warp == 0 && lane == 0 && p.lse != nullptr) {
    p.lse[b * p.lse_stride_b + h * p.lse_stride_h] =
        (denom > 0.0f || denom != denom) ? tu + logf(denom) : -INFINITY;
  }
  __syncthreads();
  const float factor = (n > 0 && denom > 0.0f) ? 1.0f / denom : 0.0f;
  for (int d = threadIdx.x; d < kD; d += blockDim.x) {
    float v = 0.0f;
    for (int w = 0; w < 4; ++w) v += reinterpret_cast<const float*>(s_acc[w])[d];
    StoreElem(p.out, b * p.o_stride_b + h * p.o_stride_h + d, v * factor, p.out_elem);
  }
}

// ---------------------------------------------------------------------------------------------
// The combine for batches of many more (row, KV head) pairs than persistent CTAs, where most
// pairs are whole in one CTA's share and the one-CTA-per-(row, query head) combine above would
// launch mostly idle CTAs (M_ragged: 8,192 of them). A pair is split exactly when some CTA's
// share starts inside it; the decode kernel records that pair and the CTA holding its last tile
// in cta_split[k]. Grid (num_ctas, ceil(group_size / 4)), 4 warps: CTA (k, y) merges the pair
// when k is the first CTA starting inside it (cta_split[k - 1] names another pair), warp w taking
// query head 4 y + w; it also writes that head of the rows k, k + num_ctas, ... that have no
// valid positions. At most 48 registers and no shared memory, so that a CTA fits beside two of the
// decode kernel's on an SM and waits there for it to finish.

// Merges query head r of a split pair (b, g) over its pieces [c0, c1] (CTA numbers; slot
// pair + c) with one warp: lanes over the float4 columns, the pieces in CTA order with their
// weights broadcast by shuffles. Deterministic. The partial O of the first kPre pieces is loaded
// before the lse: one memory round trip fewer for pairs of at most kPre pieces (8 float4 registers
// per piece), the same order of accumulation.
template <int kPre>
__device__ __forceinline__ void MergeHeadWarp(const DecodeParams& p, int64_t b, int64_t g, int r,
                                              int64_t pair, int64_t c0, int64_t c1, int lane) {
  const int G = p.group_size;
  const int64_t h = g * G + r;
  const int d4 = p.head_dim / 4;
  const int64_t n = c1 - c0 + 1;
  const int64_t slot0 = pair + c0;
  auto piece_o = [&](int64_t i) {
    return reinterpret_cast<const float4*>(p.part_o + ((slot0 + i) * G + r) * p.head_dim);
  };
  float4 pre[kPre > 0 ? kPre : 1][2];
#pragma unroll
  for (int j = 0; j < kPre; ++j) {
#pragma unroll
    for (int q = 0; q < 2; ++q) {
      if (j < n && lane + 32 * q < d4) pre[j][q] = piece_o(j)[lane + 32 * q];
    }
  }
  float smax;
  int64_t arow;
  SinkStats(p, g, h, &smax, &arow);
  const float l0 = lane < n ? p.part_lse[(slot0 + lane) * G + r] : -INFINITY;
  float mx = l0;
  for (int64_t i = lane + 32; i < n; i += 32) mx = fmaxf(mx, p.part_lse[(slot0 + i) * G + r]);
  mx = WarpMax(mx);
  const float top = fmaxf(mx, smax);
  const float tu = top == -INFINITY ? 0.0f : top;
  float4 acc[2] = {make_float4(0.f, 0.f, 0.f, 0.f), make_float4(0.f, 0.f, 0.f, 0.f)};
  float denom = 0.0f;
  for (int64_t base = 0; base < n; base += 32) {
    const int64_t i = base + lane;
    const float li = base == 0 ? l0 : (i < n ? p.part_lse[(slot0 + i) * G + r] : -INFINITY);
    const float w = i < n ? expf(li - tu) : 0.0f;
    denom += w;
    const int cnt = n - base < 32 ? static_cast<int>(n - base) : 32;
    int j0 = 0;
    if (base == 0) {
#pragma unroll
      for (int j = 0; j < kPre; ++j) {
        if (j < cnt) {
          const float wj = __shfl_sync(0xffffffffu, w, j);
#pragma unroll
          for (int q = 0; q < 2; ++q) {
            if (lane + 32 * q < d4) Fma4(wj, pre[j][q], acc[q]);
          }
        }
      }
      j0 = kPre;
    }
#pragma unroll 2
    for (int j = j0; j < cnt; ++j) {
      const float wj = __shfl_sync(0xffffffffu, w, j);
      const float4* po = piece_o(base + j);
#pragma unroll
      for (int q = 0; q < 2; ++q) {
        const int idx = lane + 32 * q;
        if (idx < d4) Fma4(wj, po[idx], acc[q]);
      }
    }
  }
  denom = WarpSum(denom);
  denom = AddSinks(p, arow, tu, denom);
  const float factor = denom > 0.0f ? 1.0f / denom : 0.0f;
  if (lane == 0 && p.lse != nullptr) {
    p.lse[b * p.lse_stride_b + h * p.lse_stride_h] =
        (denom > 0.0f || denom != denom) ? tu + logf(denom) : -INFINITY;
  }
#pragma unroll
  for (int q = 0; q < 2; ++q) {
    const int idx = lane + 32 * q;
    if (idx < d4) {
      const int64_t o = b * p.o_stride_b + h * p.o_stride_h + 4 * idx;
      StoreElem(p.out, o, acc[q].x * factor, p.out_elem);
      StoreElem(p.out, o + 1, acc[q].y * factor, p.out_elem);
      StoreElem(p.out, o + 2, acc[q].z * factor, p.out_elem);
      StoreElem(p.out, o + 3, acc[q].w * factor, p.out_elem);
    }
  }
}

// The lse of the sinks alone for query head h of KV head g (-inf without sinks): the lse of a
// row without valid positions.
__device__ __forceinline__ float EmptyLse(const DecodeParams& p, int64_t g, int64_t h) {
  float smax;
  int64_t arow;
  SinkStats(p, g, h, &smax, &arow);
  if (p.num_sinks == 0) return -INFINITY;
  const float tu = smax == -INFINITY ? 0.0f : smax;
  const float denom = AddSinks(p, arow, tu, 0.0f);
  return (denom > 0.0f || denom != denom) ? tu + logf(denom) : -INFINITY;
}

// One warp per (row, query head), four per CTA, for pairs of few pieces (the host picks it when
// num_ctas / pairs + 2 <= 8): CombineKernel's CTA per query head would launch batch x HQ CTAs
// (MQA: 4,096, in two waves on an H100, 13 us of a 125 us call).
// kPre: pieces whose partial O is loaded before the lse (MergeHeadWarp); the host uses 4 where the
// grid fits the GPU in one wave, else 0 (fewer registers: MQA's 4,096 warps in one wave).
template <int kPre>
__global__ void __launch_bounds__(128) CombineWarpKernel(const __grid_constant__ DecodeParams p) {
  TraceScope trace(kTraceCombine, blockIdx.x);
  const int G = p.group_size;
  const int64_t hkv = p.num_kv_heads;
  const int64_t heads = hkv * G;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * 4 + (threadIdx.x >> 5);
  if (idx >= p.batch * heads) return;
  const int64_t b = idx / heads, h = idx % heads;
  const int64_t g = h / G;
  const int r = static_cast<int>(h % G);
  const int64_t pair = b * hkv + g;
  const int lane = threadIdx.x & 31;
  const Pieces pc = PairPieces(p, b, g, lane);
  if (!pc.split) return;                 // written by the decode kernel
  WaitForPreviousGridThenReleaseNext();  // as in CombineKernel
  trace.Mark(2);
  MergeHeadWarp<kPre>(p, b, g, r, pair, pc.c0, pc.c1, lane);
}

__global__ void __launch_bounds__(128, 10)
    CombineSplitKernel(const __grid_constant__ DecodeParams p) {
  TraceScope trace(kTraceCombine, blockIdx.y * static_cast<int64_t>(gridDim.x) + blockIdx.x);
  WaitForPreviousGridThenReleaseNext();  // as in CombineKernel
  trace.Mark(2);
  const int G = p.group_size;
  const int64_t hkv = p.num_kv_heads;
  const int lane = threadIdx.x & 31;
  const int k = static_cast<int>(blockIdx.x);
  const int y = static_cast<int>(blockIdx.y);
  // Issued together: this CTA's split record, the previous one, and the first row to check for
  // emptiness.
  const int2 split = p.cta_split[k];
  const int32_t prev = k > 0 ? p.cta_split[k - 1].x : -1;
  const bool first_empty = k < p.batch && p.row_prefix[k + 1] == p.row_prefix[k];
  const int r = y * 4 + static_cast<int>(threadIdx.x >> 5);
  if (r >= G) return;
  if (split.x >= 0 && split.x != prev) {
    const int64_t pair = split.x;
    MergeHeadWarp<0>(p, pair / hkv, pair % hkv, r, pair, k - 1, split.y, lane);
  }
  // Rows k, k + num_ctas, ... without valid positions: this warp's query head of every KV head
  // gets zeros and the lse of the sinks alone.
  for (int64_t b = k; b < p.batch; b += gridDim.x) {
    if (b == k ? !first_empty : p.row_prefix[b + 1] != p.row_prefix[b]) continue;
    for (int64_t g = 0; g < hkv; ++g) {
      const int64_t h = g * G + r;
      for (int d = lane; d < p.head_dim; d += 32) {
        StoreElem(p.out, b * p.o_stride_b + h * p.o_stride_h + d, 0.0f, p.out_elem);
      }
      if (lane == 0 && p.lse != nullptr) {
        p.lse[b * p.lse_stride_b + h * p.lse_stride_h] = EmptyLse(p, g, h);
      }
    }
  }
}

namespace {

// One CTA per (row, head): the exact LSE merge of SPEC.md section 1, in the same order and with
// the same special cases as the host merge (kernels/merge.cc), in f32.
__global__ void __launch_bounds__(128) MergeKernel(const __grid_constant__ MergeParams p) {
  __shared__ float s_top, s_factor;
  __shared__ int s_any;
  const int64_t b = blockIdx.x / p.heads, h = blockIdx.x % p.heads;
  if (threadIdx.x == 0) {
    float mx = -INFINITY;
    bool nan = false;
    for (int i = 0; i < p.parts; ++i) {
      const float l = p.part_lse[i * p.pl_stride_p + b * p.pl_stride_b + h * p.pl_stride_h];
      if (l != l) nan = true;
      mx = fmaxf(mx, l);
    }
    float smax;
    int64_t arow;
    SinkStats(p, h / p.group_size, h, &smax, &arow);
    const float top = nan ? NAN : fmaxf(mx, smax);
    float denom = 0.0f;
    if (mx != -INFINITY || nan) {
      for (int i = 0; i < p.parts; ++i) {
        const float l = p.part_lse[i * p.pl_stride_p + b * p.pl_stride_b + h * p.pl_stride_h];
        if (l == -INFINITY) continue;
        denom += expf(l - top);
      }
    }
    denom = AddSinks(p, arow, top, denom);
    s_top = top;
    s_any = (mx != -INFINITY || nan) ? 1 : 0;
    s_factor = 1.0f / denom;
    if (p.lse != nullptr) {
      p.lse[b * p.lse_stride_b + h * p.lse_stride_h] =
          (denom > 0.0f || denom != denom) ? top + logf(denom) : -INFINITY;
    }
  }
  __syncthreads();
  const float top = s_top, factor = s_factor;
  const bool any = s_any != 0;
  for (int d = threadIdx.x; d < p.head_dim; d += blockDim.x) {
    float acc = 0.0f;
    if (any) {
      for (int i = 0; i < p.parts; ++i) {
        const float l = p.part_lse[i * p.pl_stride_p + b * p.pl_stride_b + h * p.pl_stride_h];
        if (l == -INFINITY) continue;
        acc += expf(l - top) * LoadElem(p.part_o,
                                        i * p.po_stride_p + b * p.po_stride_b + h * p.po_stride_h +
                                            d * p.po_stride_d,
                                        p.po_elem);
      }
      acc *= factor;
    }
    StoreElem(p.out, b * p.o_stride_b + h * p.o_stride_h + d * p.o_stride_d, acc, p.out_elem);
  }
}

int32_t ElemOf(DType t) {
  switch (t) {
    case DType::kF16:
      return kElemF16;
    case DType::kBF16:
      return kElemBF16;
    default:
      return kElemF32;
  }
}

}  // namespace
}  // namespace cuda

const void* CombineKernelHandle() { return reinterpret_cast<const void*>(&cuda::CombineKernel); }
const void* CombineWarpKernelHandle(bool prefetch) {
  return prefetch ? reinterpret_cast<const void*>(&cuda::CombineWarpKernel<4>)
                  : reinterpret_cast<const void*>(&cuda::CombineWarpKernel<0>);
}
const void* CombineSplitKernelHandle() {
  return reinterpret_cast<const void*>(&cuda::CombineSplitKernel);
}
const void* MergeKernelHandle() { return reinterpret_cast<const void*>(&cuda::MergeKernel); }

absl::Status MergePartialsCuda(const MergePartialsArgs& a, Stream stream) {
  const int count = CudaDeviceCount();
  const int device = a.partial_output.device().index;
  if (count == 0) {
    return absl::FailedPreconditionError("MergePartials: no CUDA device is visible");
  }
  if (device < 0 || device >= count) {
    return absl::FailedPreconditionError(absl::StrCat("MergePartials: CUDA device ", device,
                                                      " is not available (", count, " visible)"));
  }
  for (const TensorView* t : {&a.partial_lse, &a.output}) {
    if (!(t->device() == a.partial_output.device())) {
      return absl::InvalidArgumentError(absl::StrCat("MergePartials: all tensors must be on ",
                                                     a.partial_output.device().ToString()));
    }
  }
  if (a.lse.has_value() && !(a.lse->device() == a.partial_output.device())) {
    return absl::InvalidArgumentError(
        absl::StrCat("MergePartials: lse must be on ", a.partial_output.device().ToString()));
  }
  if (a.softmax_aux.has_value() && !(a.softmax_aux->device() == a.partial_output.device())) {
    return absl::InvalidArgumentError(absl::StrCat("MergePartials: softmax_aux must be on ",
                                                   a.partial_output.device().ToString()));
  }
  MergeParams p{};
  const TensorView& po = a.partial_output;
  p.part_o = po.data();
  p.po_stride_p = po.stride(0);
  p.po_stride_b = po.stride(1);
  p.po_stride_h = po.stride(2);
  p.po_stride_d = po.stride(3);
  p.po_elem = cuda::ElemOf(po.dtype());
  p.part_lse = a.partial_lse.data_as<const float>();
  p.pl_stride_p = a.partial_lse.stride(0);
  p.pl_stride_b = a.partial_lse.stride(1);
  p.pl_stride_h = a.partial_lse.stride(2);
  p.parts = static_cast<int32_t>(po.dim(0));
  p.batch = static_cast<int32_t>(po.dim(1));
  p.heads = static_cast<int32_t>(po.dim(2));
  p.head_dim = static_cast<int32_t>(po.dim(3));
  const int64_t hkv = a.num_kv_heads > 0 ? a.num_kv_heads : p.heads;
  p.group_size = static_cast<int32_t>(p.heads / hkv);
  p.sink_layout = kSinkNone;
  if (a.softmax_aux.has_value()) {
    const TensorView& x = *a.softmax_aux;
    p.aux = x.data();
    p.aux_elem = cuda::ElemOf(x.dtype());
    if (x.rank() == 1) {
      p.sink_layout = kSinkShared;
      p.num_sinks = static_cast<int32_t>(x.dim(0));
      p.aux_stride_sink = x.stride(0);
    } else {
      p.sink_layout = x.dim(0) == p.heads ? kSinkPerQHead : kSinkPerKvHead;
      p.num_sinks = static_cast<int32_t>(x.dim(1));
      p.aux_stride_row = x.stride(0);
      p.aux_stride_sink = x.stride(1);
    }
  }
  const TensorView& o = a.output;
  p.out = o.data();
  p.o_stride_b = o.stride(0);
  p.o_stride_h = o.stride(1);
  p.o_stride_d = o.stride(2);
  p.out_elem = cuda::ElemOf(o.dtype());
  if (a.lse.has_value()) {
    p.lse = a.lse->data_as<float>();
    p.lse_stride_b = a.lse->stride(0);
    p.lse_stride_h = a.lse->stride(1);
  }
  const int64_t blocks = static_cast<int64_t>(p.batch) * p.heads;
  if (blocks == 0 || p.head_dim == 0) return absl::OkStatus();
  if (blocks > 0x7fffffff) {
    return absl::InvalidArgumentError(
        absl::StrCat("MergePartials: batch * heads = ", blocks, " exceeds the CUDA grid limit"));
  }
  int prev = 0;
  RAGGED_CUDA_RETURN_IF_ERROR(cudaGetDevice(&prev));
  if (prev != device) RAGGED_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  void* args[] = {&p};
  absl::Status s =
      RAGGED_CUDA_STATUS(cudaLaunchKernel(MergeKernelHandle(), dim3(static_cast<unsigned>(blocks)),
                                          dim3(128), args, 0, static_cast<cudaStream_t>(stream)));
  s.Update(RAGGED_CUDA_STATUS(cudaGetLastError()));
  if (prev != device) cudaSetDevice(prev);
  return s;
}

#ifdef RAGGED_CTA_TRACE
cudaError_t ReadCombineTrace(unsigned long long* out) {
  return cuda::ReadCtaTrace(cuda::kTraceCombine, out);
}
#endif

}  // namespace ragged::internal
