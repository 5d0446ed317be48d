// gpu_bench: the CUDA backend on the GPU shapes of ../shared/BENCHMARKS.md.
//
// Method: valid K/V bytes are counted per shape; the read-only and device-to-device copy ceilings
// are measured in the same run; each shape rotates between input sets whose total is at least
// four times the L2; times are CUDA-event intervals of back-to-back calls (a GPU busy-wait is
// queued first so that the host stays ahead), after warm-up, median of --reps; sampled rows of
// the output are checked against the double-precision reference in the same run.
//
//   gpu_bench [--shapes B64_full,L_ragged] [--reps 50] [--json out.json] [--candidates]
//             [--head-major] [--ceiling-sweep] [--stream-timing] [--config "hpb=16 ..."]
//
// --candidates also times every candidate kernel config of each shape (tuning aid).
// --config "hpb=16 splits=64 ..." (repeatable) also times that config, as the library resolves
// it, for every shape, and checks its output against the reference.
// --head-major stores K and V as [batch, kv_heads, seq, head_dim] in memory (the kernels see the
// usual [batch, seq, kv_heads, head_dim] view with permuted strides): a diagnostic of how much the
// interleaving of the KV heads in memory costs.
// --stream-timing also times each shape's calls with two events around all of them (mean per
// call): what the per-call events of the method add (diagnostic; the table keeps the method).
// --ceiling-sweep also times the read-only kernel over the byte counts of short calls (disjoint
// regions of the ceiling's buffer, rotated so that L2 does not serve them): what a plain streaming
// read reaches in that time, start and finish included.
// RAGGED_AUTOTUNE (off | heuristic | autotune) selects the library's config policy as usual.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "benchmarks/gpu_bench_kernels.h"
#include "kernels/autotune.h"
#include "kernels/cuda/cta_trace.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/ragged_decode_attention.h"
#include "kernels/reference.h"
#include "kernels/test_util.h"
#include "nlohmann/json.hpp"
#include "runtime/buffer.h"
#include "runtime/status.h"

namespace ragged::bench {
namespace {

enum class Lengths { kFull, kUniform, kOffset };

struct Shape {
  std::string name;
  int64_t batch, capacity, num_q_heads, num_kv_heads, head_dim;
  Lengths lengths = Lengths::kFull;
  float soft_cap = 0.0f;
  bool sinks = false;
  int64_t window_left = -1;
  bool on_request = false;  // run only when named in --shapes
};

std::vector<Shape> AllShapes() {
  std::vector<Shape> v = {
      {"B64_full", 64, 8192, 32, 8, 128},
      {"L_full", 32, 8192, 32, 8, 128},
      {"L_ragged", 32, 8192, 32, 8, 128, Lengths::kUniform},
      {"L_offset", 32, 8192, 32, 8, 128, Lengths::kOffset},
      {"M_ragged", 256, 2048, 32, 8, 128, Lengths::kUniform},
      {"S_full", 1, 32768, 64, 8, 128},
      {"XL_single", 1, 131072, 32, 8, 128},
      {"MQA", 64, 8192, 64, 1, 128},
      {"D64", 64, 8192, 32, 8, 64},
      {"D256", 32, 8192, 16, 4, 256},
      {"L_softcap", 32, 8192, 32, 8, 128},
      {"L_sinks", 32, 8192, 32, 8, 128},
      {"L_window", 32, 8192, 32, 8, 128},
  };
  v[10].soft_cap = 50.0f;
  v[11].sinks = true;
  v[12].window_left = 1024;
  // Diagnostic, on request: a call with almost nothing to read shows the fixed cost of a call
  // (two launches, the schedule, the first loads, the combine).
  v.push_back({"tiny", 1, 512, 32, 8, 128});
  v.back().on_request = true;
  // On request: 128 query heads per KV head, two head slices of 64 (each slice's CTA reads the
  // same K/V tiles).
  v.push_back({"MQA128", 64, 8192, 128, 1, 128});
  v.back().on_request = true;
  return v;
}

#define CUDA_OR_DIE(call)                                                                         \
  do {                                                                                            \
    const cudaError_t e_ = (call);                                                                \
    if (e_ != cudaSuccess) {                                                                      \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      std::exit(1);                                                                               \
    }                                                                                             \
  } while (0)

template <typename T>
T OrDie(absl::StatusOr<T> v, const char* what) {
  if (!v.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, std::string(v.status().ToString()).c_str());
    std::exit(1);
  }
  return std::move(*v);
}
void OrDie(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, std::string(s.ToString()).c_str());
    std::exit(1);
  }
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

#ifdef RAGGED_CTA_TRACE
// Diagnostic build: where the last timed call's time went, per CTA and per SM (microseconds from
// the first decode CTA's start). With RAGGED_TRACE_DIR set, the raw records go to
// <dir>/<shape>_{decode,combine}.csv as well.
void ClearTrace() {
  std::vector<unsigned long long> t(internal::kCtaTraceEntries * internal::kCtaTraceFields);
  CUDA_OR_DIE(internal::ReadDecodeTraceBF16(t.data()));
  CUDA_OR_DIE(internal::ReadCombineTrace(t.data()));
}

void PrintTrace(const std::string& name) {
  using internal::kCtaTraceEntries;
  using internal::kCtaTraceFields;
  std::vector<unsigned long long> dec(kCtaTraceEntries * kCtaTraceFields);
  std::vector<unsigned long long> com(kCtaTraceEntries * kCtaTraceFields);
  CUDA_OR_DIE(internal::ReadDecodeTraceBF16(dec.data()));
  CUDA_OR_DIE(internal::ReadCombineTrace(com.data()));
  auto rec = [](std::vector<unsigned long long>& t, int i) { return &t[i * kCtaTraceFields]; };
  unsigned long long t0 = ~0ull;
  int n = 0;
  for (int i = 0; i < kCtaTraceEntries; ++i) {
    if (rec(dec, i)[0] == 0) continue;
    t0 = std::min(t0, rec(dec, i)[1]);
    n = i + 1;
  }
  if (n == 0) return;
  auto us = [&](unsigned long long t) { return (static_cast<double>(t) - t0) * 1e-3; };
  auto q = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return absl::StrFormat("%.1f/%.1f/%.1f", v.front(), v[v.size() / 2], v.back());
  };
  std::vector<double> start, sched, first, loop, end, tiles, segs, rate, pass1, pass2;
  std::map<unsigned long long, std::pair<double, double>> sm;  // SM -> (last end, tiles)
  for (int i = 0; i < n; ++i) {
    const unsigned long long* r = rec(dec, i);
    if (r[0] == 0) continue;
    start.push_back(us(r[1]));
    sched.push_back(us(r[2]) - us(r[1]));
    pass1.push_back(us(r[8]) - us(r[1]));
    if (r[9]) pass2.push_back(us(r[9]) - us(r[1]));
    end.push_back(us(r[4]));
    tiles.push_back(static_cast<double>(r[5]));
    segs.push_back(static_cast<double>(r[6]));
    if (r[5] > 0) {
      first.push_back(us(r[3]) - us(r[1]));
      loop.push_back(us(r[4]) - us(r[7]));
      rate.push_back(r[5] > 1 ? (us(r[7]) - us(r[3])) / static_cast<double>(r[5] - 1) : 0.0);
    }
    auto& e = sm[r[0]];
    e.first = std::max(e.first, us(r[4]));
    e.second += static_cast<double>(r[5]);
  }
  std::vector<double> sm_end, sm_tiles;
  for (const auto& [id, e] : sm) {
    sm_end.push_back(e.first);
    sm_tiles.push_back(e.second);
  }
  std::printf("  trace %s: %d decode CTAs on %zu SMs (min/median/max, us)\n", name.c_str(),
              static_cast<int>(start.size()), sm.size());
  std::printf("    CTA start %s  schedule %s  first tile %s  last tile to end %s  us/tile %s\n",
              q(start).c_str(), q(sched).c_str(), first.empty() ? "-" : q(first).c_str(),
              loop.empty() ? "-" : q(loop).c_str(), rate.empty() ? "-" : q(rate).c_str());
  std::printf("    schedule pass 1 done %s  pass 2 done %s\n", q(pass1).c_str(),
              pass2.empty() ? "-" : q(pass2).c_str());
  std::printf("    CTA end %s  SM end %s  tiles per CTA %s  per SM %s  segments %s\n",
              q(end).c_str(), q(sm_end).c_str(), q(tiles).c_str(), q(sm_tiles).c_str(),
              q(segs).c_str());
  std::vector<double> cs, cw, ce;
  int nc = 0;
  for (int i = 0; i < kCtaTraceEntries; ++i) {
    const unsigned long long* r = rec(com, i);
    if (r[0] == 0) continue;
    cs.push_back(us(r[1]));
    if (r[2]) cw.push_back(us(r[2]));  // CTAs with nothing to merge return before the wait
    ce.push_back(us(r[4]));
    nc = i + 1;
  }
  if (!cs.empty()) {
    std::printf("    combine: %zu CTAs  start %s  after wait %s  end %s\n", cs.size(),
                q(cs).c_str(), cw.empty() ? "-" : q(cw).c_str(), q(ce).c_str());
  }
  if (const char* dir = std::getenv("RAGGED_TRACE_DIR")) {
    for (int kind = 0; kind < 2; ++kind) {
      std::ofstream f(std::string(dir) + "/" + name + (kind ? "_combine.csv" : "_decode.csv"));
      f << "cta,sm,start_us,sched_us,first_us,end_us,tiles,segments,last_tile_us\n";
      std::vector<unsigned long long>& t = kind ? com : dec;
      for (int i = 0; i < (kind ? nc : n); ++i) {
        const unsigned long long* r = rec(t, i);
        if (r[0] == 0) continue;
        f << absl::StrFormat("%d,%d,%.3f,%.3f,%.3f,%.3f,%d,%d,%.3f\n", i,
                             static_cast<int>(r[0] - 1), us(r[1]), r[2] ? us(r[2]) : -1.0,
                             r[3] ? us(r[3]) : -1.0, us(r[4]), static_cast<int>(r[5]),
                             static_cast<int>(r[6]), r[7] ? us(r[7]) : -1.0);
      }
    }
  }
}
#endif

// Head start for the host before `reps` timed calls: a GPU busy-wait of 2 ms plus 100 us per
// call, so that the host (validation, config choice, two launches and two event records per call)
// stays ahead of the GPU for all `reps` calls even when a call takes the GPU only ~50 us; a fixed
// 2 ms let the host fall behind on the short shapes (S_full measured 63% of the ceiling with 40
// calls, 71% with 13).
cudaError_t HostHeadStart(int reps, cudaStream_t s) {
  return Spin(2'000'000 + 100'000 * static_cast<int64_t>(reps), s);
}

// Median time (ms) of `reps` back-to-back calls of `fn(rep)`, measured with CUDA events.
template <typename Fn>
double TimeMs(int reps, cudaStream_t s, Fn fn) {
  std::vector<cudaEvent_t> ev(reps + 1);
  for (auto& e : ev) CUDA_OR_DIE(cudaEventCreate(&e));
  CUDA_OR_DIE(HostHeadStart(reps, s));
  for (int r = 0; r < reps; ++r) {
    CUDA_OR_DIE(cudaEventRecord(ev[r], s));
    fn(r);
  }
  CUDA_OR_DIE(cudaEventRecord(ev[reps], s));
  CUDA_OR_DIE(cudaEventSynchronize(ev[reps]));
  std::vector<double> t(reps);
  for (int r = 0; r < reps; ++r) {
    float ms = 0;
    CUDA_OR_DIE(cudaEventElapsedTime(&ms, ev[r], ev[r + 1]));
    t[r] = ms;
  }
  for (auto& e : ev) cudaEventDestroy(e);
  return Median(t);
}

// Mean time (ms) per call of `reps` back-to-back calls of `fn(rep)` between two CUDA events only
// (--stream-timing: what the per-call events of TimeMs add to a call).
template <typename Fn>
double StreamMs(int reps, cudaStream_t s, Fn fn) {
  cudaEvent_t a, b;
  CUDA_OR_DIE(cudaEventCreate(&a));
  CUDA_OR_DIE(cudaEventCreate(&b));
  CUDA_OR_DIE(HostHeadStart(reps, s));
  CUDA_OR_DIE(cudaEventRecord(a, s));
  for (int r = 0; r < reps; ++r) fn(r);
  CUDA_OR_DIE(cudaEventRecord(b, s));
  CUDA_OR_DIE(cudaEventSynchronize(b));
  float ms = 0;
  CUDA_OR_DIE(cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms / reps;
}

struct Ceilings {
  double read_tbps = 0, copy_tbps = 0;
};

Ceilings MeasureCeilings(cudaStream_t s, int reps) {
  const int64_t bytes = int64_t{2} << 30;
  DeviceBuffer a = OrDie(DeviceBuffer::AllocateBytes(bytes, 0), "alloc");
  DeviceBuffer b = OrDie(DeviceBuffer::AllocateBytes(bytes, 0), "alloc");
  DeviceBuffer sink = OrDie(DeviceBuffer::AllocateBytes(4096 * 4, 0), "alloc");
  CUDA_OR_DIE(cudaMemsetAsync(a.data(), 1, bytes, s));
  CUDA_OR_DIE(cudaMemsetAsync(sink.data(), 0, 4096 * 4, s));
  auto read = [&](int) {
    CUDA_OR_DIE(ReadOnly(a.data(), bytes, static_cast<uint32_t*>(sink.data()), s));
  };
  auto copy = [&](int) {
    CUDA_OR_DIE(cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice, s));
  };
  for (int i = 0; i < 3; ++i) {
    read(0);
    copy(0);
  }
  Ceilings c;
  c.read_tbps = bytes / (TimeMs(reps, s, read) * 1e-3) / 1e12;
  c.copy_tbps = 2.0 * bytes / (TimeMs(reps, s, copy) * 1e-3) / 1e12;
  return c;
}

// The read-only kernel over `mb` MB at a time (regions rotated through a 2 GiB buffer), as a
// percentage of the full-buffer figure `read_tbps`.
void CeilingSweep(cudaStream_t s, int reps, double read_tbps) {
  const int64_t total = int64_t{2} << 30;
  DeviceBuffer a = OrDie(DeviceBuffer::AllocateBytes(total, 0), "alloc");
  DeviceBuffer sink = OrDie(DeviceBuffer::AllocateBytes(4096 * 4, 0), "alloc");
  CUDA_OR_DIE(cudaMemsetAsync(a.data(), 1, total, s));
  CUDA_OR_DIE(cudaMemsetAsync(sink.data(), 0, 4096 * 4, s));
  for (int64_t mb : {16, 64, 134, 268, 537, 1074}) {
    const int64_t bytes = mb << 20;
    const int64_t regions = total / bytes;
    auto read = [&](int r) {
      const char* base = static_cast<const char*>(a.data()) + (r % regions) * bytes;
      CUDA_OR_DIE(ReadOnly(base, bytes, static_cast<uint32_t*>(sink.data()), s));
    };
    for (int i = 0; i < 3; ++i) read(i);
    const double ms = TimeMs(reps, s, read);
    const double tbps = bytes / (ms * 1e-3) / 1e12;
    std::printf("read-only over %5lld MB: %8.4f ms %6.3f TB/s %6.1f%% of the full figure\n",
                static_cast<long long>(mb), ms, tbps, 100.0 * tbps / read_tbps);
  }
}

// One input set on the device.
struct InputSet {
  DeviceBuffer q, k, v, aux;
};

struct ShapeResult {
  std::string name;
  double ms = 0, gbytes = 0, tbps = 0, pct_read = 0, max_err = 0;
  bool check_ok = false;
  int sets = 0;
  std::string config;
};

// Valid positions of a row under the shape's window.
int64_t ValidPositions(const Shape& sh, int32_t s, int32_t e) {
  int64_t lo = s;
  if (sh.window_left >= 0) lo = std::max<int64_t>(lo, e - 1 - sh.window_left);
  return std::max<int64_t>(0, e - lo);
}

class ShapeRunner {
 public:
  ShapeRunner(const Shape& sh, const cudaDeviceProp& prop, cudaStream_t s, bool head_major)
      : sh_(sh), s_(s), head_major_(head_major) {
    const DType t = DType::kBF16;
    testing::TestCase c;
    c.batch = sh.batch;
    c.capacity = sh.capacity;
    if (sh.lengths == Lengths::kFull) {
      c.start.assign(sh.batch, 0);
      c.end.assign(sh.batch, static_cast<int32_t>(sh.capacity));
    } else {
      testing::RandomLengths(c, sh.lengths == Lengths::kOffset, /*allow_empty=*/false, 2026);
    }
    start_ = c.start;
    end_ = c.end;
    for (int64_t b = 0; b < sh.batch; ++b) {
      valid_bytes_ +=
          ValidPositions(sh, start_[b], end_[b]) * sh.num_kv_heads * sh.head_dim * 2 * DTypeSize(t);
    }
    const int64_t kv_elems = sh.batch * sh.capacity * sh.num_kv_heads * sh.head_dim;
    const int64_t set_bytes = 2 * kv_elems * DTypeSize(t);
    const int64_t want = 4 * static_cast<int64_t>(prop.l2CacheSize);
    num_sets_ = static_cast<int>(std::max<int64_t>(2, (want + set_bytes - 1) / set_bytes));
    for (int i = 0; i < num_sets_; ++i) {
      InputSet in;
      in.q = OrDie(DeviceBuffer::Allocate(t, {sh.batch, sh.num_q_heads, sh.head_dim}, 0), "q");
      const std::vector<int64_t> kv_shape =
          head_major ? std::vector<int64_t>{sh.batch, sh.num_kv_heads, sh.capacity, sh.head_dim}
                     : std::vector<int64_t>{sh.batch, sh.capacity, sh.num_kv_heads, sh.head_dim};
      in.k = OrDie(DeviceBuffer::Allocate(t, kv_shape, 0), "k");
      in.v = OrDie(DeviceBuffer::Allocate(t, kv_shape, 0), "v");
      CUDA_OR_DIE(FillNormal(in.q.data(), t, in.q.view().num_elements(), 100 * i + 1, 1.0f, s));
      CUDA_OR_DIE(FillNormal(in.k.data(), t, kv_elems, 100 * i + 2, 1.0f, s));
      CUDA_OR_DIE(FillNormal(in.v.data(), t, kv_elems, 100 * i + 3, 1.0f, s));
      if (sh.sinks) {
        in.aux = OrDie(DeviceBuffer::Allocate(DType::kF32, {sh.num_q_heads, 1}, 0), "aux");
        CUDA_OR_DIE(FillNormal(in.aux.data(), DType::kF32, sh.num_q_heads, 100 * i + 4, 1.0f, s));
      }
      sets_.push_back(std::move(in));
    }
    HostBuffer hs = HostBuffer::Allocate(DType::kI32, {sh.batch});
    HostBuffer he = HostBuffer::Allocate(DType::kI32, {sh.batch});
    std::copy(start_.begin(), start_.end(), hs.data_as<int32_t>());
    std::copy(end_.begin(), end_.end(), he.data_as<int32_t>());
    dstart_ = OrDie(DeviceBuffer::Allocate(DType::kI32, {sh.batch}, 0), "start");
    dend_ = OrDie(DeviceBuffer::Allocate(DType::kI32, {sh.batch}, 0), "end");
    OrDie(dstart_.CopyFromHost(hs.view(), s), "start");
    OrDie(dend_.CopyFromHost(he.view(), s), "end");
    CUDA_OR_DIE(cudaStreamSynchronize(s));
    out_ = OrDie(DeviceBuffer::Allocate(t, {sh.batch, sh.num_q_heads, sh.head_dim}, 0), "out");
    lse_ = OrDie(DeviceBuffer::Allocate(DType::kF32, {sh.batch, sh.num_q_heads}, 0), "lse");
    opts_.platform = Platform::kCuda;
    if (sh.soft_cap > 0) opts_.logits_soft_cap = sh.soft_cap;
    if (sh.window_left >= 0) opts_.sliding_window = SlidingWindow{sh.window_left, 0};
    const int64_t ws = OrDie(RaggedDecodeAttentionWorkspaceSize(Args(0), opts_), "ws size");
    ws_ = OrDie(DeviceBuffer::AllocateBytes(ws, 0), "ws");
  }

  // K or V of an input set as the kernels see it: [batch, seq, kv_heads, head_dim].
  TensorView KvView(const DeviceBuffer& buf) const {
    if (!head_major_) return buf.view();
    const int64_t S = sh_.capacity, H = sh_.num_kv_heads, D = sh_.head_dim;
    return TensorView(buf.data(), DType::kBF16, {sh_.batch, S, H, D}, {H * S * D, D, S * D, 1},
                      buf.view().device());
  }

  RaggedDecodeAttentionArgs Args(int set) const {
    RaggedDecodeAttentionArgs a;
    const InputSet& in = sets_[set];
    a.query = in.q.view();
    a.key = KvView(in.k);
    a.value = KvView(in.v);
    a.sequence_start = dstart_.view();
    a.sequence_end = dend_.view();
    if (sh_.sinks) a.softmax_aux = in.aux.view();
    a.output = out_.view();
    a.lse = lse_.view();
    a.workspace = ws_.data();
    a.workspace_bytes = ws_.nbytes();
    return a;
  }

  // Median ms over `reps` calls rotating the input sets, with `opts` (a config maybe).
  double Time(const RaggedDecodeAttentionOptions& opts, int reps) {
    for (int i = 0; i < 2 * num_sets_; ++i) {
      OrDie(RaggedDecodeAttention(Args(i % num_sets_), opts, s_), "warm-up");
    }
    return TimeMs(reps, s_, [&](int r) {
      OrDie(RaggedDecodeAttention(Args(r % num_sets_), opts, s_), "RaggedDecodeAttention");
    });
  }

  // Mean ms per call over `reps` calls with events only around all of them.
  double TimeStream(const RaggedDecodeAttentionOptions& opts, int reps) {
    return StreamMs(reps, s_, [&](int r) {
      OrDie(RaggedDecodeAttention(Args(r % num_sets_), opts, s_), "RaggedDecodeAttention");
    });
  }

  // Runs set 0 under `o` (default: the shape's options) and checks sampled rows against the
  // reference; returns the max error (or -1 on failure).
  double Check(std::string* detail) { return Check(detail, opts_); }
  double Check(std::string* detail, const RaggedDecodeAttentionOptions& o) {
    CUDA_OR_DIE(cudaMemsetAsync(out_.data(), 0xFF, out_.nbytes(), s_));
    OrDie(RaggedDecodeAttention(Args(0), o, s_), "check run");
    const int64_t HQ = sh_.num_q_heads, D = sh_.head_dim, S = sh_.capacity, HKV = sh_.num_kv_heads;
    HostBuffer out = HostBuffer::Allocate(DType::kBF16, {sh_.batch, HQ, D});
    HostBuffer lse = HostBuffer::Allocate(DType::kF32, {sh_.batch, HQ});
    OrDie(out_.CopyToHost(out.view(), s_), "out");
    OrDie(lse_.CopyToHost(lse.view(), s_), "lse");
    CUDA_OR_DIE(cudaStreamSynchronize(s_));
    std::vector<int64_t> rows = {0};
    if (sh_.batch > 1) rows.push_back(sh_.batch - 1);
    if (sh_.batch > 2) rows.push_back(sh_.batch / 2);
    double worst = 0;
    const InputSet& in = sets_[0];
    for (int64_t b : rows) {
      HostBuffer q = HostBuffer::Allocate(DType::kBF16, {1, HQ, D});
      HostBuffer k = HostBuffer::Allocate(DType::kBF16, {1, S, HKV, D});
      HostBuffer v = HostBuffer::Allocate(DType::kBF16, {1, S, HKV, D});
      CUDA_OR_DIE(cudaMemcpy(q.data(), static_cast<char*>(in.q.data()) + b * q.nbytes(), q.nbytes(),
                             cudaMemcpyDeviceToHost));
      CUDA_OR_DIE(cudaMemcpy(k.data(), static_cast<char*>(in.k.data()) + b * k.nbytes(), k.nbytes(),
                             cudaMemcpyDeviceToHost));
      CUDA_OR_DIE(cudaMemcpy(v.data(), static_cast<char*>(in.v.data()) + b * v.nbytes(), v.nbytes(),
                             cudaMemcpyDeviceToHost));
      if (head_major_) {  // [HKV, S, D] in memory -> [S, HKV, D]
        for (HostBuffer* x : {&k, &v}) {
          HostBuffer y = HostBuffer::Allocate(DType::kBF16, {1, S, HKV, D});
          const uint16_t* src = x->data_as<uint16_t>();
          uint16_t* dst = y.data_as<uint16_t>();
          for (int64_t hh = 0; hh < HKV; ++hh) {
            for (int64_t ss = 0; ss < S; ++ss) {
              std::copy(src + (hh * S + ss) * D, src + (hh * S + ss + 1) * D,
                        dst + (ss * HKV + hh) * D);
            }
          }
          *x = std::move(y);
        }
      }
      HostBuffer st = HostBuffer::Allocate(DType::kI32, {1});
      HostBuffer en = HostBuffer::Allocate(DType::kI32, {1});
      st.data_as<int32_t>()[0] = start_[b];
      en.data_as<int32_t>()[0] = end_[b];
      HostBuffer aux;
      HostBuffer dummy = HostBuffer::Allocate(DType::kBF16, {1, HQ, D});
      RaggedDecodeAttentionArgs a;
      a.query = q.view();
      a.key = k.view();
      a.value = v.view();
      a.sequence_start = st.view();
      a.sequence_end = en.view();
      a.output = dummy.view();
      if (sh_.sinks) {
        aux = HostBuffer::Allocate(DType::kF32, {HQ, 1});
        CUDA_OR_DIE(cudaMemcpy(aux.data(), in.aux.data(), aux.nbytes(), cudaMemcpyDeviceToHost));
        a.softmax_aux = aux.view();
      }
      RaggedDecodeAttentionOptions ro = opts_;
      ro.platform = Platform::kReference;
      ReferenceResult ref = OrDie(ComputeReference(a, ro), "reference");
      TensorView got(static_cast<char*>(out.data()) + b * HQ * D * 2, DType::kBF16,
                     std::vector<int64_t>{1, HQ, D});
      TensorView got_lse(lse.data_as<float>() + b * HQ, DType::kF32, std::vector<int64_t>{1, HQ});
      ::testing::AssertionResult r = testing::MatchesReference(ref, got, &got_lse, DType::kBF16);
      if (!r) {
        *detail = absl::StrFormat("row %d: %s", b, r.message());
        return -1;
      }
      double err = 0;
      std::sscanf(r.message(), "max error %lf", &err);
      worst = std::max(worst, err);
    }
    return worst;
  }

  const RaggedDecodeAttentionOptions& options() const { return opts_; }
  int64_t valid_bytes() const { return valid_bytes_; }
  int num_sets() const { return num_sets_; }

 private:
  Shape sh_;
  cudaStream_t s_;
  bool head_major_ = false;
  std::vector<int32_t> start_, end_;
  int64_t valid_bytes_ = 0;
  int num_sets_ = 0;
  std::vector<InputSet> sets_;
  DeviceBuffer dstart_, dend_, out_, lse_, ws_;
  RaggedDecodeAttentionOptions opts_;
};

ShapeSignature SigOf(const Shape& sh) {
  ShapeSignature s;
  s.dtype = DType::kBF16;
  s.batch = sh.batch;
  s.capacity = sh.capacity;
  s.num_q_heads = sh.num_q_heads;
  s.num_kv_heads = sh.num_kv_heads;
  s.head_dim = sh.head_dim;
  s.window = sh.window_left >= 0;
  s.soft_cap = sh.soft_cap > 0;
  s.sinks = sh.sinks;
  return s;
}

// "splits=64 hpb=16 block_n=64 warps=4 stages=3 chunk=256" (any subset; the rest 0, which the
// library resolves) as a KernelConfig; false on an unknown key or a malformed value.
bool ParseConfig(const std::string& text, KernelConfig* c) {
  std::istringstream in(text);
  std::string tok;
  while (in >> tok) {
    const size_t eq = tok.find('=');
    if (eq == std::string::npos) return false;
    const std::string key = tok.substr(0, eq);
    int v = 0;
    if (!absl::SimpleAtoi(tok.substr(eq + 1), &v)) return false;
    if (key == "chunk") {
      c->chunk_size = v;
    } else if (key == "splits") {
      c->num_splits = v;
    } else if (key == "hpb") {
      c->heads_per_block = v;
    } else if (key == "block_n") {
      c->block_n = v;
    } else if (key == "warps") {
      c->num_warps = v;
    } else if (key == "stages") {
      c->stages = v;
    } else {
      return false;
    }
  }
  return true;
}

int Main(int argc, char** argv) {
  std::string json_path, only;
  int reps = 50;
  bool candidates = false, head_major = false, sweep = false, stream_timing = false;
  std::vector<KernelConfig> configs;  // --config: also time these for every shape
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else if (a == "--shapes" && i + 1 < argc) {
      only = argv[++i];
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::max(3, std::atoi(argv[++i]));
    } else if (a == "--candidates") {
      candidates = true;
    } else if (a == "--head-major") {
      head_major = true;
    } else if (a == "--ceiling-sweep") {
      sweep = true;
    } else if (a == "--stream-timing") {
      stream_timing = true;
    } else if (a == "--config" && i + 1 < argc) {
      KernelConfig c;
      if (!ParseConfig(argv[++i], &c)) {
        std::fprintf(stderr, "gpu_bench: bad --config \"%s\"\n", argv[i]);
        return 2;
      }
      configs.push_back(c);
    } else {
      std::fprintf(
          stderr,
          "usage: gpu_bench [--shapes a,b] [--reps N] [--json FILE] [--candidates] "
          "[--head-major] [--ceiling-sweep] [--stream-timing] [--config \"hpb=16 ...\"]\n");
      return 2;
    }
  }
  if (CudaDeviceCount() == 0) {
    std::fprintf(stderr, "gpu_bench: no CUDA device is visible\n");
    return 1;
  }
  CUDA_OR_DIE(cudaSetDevice(0));
  cudaDeviceProp prop;
  CUDA_OR_DIE(cudaGetDeviceProperties(&prop, 0));
  cudaStream_t s;
  CUDA_OR_DIE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const Ceilings ceil = MeasureCeilings(s, 20);
  const DeviceInfo dev = OrDie(internal::CudaDeviceInfo(0), "device info");
  const char* policy = std::getenv("RAGGED_AUTOTUNE");
  std::printf("device: %s (%d SMs, L2 %d MB)  policy: %s%s\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20, policy ? policy : "heuristic (default)",
              head_major ? "  K/V head-major" : "");
  std::printf("ceilings: read-only %.3f TB/s, device-to-device copy %.3f TB/s (read + write)\n",
              ceil.read_tbps, ceil.copy_tbps);
  if (sweep) CeilingSweep(s, reps, ceil.read_tbps);
  std::printf("%-10s %9s %9s %8s %7s %5s  %s\n", "shape", "time_ms", "valid_GB", "TB/s", "%read",
              "sets", "check");
  const std::vector<std::string> wanted =
      only.empty() ? std::vector<std::string>{} : absl::StrSplit(only, ',');
  std::vector<ShapeResult> results;
  bool all_ok = true;
  for (const Shape& sh : AllShapes()) {
    const bool named = std::find(wanted.begin(), wanted.end(), sh.name) != wanted.end();
    if ((!wanted.empty() && !named) || (sh.on_request && !named)) continue;
    ShapeRunner run(sh, prop, s, head_major);
    // Percent of the read ceiling of a call of `ms` milliseconds.
    auto pct_read = [&](double ms) {
      return 100.0 * run.valid_bytes() / (ms * 1e-3) / 1e12 / ceil.read_tbps;
    };
    ShapeResult r;
    r.name = sh.name;
    r.sets = run.num_sets();
#ifdef RAGGED_CTA_TRACE
    ClearTrace();  // the records of earlier shapes' calls
#endif
    r.ms = run.Time(run.options(), reps);
#ifdef RAGGED_CTA_TRACE
    PrintTrace(sh.name);
#endif
    r.gbytes = run.valid_bytes() / 1e9;
    r.tbps = run.valid_bytes() / (r.ms * 1e-3) / 1e12;
    r.pct_read = 100.0 * r.tbps / ceil.read_tbps;
    std::string detail;
    r.max_err = run.Check(&detail);
    r.check_ok = r.max_err >= 0;
    all_ok = all_ok && r.check_ok;
    std::printf("%-10s %9.4f %9.3f %8.3f %6.1f%% %5d  %s\n", sh.name.c_str(), r.ms, r.gbytes,
                r.tbps, r.pct_read, r.sets,
                r.check_ok ? absl::StrFormat("ok (max err %.1e)", r.max_err).c_str()
                           : ("FAILED " + detail).c_str());
    if (stream_timing) {
      const double ms = run.TimeStream(run.options(), reps);
      std::printf("  %s without per-call events: %.4f ms per call (%.1f%% of the read ceiling)\n",
                  sh.name.c_str(), ms, pct_read(ms));
    }
    std::fflush(stdout);
    for (const KernelConfig& want : configs) {
      // Each explicit config as the library resolves it, timed and checked against the reference.
      absl::StatusOr<KernelConfig> c = ResolveKernelConfig(want, SigOf(sh), dev);
      if (!c.ok()) {
        std::printf("    %-55s %s\n", want.ToString().c_str(),
                    std::string(c.status().message()).c_str());
        continue;
      }
      RaggedDecodeAttentionOptions o = run.options();
      o.kernel_config = *c;
      const double ms = run.Time(o, reps);
      std::string check;
      const double err = run.Check(&check, o);
      std::printf("    %-55s %9.4f ms %6.1f%%  %s\n", c->ToString().c_str(), ms, pct_read(ms),
                  err >= 0 ? absl::StrFormat("ok (max err %.1e)", err).c_str()
                           : ("FAILED " + check).c_str());
      std::fflush(stdout);
    }
    if (candidates) {
      for (const KernelConfig& c : CandidateKernelConfigs(SigOf(sh), dev)) {
        RaggedDecodeAttentionOptions o = run.options();
        o.kernel_config = c;
        const double ms = run.Time(o, std::max(5, reps / 3));
        std::printf("    %-55s %9.4f ms %6.1f%%\n", c.ToString().c_str(), ms, pct_read(ms));
        std::fflush(stdout);
      }
    }
    results.push_back(r);
  }
  if (!json_path.empty()) {
    nlohmann::json j;
    j["device"] = prop.name;
    j["sms"] = prop.multiProcessorCount;
    j["policy"] = policy ? policy : "heuristic";
    j["read_tbps"] = ceil.read_tbps;
    j["copy_tbps"] = ceil.copy_tbps;
    j["reps"] = reps;
    std::time_t now = std::time(nullptr);
    char date[32];
    std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    j["date"] = date;
    for (const ShapeResult& r : results) {
      j["shapes"].push_back({{"name", r.name},
                             {"time_ms", r.ms},
                             {"valid_gb", r.gbytes},
                             {"tbps", r.tbps},
                             {"pct_read", r.pct_read},
                             {"sets", r.sets},
                             {"check_ok", r.check_ok},
                             {"max_err", r.max_err}});
    }
    std::ofstream(json_path) << j.dump(2) << "\n";
  }
  cudaStreamDestroy(s);
  return all_ok ? 0 : 1;
}

}  // namespace
}  // namespace ragged::bench

int main(int argc, char** argv) { return ragged::bench::Main(argc, argv); }
