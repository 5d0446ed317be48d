// KernelConfig: the tunable launch parameters of the CUDA decode kernels.
//
// A config is a plain value. A field of 0 means "let the heuristic choose". The CUDA backend
// validates a config against the problem and returns InvalidArgument for one it cannot run.
// The CPU backend ignores it. Thread-safe (a value type).
#ifndef RAGGED_KERNELS_KERNEL_CONFIG_H_
#define RAGGED_KERNELS_KERNEL_CONFIG_H_

#include <string>

namespace ragged {

struct KernelConfig {
  int chunk_size = 0;       // KV positions per split-KV chunk (a multiple of block_n).
  int num_splits = 0;       // Maximum chunks per (batch row, KV head); sizes the grid.
  int heads_per_block = 0;  // Query heads of one GQA group processed by one block.
  int block_n = 0;          // KV positions per shared-memory tile.
  int num_warps = 0;        // Warps per block.
  int stages = 0;           // Depth of the K/V load pipeline.

  std::string ToString() const;
  friend bool operator==(const KernelConfig& a, const KernelConfig& b) {
    return a.chunk_size == b.chunk_size && a.num_splits == b.num_splits &&
           a.heads_per_block == b.heads_per_block && a.block_n == b.block_n &&
           a.num_warps == b.num_warps && a.stages == b.stages;
  }
};

}  // namespace ragged

#endif  // RAGGED_KERNELS_KERNEL_CONFIG_H_
