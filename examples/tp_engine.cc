// tp_engine: how an inference engine embeds ragged. A small multi-layer decoder (random weights)
// generates tokens for a queue of requests with continuous batching: every layer keeps a KV cache
// [slots, S, HKV_local, D] that grows by one position per step, requests of different lengths
// finish at different steps and their slot takes the next request (or stays empty).
//
// The engine owns MPI and its tensor-parallel groups: it calls MPI_Init and MPI_Comm_split
// itself (ranks r and r' share a TP group when r / tp == r' / tp; the groups are data-parallel
// replicas with their own requests). On the CPU it wraps its MPI_Comm with MpiCommunicator::Borrow;
// on GPUs it makes its own ncclComm_t for the group (ncclCommInitRank, the id sent over its
// MPI_Comm) and its own stream, and wraps both with NcclCommunicator::Borrow. Either way it hands
// the communicator to the library through MeshCommunicators::Borrow on a mesh "tp=T": the library
// then makes no communicator of its own and never frees the engine's, which the engine frees at
// the end, after the library's objects are gone.
//
// Tensor parallelism is Megatron-style: the q/k/v and MLP-up projections are split by columns
// (each rank computes its heads), ragged's ShardedAttention runs the attention of the rank's heads
// (out_spec (None, tp): no communication), and the output and MLP-down projections are split by
// rows and summed with an all-reduce over the same borrowed communicator. With
// --attention_output=gathered the library all-gathers the heads instead and every rank applies
// the whole output projection (the same model; more communication inside the library).
//
// On a GPU the whole step (the copy of the slots' ranges, every layer, the library's attention and
// the NCCL all-reduces) is captured once in a CUDA graph on the engine's stream and replayed at
// every step; between replays the host only updates the ranges in pinned memory and admits new
// requests. On the CPU the same loop runs over MPI on host buffers. It prints tokens per second
// and checks the attention of one layer, at one step, against the double-precision reference; a
// failed check is an error.
//
//   mpirun -np 4 build/examples/tp_engine --tp=2 --layers=4 --requests=16
#include <mpi.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "examples/example_util.h"
#include "examples/tp_engine_kernels.h"
#include "kernels/reference.h"
#include "runtime/buffer.h"
#include "runtime/mpi_communicator.h"
#include "runtime/status.h"
#include "sharding/mesh.h"
#include "sharding/shard_plan.h"
#include "sharding/sharded_attention.h"

#if RAGGED_WITH_CUDA
#include <cuda_runtime_api.h>
#include <nccl.h>

#include "runtime/nccl_communicator.h"
#endif

ABSL_FLAG(int32_t, tp, 0, "Ranks per tensor-parallel group (0: all ranks).");
ABSL_FLAG(std::string, platform, "auto", "cpu, cuda, or auto (cuda when this rank has a GPU).");
ABSL_FLAG(int32_t, layers, 4, "Decoder layers.");
ABSL_FLAG(int32_t, hidden, 256, "Hidden size.");
ABSL_FLAG(int32_t, q_heads, 8, "Query heads.");
ABSL_FLAG(int32_t, kv_heads, 4, "KV heads.");
ABSL_FLAG(int32_t, head_dim, 64, "Head dimension (the CUDA kernels take 64, 80, 96, 128, 256).");
ABSL_FLAG(int32_t, ffn, 512, "MLP inner size.");
ABSL_FLAG(int32_t, slots, 4, "Batch slots (sequences decoded together).");
ABSL_FLAG(int32_t, capacity, 128, "KV cache capacity per slot (prompt + generated tokens).");
ABSL_FLAG(int32_t, requests, 8, "Requests per data-parallel replica.");
ABSL_FLAG(std::string, dtype, "bf16", "KV cache and attention dtype: f32, f16 or bf16.");
ABSL_FLAG(std::string, attention_output, "sharded",
          "sharded: row-parallel output projection + all-reduce; gathered: the library "
          "all-gathers the heads.");
ABSL_FLAG(int32_t, check_layer, 0, "The layer whose attention is checked against the reference.");
ABSL_FLAG(int32_t, check_step, -1, "The step of the check (-1: the middle of the run).");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the weights and requests.");
ABSL_FLAG(int32_t, threads, 0, "CPU threads per rank (0: the host's cores shared by its ranks).");

namespace ragged::examples {
namespace {

struct Options {
  int tp, layers, hidden, q_heads, kv_heads, head_dim, ffn, slots, capacity, requests;
  DType dtype;
  bool gathered;
  int check_layer, check_step, threads;
  uint64_t seed;
  Platform platform = Platform::kCpu;
  int device = -1;  // this rank's GPU (kCuda)
};

// Where this rank sits: its replica (data-parallel group) and its rank in the TP group.
struct Place {
  int world_rank = 0, world_size = 1, replica = 0, tp_rank = 0;
};

// A row-major [rows, cols] f32 matrix.
struct Matrix {
  int rows = 0, cols = 0;
  std::vector<float> w;
  float& at(int r, int c) { return w[static_cast<size_t>(r) * cols + c]; }
};

// Columns [c0, c0 + n) (or rows [r0, r0 + n)) of a global random matrix [R, C] scaled by 1/sqrt(R):
// every rank draws the same global matrix and keeps its part.
Matrix SliceCols(uint64_t seed, uint64_t stream, int R, int C, int c0, int n) {
  Matrix m{R, n, std::vector<float>(static_cast<size_t>(R) * n)};
  const float scale = 1.0f / std::sqrt(static_cast<float>(R));
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < n; ++c) {
      m.at(r, c) = scale * EngineHash(seed, stream, uint64_t(r) * C + c0 + c);
    }
  }
  return m;
}
Matrix SliceRows(uint64_t seed, uint64_t stream, int R, int C, int r0, int n) {
  Matrix m{n, C, std::vector<float>(static_cast<size_t>(n) * C)};
  const float scale = 1.0f / std::sqrt(static_cast<float>(R));
  for (int r = 0; r < n; ++r) {
    for (int c = 0; c < C; ++c)
      m.at(r, c) = scale * EngineHash(seed, stream, uint64_t(r0 + r) * C + c);
  }
  return m;
}

// The weights of one layer on this rank.
struct Weights {
  Matrix wq, wk, wv;  // [hidden, local heads * D] (column-parallel)
  Matrix wo;          // [local (or all, when gathered) heads * D, hidden] (row-parallel)
  Matrix w1;          // [hidden, ffn / tp]
  Matrix w2;          // [ffn / tp, hidden]
};

// This rank's share of the model, from the plan of the attention.
struct Share {
  int hq = 0, hkv = 0;  // local query and KV heads
  int q0 = 0, g0 = 0;   // first local query head, first local KV head
  int f_local = 0;      // local MLP columns
};

std::vector<Weights> MakeWeights(const Options& o, const Share& s, int tp_rank) {
  const int D = o.head_dim, H = o.hidden;
  std::vector<Weights> layers(o.layers);
  for (int l = 0; l < o.layers; ++l) {
    const uint64_t seed = o.seed * 1000 + l * 10;
    Weights& w = layers[l];
    w.wq = SliceCols(seed, 1, H, o.q_heads * D, s.q0 * D, s.hq * D);
    w.wk = SliceCols(seed, 2, H, o.kv_heads * D, s.g0 * D, s.hkv * D);
    w.wv = SliceCols(seed, 3, H, o.kv_heads * D, s.g0 * D, s.hkv * D);
    w.wo = o.gathered ? SliceRows(seed, 4, o.q_heads * D, H, 0, o.q_heads * D)
                      : SliceRows(seed, 4, o.q_heads * D, H, s.q0 * D, s.hq * D);
    w.w1 = SliceCols(seed, 5, H, o.ffn, tp_rank * s.f_local, s.f_local);
    w.w2 = SliceRows(seed, 6, o.ffn, H, tp_rank * s.f_local, s.f_local);
  }
  return layers;
}

// The first hidden state of every slot.
std::vector<float> InitialHidden(const Options& o) {
  std::vector<float> x(size_t(o.slots) * o.hidden);
  for (size_t i = 0; i < x.size(); ++i) x[i] = EngineHash(o.seed, 7, i);
  return x;
}

// Requests and continuous batching: which request each slot serves, and the slots' [start, end)
// ranges in the KV caches. Shared by the CPU and GPU loops.
class Scheduler {
 public:
  Scheduler(const Options& o, int replica) : o_(o), start_(o.slots, 0), end_(o.slots, 0) {
    std::mt19937_64 rng(o.seed * 7919 + replica);
    const int S = o.capacity;
    for (int i = 0; i < o.requests; ++i) {
      Request r;
      r.prompt = std::uniform_int_distribution<int>(1, std::max(1, S / 2))(rng);
      r.generate = std::uniform_int_distribution<int>(1, S - r.prompt)(rng);
      requests_.push_back(r);
    }
    slots_.assign(o.slots, Slot{});
  }

  // Fills every slot with a request; `prefill(slot, request, prompt)` writes the prompt's K/V.
  void Start(const std::function<void(int, int, int)>& prefill) {
    for (int b = 0; b < o_.slots; ++b) Admit(b, prefill);
  }
  bool Done() const {
    return std::none_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.request >= 0; });
  }
  // Before a step: the new token of every active slot sits at position end; it attends
  // [start, end] (end grows by one).
  void BeginStep() {
    for (int b = 0; b < o_.slots; ++b) end_[b] += slots_[b].request >= 0 ? 1 : 0;
  }
  // After a step: counts the tokens, retires finished requests and admits the next ones.
  void EndStep(const std::function<void(int, int, int)>& prefill) {
    for (int b = 0; b < o_.slots; ++b) {
      if (slots_[b].request < 0) continue;
      ++tokens_;
      ++slots_[b].generated;
      if (slots_[b].generated >= requests_[slots_[b].request].generate || end_[b] >= o_.capacity) {
        Admit(b, prefill);
      }
    }
    ++steps_;
  }
  // The number of steps the whole run takes (a dry run of the same schedule).
  int CountSteps() const {
    Scheduler dry = *this;
    const auto none = [](int, int, int) {};
    dry.Start(none);
    while (!dry.Done()) {
      dry.BeginStep();
      dry.EndStep(none);
    }
    return dry.steps_;
  }

  const int32_t* start() const { return start_.data(); }
  const int32_t* end() const { return end_.data(); }
  int64_t tokens() const { return tokens_; }
  int steps() const { return steps_; }

 private:
  struct Request {
    int prompt = 0, generate = 0;
  };
  struct Slot {
    int request = -1;  // -1: empty
    int generated = 0;
  };
  void Admit(int b, const std::function<void(int, int, int)>& prefill) {
    slots_[b] = Slot{};
    start_[b] = end_[b] = 0;
    if (next_ >= o_.requests) return;
    const int id = next_++;
    slots_[b].request = id;
    end_[b] = requests_[id].prompt;
    prefill(b, id, requests_[id].prompt);
  }

  Options o_;
  std::vector<Request> requests_;
  std::vector<Slot> slots_;
  std::vector<int32_t> start_, end_;
  int next_ = 0;
  int64_t tokens_ = 0;
  int steps_ = 0;
};

// What one rank measured.
struct Result {
  int steps = 0;
  int64_t tokens = 0;
  double seconds = 0.0;
  double step_ms = 0.0;  // median
  std::optional<VerifyResult> check;
  int check_step = 0;
  int library_splits = 0;
  Share share;
  bool kv_replicated = false;
};

ShardedAttentionConfig AttentionConfig(const Options& o) {
  ShardedAttentionConfig cfg;
  cfg.shape.batch = o.slots;
  cfg.shape.capacity = o.capacity;
  cfg.shape.num_q_heads = o.q_heads;
  cfg.shape.num_kv_heads = o.kv_heads;
  cfg.shape.head_dim = o.head_dim;
  cfg.shape.dtype = o.dtype;
  cfg.shape.output_dtype = DType::kF32;
  cfg.specs.query = PartitionSpec({{}, {"tp"}});    // [B, HQ, D]: heads over tp
  cfg.specs.key = PartitionSpec({{}, {}, {"tp"}});  // [B, S, HKV, D]
  cfg.specs.value = cfg.specs.key;
  cfg.specs.output = o.gathered ? PartitionSpec() : cfg.specs.query;
  cfg.options.platform = o.platform;
  cfg.options.num_threads = o.threads;
  cfg.device = std::max(0, o.device);
  return cfg;
}

Share ShareOf(const Options& o, const ShardedAttention& attn, int mesh_rank, int tp_rank) {
  Share s;
  s.hq = static_cast<int>(attn.plan().local_q_heads);
  s.hkv = static_cast<int>(attn.plan().local_kv_heads);
  s.q0 = tp_rank * s.hq;
  s.g0 = static_cast<int>(attn.plan().FirstKvHead(mesh_rank));
  s.f_local = o.ffn / o.tp;
  return s;
}

// Checks this rank's heads of the attention output (host copies) against the reference.
absl::StatusOr<VerifyResult> CheckAttention(const Options& o, const Share& s, const HostBuffer& q,
                                            const HostBuffer& key, const HostBuffer& value,
                                            const int32_t* start, const int32_t* end,
                                            const HostBuffer& out) {
  const int B = o.slots, D = o.head_dim;
  DecodeInputs in;
  in.query = HostBuffer::Allocate(o.dtype, q.shape());
  std::memcpy(in.query.data(), q.data(), q.nbytes());
  in.key = HostBuffer::Allocate(o.dtype, key.shape());
  std::memcpy(in.key.data(), key.data(), key.nbytes());
  in.value = HostBuffer::Allocate(o.dtype, value.shape());
  std::memcpy(in.value.data(), value.data(), value.nbytes());
  in.start = HostBuffer::Allocate(DType::kI32, {B});
  in.end = HostBuffer::Allocate(DType::kI32, {B});
  std::memcpy(in.start.data(), start, B * 4);
  std::memcpy(in.end.data(), end, B * 4);
  // The rank's own heads of the output (all heads are there when gathered).
  HostBuffer mine = HostBuffer::Allocate(DType::kF32, {B, s.hq, D});
  const int64_t out_heads = out.shape()[1];
  const int64_t first = o.gathered ? s.q0 : 0;
  for (int b = 0; b < B; ++b) {
    std::memcpy(mine.data_as<float>() + int64_t(b) * s.hq * D,
                out.data_as<float>() + (b * out_heads + first) * D, size_t(s.hq) * D * 4);
  }
  RAGGED_ASSIGN_OR_RETURN(VerifyResult v,
                          Verify(in, mine.view(), nullptr, {}, SampleRows(in, 0, 0)));
  return v;
}

// ---- The CPU loop -------------------------------------------------------------------------------

// y[b, :] = x[b, :] @ m (x: [B, m.rows], y: [B, m.cols]).
void MatMul(const std::vector<float>& x, int B, const Matrix& m, std::vector<float>& y) {
  y.assign(static_cast<size_t>(B) * m.cols, 0.0f);
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; ++b) {
    for (int c = 0; c < m.cols; ++c) {
      float acc = 0.0f;
      for (int r = 0; r < m.rows; ++r) {
        acc += x[size_t(b) * m.rows + r] * m.w[size_t(r) * m.cols + c];
      }
      y[size_t(b) * m.cols + c] = acc;
    }
  }
}

void RmsNorm(const std::vector<float>& x, int B, int H, std::vector<float>& y) {
  y.resize(x.size());
  for (int b = 0; b < B; ++b) {
    double ss = 0;
    for (int i = 0; i < H; ++i) ss += double(x[size_t(b) * H + i]) * x[size_t(b) * H + i];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / H + 1e-6));
    for (int i = 0; i < H; ++i) y[size_t(b) * H + i] = x[size_t(b) * H + i] * inv;
  }
}

absl::StatusOr<Result> RunCpu(const Options& o, const Place& p, MPI_Comm tp_comm) {
  RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<MpiCommunicator> tp, MpiCommunicator::Borrow(tp_comm));
  RAGGED_ASSIGN_OR_RETURN(Mesh mesh, Mesh::Create({{"tp", o.tp}}));
  RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<MeshCommunicators> comms,
                          MeshCommunicators::Borrow(mesh, tp.get()));
  RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<ShardedAttention> attn,
                          ShardedAttention::Create(comms.get(), AttentionConfig(o)));
  const Share s = ShareOf(o, *attn, comms->rank(), p.tp_rank);
  const int D = o.head_dim, H = o.hidden, B = o.slots, S = o.capacity;
  std::vector<Weights> weights = MakeWeights(o, s, p.tp_rank);
  std::vector<HostBuffer> key(o.layers), value(o.layers);
  for (int l = 0; l < o.layers; ++l) {
    key[l] = HostBuffer::Allocate(o.dtype, {B, S, s.hkv, D});
    value[l] = HostBuffer::Allocate(o.dtype, {B, S, s.hkv, D});
  }
  // Prefill, emulated: the prompt's K/V are drawn (the same global values for every TP size).
  const auto prefill = [&](int b, int id, int prompt) {
    for (int l = 0; l < o.layers; ++l) {
      for (int t = 0; t < prompt; ++t) {
        for (int g = 0; g < s.hkv; ++g) {
          for (int d = 0; d < D; ++d) {
            const uint64_t i = ((uint64_t(id) * S + t) * o.kv_heads + s.g0 + g) * D + d;
            const int64_t at = ((int64_t(b) * S + t) * s.hkv + g) * D + d;
            StoreFromFloat(key[l].data(), o.dtype, at, EngineHash(o.seed + p.replica, 100 + l, i));
            StoreFromFloat(value[l].data(), o.dtype, at,
                           EngineHash(o.seed + p.replica, 200 + l, i));
          }
        }
      }
    }
  };
  Scheduler sched(o, p.replica);
  Result r;
  r.check_step = o.check_step >= 0 ? o.check_step : sched.CountSteps() / 2;
  r.share = s;
  r.kv_replicated = attn->plan().kv_heads_replicated;
  sched.Start(prefill);

  HostBuffer start = HostBuffer::Allocate(DType::kI32, {B});
  HostBuffer end = HostBuffer::Allocate(DType::kI32, {B});
  HostBuffer q = HostBuffer::Allocate(o.dtype, {B, s.hq, D});
  HostBuffer out = HostBuffer::Allocate(DType::kF32, attn->LocalShape(ShardedTensor::kOutput));
  std::vector<float> x = InitialHidden(o), h, qf, kf, vf, proj, up;
  std::vector<double> step_ms;
  const auto t_begin = std::chrono::steady_clock::now();
  while (!sched.Done()) {
    const auto t0 = std::chrono::steady_clock::now();
    sched.BeginStep();
    std::memcpy(start.data(), sched.start(), B * 4);
    std::memcpy(end.data(), sched.end(), B * 4);
    const int32_t* en = sched.end();
    for (int l = 0; l < o.layers; ++l) {
      const Weights& w = weights[l];
      RmsNorm(x, B, H, h);
      MatMul(h, B, w.wq, qf);
      MatMul(h, B, w.wk, kf);
      MatMul(h, B, w.wv, vf);
      // Append this step's K/V at position end - 1 of every active slot.
      for (int b = 0; b < B; ++b) {
        if (en[b] <= 0) continue;
        for (int i = 0; i < s.hkv * D; ++i) {
          const int64_t at = (int64_t(b) * S + en[b] - 1) * s.hkv * D + i;
          StoreFromFloat(key[l].data(), o.dtype, at, kf[size_t(b) * s.hkv * D + i]);
          StoreFromFloat(value[l].data(), o.dtype, at, vf[size_t(b) * s.hkv * D + i]);
        }
      }
      for (int i = 0; i < B * s.hq * D; ++i) StoreFromFloat(q.data(), o.dtype, i, qf[i]);
      RaggedDecodeAttentionArgs args;
      args.query = q.view();
      args.key = key[l].view();
      args.value = value[l].view();
      args.sequence_start = start.view();
      args.sequence_end = end.view();
      args.output = out.view();
      RAGGED_RETURN_IF_ERROR(attn->Run(args, /*stream=*/nullptr));
      if (l == o.check_layer && sched.steps() == r.check_step) {
        RAGGED_ASSIGN_OR_RETURN(
            r.check, CheckAttention(o, s, q, key[l], value[l], sched.start(), sched.end(), out));
      }
      // Output projection: row-parallel (+ all-reduce) or whole (heads gathered).
      std::vector<float> a(out.data_as<float>(), out.data_as<float>() + out.num_elements());
      MatMul(a, B, w.wo, proj);
      if (!o.gathered) {
        RAGGED_RETURN_IF_ERROR(tp->AllReduce(proj.data(), proj.data(), int64_t(proj.size()),
                                             DType::kF32, ReduceOp::kSum, nullptr));
      }
      for (size_t i = 0; i < x.size(); ++i) x[i] += proj[i];
      // MLP: column-parallel up, row-parallel down, all-reduce.
      RmsNorm(x, B, H, h);
      MatMul(h, B, w.w1, up);
      for (float& u : up) u = u / (1.0f + std::exp(-1.702f * u));  // GELU (sigmoid form)
      MatMul(up, B, w.w2, proj);
      RAGGED_RETURN_IF_ERROR(tp->AllReduce(proj.data(), proj.data(), int64_t(proj.size()),
                                           DType::kF32, ReduceOp::kSum, nullptr));
      for (size_t i = 0; i < x.size(); ++i) x[i] += proj[i];
    }
    // The next token's input: the final hidden state, squashed.
    for (float& v : x) v = std::tanh(v);
    sched.EndStep(prefill);
    step_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_begin).count();
  r.steps = sched.steps();
  r.tokens = sched.tokens();
  r.step_ms = Summarize(step_ms).median_ms;
  r.library_splits = comms->num_splits();
  return r;
}

// ---- The GPU loop: the step captured once in a CUDA graph ---------------------------------------

#if RAGGED_WITH_CUDA
#define ENGINE_CUDA(call) RAGGED_RETURN_IF_ERROR(RAGGED_CUDA_STATUS(call))
#define ENGINE_KERNEL(call) RAGGED_RETURN_IF_ERROR(RAGGED_CUDA_STATUS(call))

// Device storage of the run, freed at the end.
class DeviceArena {
 public:
  absl::StatusOr<TensorView> Tensor(DType dtype, absl::Span<const int64_t> shape, int device) {
    RAGGED_ASSIGN_OR_RETURN(DeviceBuffer b, DeviceBuffer::Allocate(dtype, shape, device));
    buffers_.push_back(std::move(b));
    return buffers_.back().view();
  }
  absl::StatusOr<float*> Upload(const Matrix& m, int device, cudaStream_t stream) {
    RAGGED_ASSIGN_OR_RETURN(TensorView t, Tensor(DType::kF32, {m.rows, m.cols}, device));
    ENGINE_CUDA(
        cudaMemcpyAsync(t.data(), m.w.data(), m.w.size() * 4, cudaMemcpyHostToDevice, stream));
    return t.data_as<float>();
  }

 private:
  std::vector<DeviceBuffer> buffers_;
};

absl::Status CopyToHost(const TensorView& device, HostBuffer& host, cudaStream_t stream) {
  ENGINE_CUDA(
      cudaMemcpyAsync(host.data(), device.data(), host.nbytes(), cudaMemcpyDeviceToHost, stream));
  return absl::OkStatus();
}

absl::StatusOr<Result> RunCuda(const Options& o, const Place& p, MPI_Comm tp_comm) {
  ENGINE_CUDA(cudaSetDevice(o.device));
  // The engine's own NCCL communicator for its TP group, and its own stream.
  ncclUniqueId id;
  if (p.tp_rank == 0) RAGGED_NCCL_RETURN_IF_ERROR(ncclGetUniqueId(&id));
  RAGGED_MPI_RETURN_IF_ERROR(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, tp_comm));
  ncclComm_t nccl = nullptr;
  RAGGED_NCCL_RETURN_IF_ERROR(ncclCommInitRank(&nccl, o.tp, id, p.tp_rank));
  cudaStream_t stream = nullptr;
  ENGINE_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  int32_t* pinned = nullptr;  // [2, B]: start, end; read by the graph's first copy
  ENGINE_CUDA(cudaMallocHost(&pinned, 2 * o.slots * sizeof(int32_t)));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;

  absl::StatusOr<Result> result = [&]() -> absl::StatusOr<Result> {
    RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<NcclCommunicator> tp,
                            NcclCommunicator::Borrow(nccl, stream));
    RAGGED_ASSIGN_OR_RETURN(Mesh mesh, Mesh::Create({{"tp", o.tp}}));
    RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<MeshCommunicators> comms,
                            MeshCommunicators::Borrow(mesh, tp.get()));
    ShardedAttentionConfig cfg = AttentionConfig(o);
    cfg.stream = stream;
    RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<ShardedAttention> attn,
                            ShardedAttention::Create(comms.get(), cfg));
    const Share s = ShareOf(o, *attn, comms->rank(), p.tp_rank);
    const int D = o.head_dim, H = o.hidden, B = o.slots, S = o.capacity, dev = o.device;
    const int type = static_cast<int>(o.dtype);

    // Weights, caches and activations on the GPU.
    DeviceArena arena;
    const std::vector<Weights> host_weights = MakeWeights(o, s, p.tp_rank);
    struct Layer {
      float *wq, *wk, *wv, *wo, *w1, *w2;
      TensorView key, value, q, out;  // caches [B, S, hkv, D]; q [B, hq, D]; out (f32)
    };
    std::vector<Layer> layers(o.layers);
    for (int l = 0; l < o.layers; ++l) {
      const Weights& w = host_weights[l];
      Layer& L = layers[l];
      RAGGED_ASSIGN_OR_RETURN(L.wq, arena.Upload(w.wq, dev, stream));
      RAGGED_ASSIGN_OR_RETURN(L.wk, arena.Upload(w.wk, dev, stream));
      RAGGED_ASSIGN_OR_RETURN(L.wv, arena.Upload(w.wv, dev, stream));
      RAGGED_ASSIGN_OR_RETURN(L.wo, arena.Upload(w.wo, dev, stream));
      RAGGED_ASSIGN_OR_RETURN(L.w1, arena.Upload(w.w1, dev, stream));
      RAGGED_ASSIGN_OR_RETURN(L.w2, arena.Upload(w.w2, dev, stream));
      RAGGED_ASSIGN_OR_RETURN(L.key, arena.Tensor(o.dtype, {B, S, s.hkv, D}, dev));
      RAGGED_ASSIGN_OR_RETURN(L.value, arena.Tensor(o.dtype, {B, S, s.hkv, D}, dev));
      RAGGED_ASSIGN_OR_RETURN(L.q, arena.Tensor(o.dtype, {B, s.hq, D}, dev));
      RAGGED_ASSIGN_OR_RETURN(
          L.out, arena.Tensor(DType::kF32, attn->LocalShape(ShardedTensor::kOutput), dev));
    }
    const int wo_rows = host_weights[0].wo.rows;
    RAGGED_ASSIGN_OR_RETURN(TensorView x, arena.Tensor(DType::kF32, {B, H}, dev));
    RAGGED_ASSIGN_OR_RETURN(TensorView h, arena.Tensor(DType::kF32, {B, H}, dev));
    RAGGED_ASSIGN_OR_RETURN(TensorView qf, arena.Tensor(DType::kF32, {B, s.hq * D}, dev));
    RAGGED_ASSIGN_OR_RETURN(TensorView kf, arena.Tensor(DType::kF32, {B, s.hkv * D}, dev));
    RAGGED_ASSIGN_OR_RETURN(TensorView vf, arena.Tensor(DType::kF32, {B, s.hkv * D}, dev));
    RAGGED_ASSIGN_OR_RETURN(TensorView proj, arena.Tensor(DType::kF32, {B, H}, dev));
    RAGGED_ASSIGN_OR_RETURN(TensorView up, arena.Tensor(DType::kF32, {B, s.f_local}, dev));
    RAGGED_ASSIGN_OR_RETURN(TensorView ranges, arena.Tensor(DType::kI32, {2, B}, dev));
    const std::vector<float> x0 = InitialHidden(o);
    ENGINE_CUDA(
        cudaMemcpyAsync(x.data(), x0.data(), x0.size() * 4, cudaMemcpyHostToDevice, stream));
    int32_t* d_start = ranges.data_as<int32_t>();
    int32_t* d_end = d_start + B;

    // One step, as the graph records it.
    auto enqueue = [&]() -> absl::Status {
      ENGINE_CUDA(cudaMemcpyAsync(d_start, pinned, 2 * B * sizeof(int32_t), cudaMemcpyHostToDevice,
                                  stream));
      float* xp = x.data_as<float>();
      float* hp = h.data_as<float>();
      float* pp = proj.data_as<float>();
      for (int l = 0; l < o.layers; ++l) {
        const Layer& L = layers[l];
        ENGINE_KERNEL(gpu::RmsNorm(xp, hp, B, H, stream));
        ENGINE_KERNEL(gpu::MatMul(hp, L.wq, qf.data_as<float>(), B, H, s.hq * D, stream));
        ENGINE_KERNEL(gpu::MatMul(hp, L.wk, kf.data_as<float>(), B, H, s.hkv * D, stream));
        ENGINE_KERNEL(gpu::MatMul(hp, L.wv, vf.data_as<float>(), B, H, s.hkv * D, stream));
        ENGINE_KERNEL(gpu::AppendKv(kf.data_as<float>(), vf.data_as<float>(), L.key.data(),
                                    L.value.data(), type, d_end, B, S, s.hkv * D, stream));
        ENGINE_KERNEL(
            gpu::Convert(qf.data_as<float>(), L.q.data(), type, int64_t(B) * s.hq * D, stream));
        RaggedDecodeAttentionArgs args;
        args.query = L.q;
        args.key = L.key;
        args.value = L.value;
        args.sequence_start = TensorView(d_start, DType::kI32, {B}, Device::Cuda(dev));
        args.sequence_end = TensorView(d_end, DType::kI32, {B}, Device::Cuda(dev));
        args.output = L.out;
        RAGGED_RETURN_IF_ERROR(attn->Run(args, stream));
        ENGINE_KERNEL(gpu::MatMul(L.out.data_as<float>(), L.wo, pp, B, wo_rows, H, stream));
        if (!o.gathered) {
          RAGGED_RETURN_IF_ERROR(
              tp->AllReduce(pp, pp, int64_t(B) * H, DType::kF32, ReduceOp::kSum, stream));
        }
        ENGINE_KERNEL(gpu::Add(xp, pp, int64_t(B) * H, stream));
        ENGINE_KERNEL(gpu::RmsNorm(xp, hp, B, H, stream));
        ENGINE_KERNEL(gpu::MatMul(hp, L.w1, up.data_as<float>(), B, H, s.f_local, stream));
        ENGINE_KERNEL(gpu::Gelu(up.data_as<float>(), int64_t(B) * s.f_local, stream));
        ENGINE_KERNEL(gpu::MatMul(up.data_as<float>(), L.w2, pp, B, s.f_local, H, stream));
        RAGGED_RETURN_IF_ERROR(
            tp->AllReduce(pp, pp, int64_t(B) * H, DType::kF32, ReduceOp::kSum, stream));
        ENGINE_KERNEL(gpu::Add(xp, pp, int64_t(B) * H, stream));
      }
      ENGINE_KERNEL(gpu::Tanh(xp, int64_t(B) * H, stream));
      return absl::OkStatus();
    };
    const auto prefill = [&](int b, int request, int prompt) {
      for (int l = 0; l < o.layers; ++l) {
        gpu::FillPrompt(layers[l].key.data(), layers[l].value.data(), type, b, prompt, request, l,
                        o.seed + p.replica, S, s.hkv, o.kv_heads, s.g0, D, stream);
      }
    };

    // Capture the step once.
    ENGINE_CUDA(cudaStreamSynchronize(stream));
    ENGINE_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    const absl::Status captured = enqueue();
    const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
    RAGGED_RETURN_IF_ERROR(captured);
    ENGINE_CUDA(ended);
    ENGINE_CUDA(cudaGraphInstantiate(&exec, graph, 0));

    Scheduler sched(o, p.replica);
    Result r;
    r.check_step = o.check_step >= 0 ? o.check_step : sched.CountSteps() / 2;
    r.share = s;
    r.kv_replicated = attn->plan().kv_heads_replicated;
    sched.Start(prefill);
    ENGINE_CUDA(cudaGetLastError());
    std::vector<double> step_ms;
    ENGINE_CUDA(cudaStreamSynchronize(stream));
    const auto t_begin = std::chrono::steady_clock::now();
    while (!sched.Done()) {
      const auto t0 = std::chrono::steady_clock::now();
      sched.BeginStep();
      std::memcpy(pinned, sched.start(), B * sizeof(int32_t));
      std::memcpy(pinned + B, sched.end(), B * sizeof(int32_t));
      ENGINE_CUDA(cudaGraphLaunch(exec, stream));
      // The host reuses the pinned ranges and decides the next admissions: wait for the step.
      ENGINE_CUDA(cudaStreamSynchronize(stream));
      if (sched.steps() == r.check_step) {
        const Layer& L = layers[o.check_layer];
        HostBuffer q = HostBuffer::Allocate(o.dtype, L.q.shape());
        HostBuffer key = HostBuffer::Allocate(o.dtype, L.key.shape());
        HostBuffer value = HostBuffer::Allocate(o.dtype, L.value.shape());
        HostBuffer out = HostBuffer::Allocate(DType::kF32, L.out.shape());
        RAGGED_RETURN_IF_ERROR(CopyToHost(L.q, q, stream));
        RAGGED_RETURN_IF_ERROR(CopyToHost(L.key, key, stream));
        RAGGED_RETURN_IF_ERROR(CopyToHost(L.value, value, stream));
        RAGGED_RETURN_IF_ERROR(CopyToHost(L.out, out, stream));
        ENGINE_CUDA(cudaStreamSynchronize(stream));
        RAGGED_ASSIGN_OR_RETURN(
            r.check, CheckAttention(o, s, q, key, value, sched.start(), sched.end(), out));
      }
      sched.EndStep(prefill);
      ENGINE_CUDA(cudaGetLastError());
      step_ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    ENGINE_CUDA(cudaStreamSynchronize(stream));
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_begin).count();
    r.steps = sched.steps();
    r.tokens = sched.tokens();
    r.step_ms = Summarize(step_ms).median_ms;
    r.library_splits = comms->num_splits();
    return r;
  }();
  // The engine's resources, freed by the engine after the library's objects are gone.
  if (exec != nullptr) cudaGraphExecDestroy(exec);
  if (graph != nullptr) cudaGraphDestroy(graph);
  cudaFreeHost(pinned);
  const ncclResult_t destroyed = ncclCommDestroy(nccl);
  cudaStreamDestroy(stream);
  if (result.ok() && destroyed != ncclSuccess) {
    return absl::InternalError("ncclCommDestroy of the engine's TP communicator failed");
  }
  return result;
}
#endif  // RAGGED_WITH_CUDA

absl::Status Run(const Options& o, const Place& p) {
  // The engine's own TP group: MPI_Comm_split of the world.
  MPI_Comm tp_comm = MPI_COMM_NULL;
  RAGGED_MPI_RETURN_IF_ERROR(MPI_Comm_split(MPI_COMM_WORLD, p.replica, p.tp_rank, &tp_comm));
  absl::StatusOr<Result> r = absl::UnimplementedError("no platform");
  if (o.platform == Platform::kCpu) {
    r = RunCpu(o, p, tp_comm);
  } else {
#if RAGGED_WITH_CUDA
    r = RunCuda(o, p, tp_comm);
#endif
  }
  // The engine's communicator is still valid: the library did not free it.
  const int freed = MPI_Comm_free(&tp_comm);
  if (!r.ok()) return r.status();
  if (freed != MPI_SUCCESS) {
    return absl::InternalError("MPI_Comm_free of the engine's TP communicator failed");
  }

  // Figures over the world: the tokens of every replica (counted once per TP group).
  double figures[4] = {p.tp_rank == 0 ? double(r->tokens) : 0.0, r->seconds,
                       r->check ? r->check->max_error : 0.0,
                       r->check && r->check->passed ? 0.0 : 1.0};
  double sums[4], maxes[4];
  RAGGED_MPI_RETURN_IF_ERROR(MPI_Allreduce(figures, sums, 4, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
  RAGGED_MPI_RETURN_IF_ERROR(MPI_Allreduce(figures, maxes, 4, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
  if (p.world_rank == 0) {
    const bool cuda = o.platform == Platform::kCuda;
    Table table(absl::StrFormat("ragged tp_engine: %d ranks = %d replicas x tp=%d, platform %s",
                                p.world_size, p.world_size / o.tp, o.tp,
                                cuda ? "cuda (the step is one CUDA graph, replayed)" : "cpu"));
    table.Add("model", absl::StrFormat("%d layers, hidden %d, heads %d/%d x %d, ffn %d, KV %s",
                                       o.layers, o.hidden, o.q_heads, o.kv_heads, o.head_dim, o.ffn,
                                       DTypeName(o.dtype)));
    table.Add("per rank",
              absl::StrFormat("%d query heads, %d KV heads%s, ffn %d", r->share.hq, r->share.hkv,
                              r->kv_replicated ? " (replicated)" : "", r->share.f_local));
    table.Add("batch", absl::StrFormat("%d slots, capacity %d, %d requests per replica", o.slots,
                                       o.capacity, o.requests));
    table.Add(
        "communicator",
        absl::StrFormat("the engine's %s, borrowed; library splits: %d; attention output %s",
                        cuda ? "ncclComm_t and stream" : "MPI_Comm_split group", r->library_splits,
                        o.gathered ? "gathered by the library" : "sharded (all-reduce after)"));
    table.Rule();
    table.Add("steps",
              absl::StrFormat("%d (replica 0), %.3f ms median per step", r->steps, r->step_ms));
    table.Add("tokens", absl::StrFormat("%.0f generated in %.3f s", sums[0], maxes[1]));
    table.Add("throughput", absl::StrFormat("%.1f tokens/s", sums[0] / maxes[1]));
    table.Add("check",
              absl::StrFormat("layer %d, step %d, every rank's heads: largest error "
                              "%.3e vs the f64 reference (tolerance %.0e): %s",
                              o.check_layer, r->check_step, maxes[2], ExampleTolerance(o.dtype),
                              maxes[3] == 0.0 ? "PASS" : "FAIL"));
    table.Print(stdout);
  }
  if (maxes[3] != 0.0) {
    return absl::InternalError(
        absl::StrCat("the attention check failed or did not run (largest error ", maxes[2], ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Options> OptionsFromFlags(int world_size) {
  Options o;
  o.tp = absl::GetFlag(FLAGS_tp);
  if (o.tp == 0) o.tp = world_size;
  o.layers = absl::GetFlag(FLAGS_layers);
  o.hidden = absl::GetFlag(FLAGS_hidden);
  o.q_heads = absl::GetFlag(FLAGS_q_heads);
  o.kv_heads = absl::GetFlag(FLAGS_kv_heads);
  o.head_dim = absl::GetFlag(FLAGS_head_dim);
  o.ffn = absl::GetFlag(FLAGS_ffn);
  o.slots = absl::GetFlag(FLAGS_slots);
  o.capacity = absl::GetFlag(FLAGS_capacity);
  o.requests = absl::GetFlag(FLAGS_requests);
  o.check_layer = absl::GetFlag(FLAGS_check_layer);
  o.check_step = absl::GetFlag(FLAGS_check_step);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.threads = absl::GetFlag(FLAGS_threads);
  for (auto [name, v] : {std::pair{"tp", o.tp},
                         {"layers", o.layers},
                         {"hidden", o.hidden},
                         {"q_heads", o.q_heads},
                         {"kv_heads", o.kv_heads},
                         {"head_dim", o.head_dim},
                         {"ffn", o.ffn},
                         {"slots", o.slots},
                         {"capacity", o.capacity},
                         {"requests", o.requests}}) {
    if (v < 1) return absl::InvalidArgumentError(absl::StrCat("--", name, " must be >= 1"));
  }
  if (world_size % o.tp != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tp=", o.tp, " does not divide the ", world_size, " ranks"));
  }
  if (o.capacity < 2) return absl::InvalidArgumentError("--capacity must be >= 2");
  if (o.ffn % o.tp != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--ffn=", o.ffn, " must be divisible by --tp=", o.tp));
  }
  if (o.check_layer < 0 || o.check_layer >= o.layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("--check_layer=", o.check_layer, " is not a layer (0..", o.layers - 1, ")"));
  }
  auto dtype = ParseDType(absl::GetFlag(FLAGS_dtype));
  if (!dtype.ok() || *dtype == DType::kI32) {
    return absl::InvalidArgumentError(absl::StrCat("--dtype: expected f32, f16 or bf16, got \"",
                                                   absl::GetFlag(FLAGS_dtype), "\""));
  }
  o.dtype = *dtype;
  const std::string out = absl::GetFlag(FLAGS_attention_output);
  if (out != "sharded" && out != "gathered") {
    return absl::InvalidArgumentError(
        absl::StrCat("--attention_output: expected sharded or gathered, got \"", out, "\""));
  }
  o.gathered = out == "gathered";
  auto platform = ParsePlatform(absl::GetFlag(FLAGS_platform));
  if (!platform.ok() || *platform == Platform::kReference) {
    return absl::InvalidArgumentError(absl::StrCat("--platform: expected cpu, cuda or auto, got \"",
                                                   absl::GetFlag(FLAGS_platform), "\""));
  }
  o.platform = *platform;
  return o;
}

}  // namespace
}  // namespace ragged::examples

int main(int argc, char** argv) {
  using namespace ragged::examples;
  absl::SetProgramUsageMessage(
      "a small tensor-parallel decoder that embeds ragged with its own communicator.\n"
      "  mpirun -np 4 tp_engine --tp=2 --layers=4 --requests=16");
  absl::ParseCommandLine(argc, argv);
  // The engine owns MPI.
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  Place place;
  MPI_Comm_rank(MPI_COMM_WORLD, &place.world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &place.world_size);
  ragged::SetErrorRank(place.world_rank);
  absl::Status status = absl::OkStatus();
  auto options = OptionsFromFlags(place.world_size);
  if (!options.ok()) {
    status = options.status();
  } else {
    place.replica = place.world_rank / options->tp;
    place.tp_rank = place.world_rank % options->tp;
    // The ranks on this host share its cores and its GPUs.
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, place.world_rank, MPI_INFO_NULL,
                        &node);
    int local = 1, local_rank = 0;
    MPI_Comm_size(node, &local);
    MPI_Comm_rank(node, &local_rank);
    MPI_Comm_free(&node);
    if (options->threads == 0) {
      options->threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / local);
    }
    omp_set_num_threads(options->threads);  // the engine's own matmuls
    const int gpus = ragged::CudaDeviceCount();
    if (options->platform == ragged::Platform::kAuto) {
      options->platform = gpus > 0 ? ragged::Platform::kCuda : ragged::Platform::kCpu;
    }
    if (options->platform == ragged::Platform::kCuda && gpus == 0) {
      status = absl::FailedPreconditionError(
          ragged::BuiltWithCuda() ? "--platform=cuda: no CUDA device is visible"
                                  : "--platform=cuda: this build of ragged has no CUDA support");
    }
    options->device = gpus > 0 ? local_rank % gpus : -1;
    if (status.ok()) status = Run(*options, place);
  }
  if (!status.ok()) {
    std::fprintf(stderr, "tp_engine (rank %d): error: %s\n", place.world_rank,
                 std::string(status.message()).c_str());
  }
  MPI_Finalize();
  return status.ok() ? 0 : 1;
}
