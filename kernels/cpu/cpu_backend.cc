#include "kernels/cpu/cpu_backend.h"

#include <cpuid.h>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/dtype.h"
#include "runtime/status.h"

// Which instruction-set kernels this build compiled (set by kernels/cpu/sources.cmake).
#ifndef RAGGED_CPU_HAVE_AVX2
#define RAGGED_CPU_HAVE_AVX2 0
#endif
#ifndef RAGGED_CPU_HAVE_AVX512
#define RAGGED_CPU_HAVE_AVX512 0
#endif
#ifndef RAGGED_CPU_HAVE_AVX512BF16
#define RAGGED_CPU_HAVE_AVX512BF16 0
#endif

namespace ragged::internal {
namespace {

using cpu::Isa;

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

int64_t RoundUp16(int64_t x) { return (x + 15) / 16 * 16; }

// max that propagates NaN from either side.
double MaxNan(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<double>::quiet_NaN();
  return a > b ? a : b;
}

cpu::PieceFn PieceFnAt(Isa isa, cpu::Elem elem, int64_t head_dim) {
  switch (isa) {
#if RAGGED_CPU_HAVE_AVX512BF16
    case Isa::kAvx512Bf16:
      return cpu::Avx512Bf16PieceFn(elem, head_dim);
#endif
#if RAGGED_CPU_HAVE_AVX512
    case Isa::kAvx512:
      return cpu::Avx512PieceFn(elem, head_dim);
#endif
#if RAGGED_CPU_HAVE_AVX2
    case Isa::kAvx2:
      return cpu::Avx2PieceFn(elem, head_dim);
#endif
    case Isa::kScalar:
      return cpu::ScalarPieceFn(elem, head_dim);
    default:
      return nullptr;
  }
}

cpu::Elem ElemOf(DType t) {
  switch (t) {
    case DType::kF16:
      return cpu::Elem::kF16;
    case DType::kBF16:
      return cpu::Elem::kBF16;
    default:
      return cpu::Elem::kF32;
  }
}

// The kernel for `isa` or the widest narrower one that takes this dtype and head_dim.
std::pair<cpu::PieceFn, Isa> SelectKernel(const Problem& p, Isa isa) {
  for (int level = static_cast<int>(isa); level >= 0; --level) {
    const Isa at = static_cast<Isa>(level);
    if (cpu::PieceFn fn = PieceFnAt(at, ElemOf(p.dtype), p.head_dim)) return {fn, at};
  }
  return {nullptr, Isa::kScalar};  // unreachable: the scalar kernel takes every problem
}

// Writes output[b, h, :] and lse[b, h] from one head's unnormalized state: m (max logit), l (sum
// of exp(x - m)) and acc (sum of exp(x - m) v; nullptr when the row has no valid position). Sinks
// enter here, once (SPEC.md steps 6-8).
void WriteHead(const Problem& p, int64_t b, int64_t h, double m, double l, const float* acc) {
  double top = acc != nullptr ? m : kNegInf;
  double sink_sum = 0.0;
  if (p.has_sinks()) {
    const int64_t row = p.AuxRow(h) * p.aux_stride_row;
    for (int64_t j = 0; j < p.num_sinks; ++j) {
      top = MaxNan(top, LoadAsFloat(p.aux, p.aux_dtype, row + j * p.aux_stride_sink));
    }
    for (int64_t j = 0; j < p.num_sinks; ++j) {
      sink_sum += std::exp(LoadAsFloat(p.aux, p.aux_dtype, row + j * p.aux_stride_sink) - top);
    }
  }
  const double token_weight = acc != nullptr ? std::exp(m - top) : 0.0;
  const double denom = l * token_weight + sink_sum;
  const int64_t o = b * p.o_stride_b + h * p.o_stride_h;
  if (acc != nullptr) {
    const float f = static_cast<float>(token_weight / denom);
    for (int64_t d = 0; d < p.head_dim; ++d)
      StoreFromFloat(p.output, p.output_dtype, o + d, acc[d] * f);
  } else {
    for (int64_t d = 0; d < p.head_dim; ++d) StoreFromFloat(p.output, p.output_dtype, o + d, 0.0f);
  }
  if (p.lse != nullptr) {
    const double lse = (acc != nullptr || p.has_sinks()) ? top + std::log(denom) : kNegInf;
    p.lse[b * p.lse_stride_b + h * p.lse_stride_h] = static_cast<float>(lse);
  }
}

// Scratch owned by the calling thread and reused by its later calls: grow-only, 64-byte aligned,
// never zeroed (the kernel initializes what it reads). Two caches, because the thread that calls
// RunCpu also works in its OpenMP team.
constexpr int kKernelCache = 0;  // a kernel's scratch and one row state, per team thread
constexpr int kSlotsCache = 1;   // the pieces of cut rows, on the calling thread
float* ThreadScratch(int which, int64_t floats) {
  thread_local std::vector<float> caches[2];
  std::vector<float>& cache = caches[which];
  const size_t want = static_cast<size_t>(floats) + 16;
  if (cache.size() < want) {
    cache = std::vector<float>();  // release first: the old contents are not needed
    cache.resize(want);
  }
  const uintptr_t p = reinterpret_cast<uintptr_t>(cache.data());
  return reinterpret_cast<float*>((p + 63) & ~uintptr_t{63});
}

// The state of one batch row's query heads in a buffer of StateFloats(): m [HQ], l [HQ] and
// acc [HQ, D] (cpu_kernel.h).
struct RowState {
  float* m;
  float* l;
  float* acc;
};
int64_t StateFloats(const Problem& p) {
  return RoundUp16(2 * p.num_q_heads) + RoundUp16(p.num_q_heads * p.head_dim);
}
RowState StateAt(const Problem& p, float* base) {
  return {base, base + p.num_q_heads, base + RoundUp16(2 * p.num_q_heads)};
}

void WriteRow(const Problem& p, int64_t b, const RowState& s) {
  for (int64_t h = 0; h < p.num_q_heads; ++h) {
    WriteHead(p, b, h, s.m[h], s.l[h], s.acc + h * p.head_dim);
  }
}

// Merges the pieces of one row into `pieces[0]`, exactly: each is rescaled to the common max.
void MergePieces(const Problem& p, const std::vector<RowState>& pieces) {
  const int64_t dim = p.head_dim;
  const RowState out = pieces[0];
  std::vector<double> acc(dim);
  for (int64_t h = 0; h < p.num_q_heads; ++h) {
    double top = kNegInf;
    for (const RowState& s : pieces) top = MaxNan(top, s.m[h]);
    double l = 0.0;
    std::fill(acc.begin(), acc.end(), 0.0);
    for (const RowState& s : pieces) {
      if (s.m[h] == -std::numeric_limits<float>::infinity()) {
        // No weight; l is 0, or NaN where the piece met NaN logits only (keep it).
        l += s.l[h];
        continue;
      }
      const double w = std::exp(s.m[h] - top);
      l += s.l[h] * w;
      for (int64_t d = 0; d < dim; ++d) acc[d] += s.acc[h * dim + d] * w;
    }
    out.m[h] = static_cast<float>(top);
    out.l[h] = static_cast<float>(l);
    for (int64_t d = 0; d < dim; ++d) out.acc[h * dim + d] = static_cast<float>(acc[d]);
  }
}

absl::StatusOr<Isa> IsaFromEnvironment() {
  const char* env = std::getenv("RAGGED_CPU_ISA");
  if (env == nullptr || *env == '\0') return Isa::kAvx512Bf16;
  auto isa = ParseCpuIsa(env);
  if (!isa.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("RAGGED_CPU_ISA: ", isa.status().message()));
  }
  return *isa;
}

}  // namespace

absl::string_view CpuIsaName(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx512Bf16:
      return "avx512bf16";
  }
  return "unknown";
}

absl::StatusOr<Isa> ParseCpuIsa(absl::string_view name) {
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAvx512Bf16}) {
    if (name == CpuIsaName(isa)) return isa;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("expected one of scalar, avx2, avx512, avx512bf16, got \"", name, "\""));
}

// CPUID.1:ECX[29] (clang 14's __builtin_cpu_supports knows no "f16c").
bool CpuidF16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}

bool CpuHasIsa(Isa isa) {
  if (isa == Isa::kScalar) return true;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    CpuidF16c();
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512dq");
  switch (isa) {
    case Isa::kAvx2:
      return RAGGED_CPU_HAVE_AVX2 && avx2;
    case Isa::kAvx512:
      return RAGGED_CPU_HAVE_AVX512 && avx512;
    case Isa::kAvx512Bf16:
      {
      unsigned a = 0, b = 0, c = 0, d = 0;  // CPUID.(EAX=7,ECX=1):EAX[5] = AVX512_BF16
      const bool bf16 = __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5));
      return RAGGED_CPU_HAVE_AVX512BF16 && avx512 && bf16;
    }
    default:
      return false;
  }
#else
  return false;
#endif
}

absl::StatusOr<Isa> DefaultCpuIsa() {
  RAGGED_ASSIGN_OR_RETURN(const Isa cap, IsaFromEnvironment());
  for (int level = static_cast<int>(cap); level > 0; --level) {
    if (CpuHasIsa(static_cast<Isa>(level))) return static_cast<Isa>(level);
  }
  return Isa::kScalar;
}

Isa KernelIsaFor(const Problem& problem, Isa isa) { return SelectKernel(problem, isa).second; }

absl::Status RunCpu(const Problem& problem, const RaggedDecodeAttentionOptions& options) {
  CpuRunConfig config;
  config.num_threads = options.num_threads;
  return RunCpu(problem, config);
}

absl::Status RunCpu(const Problem& p, const CpuRunConfig& config) {
  if (!p.device.is_cpu()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cpu backend: expected host tensors, got tensors on ", p.device.ToString()));
  }
  if (config.num_threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_threads: expected a value >= 0, got ", config.num_threads));
  }
  Isa isa;
  if (config.isa.has_value()) {
    if (!CpuHasIsa(*config.isa)) {
      return absl::FailedPreconditionError(
          absl::StrCat("cpu backend: instruction set ", CpuIsaName(*config.isa),
                       " was asked for, but this CPU or build does not have it"));
    }
    isa = *config.isa;
  } else {
    RAGGED_ASSIGN_OR_RETURN(isa, DefaultCpuIsa());
  }
  const std::pair<cpu::PieceFn, Isa> selected = SelectKernel(p, isa);
  const cpu::PieceFn kernel = selected.first;
  RAGGED_CHECK(kernel != nullptr);
  CpuRunStats stats;
  stats.isa = selected.second;

  const int64_t B = p.batch, HQ = p.num_q_heads, G = p.group_size, D = p.head_dim;
  const int64_t esize = DTypeSize(p.dtype);
  // Rows end to end, weighted by their valid positions.
  std::vector<KvRange> ranges(B);
  std::vector<int64_t> offsets(B + 1, 0);
  for (int64_t b = 0; b < B; ++b) {
    ranges[b] =
        ComputeKvRange(p.sequence_start[b * p.start_stride], p.sequence_end[b * p.end_stride],
                       p.capacity, p.kv_offset, p.total_capacity, p.window_left, p.window_right);
    const int64_t len = ranges[b].end - ranges[b].begin;
    if (len == 0) {
      for (int64_t h = 0; h < HQ; ++h) WriteHead(p, b, h, kNegInf, 0.0, nullptr);
    }
    offsets[b + 1] = offsets[b] + len;
  }
  const int64_t total = offsets[B];
  if (total == 0) {
    if (config.stats != nullptr) *config.stats = stats;
    return absl::OkStatus();
  }

  int64_t threads = config.num_threads > 0 ? config.num_threads : omp_get_max_threads();
  if (config.min_work_per_thread > 0) {
    const int64_t work = total * HQ * D * 2;
    threads = std::min(threads, std::max<int64_t>(1, work / config.min_work_per_thread));
  }
  threads = std::max<int64_t>(1, std::min(threads, total));
  // The positions are cut into `shares` equal contiguous shares, handed out dynamically, so that
  // a thread slowed down (a busy machine) does not hold the others at the end.
  const int64_t shares =
      threads == 1 ? 1 : std::min(total, threads * std::max(1, config.shares_per_thread));

  // Per thread: the kernel's scratch and one row state; then two slots per share for the pieces
  // of rows that a cut falls into.
  const int64_t state_floats = StateFloats(p);
  const int64_t scratch_floats = RoundUp16(cpu::ScratchFloats(G, p.num_kv_heads, D));
  const int64_t per_thread = scratch_floats + state_floats;
  float* const slots = ThreadScratch(kSlotsCache, 2 * shares * state_floats);
  std::vector<int64_t> slot_row(2 * shares, -1);
  int team_size = 0;

  const char* const query = static_cast<const char*>(p.query);
  const char* const key = static_cast<const char*>(p.key);
  const char* const value = static_cast<const char*>(p.value);
#pragma omp parallel num_threads(static_cast <int>(threads))
  {
    const int tid = omp_get_thread_num();
    if (tid == 0) team_size = omp_get_num_threads();
    float* const scratch = ThreadScratch(kKernelCache, per_thread);
    const RowState own = StateAt(p, scratch + scratch_floats);
#pragma omp for schedule(dynamic, 1)
    for (int64_t share = 0; share < shares; ++share) {
      const int64_t w0 = total * share / shares, w1 = total * (share + 1) / shares;
      int nslots = 0;
      int64_t b = std::upper_bound(offsets.begin(), offsets.end(), w0) - offsets.begin() - 1;
      for (; b < B && offsets[b] < w1; ++b) {
        const int64_t lo = std::max(w0, offsets[b]) - offsets[b];
        const int64_t hi = std::min(w1, offsets[b + 1]) - offsets[b];
        if (hi <= lo) continue;
        const bool whole = lo == 0 && hi == offsets[b + 1] - offsets[b];
        const int64_t slot = 2 * share + nslots;
        const RowState s = whole ? own : StateAt(p, slots + slot * state_floats);
        const int64_t t0 = ranges[b].begin + lo;
        cpu::PieceArgs a;
        a.query = query + b * p.q_stride_b * esize;
        a.q_stride_h = p.q_stride_h;
        a.key = key + (b * p.k_stride_b + t0 * p.k_stride_s) * esize;
        a.k_stride = p.k_stride_s;
        a.k_stride_h = p.k_stride_h;
        a.value = value + (b * p.v_stride_b + t0 * p.v_stride_s) * esize;
        a.v_stride = p.v_stride_s;
        a.v_stride_h = p.v_stride_h;
        a.num_tokens = hi - lo;
        a.num_kv_heads = p.num_kv_heads;
        a.group = G;
        a.head_dim = D;
        a.scale = p.softmax_scale;
        a.soft_cap = p.soft_cap;
        a.m = s.m;
        a.l = s.l;
        a.acc = s.acc;
        a.scratch = scratch;
        kernel(a);
        if (whole) {
          WriteRow(p, b, s);
        } else {
          slot_row[slot] = b;  // at most two: the first and the last row of this share
          ++nslots;
        }
      }
    }
  }

  // Rows that were cut: their pieces sit in consecutive used slots, in position order.
  std::vector<RowState> pieces;
  for (int64_t s = 0; s < 2 * shares;) {
    if (slot_row[s] < 0) {
      ++s;
      continue;
    }
    const int64_t row = slot_row[s];
    pieces.clear();
    for (; s < 2 * shares && (slot_row[s] == row || slot_row[s] < 0); ++s) {
      if (slot_row[s] == row) pieces.push_back(StateAt(p, slots + s * state_floats));
    }
    MergePieces(p, pieces);
    WriteRow(p, row, pieces[0]);
    ++stats.split_rows;
  }
  stats.threads = team_size;
  if (config.stats != nullptr) *config.stats = stats;
  return absl::OkStatus();
}

}  // namespace ragged::internal
