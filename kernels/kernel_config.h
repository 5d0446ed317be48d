// KernelConfig: the tunable launch parameters of the CUDA decode kernels.
//
// A config is a plain value. A field of 0 means "let the heuristic choose". The CUDA backend
// validates a config against the problem and returns InvalidArgument for one it cannot run.
// The CPU backend ignores it. Thread-safe (a value type).
//
// How the fields drive the CUDA kernels (kernels/cuda/decode_kernel.cuh): the valid KV positions
// of every (row, KV head) pair are cut into tiles of `block_n` positions, the tiles of all pairs
// are laid end to end, and `num_splits` persistent CTAs each take an equal contiguous share of
// them (a split-KV decomposition that spreads ragged work evenly); a share is never smaller than
// `chunk_size` positions, so small problems use fewer CTAs. Each CTA computes `heads_per_block`
// query heads of one GQA group with `num_warps` warps and a `stages`-deep cp.async pipeline.
#ifndef RAGGED_KERNELS_KERNEL_CONFIG_H_
#define RAGGED_KERNELS_KERNEL_CONFIG_H_

#include <string>

namespace ragged {

struct KernelConfig {
  int chunk_size = 0;       // Minimum KV positions per CTA share (rounded up to whole tiles).
  int num_splits = 0;       // Persistent CTAs per head slice; 0: SM count x resident CTAs per SM.
  int heads_per_block = 0;  // Query heads of one GQA group processed by one CTA.
  int block_n = 0;          // KV positions per shared-memory tile.
  int num_warps = 0;        // Warps per CTA.
  int stages = 0;           // Depth of the K/V load pipeline.

  // "chunk=256 splits=0 hpb=16 block_n=64 warps=4 stages=2".
  std::string ToString() const;
  friend bool operator==(const KernelConfig& a, const KernelConfig& b) {
    return a.chunk_size == b.chunk_size && a.num_splits == b.num_splits &&
           a.heads_per_block == b.heads_per_block && a.block_n == b.block_n &&
           a.num_warps == b.num_warps && a.stages == b.stages;
  }
  friend bool operator!=(const KernelConfig& a, const KernelConfig& b) { return !(a == b); }
};

}  // namespace ragged

#endif  // RAGGED_KERNELS_KERNEL_CONFIG_H_
