// embed: the smallest engine that hands its own tensor-parallel communicator (and stream) to
// ragged. Built against an installed ragged (find_package), run under mpirun; the README quotes
// it. Each rank owns the query heads of its TP rank; the library runs their attention and keeps
// the output sharded, so the step needs no communication here; with PartitionSpec() as the output
// spec it would all-gather the heads over the engine's communicator.
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <memory>

#include "kernels/reference.h"
#include "runtime/buffer.h"
#include "runtime/mpi_communicator.h"
#include "runtime/status.h"
#include "sharding/mesh.h"
#include "sharding/sharded_attention.h"

using namespace ragged;

absl::Status EngineStep(MPI_Comm tp_comm) {
  // 1. Wrap the engine's communicator (borrowed: the library never frees it), make the mesh.
  RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<MpiCommunicator> tp, MpiCommunicator::Borrow(tp_comm));
  RAGGED_ASSIGN_OR_RETURN(Mesh mesh, Mesh::Create({{"tp", tp->size()}}));
  RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<MeshCommunicators> comms,
                          MeshCommunicators::Borrow(mesh, tp.get()));

  // 2. Describe the global problem and how it is split: heads over tp, output kept sharded.
  ShardedAttentionConfig cfg;
  cfg.shape = {.batch = 4,
               .capacity = 256,
               .num_q_heads = 8,
               .num_kv_heads = 2,
               .head_dim = 64,
               .dtype = DType::kBF16};
  cfg.specs.query = PartitionSpec({{}, {"tp"}});    // [B, HQ, D]
  cfg.specs.key = PartitionSpec({{}, {}, {"tp"}});  // [B, S, HKV, D]
  cfg.specs.value = cfg.specs.key;
  cfg.specs.output = cfg.specs.query;     // PartitionSpec() would all-gather
  cfg.options.platform = Platform::kCpu;  // kCuda: device tensors, NCCL comm
  RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<ShardedAttention> op,
                          ShardedAttention::Create(comms.get(), cfg));

  // 3. The engine's own tensors: this rank's heads of the query and of its KV cache.
  auto local = [&](ShardedTensor t, DType d) { return HostBuffer::Allocate(d, op->LocalShape(t)); };
  HostBuffer q = local(ShardedTensor::kQuery, DType::kBF16);
  HostBuffer k = local(ShardedTensor::kKey, DType::kBF16);
  HostBuffer v = local(ShardedTensor::kValue, DType::kBF16);
  HostBuffer start = local(ShardedTensor::kSequenceStart, DType::kI32);
  HostBuffer end = local(ShardedTensor::kSequenceEnd, DType::kI32);
  HostBuffer out = local(ShardedTensor::kOutput, DType::kBF16);
  for (HostBuffer* t : {&q, &k, &v}) {
    for (int64_t i = 0; i < t->num_elements(); ++i) {
      StoreFromFloat(t->data(), DType::kBF16, i, std::sin(0.37f * i + tp->rank()));
    }
  }
  for (int b = 0; b < 4; ++b) {
    start.data_as<int32_t>()[b] = 0;
    end.data_as<int32_t>()[b] = 64 * (b + 1);  // sequences of different lengths
  }

  // 4. One step (on a GPU: device tensors and the engine's stream; capturable in a CUDA graph).
  RaggedDecodeAttentionArgs args;
  args.query = q.view();
  args.key = k.view();
  args.value = v.view();
  args.sequence_start = start.view();
  args.sequence_end = end.view();
  args.output = out.view();
  RAGGED_RETURN_IF_ERROR(op->Run(args, /*stream=*/nullptr));

  // 5. This rank's heads against the double-precision reference.
  RaggedDecodeAttentionArgs ref_args = args;
  RAGGED_ASSIGN_OR_RETURN(ReferenceResult ref, ComputeReference(ref_args));
  double err = 0;
  for (int64_t i = 0; i < out.num_elements(); ++i) {
    err = std::max(err, std::abs(LoadAsFloat(out.data(), DType::kBF16, i) - ref.output[i]));
  }
  std::printf("rank %d of %d: heads %lld, largest error %.2e %s\n", tp->rank(), tp->size(),
              static_cast<long long>(op->LocalShape(ShardedTensor::kQuery)[1]), err,
              err < 1e-2 ? "PASS" : "FAIL");
  return err < 1e-2 ? absl::OkStatus() : absl::InternalError("embed: wrong result");
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm tp_comm;  // the engine's own TP group: here, every rank
  MPI_Comm_split(MPI_COMM_WORLD, /*color=*/0, /*key=*/rank, &tp_comm);
  const absl::Status s = EngineStep(tp_comm);
  if (!s.ok()) std::fprintf(stderr, "embed (rank %d): error: %s\n", rank, s.ToString().c_str());
  MPI_Comm_free(&tp_comm);  // still the engine's to free
  MPI_Finalize();
  return s.ok() ? 0 : 1;
}
