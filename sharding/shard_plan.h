// ShardPlan: the sharding rules of the ragged decode (SPEC.md section 3), checked, and what every
// rank holds and computes under them.
//
// PlanShardedAttention takes a mesh, the in/out specs and the global shapes, checks the specs
// against the rules, and returns a plan: the axes that split the batch, the heads and the KV
// sequence, the local shape of every tensor, where each rank's shard sits in the global tensor,
// and which axes the output is all-gathered over. It does no communication and allocates no
// tensor; ShardedAttention executes a plan, and examples print one. Plans are values, thread-safe.
//
// The rules (each violation is an InvalidArgument naming the tensor, the dimension, the axes):
// - Every axis of every spec is in the mesh, once per spec; no spec is longer than its tensor.
// - head_dim (query, key, value, output) and the sinks dimension NS of softmax_aux are not split.
// - key and value have the same spec.
// - The batch dimension of query, key, value, sequence_start and sequence_end uses the same axes.
// - Query heads and KV heads are split over the same axes (the head axes, n_h shards). When n_h
//   divides HKV, each rank holds HKV / n_h KV heads and HQ / n_h query heads: whole GQA groups.
//   When n_h > HKV and n_h is a multiple of HKV, KV heads are replicated (the vLLM/SGLang rule):
//   rank i of the head axes holds the HQ / n_h query heads [i * HQ / n_h, (i + 1) * HQ / n_h),
//   which all read KV head g = i / (n_h / HKV); its local key/value are [B_l, S_l, 1, D] holding
//   global KV head g (and a per-KV-head softmax_aux split over the head axes is [1, NS], row g).
//   Any other n_h is an error. Divisibility of B, HQ and S is checked as NamedSharding does.
// - Only key and value may be split along the sequence (dimension 1; the sequence axes). No other
//   spec may name a sequence axis; in particular the output spec may not name `sp`.
// - softmax_aux of shape [NS] is replicated. One of shape [HKV, NS] or [HQ, NS] is either split
//   over the head axes (each rank holds its rows) or replicated (each rank holds the whole table
//   and the runtime reads its rows).
// - The output [B, HQ, D] comes back in the output spec's layout. Per shard it is split over the
//   batch axes (dimension 0) and the head axes (dimension 1); for each of these dimensions, the
//   output spec names a leading part (major first) of those axes, and the output is all-gathered
//   over the rest. Any other output spec (naming other axes, or a non-leading part) is an error.
// - The optional lse output [B, HQ] follows the output spec's first two entries.
#ifndef RAGGED_SHARDING_SHARD_PLAN_H_
#define RAGGED_SHARDING_SHARD_PLAN_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/problem.h"
#include "runtime/dtype.h"
#include "runtime/tensor.h"
#include "sharding/mesh.h"
#include "sharding/partition_spec.h"

namespace ragged {

// The global problem of a sharded call.
struct AttentionShape {
  int64_t batch = 0;                     // B
  int64_t capacity = 0;                  // S, the global KV capacity
  int64_t num_q_heads = 0;               // HQ
  int64_t num_kv_heads = 0;              // HKV
  int64_t head_dim = 0;                  // D
  DType dtype = DType::kBF16;            // query, key and value
  std::optional<DType> output_dtype;     // default: dtype; else f32
  SinkLayout sinks = SinkLayout::kNone;  // softmax_aux: none, [NS], [HKV, NS] or [HQ, NS]
  int64_t num_sinks = 0;                 // NS
  DType aux_dtype = DType::kF32;         // f32 or dtype
  bool with_lse = false;                 // an lse output [B, HQ] f32

  DType out_dtype() const { return output_dtype.value_or(dtype); }
  std::string ToString() const;
};

struct ShardedAttentionSpecs {
  PartitionSpec query;           // [B, HQ, D], typically (dp, tp)
  PartitionSpec key;             // [B, S, HKV, D], typically (dp, sp, tp)
  PartitionSpec value;           // [B, S, HKV, D], the key's spec
  PartitionSpec sequence_start;  // [B], typically (dp)
  PartitionSpec sequence_end;    // [B], typically (dp)
  PartitionSpec softmax_aux;     // [NS] replicated; [HKV|HQ, NS] typically (tp)
  PartitionSpec output;          // [B, HQ, D]: the layout the caller wants back

  // The typical specs above for the axes among dp, tp and sp that `mesh` has; the output is split
  // like the query (gather_output false) or replicated (true).
  static ShardedAttentionSpecs Typical(const Mesh& mesh, SinkLayout sinks, bool gather_output);
  std::string ToString() const;
};

// The tensors of a sharded call.
enum class ShardedTensor : uint8_t {
  kQuery,
  kKey,
  kValue,
  kSequenceStart,
  kSequenceEnd,
  kSoftmaxAux,
  kOutput,
  kLse,
};
const char* ShardedTensorName(ShardedTensor t);

struct ShardPlan {
  Mesh mesh;
  AttentionShape shape;
  ShardedAttentionSpecs specs;

  std::vector<std::string> batch_axes;  // split the batch (query's dimension 0)
  std::vector<std::string> head_axes;   // split the query and KV heads
  std::vector<std::string> seq_axes;    // split the key/value sequence
  int64_t batch_shards = 1, head_shards = 1, seq_shards = 1;
  bool kv_heads_replicated = false;  // head_shards > HKV
  bool aux_split = false;            // softmax_aux rows split over the head axes

  // Per-shard sizes of the kernel's problem.
  int64_t local_batch = 0;     // B / batch_shards
  int64_t local_q_heads = 0;   // HQ / head_shards
  int64_t local_kv_heads = 0;  // HKV / head_shards, or 1 when replicated
  int64_t local_capacity = 0;  // S / seq_shards

  // Output all-gather: the trailing batch and head axes the output spec does not keep. The
  // gather's communicator is ordered (gather_batch_axes..., gather_head_axes...).
  std::vector<std::string> gather_batch_axes, gather_head_axes;
  int64_t gather_batch_size = 1, gather_head_size = 1;
  std::vector<std::string> gather_axes() const;

  // Which block of the batch / heads / sequence `rank` holds.
  int64_t BatchIndex(int rank) const;
  int64_t HeadIndex(int rank) const;
  int64_t SeqIndex(int rank) const;
  // The first global KV head that `rank`'s query heads read.
  int64_t FirstKvHead(int rank) const;

  // Global shape of a tensor (softmax_aux: per shape.sinks; empty when there are no sinks).
  Shape GlobalShape(ShardedTensor t) const;
  // The local shape every rank passes for `t` (output and lse: in the output spec's layout).
  Shape LocalShape(ShardedTensor t) const;
  // Where `rank`'s shard of `t` sits in the global tensor.
  ShardBox Box(ShardedTensor t, int rank) const;
  // The rows [first, first + count) of the local softmax_aux that the kernel of `rank` reads (all
  // of them when aux_split or shared; the rank's rows of a replicated per-head table).
  std::pair<int64_t, int64_t> KernelAuxRows(int rank) const;

  // A few lines: mesh, axes, per-rank shapes, gathers.
  std::string ToString() const;
};

// Checks `specs` against the rules above for `shape` on `mesh` and plans the per-shard work.
// InvalidArgument names the tensor (query, key, value, sequence_start, sequence_end, softmax_aux,
// output), the dimension, and the axes with their sizes.
absl::StatusOr<ShardPlan> PlanShardedAttention(const Mesh& mesh, const ShardedAttentionSpecs& specs,
                                               const AttentionShape& shape);

}  // namespace ragged

#endif  // RAGGED_SHARDING_SHARD_PLAN_H_
