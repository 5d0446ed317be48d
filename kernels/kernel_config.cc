#include "kernels/kernel_config.h"

#include "absl/strings/str_format.h"

namespace ragged {

std::string KernelConfig::ToString() const {
  return absl::StrFormat("chunk=%d splits=%d hpb=%d block_n=%d warps=%d stages=%d", chunk_size,
                         num_splits, heads_per_block, block_n, num_warps, stages);
}

}  // namespace ragged
