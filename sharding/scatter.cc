#include "sharding/scatter.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "runtime/buffer.h"
#include "runtime/status.h"

namespace ragged {
namespace {

// dst[dst_off + i] = src[src_off + i] for every index i of `shape` (strided, element-wise rows).
void CopyBox(const TensorView& src, absl::Span<const int64_t> src_off, const TensorView& dst,
             absl::Span<const int64_t> dst_off, absl::Span<const int64_t> shape) {
  const int rank = static_cast<int>(shape.size());
  const int64_t esize = DTypeSize(src.dtype());
  if (NumElements(shape) == 0) return;
  const char* s = static_cast<const char*>(src.data());
  char* d = static_cast<char*>(dst.data());
  for (int i = 0; i < rank; ++i) {
    s += src_off[i] * src.stride(i) * esize;
    d += dst_off[i] * dst.stride(i) * esize;
  }
  if (rank == 0) {
    std::memcpy(d, s, static_cast<size_t>(esize));
    return;
  }
  const int64_t inner = shape[rank - 1];
  const bool rows = src.stride(rank - 1) == 1 && dst.stride(rank - 1) == 1;
  std::vector<int64_t> idx(rank, 0);
  while (true) {
    int64_t so = 0, doff = 0;
    for (int i = 0; i < rank - 1; ++i) {
      so += idx[i] * src.stride(i);
      doff += idx[i] * dst.stride(i);
    }
    if (rows) {
      std::memcpy(d + doff * esize, s + so * esize, static_cast<size_t>(inner * esize));
    } else {
      for (int64_t j = 0; j < inner; ++j) {
        std::memcpy(d + (doff + j * dst.stride(rank - 1)) * esize,
                    s + (so + j * src.stride(rank - 1)) * esize, static_cast<size_t>(esize));
      }
    }
    int i = rank - 2;
    for (; i >= 0; --i) {
      if (++idx[i] < shape[i]) break;
      idx[i] = 0;
    }
    if (i < 0) break;
  }
}

absl::Status CheckBox(const TensorView& global, const ShardBox& box, const TensorView& local,
                      absl::string_view what) {
  if (!global.device().is_cpu() || !local.device().is_cpu()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": host tensors only"));
  }
  if (global.dtype() != local.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": dtypes differ: global ",
                                                   DTypeName(global.dtype()), ", local ",
                                                   DTypeName(local.dtype())));
  }
  if (box.shape.size() != static_cast<size_t>(global.rank()) ||
      box.offset.size() != box.shape.size() || !(local.shape() == box.shape)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": the box (offset ", ShapeToString(box.offset), ", shape ",
                     ShapeToString(box.shape), ") does not fit global ",
                     ShapeToString(global.shape()), " and local ", ShapeToString(local.shape())));
  }
  for (int i = 0; i < global.rank(); ++i) {
    if (box.offset[i] < 0 || box.offset[i] + box.shape[i] > global.dim(i)) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": the box (offset ", ShapeToString(box.offset), ", shape ",
          ShapeToString(box.shape), ") leaves the global shape ", ShapeToString(global.shape())));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckBoxes(const Communicator& comm, absl::Span<const ShardBox> boxes,
                        const TensorView& local, absl::string_view what) {
  if (static_cast<int>(boxes.size()) != comm.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": ", boxes.size(), " boxes for a communicator of ", comm.size(), " ranks"));
  }
  for (const ShardBox& b : boxes) {
    if (!(b.shape == local.shape())) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": every shard must have the local shape ",
                       ShapeToString(local.shape()), "; one box has ", ShapeToString(b.shape)));
    }
  }
  if (!local.device().is_cpu()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": host tensors only"));
  }
  return absl::OkStatus();
}

// Runs a collective on host data, staging through the communicator's device for NCCL.
class Staging {
 public:
  static absl::StatusOr<Staging> Make(Communicator& comm, int64_t bytes) {
    Staging s;
    if (comm.backend() == CommBackend::kNccl) {
      RAGGED_ASSIGN_OR_RETURN(s.device_, DeviceBuffer::AllocateBytes(bytes, comm.device()));
    }
    return s;
  }
  // The pointer to hand to the collective for `host` (bytes long).
  absl::StatusOr<void*> In(void* host, int64_t bytes) {
    if (device_.data() == nullptr) return host;
    RAGGED_RETURN_IF_ERROR(
        device_.CopyFromHost(TensorView(host, DType::kI32, {bytes / 4}), nullptr));
    return device_.data();
  }
  absl::Status Out(void* host, int64_t bytes) {
    if (device_.data() == nullptr) return absl::OkStatus();
    RAGGED_RETURN_IF_ERROR(device_.CopyToHost(TensorView(host, DType::kI32, {bytes / 4}), nullptr));
    return SynchronizeStream(nullptr);
  }

 private:
  DeviceBuffer device_;
};

}  // namespace

absl::StatusOr<std::vector<ShardBox>> BoxesOf(const NamedSharding& sharding,
                                              absl::Span<const int64_t> global_shape,
                                              absl::string_view tensor) {
  std::vector<ShardBox> boxes;
  for (int r = 0; r < sharding.mesh().size(); ++r) {
    RAGGED_ASSIGN_OR_RETURN(ShardBox b, sharding.Box(global_shape, r, tensor));
    boxes.push_back(std::move(b));
  }
  return boxes;
}

std::vector<ShardBox> BoxesOf(const ShardPlan& plan, ShardedTensor tensor) {
  std::vector<ShardBox> boxes;
  for (int r = 0; r < plan.mesh.size(); ++r) boxes.push_back(plan.Box(tensor, r));
  return boxes;
}

absl::Status ExtractShard(const TensorView& global, const ShardBox& box, const TensorView& local) {
  RAGGED_RETURN_IF_ERROR(CheckBox(global, box, local, "ExtractShard"));
  const Shape zero(box.shape.size(), 0);
  CopyBox(global, box.offset, local, zero, box.shape);
  return absl::OkStatus();
}

absl::Status InsertShard(const TensorView& local, const ShardBox& box, const TensorView& global) {
  RAGGED_RETURN_IF_ERROR(CheckBox(global, box, local, "InsertShard"));
  const Shape zero(box.shape.size(), 0);
  CopyBox(local, zero, global, box.offset, box.shape);
  return absl::OkStatus();
}

absl::Status ScatterFromRoot(Communicator& comm, int root, const TensorView& global,
                             absl::Span<const ShardBox> boxes, const TensorView& local) {
  RAGGED_RETURN_IF_ERROR(CheckBoxes(comm, boxes, local, "ScatterFromRoot"));
  const int me = comm.rank();
  if (me == root) RAGGED_RETURN_IF_ERROR(CheckBox(global, boxes[me], local, "ScatterFromRoot"));
  // One broadcast per distinct box (replicas share one), of a contiguous shard-sized buffer.
  // Padded to whole 4-byte words for the staging copies.
  const int64_t n = local.num_elements(), bytes = (local.nbytes() + 3) / 4 * 4;
  HostBuffer tmp = HostBuffer::Allocate(DType::kI32, {bytes / 4});
  const TensorView tmp_view(tmp.data(), local.dtype(), local.shape());
  RAGGED_ASSIGN_OR_RETURN(Staging staging, Staging::Make(comm, bytes));
  for (size_t r = 0; r < boxes.size(); ++r) {
    bool seen = false;
    for (size_t q = 0; q < r; ++q) seen |= boxes[q] == boxes[r];
    if (seen) continue;
    if (me == root) RAGGED_RETURN_IF_ERROR(ExtractShard(global, boxes[r], tmp_view));
    RAGGED_ASSIGN_OR_RETURN(void* buf, staging.In(tmp.data(), bytes));
    RAGGED_RETURN_IF_ERROR(comm.Broadcast(buf, n, local.dtype(), root, nullptr));
    if (boxes[me] == boxes[r]) {
      RAGGED_RETURN_IF_ERROR(staging.Out(tmp.data(), bytes));
      const Shape zero(local.rank(), 0);
      CopyBox(tmp_view, zero, local, zero, local.shape());
    }
  }
  return absl::OkStatus();
}

absl::Status GatherToRoot(Communicator& comm, int root, const TensorView& local,
                          absl::Span<const ShardBox> boxes, const TensorView& global) {
  RAGGED_RETURN_IF_ERROR(CheckBoxes(comm, boxes, local, "GatherToRoot"));
  const int me = comm.rank();
  if (me == root) {
    for (const ShardBox& b : boxes)
      RAGGED_RETURN_IF_ERROR(CheckBox(global, b, local, "GatherToRoot"));
  }
  const int64_t n = local.num_elements(), esize = DTypeSize(local.dtype());
  const int64_t p = comm.size();
  const int64_t slot = (n * esize + 3) / 4 * 4;  // bytes per rank, whole words
  HostBuffer send = HostBuffer::Allocate(DType::kI32, {slot / 4});
  HostBuffer recv = HostBuffer::Allocate(DType::kI32, {p * slot / 4});
  const Shape zero(local.rank(), 0);
  CopyBox(local, zero, TensorView(send.data(), local.dtype(), local.shape()), zero, local.shape());
  // Gathered as 32-bit words, so that a padded slot is one unit for every dtype.
  RAGGED_ASSIGN_OR_RETURN(Staging s_send, Staging::Make(comm, slot));
  RAGGED_ASSIGN_OR_RETURN(Staging s_recv, Staging::Make(comm, p * slot));
  RAGGED_ASSIGN_OR_RETURN(void* sp, s_send.In(send.data(), slot));
  RAGGED_ASSIGN_OR_RETURN(void* rp, s_recv.In(recv.data(), p * slot));
  RAGGED_RETURN_IF_ERROR(comm.AllGather(sp, rp, slot / 4, DType::kI32, nullptr));
  RAGGED_RETURN_IF_ERROR(s_recv.Out(recv.data(), p * slot));
  if (me != root) return absl::OkStatus();
  for (int64_t r = p - 1; r >= 0; --r) {
    const TensorView shard(static_cast<char*>(recv.data()) + r * slot, local.dtype(),
                           local.shape());
    CopyBox(shard, zero, global, boxes[r].offset, local.shape());
  }
  return absl::OkStatus();
}

}  // namespace ragged
