// ShardedAttention: the ragged decode over a mesh of ranks, in the manner of JAX's shard_map.
//
// Constructed once per problem shape with the mesh's communicators, the in/out PartitionSpecs, the
// global shapes and the op options; Run then takes this rank's local views and writes this rank's
// part of the output in the output spec's layout. Per step it
//   1. runs the per-shard kernel (RaggedDecodeAttention, CPU or CUDA) on the local views;
//   2. when the KV sequence is split (the sequence axes, `sp`), computes instead a partial (o in
//      f32, lse) over the rank's slice [kv_offset, kv_offset + S_l) of the global cache, with
//      start, end and the window in global positions and no sinks, all-gathers the partials over
//      the sequence group and merges them exactly (MergePartials), adding the sinks once;
//   3. all-gathers the per-shard output (and lse) over the batch and head axes that the output spec
//      does not keep, re-laying the rank-major result out when the heads are gathered.
// The rules for the specs and the local layouts (KV-head replication included) are in
// sharding/shard_plan.h; LocalShape() and Box() say what each rank passes.
//
// Platforms: kCpu (or kReference) takes host tensors and needs MPI communicators where it
// communicates; kCuda takes tensors on `config.device` and needs NCCL communicators, and Run is
// then stream-ordered on the given stream, without host synchronization or allocation (every
// buffer, the kernel workspace included, is allocated at Create), so a step can be captured in a
// CUDA graph. (An NcclCommunicator in its default wait_for_completion mode still waits, bounded,
// for each of its collectives, except while the stream is being captured; turn it off for
// overlap.) kAuto is kCuda when the world communicator is NCCL, else kCpu. The calling thread's
// current CUDA device must be config.device.
//
// Collectives: Create is collective over the mesh's world communicator: after the checks that need
// no peer, one small all-reduce tells every rank whether all ranks passed the same configuration
// (InvalidArgument on every rank when not) and whether any rank failed its own checks (that rank
// returns its error, the others Aborted naming it), so that the ranks fail together; only then does
// it ask the MeshCommunicators for the groups it needs (Split on first use). Run is collective over
// the sequence and gather groups: every rank of the mesh calls it, once per step, in the same
// order. A failed or missing peer gives an error within the communicators' deadline.
//
// Ownership: the object borrows `comms` (which must outlive it) and owns its buffers. The caller
// owns every tensor passed to Run. Thread-safety: one thread at a time.
//
//   ShardedAttentionConfig cfg;
//   cfg.shape = {.batch = 32, .capacity = 4096, .num_q_heads = 32, .num_kv_heads = 8,
//                .head_dim = 128, .dtype = DType::kBF16};
//   cfg.specs = ShardedAttentionSpecs::Typical(comms->mesh(), SinkLayout::kNone, false);
//   RAGGED_ASSIGN_OR_RETURN(auto op, ShardedAttention::Create(comms.get(), cfg));
//   // local views of shapes op->LocalShape(ShardedTensor::kQuery), ...
//   RAGGED_RETURN_IF_ERROR(op->Run(local_args, stream));
#ifndef RAGGED_SHARDING_SHARDED_ATTENTION_H_
#define RAGGED_SHARDING_SHARDED_ATTENTION_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/ragged_decode_attention.h"
#include "runtime/buffer.h"
#include "runtime/communicator.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"
#include "sharding/mesh.h"
#include "sharding/shard_plan.h"

namespace ragged {

struct ShardedAttentionConfig {
  AttentionShape shape;         // the global problem
  ShardedAttentionSpecs specs;  // in_specs and the output spec
  // The op's options. kv_offset and kv_total_capacity are the runtime's to set (leave them 0);
  // platform picks the backend (see above); softmax_scale defaults to 1/sqrt(D) as usual.
  RaggedDecodeAttentionOptions options;
  int device = 0;           // this rank's CUDA device (kCuda)
  Stream stream = nullptr;  // the stream of Create's configuration check (NCCL)
  // Time the phases of Run (kernel, merge, gather) on the host. On CUDA this synchronizes the
  // stream after each phase: for measurements only.
  bool time_phases = false;
};

// Host wall time of the phases of the last Run (zero unless config.time_phases).
struct ShardedAttentionTimings {
  double kernel_s = 0;  // the per-shard kernel
  double merge_s = 0;   // all-gather of the partials and the merge (sequence split)
  double gather_s = 0;  // all-gather and re-layout of the output
};

class ShardedAttention {
 public:
  // Checks the configuration (ShardPlan's rules, the platform against the communicators, the
  // agreement of all ranks), makes or reuses the communicators, and allocates every buffer.
  // Collective over comms->world(). InvalidArgument for a bad spec or shape (naming the tensor,
  // dimension and axes) or a disagreement between ranks; FailedPrecondition for a platform whose
  // communicators or device are missing; Aborted when another rank failed its checks; the
  // communicators' errors (DeadlineExceeded, ...).
  static absl::StatusOr<std::unique_ptr<ShardedAttention>> Create(
      MeshCommunicators* comms, const ShardedAttentionConfig& config);
  ShardedAttention(const ShardedAttention&) = delete;
  ShardedAttention& operator=(const ShardedAttention&) = delete;
  ~ShardedAttention();

  // One step. `local` holds this rank's views (shapes LocalShape(t), on the platform's device):
  //   query           [B_l, HQ_l, D]            query dtype; innermost stride 1
  //   key, value      [B_l, S_l, HKV_l, D]      query dtype; innermost stride 1
  //   sequence_start  [B_l]  i32, global positions in [0, S]
  //   sequence_end    [B_l]  i32
  //   softmax_aux     [NS], [HKV_l|HKV, NS] or [HQ_l|HQ, NS] (split or replicated), when sinks
  //   output          [B_o, HQ_o, D]            out dtype; contiguous; the output spec's layout
  //   lse             [B_o, HQ_o]               f32; contiguous; when shape.with_lse
  // (workspace fields are ignored: the object owns its workspace.) InvalidArgument for a view of
  // the wrong shape, dtype or device, before any work or communication.
  absl::Status Run(const RaggedDecodeAttentionArgs& local, Stream stream = nullptr);

  const ShardPlan& plan() const { return plan_; }
  Platform platform() const { return platform_; }
  int rank() const { return rank_; }
  // The shape this rank passes for `t`, and where its shard sits in the global tensor.
  Shape LocalShape(ShardedTensor t) const { return plan_.LocalShape(t); }
  ShardBox Box(ShardedTensor t) const { return plan_.Box(t, rank_); }
  // Bytes of the buffers this object owns (host or device).
  int64_t buffer_bytes() const { return buffer_bytes_; }
  const ShardedAttentionTimings& last_timings() const { return timings_; }

 private:
  ShardedAttention() = default;
  // This rank's checks and plan (no communication).
  absl::Status Prepare(const ShardedAttentionConfig& config);
  // The one setup collective: agreement of the configurations, and of `local`, this rank's
  // result of Prepare. Returns the first of: disagreement, `local`, another rank's failure.
  absl::Status CheckAgreement(const ShardedAttentionConfig& config, const absl::Status& local);
  absl::Status AllocateBuffers();
  absl::StatusOr<TensorView> Allocate(DType dtype, absl::Span<const int64_t> shape);
  absl::Status CheckLocal(const RaggedDecodeAttentionArgs& local) const;
  // The kernel's arguments for this step (the views of `local`, or fake non-null pointers when
  // sizing the workspace).
  RaggedDecodeAttentionArgs KernelArgs(const RaggedDecodeAttentionArgs& local) const;
  std::optional<TensorView> KernelAux(const RaggedDecodeAttentionArgs& local) const;
  absl::Status Gather(const TensorView& send, const TensorView& recv, const TensorView& out,
                      int64_t inner, Stream stream);

  MeshCommunicators* comms_ = nullptr;
  ShardPlan plan_;
  RaggedDecodeAttentionOptions options_;  // resolved: platform, kv_offset, kv_total_capacity
  Platform platform_ = Platform::kCpu;
  Device device_;
  int rank_ = 0;
  bool time_phases_ = false;
  Communicator* seq_comm_ = nullptr;     // the sequence group, when seq_shards > 1
  Communicator* gather_comm_ = nullptr;  // the output gather group, when it has > 1 rank
  int64_t gather_size_ = 1;

  // Owned storage and the views into it (empty when not needed).
  std::vector<HostBuffer> host_buffers_;
  std::vector<DeviceBuffer> device_buffers_;
  int64_t buffer_bytes_ = 0;
  int64_t pack_ = 0;       // f32 elements of one packed partial (o, then lse), padded
  TensorView pack_send_;   // f32 [pack_]
  TensorView pack_recv_;   // f32 [seq_shards * pack_]
  TensorView shard_out_;   // out dtype [B_l, HQ_l, D]: the per-shard output before a gather
  TensorView shard_lse_;   // f32 [B_l, HQ_l]
  TensorView gather_out_;  // out dtype [gather, B_l, HQ_l, D]: rank-major, to re-lay out
  TensorView gather_lse_;  // f32 [gather, B_l, HQ_l]
  TensorView workspace_;   // the kernel's workspace (CUDA)
  ShardedAttentionTimings timings_;
};

}  // namespace ragged

#endif  // RAGGED_SHARDING_SHARDED_ATTENTION_H_
