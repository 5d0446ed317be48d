// CUDA implementation of MergePartials (kernels/merge.h), for tensors on a CUDA device.
#ifndef RAGGED_KERNELS_CUDA_MERGE_CUDA_H_
#define RAGGED_KERNELS_CUDA_MERGE_CUDA_H_

#include "absl/status/status.h"
#include "kernels/merge.h"

namespace ragged::internal {

// `args` has been validated by MergePartials. Stream-ordered, no allocation.
absl::Status MergePartialsCuda(const MergePartialsArgs& args, Stream stream);

}  // namespace ragged::internal

#endif  // RAGGED_KERNELS_CUDA_MERGE_CUDA_H_
