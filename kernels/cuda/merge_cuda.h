// CUDA implementation of MergePartials (kernels/merge.h), for tensors on a CUDA device.
//
// The exact LSE merge of SPEC.md section 1 with the same special cases as the host merge (a part
// with lse -inf is skipped; a row no part saw gives 0 and -inf or the sinks' lse), in f32, one CTA
// per (row, head). Used by the sharded runtime to merge sequence-shard partials on the GPU.
// Stream-ordered, no allocation, deterministic. Thread-safe.
#ifndef RAGGED_KERNELS_CUDA_MERGE_CUDA_H_
#define RAGGED_KERNELS_CUDA_MERGE_CUDA_H_

#include "absl/status/status.h"
#include "kernels/merge.h"

namespace ragged::internal {

// `args` has been validated by MergePartials (shapes, dtypes). Queues the merge on `stream`.
// FailedPrecondition when the device is not visible; InvalidArgument when the tensors are not all
// on the partials' device.
absl::Status MergePartialsCuda(const MergePartialsArgs& args, Stream stream);

}  // namespace ragged::internal

#endif  // RAGGED_KERNELS_CUDA_MERGE_CUDA_H_
