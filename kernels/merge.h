// MergePartials: the exact LSE merge of partial attention results (SPEC.md section 1).
//
// A partial (o_i, lse_i) is attention over a subset of a row's positions, computed without sinks
// (RaggedDecodeAttention with no softmax_aux and an lse output). Merging P partials gives the
// attention over the union; sinks, when given, enter here, once. Used to combine sequence shards
// across ranks. Host tensors merge on the host; CUDA tensors merge on `stream`. Thread-safe.
#ifndef RAGGED_KERNELS_MERGE_H_
#define RAGGED_KERNELS_MERGE_H_

#include <optional>

#include "absl/status/status.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace ragged {

struct MergePartialsArgs {
  TensorView partial_output;              // [P, B, HQ, D]; f32, f16 or bf16
  TensorView partial_lse;                 // [P, B, HQ]; f32; -inf where a partial saw no position
  std::optional<TensorView> softmax_aux;  // [NS], [HKV, NS] or [HQ, NS]; needs num_kv_heads
  int64_t num_kv_heads = 0;               // HKV, to resolve an aux of shape [HKV, NS]; 0: HQ
  TensorView output;                      // [B, HQ, D]
  std::optional<TensorView> lse;          // [B, HQ]; f32
};

// Writes the merged output (and lse). A row where no partial saw a position gets output 0 and
// lse -inf (or the sinks' log-sum-exp). InvalidArgument for mismatched shapes or dtypes.
absl::Status MergePartials(const MergePartialsArgs& args, Stream stream = nullptr);

}  // namespace ragged

#endif  // RAGGED_KERNELS_MERGE_H_
