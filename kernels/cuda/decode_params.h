// DecodeParams: everything the CUDA decode kernels read, as one plain struct passed by value.
//
// The host fills it from a validated Problem and a LaunchPlan (cuda_backend.cu); the kernels take
// it as a __grid_constant__ parameter, so it lives in the constant bank and costs no registers.
// Pointers are device pointers owned by the caller of RaggedDecodeAttention; strides are in
// elements. This header is included from .cu files and must stay C++17.
//
// Work decomposition (the "flat tile" schedule, see decode_kernel.cuh): the valid KV positions of
// every (row b, KV head g) pair are cut into tiles of `block_n` positions; pairs are laid end to
// end in (b, g) order and the resulting sequence of tiles is cut into `num_ctas` equal contiguous
// ranges, one per persistent CTA (x `head_slices` when a GQA group is wider than one CTA). A CTA
// whose range covers a whole pair writes the final output of its heads; otherwise it writes a
// partial (o, lse) into slot `pair + cta` of the workspace and the combine kernel merges them.
#ifndef RAGGED_KERNELS_CUDA_DECODE_PARAMS_H_
#define RAGGED_KERNELS_CUDA_DECODE_PARAMS_H_

#include <cuda_runtime.h>

#include <cstdint>

namespace ragged::internal {

// Element type codes for runtime-typed loads and stores (outputs, sinks, merge inputs).
enum ElemCode : int32_t { kElemF32 = 0, kElemF16 = 1, kElemBF16 = 2 };

// Sink layouts, as in kernels/problem.h's SinkLayout.
enum SinkCode : int32_t { kSinkNone = 0, kSinkShared = 1, kSinkPerKvHead = 2, kSinkPerQHead = 3 };

struct DecodeParams {
  // Inputs.
  const void* q;  // [B, HQ, D]
  int64_t q_stride_b, q_stride_h;
  const void* k;  // [B, S, HKV, D]
  int64_t k_stride_b, k_stride_s, k_stride_h;
  const void* v;  // [B, S, HKV, D]
  int64_t v_stride_b, v_stride_s, v_stride_h;
  const int32_t* seq_start;  // [B]
  int64_t start_stride;
  const int32_t* seq_end;  // [B]
  int64_t end_stride;
  const void* aux;  // [NS] or [rows, NS]; null without sinks
  int64_t aux_stride_row, aux_stride_sink;
  int32_t aux_elem;     // ElemCode
  int32_t sink_layout;  // SinkCode
  int32_t num_sinks;

  // Outputs.
  void* out;  // [B, HQ, D]
  int64_t o_stride_b, o_stride_h;
  int32_t out_elem;  // ElemCode
  float* lse;        // [B, HQ]; may be null
  int64_t lse_stride_b, lse_stride_h;

  // Shapes and options.
  int32_t batch, num_kv_heads, group_size, head_dim;
  int64_t capacity, kv_offset, total_capacity, window_left, window_right;
  float scale_log2;     // softmax_scale * log2(e) (used without a soft cap)
  float softmax_scale;  // used with a soft cap
  float soft_cap;       // 0: none
  float cap_inner;      // softmax_scale / soft_cap * 2 * log2(e)
  float cap_outer;      // soft_cap * log2(e)

  // Launch shape.
  int32_t heads_per_block;    // query heads of a group per CTA (a multiple of 16 on the MMA path)
  int32_t head_slices;        // ceil(group_size / heads_per_block)
  int32_t block_n;            // KV positions per tile
  int32_t stages;             // cp.async pipeline depth
  int32_t num_ctas;           // persistent CTAs per head slice (grid = num_ctas * head_slices)
  int32_t align_shares;       // 1: ActiveCtas may align shares with pairs (CTA count not set)
  int32_t min_tiles_per_cta;  // a CTA gets at least this many tiles (fewer CTAs for small work)

  // Workspace (caller-provided, see WorkspaceLayout in cuda_backend.cu).
  int64_t* row_prefix;  // [B + 1]: flat index of the first tile of pair (b, 0) (CombineSplitKernel)
  float* part_lse;      // [slots, group_size]
  float* part_o;        // [slots, group_size, head_dim]
  int2* cta_split;      // [num_ctas]: {pair, CTA holding its last tile} when CTA c's share starts
                        // inside a pair (past its tile 0), else {-1, -1}; written by head slice 0
                        // of every CTA, read by CombineSplitKernel
};

// Merge of generic partials (MergePartials on CUDA).
struct MergeParams {
  const void* part_o;  // [P, B, HQ, D]
  int64_t po_stride_p, po_stride_b, po_stride_h, po_stride_d;
  int32_t po_elem;
  const float* part_lse;  // [P, B, HQ]
  int64_t pl_stride_p, pl_stride_b, pl_stride_h;
  const void* aux;  // [NS] or [rows, NS]; null without sinks
  int64_t aux_stride_row, aux_stride_sink;
  int32_t aux_elem, sink_layout, num_sinks, group_size;
  void* out;  // [B, HQ, D]
  int64_t o_stride_b, o_stride_h, o_stride_d;
  int32_t out_elem;
  float* lse;  // [B, HQ]; may be null
  int64_t lse_stride_b, lse_stride_h;
  int32_t parts, batch, heads, head_dim;
};

}  // namespace ragged::internal

#endif  // RAGGED_KERNELS_CUDA_DECODE_PARAMS_H_
