// Scatter and gather of sharded host tensors, for examples and tests.
//
// A shard is a box of the global tensor (ShardBox: offset and shape), as NamedSharding::Box or
// ShardPlan::Box give it; `boxes[r]` is the shard of mesh rank r, which is rank r of `comm`.
// ExtractShard and InsertShard copy between a global tensor and one shard, locally. ScatterFromRoot
// sends each rank its shard of a global tensor that only the root holds; GatherToRoot assembles the
// global tensor on the root from every rank's shard (where shards overlap, as replicas do, the
// lowest rank's copy wins). The collective helpers are meant for set-up and checking, not for the
// hot path: they allocate temporaries and synchronize. They take host tensors; with an NCCL
// communicator they stage through a temporary buffer on comm.device(). Thread-safety: as the
// communicator (one thread at a time).
//
//   std::vector<ShardBox> boxes = BoxesOf(op->plan(), ShardedTensor::kKey);
//   RAGGED_RETURN_IF_ERROR(ScatterFromRoot(world, 0, global_key, boxes, local_key.view()));
#ifndef RAGGED_SHARDING_SCATTER_H_
#define RAGGED_SHARDING_SCATTER_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/communicator.h"
#include "runtime/tensor.h"
#include "sharding/partition_spec.h"
#include "sharding/shard_plan.h"

namespace ragged {

// Every rank's box: boxes[r] for r in [0, mesh size).
absl::StatusOr<std::vector<ShardBox>> BoxesOf(const NamedSharding& sharding,
                                              absl::Span<const int64_t> global_shape,
                                              absl::string_view tensor = "tensor");
std::vector<ShardBox> BoxesOf(const ShardPlan& plan, ShardedTensor tensor);

// local = global[box] (host tensors of one dtype; local has box.shape; any strides).
absl::Status ExtractShard(const TensorView& global, const ShardBox& box, const TensorView& local);
// global[box] = local.
absl::Status InsertShard(const TensorView& local, const ShardBox& box, const TensorView& global);

// Collective over `comm`: every rank's `local` (shape boxes[rank].shape) receives its box of the
// root's `global` (host; ignored on other ranks, which may pass an empty view). All boxes have the
// same shape.
absl::Status ScatterFromRoot(Communicator& comm, int root, const TensorView& global,
                             absl::Span<const ShardBox> boxes, const TensorView& local);
// Collective over `comm`: the root's `global` (host) receives every rank's `local` at its box.
// `global` is ignored on other ranks.
absl::Status GatherToRoot(Communicator& comm, int root, const TensorView& local,
                          absl::Span<const ShardBox> boxes, const TensorView& global);

}  // namespace ragged

#endif  // RAGGED_SHARDING_SCATTER_H_
