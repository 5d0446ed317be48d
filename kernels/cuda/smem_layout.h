// SmemLayout: where each buffer of the decode kernel lives in its dynamic shared memory.
//
// One function computes the layout for the host (to size the launch and pick stages) and for the
// device (to find the buffers), so the two cannot disagree. Pure arithmetic, C++17, no CUDA
// dependency; thread-safe.
#ifndef RAGGED_KERNELS_CUDA_SMEM_LAYOUT_H_
#define RAGGED_KERNELS_CUDA_SMEM_LAYOUT_H_

#include <cstdint>

#include "kernels/internal/host_device.h"

namespace ragged::internal {

// Rows of the row-info cache (start, length per batch row) kept by each CTA.
constexpr int kRowCache = 64;
// Largest CTA of the decode kernel.
constexpr int kMaxDecodeThreads = 256;

// True when K/V/Q rows are stored unpadded with their 16-byte chunks XOR-swizzled (physical chunk =
// chunk ^ (row & 7)): the tensor-core path with rows of a multiple of 8 chunks (head_dim 64, 128,
// 256 in 16-bit types). ldmatrix stays conflict-free, and rows start 128-byte aligned, which the
// asynchronous copies need to move a row in the fewest wavefronts and L2 sectors (padded rows
// cost 1.5x the sectors and 2.5x the shared-memory wavefronts: ncu, H100). Other head dims pad
// each row by 16 bytes instead.
RAGGED_HOST_DEVICE constexpr bool UsesSwizzle(int elem_bytes, int head_dim, bool mma) {
  return mma && (head_dim * elem_bytes / 16) % 8 == 0;
}

struct SmemLayout {
  int32_t row_bytes;        // bytes of one K/V/Q row in shared memory: D * element size (+ 16 pad)
  int32_t scratch_ld;       // f32 row stride of the output scratch: D + 8, or D when swizzled
  int32_t scratch_swizzle;  // 1: scratch column c of row r is stored at c ^ ((r & 7) << 3)
  int32_t kv_off;           // [stages][2 (K, V)][block_n][row_bytes]
  int32_t kv_stage_bytes;   // 2 * block_n * row_bytes
  int32_t q_off;            // [stages][heads_per_block][row_bytes]: one Q per segment in flight
  int32_t scratch_in_tile;  // 1: the scratch lives in the K/V buffer of the segment's last tile
  int32_t scratch_off;      // f32 [heads_per_block][scratch_ld]: the merged O of a segment
  int32_t red_m_off;        // f32 [nsplit][heads_per_block]: per-warp row max (MMA path)
  int32_t red_l_off;        // f32 [nsplit][heads_per_block]: per-warp row sum (MMA path)
  int32_t row_m_off;        // f32 [heads_per_block]: the row max (log2 units)
  int32_t row_l_off;        // f32 [heads_per_block]: the row sum
  int32_t factor_off;       // f32 [heads_per_block]: output scale of the epilogue
  int32_t alpha_off;        // f32 [heads_per_block]: rescale of this tile (SIMT path)
  int32_t p_off;            // f32 [heads_per_block][block_n]: probabilities (SIMT path)
  int32_t rows_off;         // int32 [kRowCache][2]: begin and length of the CTA's first rows
  int32_t scan_off;         // int64 [40]: block-scan scratch and broadcast values
  int32_t total;            // bytes
};

RAGGED_HOST_DEVICE int32_t AlignUp16(int32_t x) { return (x + 15) / 16 * 16; }

// `mma`: the tensor-core path (16-bit types) or the SIMT path (f32). `nsplit`: warps that share
// the positions of a tile (MMA path).
RAGGED_HOST_DEVICE SmemLayout ComputeSmemLayout(int elem_bytes, int head_dim, int heads_per_block,
                                                int block_n, int stages, int nsplit, bool mma) {
  SmemLayout l{};
  l.row_bytes = head_dim * elem_bytes + (UsesSwizzle(elem_bytes, head_dim, mma) ? 0 : 16);
  // Where the padded scratch does not fit in one K/V stage but an unpadded one does (unpadded,
  // swizzled K/V rows with heads_per_block == block_n, as for MQA's 64 heads), the scratch is
  // unpadded too, its 8-float blocks XOR-swizzled (a kernel variant: kWide in decode_kernel.cuh):
  // otherwise it needs a buffer of its own and the CTA no longer shares its SM (MQA 58% -> 37% of
  // the read ceiling on an H100).
  l.kv_stage_bytes = 2 * block_n * l.row_bytes;
  l.scratch_swizzle = UsesSwizzle(elem_bytes, head_dim, mma) &&
                              heads_per_block * (head_dim + 8) * 4 > l.kv_stage_bytes &&
                              heads_per_block * head_dim * 4 <= l.kv_stage_bytes
                          ? 1
                          : 0;
  l.scratch_ld = head_dim + (l.scratch_swizzle ? 0 : 8);
  int32_t off = 0;
  l.kv_off = off;
  off += stages * l.kv_stage_bytes;
  l.q_off = off;
  off += stages * heads_per_block * l.row_bytes;
  const int32_t scratch_bytes = heads_per_block * l.scratch_ld * 4;
  l.scratch_in_tile = scratch_bytes <= l.kv_stage_bytes ? 1 : 0;
  l.scratch_off = off;
  off += l.scratch_in_tile ? 0 : AlignUp16(scratch_bytes);
  l.red_m_off = off;
  off += mma ? AlignUp16(nsplit * heads_per_block * 4) : 0;
  l.red_l_off = off;
  off += mma ? AlignUp16(nsplit * heads_per_block * 4) : 0;
  l.row_m_off = off;
  off += AlignUp16(heads_per_block * 4);
  l.row_l_off = off;
  off += AlignUp16(heads_per_block * 4);
  l.factor_off = off;
  off += AlignUp16(heads_per_block * 4);
  l.alpha_off = off;
  off += mma ? 0 : AlignUp16(heads_per_block * 4);
  l.p_off = off;
  off += mma ? 0 : AlignUp16(heads_per_block * block_n * 4);
  l.rows_off = off;
  off += kRowCache * 2 * 4;
  l.scan_off = off;
  off += 40 * 8;
  l.total = off;
  return l;
}

}  // namespace ragged::internal

#endif  // RAGGED_KERNELS_CUDA_SMEM_LAYOUT_H_
