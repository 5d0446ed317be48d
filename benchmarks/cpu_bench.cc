// cpu_bench: the CPU backend on the CPU shapes of BENCHMARKS.md, against the machine's own
// ceilings measured in the same run with the same thread count.
//
//   cpu_bench [--threads N] [--reps N] [--shapes cpu_full,cpu_single] [--json FILE]
//
// For each shape it prints the median time over --reps runs (after warm-up), the effective
// bandwidth (valid K/V bytes / time), the floor = max(bytes / read bandwidth, multiply-adds / FMA
// throughput), time / floor, and the speed-up over the double-precision reference. The ceilings
// are measured right before every run (the development machine is shared, and a ratio of two
// measurements taken together is steadier than either alone). The reference is
// single-threaded and slow, so it is timed on the first rows of the batch only and scaled by the
// valid positions (the output says on how many rows). The same rows check the backend's output
// against the reference, so a fast wrong kernel cannot pass.
//
// Ceilings: read bandwidth is a vectorized sum over 512 MiB (many times the caches), FMA throughput
// is independent chains of vector FMAs in registers, both with the widest vectors the kernel uses,
// on every thread. Inputs: random normal, fixed seed; two input sets alternate between runs.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/problem.h"
#include "kernels/ragged_decode_attention.h"
#include "kernels/reference.h"
#include "nlohmann/json.hpp"
#include "runtime/buffer.h"
#include "runtime/dtype.h"
#include "runtime/status.h"

namespace ragged {
namespace {

using Clock = std::chrono::steady_clock;
using internal::cpu::Isa;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// ---------------------------------------------------------------------------------------------
// Ceilings. Each has a version per vector width; the widest the CPU has runs (the kernel's own).

constexpr int64_t kReadBytes = int64_t{1} << 29;  // 16x the L3 of the development machine

__attribute__((target("avx512f"))) float SumAvx512(const float* p, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i + 64 <= n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_loadu_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_loadu_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_loadu_ps(p + i + 48));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

__attribute__((target("avx2"))) float SumAvx2(const float* p, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + i + 24));
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
  float lanes[8];
  _mm256_storeu_ps(lanes, s);
  float t = 0;
  for (float x : lanes) t += x;
  return t;
}

float SumScalar(const float* p, int64_t n) {
  float a[8] = {};
  for (int64_t i = 0; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) a[j] += p[i + j];
  }
  float t = 0;
  for (float x : a) t += x;
  return t;
}

// Multiply-adds per call: iters x 16 chains x width.
__attribute__((target("avx512f"))) float FmaAvx512(int64_t iters, float seed) {
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_ps(seed + static_cast<float>(i));
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t k = 0; k < iters; ++k) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < 16; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) float FmaAvx2(int64_t iters, float seed) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(seed + static_cast<float>(i));
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t k = 0; k < iters; ++k) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  __m256 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, acc[i]);
  float lanes[8];
  _mm256_storeu_ps(lanes, s);
  float t = 0;
  for (float x : lanes) t += x;
  return t;
}

float FmaScalar(int64_t iters, float seed) {
  float acc[8];
  for (int i = 0; i < 8; ++i) acc[i] = seed + static_cast<float>(i);
  for (int64_t k = 0; k < iters; ++k) {
    for (int i = 0; i < 8; ++i) acc[i] = std::fma(acc[i], 0.999999f, 1e-7f);
  }
  float t = 0;
  for (float x : acc) t += x;
  return t;
}

// The two ceilings, measured with `threads` threads on the widest vectors that the kernel uses.
// Measured again next to every timed run of the kernel (the machine may be shared: a ratio of two
// measurements taken together is steadier than either).
class Ceilings {
 public:
  Ceilings(int threads, Isa isa)
      : threads_(threads),
        width_(isa >= Isa::kAvx512 ? 512 : (isa >= Isa::kAvx2 ? 256 : 32)),
        buffer_(HostBuffer::Allocate(DType::kF32, {kReadBytes / 4})) {
    float* data = buffer_.data_as<float>();
    const int64_t n = kReadBytes / 4;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; ++i) data[i] = static_cast<float>(i & 1023) * 1e-3f;
  }
  const char* width_name() const {
    return width_ == 512 ? "avx512" : (width_ == 256 ? "avx2" : "scalar");
  }

  // One vectorized sum over the whole buffer, each thread its contiguous part: bytes / s.
  double Read() {
    const int64_t n = kReadBytes / 4;
    const float* data = buffer_.data_as<float>();
    const auto t0 = Clock::now();
    float total = 0;
#pragma omp parallel num_threads(threads_) reduction(+ : total)
    {
      const int64_t nth = omp_get_num_threads(), tid = omp_get_thread_num();
      const int64_t lo = n * tid / nth / 64 * 64, hi = n * (tid + 1) / nth / 64 * 64;
      total += width_ == 512   ? SumAvx512(data + lo, hi - lo)
               : width_ == 256 ? SumAvx2(data + lo, hi - lo)
                               : SumScalar(data + lo, hi - lo);
    }
    const double s = Seconds(t0, Clock::now());
    sink_ = sink_ + total;
    return static_cast<double>(n / 64 * 64 * 4) / s;
  }

  // Independent FMA chains in registers on every thread: multiply-adds / s.
  double Fma() {
    const int64_t iters = int64_t{1} << 21;
    const int64_t per_thread = iters * (width_ == 512 ? 16 * 16 : (width_ == 256 ? 12 * 8 : 8));
    const auto t0 = Clock::now();
    float total = 0;
    int team = 1;
#pragma omp parallel num_threads(threads_) reduction(+ : total)
    {
      if (omp_get_thread_num() == 0) team = omp_get_num_threads();
      const float seed = static_cast<float>(omp_get_thread_num());
      total += width_ == 512   ? FmaAvx512(iters, seed)
               : width_ == 256 ? FmaAvx2(iters, seed)
                               : FmaScalar(iters, seed);
    }
    const double s = Seconds(t0, Clock::now());
    sink_ = sink_ + total;
    return static_cast<double>(per_thread) * team / s;
  }

 private:
  int threads_;
  int width_;
  HostBuffer buffer_;
  volatile float sink_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Inputs.

// Normal(0, 1) values, in parallel: block i uses its own generator seeded from (seed, i).
void FillNormal(const HostBuffer& buf, uint64_t seed, int threads) {
  const int64_t n = buf.num_elements(), block = 1 << 16;
  const int64_t blocks = (n + block - 1) / block;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < blocks; ++i) {
    std::mt19937 rng(static_cast<uint32_t>(seed * 1000003u + static_cast<uint64_t>(i)));
    std::normal_distribution<float> dist(0.0f, 1.0f);
    for (int64_t j = i * block; j < std::min(n, (i + 1) * block); ++j) {
      StoreFromFloat(buf.data(), buf.dtype(), j, dist(rng));
    }
  }
}

struct Shape {
  std::string name;
  int64_t batch, capacity, num_q_heads, num_kv_heads, head_dim;
  DType dtype;
  bool ragged;  // lengths uniform in [1, S], start 0; else every row [0, S)
};

const Shape kShapes[] = {
    {"cpu_full", 8, 4096, 32, 8, 128, DType::kBF16, false},
    {"cpu_ragged", 16, 4096, 32, 8, 128, DType::kBF16, true},
    {"cpu_single", 1, 32768, 32, 8, 128, DType::kBF16, false},
    {"cpu_fp32", 8, 2048, 32, 8, 128, DType::kF32, false},
};

struct Inputs {
  HostBuffer query, key, value;
};

struct Result {
  double median_s = 0, best_s = 0, valid_bytes = 0, macs = 0;
  double read_bps = 0, macs_per_s = 0;  // medians of the ceilings measured next to each run
  double floor_s = 0;                   // from those medians
  double time_over_floor = 0;           // median over runs of time / that run's own floor
  double ref_s = 0;                     // reference, scaled to the whole shape
  int64_t ref_rows = 0;
  double max_err = 0;
  bool ok = false;
  Isa isa = Isa::kScalar;
  int threads = 0;
};

// Max |out - ref| / max(1, max |ref|) over the rows of `ref`.
double MaxError(const ReferenceResult& ref, const HostBuffer& out) {
  double max_ref = 0, err = 0;
  for (double x : ref.output) max_ref = std::max(max_ref, std::abs(x));
  for (size_t i = 0; i < ref.output.size(); ++i) {
    const double got = LoadAsFloat(out.data(), out.dtype(), static_cast<int64_t>(i));
    const double e = std::abs(got - ref.output[i]);
    err = std::isnan(e) ? 1e30 : std::max(err, e);
  }
  return err / std::max(1.0, max_ref);
}

absl::StatusOr<Result> RunShape(const Shape& s, int threads, int reps, Ceilings& ceil) {
  Result r;
  const int64_t B = s.batch, S = s.capacity, HQ = s.num_q_heads, HKV = s.num_kv_heads,
                D = s.head_dim;
  HostBuffer start = HostBuffer::Allocate(DType::kI32, {B});
  HostBuffer end = HostBuffer::Allocate(DType::kI32, {B});
  std::mt19937_64 rng(2026);
  int64_t valid = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = s.ragged ? std::uniform_int_distribution<int64_t>(1, S)(rng) : S;
    start.data_as<int32_t>()[b] = 0;
    end.data_as<int32_t>()[b] = static_cast<int32_t>(len);
    valid += len;
  }
  r.valid_bytes = static_cast<double>(valid * HKV * D * 2 * DTypeSize(s.dtype));
  r.macs = static_cast<double>(valid * HQ * D * 2);

  Inputs sets[2];
  for (int i = 0; i < 2; ++i) {
    sets[i].query = HostBuffer::Allocate(s.dtype, {B, HQ, D});
    sets[i].key = HostBuffer::Allocate(s.dtype, {B, S, HKV, D});
    sets[i].value = HostBuffer::Allocate(s.dtype, {B, S, HKV, D});
    FillNormal(sets[i].query, 10 * i + 1, threads);
    FillNormal(sets[i].key, 10 * i + 2, threads);
    FillNormal(sets[i].value, 10 * i + 3, threads);
  }
  HostBuffer output = HostBuffer::Allocate(s.dtype, {B, HQ, D});
  HostBuffer lse = HostBuffer::Allocate(DType::kF32, {B, HQ});
  auto args_of = [&](const Inputs& in) {
    RaggedDecodeAttentionArgs a;
    a.query = in.query.view();
    a.key = in.key.view();
    a.value = in.value.view();
    a.sequence_start = start.view();
    a.sequence_end = end.view();
    a.output = output.view();
    a.lse = lse.view();
    return a;
  };
  RaggedDecodeAttentionOptions options;
  options.platform = Platform::kCpu;
  options.num_threads = threads;

  // Stats of one run (isa, threads), through the internal entry point.
  {
    RAGGED_ASSIGN_OR_RETURN(Problem p, ValidateProblem(args_of(sets[0]), options, Platform::kCpu));
    internal::CpuRunConfig config;
    config.num_threads = threads;
    internal::CpuRunStats stats;
    config.stats = &stats;
    RAGGED_RETURN_IF_ERROR(internal::RunCpu(p, config));
    r.isa = stats.isa;
    r.threads = stats.threads;
  }
  for (int i = 0; i < 2; ++i)
    RAGGED_RETURN_IF_ERROR(RaggedDecodeAttention(args_of(sets[i]), options));
  std::vector<double> times, reads, fmas, ratios;
  for (int rep = 0; rep < reps; ++rep) {
    // The ceilings right before the run; the read sweep also flushes the caches.
    const double fma = ceil.Fma();
    const double read = ceil.Read();
    const RaggedDecodeAttentionArgs a = args_of(sets[rep % 2]);
    const auto t0 = Clock::now();
    RAGGED_RETURN_IF_ERROR(RaggedDecodeAttention(a, options));
    const double t = Seconds(t0, Clock::now());
    times.push_back(t);
    reads.push_back(read);
    fmas.push_back(fma);
    ratios.push_back(t / std::max(r.valid_bytes / read, r.macs / fma));
  }
  r.median_s = Median(times);
  r.best_s = *std::min_element(times.begin(), times.end());
  r.read_bps = Median(reads);
  r.macs_per_s = Median(fmas);
  r.floor_s = std::max(r.valid_bytes / r.read_bps, r.macs / r.macs_per_s);
  r.time_over_floor = Median(ratios);

  // The reference on the first rows of the last input set (whose output is in `output`): about
  // an eighth of the batch, at least one row.
  const Inputs& last = sets[(reps - 1) % 2];
  r.ref_rows = std::max<int64_t>(1, B / 8);
  RaggedDecodeAttentionArgs sub = args_of(last);
  sub.query = sub.query.Slice(0, 0, r.ref_rows);
  sub.key = sub.key.Slice(0, 0, r.ref_rows);
  sub.value = sub.value.Slice(0, 0, r.ref_rows);
  sub.sequence_start = sub.sequence_start.Slice(0, 0, r.ref_rows);
  sub.sequence_end = sub.sequence_end.Slice(0, 0, r.ref_rows);
  sub.output = sub.output.Slice(0, 0, r.ref_rows);
  sub.lse = sub.lse->Slice(0, 0, r.ref_rows);
  int64_t sub_valid = 0;
  for (int64_t b = 0; b < r.ref_rows; ++b) sub_valid += end.data_as<int32_t>()[b];
  RaggedDecodeAttentionOptions ref_options = options;
  ref_options.platform = Platform::kReference;
  const auto t0 = Clock::now();
  RAGGED_ASSIGN_OR_RETURN(ReferenceResult ref, ComputeReference(sub, ref_options));
  r.ref_s = Seconds(t0, Clock::now()) * static_cast<double>(valid) / static_cast<double>(sub_valid);
  r.max_err = MaxError(ref, output);
  r.ok = r.max_err <= (s.dtype == DType::kF32 ? 1e-5 : 1e-2);
  return r;
}

std::string Today() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d", std::gmtime(&t));
  return buf;
}

std::string CpuModel() {
  std::ifstream f("/proc/cpuinfo");
  std::string line, model = "unknown", family, number;
  while (std::getline(f, line)) {
    auto value = [&]() {
      std::string v = line.substr(line.find(':') + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    };
    if (model == "unknown" && line.rfind("model name", 0) == 0) model = value();
    if (family.empty() && line.rfind("cpu family", 0) == 0) family = value();
    if (number.empty() && line.rfind("model\t", 0) == 0) number = value();
  }
  return absl::StrCat(model, " (family ", family, ", model ", number, ")");
}

int Main(int argc, char** argv) {
  int threads = omp_get_max_threads(), reps = 15;
  std::string json_path;
  std::vector<std::string> only;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "cpu_bench: %s needs a value\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--threads") {
      threads = std::atoi(next().c_str());
    } else if (arg == "--reps") {
      reps = std::max(1, std::atoi(next().c_str()));
    } else if (arg == "--json") {
      json_path = next();
    } else if (arg == "--shapes") {
      only = absl::StrSplit(next(), ',');
    } else {
      std::fprintf(stderr,
                   "usage: cpu_bench [--threads N] [--reps N] [--shapes a,b] [--json FILE]\n");
      return 2;
    }
  }
  if (threads < 1) {
    std::fprintf(stderr, "cpu_bench: --threads must be >= 1\n");
    return 2;
  }
  auto isa = internal::DefaultCpuIsa();
  if (!isa.ok()) {
    std::fprintf(stderr, "cpu_bench: %s\n", std::string(isa.status().message()).c_str());
    return 1;
  }
  Ceilings ceil(threads, *isa);
  // A first look at the ceilings, best of a few (each shape measures them again next to each run).
  double read0 = 0, fma0 = 0;
  for (int i = 0; i < 3; ++i) {
    read0 = std::max(read0, ceil.Read());
    fma0 = std::max(fma0, ceil.Fma());
  }
  const std::string date = Today(), cpu = CpuModel();
  std::printf("cpu_bench %s, %s, %d threads, kernel isa %s, %d runs per shape\n", date.c_str(),
              cpu.c_str(), threads, std::string(internal::CpuIsaName(*isa)).c_str(), reps);
  std::printf(
      "ceilings (%d threads, %s vectors), best of 3: read %.1f GB/s, FMA %.1f G multiply-adds/s\n",
      threads, ceil.width_name(), read0 / 1e9, fma0 / 1e9);
  std::printf(
      "per shape: median (and best) time; GB/s = valid K/V bytes / median; the ceilings are "
      "measured before each run and their medians give the floor; time/floor is the median of "
      "the runs' own ratios\n");
  std::printf("%-11s %9s %9s %7s %7s %7s %9s %10s %10s %9s %11s %s\n", "shape", "median", "best",
              "GB/s", "read", "GMAC/s", "floor", "time/floor", "reference", "speed-up", "isa",
              "check");
  nlohmann::json out;
  out["date"] = date;
  out["cpu"] = cpu;
  out["threads"] = threads;
  out["read_bandwidth_gbs_best_of_3"] = read0 / 1e9;
  out["fma_gmacs_best_of_3"] = fma0 / 1e9;
  out["ceiling_vectors"] = ceil.width_name();
  out["runs_per_shape"] = reps;
  out["shapes"] = nlohmann::json::array();
  bool all_ok = true;
  for (const Shape& s : kShapes) {
    if (!only.empty() && std::find(only.begin(), only.end(), s.name) == only.end()) continue;
    auto r = RunShape(s, threads, reps, ceil);
    if (!r.ok()) {
      std::fprintf(stderr, "cpu_bench: %s: %s\n", s.name.c_str(), r.status().ToString().c_str());
      return 1;
    }
    all_ok = all_ok && r->ok;
    const std::string ref_note = absl::StrCat("reference timed on ", r->ref_rows, "/", s.batch,
                                              " rows, scaled by valid positions");
    std::printf(
        "%-11s %6.2f ms %6.2f ms %7.1f %7.1f %7.1f %6.2f ms %10.2f %7.0f ms %8.0fx %11s %s (err "
        "%.1e; %s)\n",
        s.name.c_str(), r->median_s * 1e3, r->best_s * 1e3, r->valid_bytes / r->median_s / 1e9,
        r->read_bps / 1e9, r->macs_per_s / 1e9, r->floor_s * 1e3, r->time_over_floor,
        r->ref_s * 1e3, r->ref_s / r->median_s, std::string(internal::CpuIsaName(r->isa)).c_str(),
        r->ok ? "ok" : "WRONG", r->max_err, ref_note.c_str());
    nlohmann::json j;
    j["name"] = s.name;
    j["batch"] = s.batch;
    j["capacity"] = s.capacity;
    j["num_q_heads"] = s.num_q_heads;
    j["num_kv_heads"] = s.num_kv_heads;
    j["head_dim"] = s.head_dim;
    j["dtype"] = std::string(DTypeName(s.dtype));
    j["lengths"] = s.ragged ? "uniform" : "all S";
    j["valid_kv_bytes"] = r->valid_bytes;
    j["multiply_adds"] = r->macs;
    j["median_ms"] = r->median_s * 1e3;
    j["best_ms"] = r->best_s * 1e3;
    j["effective_gbs"] = r->valid_bytes / r->median_s / 1e9;
    j["read_bandwidth_gbs"] = r->read_bps / 1e9;
    j["fma_gmacs"] = r->macs_per_s / 1e9;
    j["floor_ms"] = r->floor_s * 1e3;
    j["time_over_floor"] = r->time_over_floor;
    j["reference_ms_scaled"] = r->ref_s * 1e3;
    j["reference_rows_timed"] = r->ref_rows;
    j["speedup_vs_reference"] = r->ref_s / r->median_s;
    j["isa"] = std::string(internal::CpuIsaName(r->isa));
    j["kernel_threads"] = r->threads;
    j["check_max_error"] = r->max_err;
    j["check_ok"] = r->ok;
    out["shapes"].push_back(j);
  }
  if (!json_path.empty()) {
    std::ofstream f(json_path);
    f << out.dump(2) << "\n";
    if (!f) {
      std::fprintf(stderr, "cpu_bench: cannot write %s\n", json_path.c_str());
      return 1;
    }
  }
  return all_ok ? 0 : 1;
}

}  // namespace
}  // namespace ragged

int main(int argc, char** argv) { return ragged::Main(argc, argv); }
