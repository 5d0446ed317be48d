#include "sharding/sharded_attention.h"

#include <chrono>
#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/merge.h"
#include "runtime/status.h"

#if RAGGED_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace ragged {
namespace {

constexpr int64_t kAlignFloats = 64;  // 256 bytes: keeps every packed partial aligned

// 64-bit FNV-1a: the same bytes give the same hash on every rank and build.
uint64_t Fnv1a(absl::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 1099511628211ull;
  }
  return h;
}

std::string DescribeOptions(const RaggedDecodeAttentionOptions& o) {
  std::string s = absl::StrCat("platform=", PlatformName(o.platform));
  if (o.softmax_scale) absl::StrAppend(&s, " scale=", *o.softmax_scale);
  if (o.sliding_window) {
    absl::StrAppend(&s, " window=(", o.sliding_window->left, ",", o.sliding_window->right, ")");
  }
  if (o.logits_soft_cap) absl::StrAppend(&s, " cap=", *o.logits_soft_cap);
  return s;
}

const char* BackendName(CommBackend b) { return b == CommBackend::kNccl ? "nccl" : "mpi"; }

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

absl::Status CheckView(const TensorView& t, const char* name, DType dtype,
                       absl::Span<const int64_t> shape, Device device, bool contiguous) {
  if (t.data() == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": missing (null data)"));
  }
  if (t.dtype() != dtype || !(t.shape() == Shape(shape.begin(), shape.end()))) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": expected the local shard ",
                                                   DTypeName(dtype), ShapeToString(shape), ", got ",
                                                   DTypeName(t.dtype()), ShapeToString(t.shape())));
  }
  if (!(t.device() == device)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": expected a tensor on ",
                                                   device.ToString(), ", got one on ",
                                                   t.device().ToString()));
  }
  if (contiguous && !t.is_contiguous()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": expected a contiguous tensor"));
  }
  return absl::OkStatus();
}

// recv: [nb][nh][rows][w] bytes (rank-major over (batch axes, head axes)); out: [nb][rows][nh][w].
void RelayoutOnHost(const void* recv, void* out, int64_t nb, int64_t nh, int64_t rows, int64_t w) {
  const char* src = static_cast<const char*>(recv);
  char* dst = static_cast<char*>(out);
  for (int64_t b = 0; b < nb; ++b) {
    for (int64_t h = 0; h < nh; ++h) {
      for (int64_t r = 0; r < rows; ++r) {
        std::memcpy(dst + ((b * rows + r) * nh + h) * w, src + ((b * nh + h) * rows + r) * w,
                    static_cast<size_t>(w));
      }
    }
  }
}

}  // namespace

ShardedAttention::~ShardedAttention() = default;

absl::StatusOr<std::unique_ptr<ShardedAttention>> ShardedAttention::Create(
    MeshCommunicators* comms, const ShardedAttentionConfig& config) {
  if (comms == nullptr) return absl::InvalidArgumentError("ShardedAttention: comms is null");
  std::unique_ptr<ShardedAttention> op(new ShardedAttention());
  op->comms_ = comms;
  op->rank_ = comms->rank();
  op->time_phases_ = config.time_phases;

  // Everything this rank can check alone, then one collective: the ranks agree on the
  // configuration and learn whether any of them failed, so that they fail together and none goes
  // on to the Splits alone.
  const absl::Status local = op->Prepare(config);
  RAGGED_RETURN_IF_ERROR(op->CheckAgreement(config, local));
  const ShardPlan& plan = op->plan_;

  // Communicators, in the same order on every rank.
  const CommBackend want =
      op->platform_ == Platform::kCuda ? CommBackend::kNccl : CommBackend::kMpi;
  auto check_backend = [&](Communicator* c, absl::Span<const std::string> axes) -> absl::Status {
    if (c->backend() != want) {
      return absl::FailedPreconditionError(
          absl::StrCat("platform ", PlatformName(op->platform_), " needs ", BackendName(want),
                       " communicators (", want == CommBackend::kNccl ? "device" : "host",
                       " buffers), but the communicator for axes (", absl::StrJoin(axes, ", "),
                       ") is ", BackendName(c->backend())));
    }
    return absl::OkStatus();
  };
  if (plan.seq_shards > 1) {
    RAGGED_ASSIGN_OR_RETURN(op->seq_comm_, comms->ForAxes(plan.seq_axes));
    RAGGED_RETURN_IF_ERROR(check_backend(op->seq_comm_, plan.seq_axes));
  }
  if (op->gather_size_ > 1) {
    const std::vector<std::string> axes = plan.gather_axes();
    RAGGED_ASSIGN_OR_RETURN(op->gather_comm_, comms->ForAxes(axes));
    RAGGED_RETURN_IF_ERROR(check_backend(op->gather_comm_, axes));
  }
  RAGGED_RETURN_IF_ERROR(op->AllocateBuffers());
  return op;
}

absl::Status ShardedAttention::Prepare(const ShardedAttentionConfig& config) {
  Communicator& world = comms_->world();
  RaggedDecodeAttentionOptions options = config.options;
  if (options.platform == Platform::kAuto) {
    options.platform = world.backend() == CommBackend::kNccl ? Platform::kCuda : Platform::kCpu;
  }
  platform_ = options.platform;
  device_ = platform_ == Platform::kCuda ? Device::Cuda(config.device) : Device::Cpu();
  options_ = options;  // resolved, for the agreement check; completed below

  RAGGED_ASSIGN_OR_RETURN(plan_, PlanShardedAttention(comms_->mesh(), config.specs, config.shape));
  if (options.kv_offset != 0 || options.kv_total_capacity != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("options: kv_offset (", options.kv_offset, ") and kv_total_capacity (",
                     options.kv_total_capacity, ") are set by the sharded runtime; leave them 0"));
  }
  if (platform_ == Platform::kCuda) {
    if (!BuiltWithCuda()) {
      return absl::FailedPreconditionError(
          "platform cuda: this build of ragged has no CUDA support");
    }
    if (config.device < 0 || config.device >= CudaDeviceCount()) {
      return absl::FailedPreconditionError(absl::StrCat("platform cuda: device ", config.device,
                                                        " is not available (", CudaDeviceCount(),
                                                        " visible)"));
    }
  }
  gather_size_ = plan_.gather_batch_size * plan_.gather_head_size;
  const CommBackend want = platform_ == Platform::kCuda ? CommBackend::kNccl : CommBackend::kMpi;
  if ((plan_.seq_shards > 1 || gather_size_ > 1) && world.backend() != want) {
    return absl::FailedPreconditionError(
        absl::StrCat("platform ", PlatformName(platform_), " needs ", BackendName(want),
                     " communicators (", want == CommBackend::kNccl ? "device" : "host",
                     " buffers), but the world communicator is ", BackendName(world.backend())));
  }
  options_.kv_offset = plan_.SeqIndex(rank_) * plan_.local_capacity;
  options_.kv_total_capacity = plan_.shape.capacity;
  return absl::OkStatus();
}

absl::Status ShardedAttention::CheckAgreement(const ShardedAttentionConfig& config,
                                              const absl::Status& local) {
  Communicator& world = comms_->world();
  if (world.size() == 1) return local;
  RaggedDecodeAttentionOptions resolved = config.options;
  resolved.platform = platform_;
  // Specs are compared trimmed: "(None, sp)" and "(None, sp, None, None)" say the same thing.
  ShardedAttentionSpecs specs = config.specs;
  for (PartitionSpec* spec : {&specs.query, &specs.key, &specs.value, &specs.sequence_start,
                              &specs.sequence_end, &specs.softmax_aux, &specs.output}) {
    *spec = spec->Trimmed();
  }
  const std::string desc =
      absl::StrCat("mesh (", comms_->mesh().ToString(), ") ", config.shape.ToString(), " ",
                   specs.ToString(), " ", DescribeOptions(resolved));
  const uint64_t h = Fnv1a(desc);
  // max over ranks of (x, -x) gives (max, -min): all equal iff max == min. 31-bit halves keep the
  // negation in range. The last word is the highest failing rank + 1 (0: none failed).
  const int32_t lo = static_cast<int32_t>(h & 0x7fffffff);
  const int32_t hi = static_cast<int32_t>((h >> 31) & 0x7fffffff);
  int32_t v[5] = {lo, hi, -lo, -hi, local.ok() ? 0 : world.rank() + 1};
  if (world.backend() == CommBackend::kNccl) {
    const int64_t shape[] = {5};
    RAGGED_ASSIGN_OR_RETURN(DeviceBuffer d,
                            DeviceBuffer::Allocate(DType::kI32, shape, world.device()));
    TensorView host(v, DType::kI32, shape);
    RAGGED_RETURN_IF_ERROR(d.CopyFromHost(host, config.stream));
    RAGGED_RETURN_IF_ERROR(
        world.AllReduce(d.data(), d.data(), 5, DType::kI32, ReduceOp::kMax, config.stream));
    RAGGED_RETURN_IF_ERROR(d.CopyToHost(host, config.stream));
    RAGGED_RETURN_IF_ERROR(SynchronizeStream(config.stream));
  } else {
    RAGGED_RETURN_IF_ERROR(world.AllReduce(v, v, 5, DType::kI32, ReduceOp::kMax, nullptr));
  }
  if (v[0] != lo || v[1] != hi || -v[2] != lo || -v[3] != hi) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ShardedAttention: the ranks disagree about the configuration (mesh, shapes, specs or "
        "options); every rank must pass the same. Rank ",
        world.rank(), " has: ", desc));
  }
  if (!local.ok()) return local;
  if (v[4] != 0) {
    return absl::AbortedError(
        absl::StrCat("ShardedAttention: rank ", v[4] - 1,
                     " could not set up (its error says why); this rank's setup was valid"));
  }
  return absl::OkStatus();
}

absl::StatusOr<TensorView> ShardedAttention::Allocate(DType dtype,
                                                      absl::Span<const int64_t> shape) {
  if (platform_ == Platform::kCuda) {
    RAGGED_ASSIGN_OR_RETURN(DeviceBuffer b, DeviceBuffer::Allocate(dtype, shape, device_.index));
    buffer_bytes_ += b.nbytes();
    TensorView v(b.data(), dtype, shape, device_);
    device_buffers_.push_back(std::move(b));
    return v;
  }
  HostBuffer b = HostBuffer::Allocate(dtype, shape);
  buffer_bytes_ += b.nbytes();
  TensorView v = b.view();
  host_buffers_.push_back(std::move(b));
  return v;
}

absl::Status ShardedAttention::AllocateBuffers() {
  const ShardPlan& p = plan_;
  const int64_t B = p.local_batch, H = p.local_q_heads, D = p.shape.head_dim;
  const DType out = p.shape.out_dtype();
  if (p.seq_shards > 1) {
    pack_ = (B * H * D + B * H + kAlignFloats - 1) / kAlignFloats * kAlignFloats;
    const int64_t send_shape[] = {pack_};
    const int64_t recv_shape[] = {p.seq_shards * pack_};
    RAGGED_ASSIGN_OR_RETURN(pack_send_, Allocate(DType::kF32, send_shape));
    RAGGED_ASSIGN_OR_RETURN(pack_recv_, Allocate(DType::kF32, recv_shape));
  }
  if (gather_size_ > 1) {
    const int64_t o_shape[] = {B, H, D};
    const int64_t l_shape[] = {B, H};
    RAGGED_ASSIGN_OR_RETURN(shard_out_, Allocate(out, o_shape));
    if (p.shape.with_lse) {
      RAGGED_ASSIGN_OR_RETURN(shard_lse_, Allocate(DType::kF32, l_shape));
    }
    if (p.gather_head_size > 1) {
      const int64_t go_shape[] = {gather_size_, B, H, D};
      const int64_t gl_shape[] = {gather_size_, B, H};
      RAGGED_ASSIGN_OR_RETURN(gather_out_, Allocate(out, go_shape));
      if (p.shape.with_lse) {
        RAGGED_ASSIGN_OR_RETURN(gather_lse_, Allocate(DType::kF32, gl_shape));
      }
    }
  }
  if (platform_ == Platform::kCuda) {
    // The workspace depends on shapes and options only: size it from placeholder views.
    RaggedDecodeAttentionArgs fake;
    void* const kFake = reinterpret_cast<void*>(uintptr_t{4096});
    auto view = [&](ShardedTensor t, DType dtype) {
      return TensorView(kFake, dtype, p.LocalShape(t), device_);
    };
    fake.query = view(ShardedTensor::kQuery, p.shape.dtype);
    fake.key = view(ShardedTensor::kKey, p.shape.dtype);
    fake.value = view(ShardedTensor::kValue, p.shape.dtype);
    fake.sequence_start = view(ShardedTensor::kSequenceStart, DType::kI32);
    fake.sequence_end = view(ShardedTensor::kSequenceEnd, DType::kI32);
    if (p.shape.sinks != SinkLayout::kNone) {
      fake.softmax_aux = view(ShardedTensor::kSoftmaxAux, p.shape.aux_dtype);
    }
    fake.output = view(ShardedTensor::kOutput, p.shape.out_dtype());
    if (p.shape.with_lse) fake.lse = view(ShardedTensor::kLse, DType::kF32);
    const RaggedDecodeAttentionArgs args = KernelArgs(fake);
    RAGGED_ASSIGN_OR_RETURN(int64_t bytes, RaggedDecodeAttentionWorkspaceSize(args, options_));
    if (bytes > 0) {
      const int64_t shape[] = {bytes};
      RAGGED_ASSIGN_OR_RETURN(DeviceBuffer b, DeviceBuffer::AllocateBytes(bytes, device_.index));
      buffer_bytes_ += bytes;
      workspace_ = TensorView(b.data(), DType::kI32, shape, device_);  // raw bytes; dtype unused
      device_buffers_.push_back(std::move(b));
    }
  }
  return absl::OkStatus();
}

std::optional<TensorView> ShardedAttention::KernelAux(
    const RaggedDecodeAttentionArgs& local) const {
  if (plan_.shape.sinks == SinkLayout::kNone || !local.softmax_aux) return std::nullopt;
  if (plan_.shape.sinks == SinkLayout::kShared) return local.softmax_aux;
  const auto [first, count] = plan_.KernelAuxRows(rank_);
  return local.softmax_aux->Slice(0, first, count);
}

RaggedDecodeAttentionArgs ShardedAttention::KernelArgs(
    const RaggedDecodeAttentionArgs& local) const {
  const ShardPlan& p = plan_;
  const int64_t B = p.local_batch, H = p.local_q_heads, D = p.shape.head_dim;
  RaggedDecodeAttentionArgs a;
  a.query = local.query;
  a.key = local.key;
  a.value = local.value;
  a.sequence_start = local.sequence_start;
  a.sequence_end = local.sequence_end;
  if (p.seq_shards > 1) {
    // A partial: f32 output and lse into the packed send buffer, no sinks.
    const int64_t o_shape[] = {B, H, D};
    const int64_t l_shape[] = {B, H};
    float* base = pack_send_.data_as<float>();
    a.output = TensorView(base, DType::kF32, o_shape, device_);
    a.lse = TensorView(base == nullptr ? nullptr : base + B * H * D, DType::kF32, l_shape, device_);
  } else {
    a.softmax_aux = KernelAux(local);
    if (gather_size_ > 1) {
      a.output = shard_out_;
      if (p.shape.with_lse) a.lse = shard_lse_;
    } else {
      a.output = local.output;
      if (p.shape.with_lse) a.lse = local.lse;
    }
  }
  a.workspace = workspace_.data();
  a.workspace_bytes = workspace_.data() == nullptr ? 0 : workspace_.num_elements();
  return a;
}

absl::Status ShardedAttention::CheckLocal(const RaggedDecodeAttentionArgs& local) const {
  const ShardPlan& p = plan_;
  const DType dt = p.shape.dtype;
  auto shape = [&](ShardedTensor t) { return p.LocalShape(t); };
  // Inputs may be strided (the kernel checks their innermost stride); outputs are contiguous.
  RAGGED_RETURN_IF_ERROR(
      CheckView(local.query, "query", dt, shape(ShardedTensor::kQuery), device_, false));
  RAGGED_RETURN_IF_ERROR(
      CheckView(local.key, "key", dt, shape(ShardedTensor::kKey), device_, false));
  RAGGED_RETURN_IF_ERROR(
      CheckView(local.value, "value", dt, shape(ShardedTensor::kValue), device_, false));
  RAGGED_RETURN_IF_ERROR(CheckView(local.sequence_start, "sequence_start", DType::kI32,
                                   shape(ShardedTensor::kSequenceStart), device_, false));
  RAGGED_RETURN_IF_ERROR(CheckView(local.sequence_end, "sequence_end", DType::kI32,
                                   shape(ShardedTensor::kSequenceEnd), device_, false));
  if (p.shape.sinks != SinkLayout::kNone) {
    if (!local.softmax_aux) {
      return absl::InvalidArgumentError("softmax_aux: missing, but the configuration has sinks");
    }
    RAGGED_RETURN_IF_ERROR(CheckView(*local.softmax_aux, "softmax_aux", p.shape.aux_dtype,
                                     shape(ShardedTensor::kSoftmaxAux), device_, false));
  } else if (local.softmax_aux) {
    return absl::InvalidArgumentError("softmax_aux: given, but the configuration has no sinks");
  }
  RAGGED_RETURN_IF_ERROR(CheckView(local.output, "output", p.shape.out_dtype(),
                                   shape(ShardedTensor::kOutput), device_, true));
  if (p.shape.with_lse) {
    if (!local.lse) return absl::InvalidArgumentError("lse: missing, but with_lse is set");
    RAGGED_RETURN_IF_ERROR(
        CheckView(*local.lse, "lse", DType::kF32, shape(ShardedTensor::kLse), device_, true));
  } else if (local.lse) {
    return absl::InvalidArgumentError("lse: given, but the configuration has with_lse false");
  }
  return absl::OkStatus();
}

absl::Status ShardedAttention::Gather(const TensorView& send, const TensorView& recv,
                                      const TensorView& out, int64_t inner, Stream stream) {
  const ShardPlan& p = plan_;
  if (p.gather_head_size == 1) {
    // Only batch axes: the rank-major result is the output's layout.
    return gather_comm_->AllGather(send.data(), out.data(), send.num_elements(), send.dtype(),
                                   stream);
  }
  RAGGED_RETURN_IF_ERROR(
      gather_comm_->AllGather(send.data(), recv.data(), send.num_elements(), send.dtype(), stream));
  const int64_t nb = p.gather_batch_size, nh = p.gather_head_size, rows = p.local_batch;
  const int64_t w = p.local_q_heads * inner * DTypeSize(send.dtype());
  if (platform_ != Platform::kCuda) {
    RelayoutOnHost(recv.data(), out.data(), nb, nh, rows, w);
    return absl::OkStatus();
  }
#if RAGGED_WITH_CUDA
  // For each (b, h) block: `rows` rows of w bytes, contiguous in recv, every nh-th slot in out.
  const char* src = static_cast<const char*>(recv.data());
  char* dst = static_cast<char*>(out.data());
  for (int64_t b = 0; b < nb; ++b) {
    for (int64_t h = 0; h < nh; ++h) {
      RAGGED_CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(
          dst + (b * rows * nh + h) * w, static_cast<size_t>(nh * w), src + (b * nh + h) * rows * w,
          static_cast<size_t>(w), static_cast<size_t>(w), static_cast<size_t>(rows),
          cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(stream)));
    }
  }
  return absl::OkStatus();
#else
  return absl::FailedPreconditionError("platform cuda: this build of ragged has no CUDA support");
#endif
}

absl::Status ShardedAttention::Run(const RaggedDecodeAttentionArgs& local, Stream stream) {
  RAGGED_RETURN_IF_ERROR(CheckLocal(local));
  const ShardPlan& p = plan_;
  const bool cuda = platform_ == Platform::kCuda;
  double t0 = 0;
  auto phase_done = [&](double* slot) -> absl::Status {
    if (!time_phases_) return absl::OkStatus();
    if (cuda) RAGGED_RETURN_IF_ERROR(SynchronizeStream(stream));
    const double t = Now();
    *slot = t - t0;
    t0 = t;
    return absl::OkStatus();
  };
  timings_ = {};
  if (time_phases_) t0 = Now();

  // 1. The per-shard kernel (a partial when the sequence is split).
  RAGGED_RETURN_IF_ERROR(RaggedDecodeAttention(KernelArgs(local), options_, stream));
  RAGGED_RETURN_IF_ERROR(phase_done(&timings_.kernel_s));

  // Where the whole per-shard output goes: the gather's send buffer, or the caller's output.
  const TensorView shard_out = gather_size_ > 1 ? shard_out_ : local.output;
  const std::optional<TensorView> shard_lse =
      !p.shape.with_lse ? std::nullopt
                        : std::optional<TensorView>(gather_size_ > 1 ? shard_lse_ : *local.lse);

  // 2. Sequence split: gather the partials over the sequence group and merge them, sinks once.
  if (p.seq_shards > 1) {
    RAGGED_RETURN_IF_ERROR(
        seq_comm_->AllGather(pack_send_.data(), pack_recv_.data(), pack_, DType::kF32, stream));
    const int64_t P = p.seq_shards, B = p.local_batch, H = p.local_q_heads, D = p.shape.head_dim;
    float* base = pack_recv_.data_as<float>();
    const int64_t po_shape[] = {P, B, H, D}, po_strides[] = {pack_, H * D, D, 1};
    const int64_t pl_shape[] = {P, B, H}, pl_strides[] = {pack_, H, 1};
    MergePartialsArgs m;
    m.partial_output = TensorView(base, DType::kF32, po_shape, po_strides, device_);
    m.partial_lse = TensorView(base + B * H * D, DType::kF32, pl_shape, pl_strides, device_);
    m.softmax_aux = KernelAux(local);
    m.num_kv_heads = p.local_kv_heads;
    m.output = shard_out;
    m.lse = shard_lse;
    RAGGED_RETURN_IF_ERROR(MergePartials(m, stream));
    RAGGED_RETURN_IF_ERROR(phase_done(&timings_.merge_s));
  }

  // 3. Gather the output over the batch/head axes the output spec does not keep.
  if (gather_size_ > 1) {
    RAGGED_RETURN_IF_ERROR(Gather(shard_out_, gather_out_, local.output, p.shape.head_dim, stream));
    if (p.shape.with_lse)
      RAGGED_RETURN_IF_ERROR(Gather(shard_lse_, gather_lse_, *local.lse, 1, stream));
    RAGGED_RETURN_IF_ERROR(phase_done(&timings_.gather_s));
  }
  return absl::OkStatus();
}

}  // namespace ragged
