// tp_engine: how an inference engine embeds ragged. A small multi-layer decoder (random weights)
// generates tokens for a queue of requests with continuous batching: every layer keeps a KV cache
// [slots, S, HKV_local, D] that grows by one position per step, requests of different lengths
// finish at different steps and their slot takes the next request (or stays empty).
//
// The engine owns MPI and its tensor-parallel groups: it calls MPI_Init and MPI_Comm_split
// itself (ranks r and r' share a TP group when r / tp == r' / tp; the groups are data-parallel
// replicas with their own requests), wraps its MPI_Comm with MpiCommunicator::Borrow and hands
// it to the library through MeshCommunicators::Borrow on a mesh "tp=T". The library then makes
// no communicator of its own, and never frees the engine's: the engine frees it at the end
// (MPI_Comm_free), after the library's objects are gone.
//
// Tensor parallelism is Megatron-style: the q/k/v and MLP-up projections are split by columns
// (each rank computes its heads), ragged's ShardedAttention runs the attention of the rank's heads
// (out_spec (None, tp): no communication), and the output and MLP-down projections are split by
// rows and summed with an all-reduce over the same borrowed communicator. With
// --attention_output=gathered the library all-gathers the heads instead and every rank applies
// the whole output projection (the same model; more communication inside the library).
//
// On the CPU the step runs over MPI on host buffers with stream nullptr. (A CUDA version, which
// would capture the step once in a CUDA graph on the engine's stream with an NCCL communicator,
// is not written yet; see the README.) It prints tokens per second and checks the attention of
// one layer, at one step, against the double-precision reference; a check failure is an error.
//
//   mpirun -np 4 build/examples/tp_engine --tp=2 --layers=4 --requests=16
#include <mpi.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
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
#include "kernels/reference.h"
#include "runtime/buffer.h"
#include "runtime/mpi_communicator.h"
#include "runtime/status.h"
#include "sharding/mesh.h"
#include "sharding/shard_plan.h"
#include "sharding/sharded_attention.h"

ABSL_FLAG(int32_t, tp, 0, "Ranks per tensor-parallel group (0: all ranks).");
ABSL_FLAG(int32_t, layers, 4, "Decoder layers.");
ABSL_FLAG(int32_t, hidden, 256, "Hidden size.");
ABSL_FLAG(int32_t, q_heads, 8, "Query heads.");
ABSL_FLAG(int32_t, kv_heads, 4, "KV heads.");
ABSL_FLAG(int32_t, head_dim, 32, "Head dimension.");
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
};

// Deterministic values from (seed, stream, index): every rank draws the same global tensors and
// keeps its part, so the TP model is the same model whatever the TP size.
float Hash(uint64_t seed, uint64_t stream, uint64_t i) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull ^ (stream << 32) ^ i;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  x ^= x >> 31;
  return static_cast<float>(static_cast<double>(x >> 11) * 0x1.0p-53 * 2.0 - 1.0);  // [-1, 1)
}

// A row-major [rows, cols] f32 matrix.
struct Matrix {
  int rows = 0, cols = 0;
  std::vector<float> w;
  float& at(int r, int c) { return w[static_cast<size_t>(r) * cols + c]; }
};

// Columns [c0, c0 + n) (or rows [r0, r0 + n)) of a global random matrix [R, C] scaled by 1/sqrt(R).
Matrix SliceCols(uint64_t seed, uint64_t stream, int R, int C, int c0, int n) {
  Matrix m{R, n, std::vector<float>(static_cast<size_t>(R) * n)};
  const float scale = 1.0f / std::sqrt(static_cast<float>(R));
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < n; ++c) m.at(r, c) = scale * Hash(seed, stream, uint64_t(r) * C + c0 + c);
  }
  return m;
}
Matrix SliceRows(uint64_t seed, uint64_t stream, int R, int C, int r0, int n) {
  Matrix m{n, C, std::vector<float>(static_cast<size_t>(n) * C)};
  const float scale = 1.0f / std::sqrt(static_cast<float>(R));
  for (int r = 0; r < n; ++r) {
    for (int c = 0; c < C; ++c) m.at(r, c) = scale * Hash(seed, stream, uint64_t(r0 + r) * C + c);
  }
  return m;
}

// y[b, :] = x[b, :] @ m (x: [B, m.rows], y: [B, m.cols]).
void MatMul(const std::vector<float>& x, int B, const Matrix& m, std::vector<float>& y) {
  y.assign(static_cast<size_t>(B) * m.cols, 0.0f);
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; ++b) {
    for (int c = 0; c < m.cols; ++c) {
      float acc = 0.0f;
      for (int r = 0; r < m.rows; ++r)
        acc += x[size_t(b) * m.rows + r] * m.w[size_t(r) * m.cols + c];
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

struct Layer {
  Matrix wq, wk, wv;      // [hidden, local heads * D] (column-parallel)
  Matrix wo;              // [local or all heads * D, hidden] (row-parallel, or whole when gathered)
  Matrix w1;              // [hidden, ffn / tp]
  Matrix w2;              // [ffn / tp, hidden]
  HostBuffer key, value;  // KV cache [slots, S, HKV_l, D]
};

struct Request {
  int prompt = 0, generate = 0;
};

// A slot of the batch: the request it serves and how far it is.
struct Slot {
  int request = -1;  // -1: empty
  int generated = 0;
};

absl::Status Check(bool ok, absl::string_view what) {
  return ok ? absl::OkStatus() : absl::InvalidArgumentError(what);
}

absl::Status Run(const Options& o, int world_rank, int world_size) {
  RAGGED_RETURN_IF_ERROR(
      Check(world_size % o.tp == 0,
            absl::StrCat("--tp=", o.tp, " does not divide the ", world_size, " ranks")));
  // The engine's own TP group: MPI_Comm_split of the world.
  const int replica = world_rank / o.tp, tp_rank = world_rank % o.tp;
  MPI_Comm tp_comm = MPI_COMM_NULL;
  RAGGED_MPI_RETURN_IF_ERROR(MPI_Comm_split(MPI_COMM_WORLD, replica, tp_rank, &tp_comm));
  absl::Status status = [&]() -> absl::Status {
    RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<MpiCommunicator> tp, MpiCommunicator::Borrow(tp_comm));
    RAGGED_ASSIGN_OR_RETURN(Mesh mesh, Mesh::Create({{"tp", o.tp}}));
    RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<MeshCommunicators> comms,
                            MeshCommunicators::Borrow(mesh, tp.get()));

    // The attention of this rank's heads, through the library.
    ShardedAttentionConfig cfg;
    cfg.shape.batch = o.slots;
    cfg.shape.capacity = o.capacity;
    cfg.shape.num_q_heads = o.q_heads;
    cfg.shape.num_kv_heads = o.kv_heads;
    cfg.shape.head_dim = o.head_dim;
    cfg.shape.dtype = o.dtype;
    cfg.shape.output_dtype = DType::kF32;
    cfg.specs.query = PartitionSpec({{}, {"tp"}});
    cfg.specs.key = PartitionSpec({{}, {}, {"tp"}});
    cfg.specs.value = cfg.specs.key;
    cfg.specs.output = o.gathered ? PartitionSpec() : cfg.specs.query;
    cfg.options.platform = Platform::kCpu;
    cfg.options.num_threads = o.threads;
    RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<ShardedAttention> attn,
                            ShardedAttention::Create(comms.get(), cfg));
    const ShardPlan& plan = attn->plan();
    const int hq = static_cast<int>(plan.local_q_heads),
              hkv = static_cast<int>(plan.local_kv_heads);
    const int D = o.head_dim, H = o.hidden, B = o.slots, S = o.capacity;
    const int q0 = tp_rank * hq;                                       // first local query head
    const int g0 = static_cast<int>(plan.FirstKvHead(comms->rank()));  // first local KV head
    const int f_local = o.ffn / o.tp;

    // Weights and caches.
    std::vector<Layer> layers(o.layers);
    for (int l = 0; l < o.layers; ++l) {
      const uint64_t s = o.seed * 1000 + l * 10;
      Layer& L = layers[l];
      L.wq = SliceCols(s, 1, H, o.q_heads * D, q0 * D, hq * D);
      L.wk = SliceCols(s, 2, H, o.kv_heads * D, g0 * D, hkv * D);
      L.wv = SliceCols(s, 3, H, o.kv_heads * D, g0 * D, hkv * D);
      L.wo = o.gathered ? SliceRows(s, 4, o.q_heads * D, H, 0, o.q_heads * D)
                        : SliceRows(s, 4, o.q_heads * D, H, q0 * D, hq * D);
      L.w1 = SliceCols(s, 5, H, o.ffn, tp_rank * f_local, f_local);
      L.w2 = SliceRows(s, 6, o.ffn, H, tp_rank * f_local, f_local);
      L.key = HostBuffer::Allocate(o.dtype, {B, S, hkv, D});
      L.value = HostBuffer::Allocate(o.dtype, {B, S, hkv, D});
    }

    // Requests of this replica: prompt and generation lengths of different sizes.
    std::mt19937_64 rng(o.seed * 7919 + replica);
    std::vector<Request> requests(o.requests);
    for (Request& r : requests) {
      r.prompt = std::uniform_int_distribution<int>(1, std::max(1, S / 2))(rng);
      r.generate = std::uniform_int_distribution<int>(1, S - r.prompt)(rng);
    }
    HostBuffer start = HostBuffer::Allocate(DType::kI32, {B});
    HostBuffer end = HostBuffer::Allocate(DType::kI32, {B});
    int32_t* st = start.data_as<int32_t>();
    int32_t* en = end.data_as<int32_t>();
    std::vector<Slot> slots(B);
    int next_request = 0;
    // Prefill, emulated: the prompt's K/V are random (the same global values on every TP size).
    auto admit = [&](int b) {
      slots[b] = Slot{};
      st[b] = en[b] = 0;
      if (next_request >= o.requests) return;
      const int id = next_request++;
      slots[b].request = id;
      const int p = requests[id].prompt;
      for (int l = 0; l < o.layers; ++l) {
        for (int t = 0; t < p; ++t) {
          for (int g = 0; g < hkv; ++g) {
            for (int d = 0; d < D; ++d) {
              const uint64_t i = ((uint64_t(id) * S + t) * o.kv_heads + g0 + g) * D + d;
              const int64_t at = ((int64_t(b) * S + t) * hkv + g) * D + d;
              StoreFromFloat(layers[l].key.data(), o.dtype, at, Hash(o.seed + replica, 100 + l, i));
              StoreFromFloat(layers[l].value.data(), o.dtype, at,
                             Hash(o.seed + replica, 200 + l, i));
            }
          }
        }
      }
      en[b] = p;
    };
    for (int b = 0; b < B; ++b) admit(b);

    HostBuffer q = HostBuffer::Allocate(o.dtype, {B, hq, D});
    HostBuffer attn_out =
        HostBuffer::Allocate(DType::kF32, attn->LocalShape(ShardedTensor::kOutput));
    std::vector<float> x(size_t(B) * H), h, qf, kf, vf, proj, up;
    for (int b = 0; b < B; ++b) {
      for (int i = 0; i < H; ++i) x[size_t(b) * H + i] = Hash(o.seed, 7, uint64_t(b) * H + i);
    }

    // The decode loop.
    int64_t tokens = 0;
    int step = 0;
    // The default check is in the middle of the run: simulate the scheduler to count the steps.
    int check_step = o.check_step;
    if (check_step < 0) {
      std::vector<int> left(B, 0), len(B, 0);
      int next = 0, total = 0;
      auto take = [&](int b) {
        left[b] = next < o.requests ? requests[next].generate : 0;
        len[b] = next < o.requests ? requests[next].prompt : 0;
        if (next < o.requests) ++next;
      };
      for (int b = 0; b < B; ++b) take(b);
      while (std::any_of(left.begin(), left.end(), [](int v) { return v > 0; })) {
        ++total;
        for (int b = 0; b < B; ++b) {
          if (left[b] == 0) continue;
          ++len[b];
          if (--left[b] == 0 || len[b] >= S) take(b);
        }
      }
      check_step = total / 2;
    }
    std::optional<VerifyResult> checked;
    std::vector<double> step_ms;
    const auto t_begin = std::chrono::steady_clock::now();
    while (true) {
      int active = 0;
      for (const Slot& s : slots) active += s.request >= 0;
      if (active == 0) break;
      const auto t0 = std::chrono::steady_clock::now();
      // This step's token of every active slot sits at position end[b]; it attends [start, end].
      for (int b = 0; b < B; ++b) en[b] += slots[b].request >= 0 ? 1 : 0;
      for (int l = 0; l < o.layers; ++l) {
        Layer& L = layers[l];
        RmsNorm(x, B, H, h);
        MatMul(h, B, L.wq, qf);
        MatMul(h, B, L.wk, kf);
        MatMul(h, B, L.wv, vf);
        // Append this step's K/V at position end[b] - 1 of every active slot.
        for (int b = 0; b < B; ++b) {
          if (slots[b].request < 0) continue;
          for (int i = 0; i < hkv * D; ++i) {
            const int64_t at = (int64_t(b) * S + en[b] - 1) * hkv * D + i;
            StoreFromFloat(L.key.data(), o.dtype, at, kf[size_t(b) * hkv * D + i]);
            StoreFromFloat(L.value.data(), o.dtype, at, vf[size_t(b) * hkv * D + i]);
          }
        }
        for (int i = 0; i < B * hq * D; ++i) StoreFromFloat(q.data(), o.dtype, i, qf[i]);
        RaggedDecodeAttentionArgs args;
        args.query = q.view();
        args.key = L.key.view();
        args.value = L.value.view();
        args.sequence_start = start.view();
        args.sequence_end = end.view();
        args.output = attn_out.view();
        RAGGED_RETURN_IF_ERROR(attn->Run(args, /*stream=*/nullptr));
        if (l == o.check_layer && step == check_step) {
          // The library's output for this rank's heads against the f64 reference.
          DecodeInputs in;
          in.query = HostBuffer::Allocate(o.dtype, {B, hq, D});
          std::memcpy(in.query.data(), q.data(), q.nbytes());
          in.key = HostBuffer::Allocate(o.dtype, L.key.shape());
          std::memcpy(in.key.data(), L.key.data(), L.key.nbytes());
          in.value = HostBuffer::Allocate(o.dtype, L.value.shape());
          std::memcpy(in.value.data(), L.value.data(), L.value.nbytes());
          in.start = HostBuffer::Allocate(DType::kI32, {B});
          in.end = HostBuffer::Allocate(DType::kI32, {B});
          std::memcpy(in.start.data(), st, B * 4);
          std::memcpy(in.end.data(), en, B * 4);
          // The rank's own heads of the output (all heads are here when gathered).
          HostBuffer mine = HostBuffer::Allocate(DType::kF32, {B, hq, D});
          const int64_t out_heads = attn_out.shape()[1];
          const int64_t first = o.gathered ? q0 : 0;
          for (int b = 0; b < B; ++b) {
            std::memcpy(mine.data_as<float>() + int64_t(b) * hq * D,
                        attn_out.data_as<float>() + (b * out_heads + first) * D,
                        size_t(hq) * D * 4);
          }
          RaggedDecodeAttentionOptions ref;
          RAGGED_ASSIGN_OR_RETURN(checked,
                                  Verify(in, mine.view(), nullptr, ref, SampleRows(in, 0, 0)));
          // The output is f32 here, so the tolerance is that of the inputs' dtype.
          checked->tolerance = ExampleTolerance(o.dtype);
          checked->passed = checked->max_error <= checked->tolerance;
        }
        // Output projection: row-parallel (+ all-reduce) or whole (heads gathered).
        std::vector<float> a(attn_out.data_as<float>(),
                             attn_out.data_as<float>() + attn_out.num_elements());
        MatMul(a, B, L.wo, proj);
        if (!o.gathered) {
          RAGGED_RETURN_IF_ERROR(tp->AllReduce(proj.data(), proj.data(), int64_t(proj.size()),
                                               DType::kF32, ReduceOp::kSum, nullptr));
        }
        for (size_t i = 0; i < x.size(); ++i) x[i] += proj[i];
        // MLP: column-parallel up, row-parallel down, all-reduce.
        RmsNorm(x, B, H, h);
        MatMul(h, B, L.w1, up);
        for (float& u : up) u = u / (1.0f + std::exp(-1.702f * u));  // GELU (sigmoid form)
        MatMul(up, B, L.w2, proj);
        RAGGED_RETURN_IF_ERROR(tp->AllReduce(proj.data(), proj.data(), int64_t(proj.size()),
                                             DType::kF32, ReduceOp::kSum, nullptr));
        for (size_t i = 0; i < x.size(); ++i) x[i] += proj[i];
      }
      // The next token's input: the final hidden state, squashed.
      for (float& v : x) v = std::tanh(v);
      step_ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      // Bookkeeping: count tokens, retire finished requests, admit new ones.
      for (int b = 0; b < B; ++b) {
        if (slots[b].request < 0) continue;
        ++tokens;
        ++slots[b].generated;
        if (slots[b].generated >= requests[slots[b].request].generate || en[b] >= S) admit(b);
      }
      ++step;
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_begin).count();

    // Figures over the world: tokens of every replica (counted once per TP group).
    double figures[4] = {tp_rank == 0 ? double(tokens) : 0.0, seconds, 0.0, 0.0};
    figures[2] = checked ? checked->max_error : 0.0;
    figures[3] = checked ? (checked->passed ? 0.0 : 1.0) : 1.0;
    double sums[4], maxes[4];
    RAGGED_MPI_RETURN_IF_ERROR(
        MPI_Allreduce(figures, sums, 4, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
    RAGGED_MPI_RETURN_IF_ERROR(
        MPI_Allreduce(figures, maxes, 4, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    const TimeStats t = Summarize(step_ms);
    if (world_rank == 0) {
      Table table(absl::StrFormat("ragged tp_engine: %d ranks = %d replicas x tp=%d, platform cpu",
                                  world_size, world_size / o.tp, o.tp));
      table.Add("model",
                absl::StrFormat("%d layers, hidden %d, heads %d/%d x %d, ffn %d, KV %s", o.layers,
                                H, o.q_heads, o.kv_heads, D, o.ffn, DTypeName(o.dtype)));
      table.Add("per rank",
                absl::StrFormat("%d query heads, %d KV heads%s, ffn %d", hq, hkv,
                                plan.kv_heads_replicated ? " (replicated)" : "", f_local));
      table.Add("batch", absl::StrFormat("%d slots, capacity %d, %d requests per replica", B, S,
                                         o.requests));
      table.Add(
          "communicator",
          absl::StrFormat("the engine's MPI_Comm_split group, borrowed; library "
                          "splits: %d; attention output %s",
                          comms->num_splits(),
                          o.gathered ? "gathered by the library" : "sharded (all-reduce after)"));
      table.Rule();
      table.Add("steps",
                absl::StrFormat("%d (replica 0), %.1f ms median per step", step, t.median_ms));
      table.Add("tokens", absl::StrFormat("%.0f generated in %.3f s", sums[0], maxes[1]));
      table.Add("throughput", absl::StrFormat("%.1f tokens/s", sums[0] / maxes[1]));
      table.Add("check",
                absl::StrFormat("layer %d, step %d, every rank's heads: largest error "
                                "%.3e vs the f64 reference (tolerance %.0e): %s",
                                o.check_layer, check_step, maxes[2], ExampleTolerance(o.dtype),
                                maxes[3] == 0.0 ? "PASS" : "FAIL"));
      table.Print(stdout);
    }
    if (maxes[3] != 0.0) {
      return absl::InternalError(
          absl::StrCat("the attention check failed or did not run (largest error ", maxes[2], ")"));
    }
    return absl::OkStatus();
  }();
  // The engine's communicator is still valid: the library did not free it.
  const int freed = MPI_Comm_free(&tp_comm);
  if (status.ok() && freed != MPI_SUCCESS) {
    status = absl::InternalError("MPI_Comm_free of the engine's TP communicator failed");
  }
  return status;
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
  return o;
}

}  // namespace
}  // namespace ragged::examples

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "a small tensor-parallel decoder that embeds ragged with its own MPI communicator.\n"
      "  mpirun -np 4 tp_engine --tp=2 --layers=4 --requests=16");
  absl::ParseCommandLine(argc, argv);
  // The engine owns MPI.
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  ragged::SetErrorRank(rank);
  absl::Status status = absl::OkStatus();
  auto options = ragged::examples::OptionsFromFlags(size);
  if (!options.ok()) {
    status = options.status();
  } else {
    // The host's cores shared by the ranks on it.
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    int local = 1;
    MPI_Comm_size(node, &local);
    MPI_Comm_free(&node);
    if (options->threads == 0) {
      options->threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / local);
    }
    omp_set_num_threads(options->threads);  // the engine's own matmuls
    status = ragged::examples::Run(*options, rank, size);
  }
  if (!status.ok()) {
    std::fprintf(stderr, "tp_engine (rank %d): error: %s\n", rank,
                 std::string(status.message()).c_str());
  }
  MPI_Finalize();
  return status.ok() ? 0 : 1;
}
