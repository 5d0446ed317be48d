#include "kernels/cpu/cpu_backend.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/buffer.h"
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

// The state of one (batch row, KV head) pair in a buffer of StateFloats(): m [G], l [G], acc [G,
// D].
struct PairState {
  float* m;
  float* l;
  float* acc;
};
int64_t StateFloats(const Problem& p) {
  return RoundUp16(2 * p.group_size) + RoundUp16(p.group_size * p.head_dim);
}
PairState StateAt(const Problem& p, float* base) {
  return {base, base + p.group_size, base + RoundUp16(2 * p.group_size)};
}

void WritePair(const Problem& p, int64_t b, int64_t g, const PairState& s) {
  for (int64_t j = 0; j < p.group_size; ++j) {
    WriteHead(p, b, g * p.group_size + j, s.m[j], s.l[j], s.acc + j * p.head_dim);
  }
}

// Merges the pieces of one pair into `pieces[0]`, exactly: rescale each to the common max.
void MergePieces(const Problem& p, const std::vector<PairState>& pieces) {
  const int64_t d_all = p.head_dim;
  PairState out = pieces[0];
  for (int64_t j = 0; j < p.group_size; ++j) {
    double top = kNegInf;
    for (const PairState& s : pieces) top = MaxNan(top, s.m[j]);
    double l = 0.0;
    std::vector<double> acc(d_all, 0.0);
    for (const PairState& s : pieces) {
      if (s.m[j] == -std::numeric_limits<float>::infinity()) {
        // No weight; l is 0, or NaN where the piece met NaN logits only (keep it).
        l += s.l[j];
        continue;
      }
      const double w = std::exp(s.m[j] - top);
      l += s.l[j] * w;
      for (int64_t d = 0; d < d_all; ++d) acc[d] += s.acc[j * d_all + d] * w;
    }
    out.m[j] = static_cast<float>(top);
    out.l[j] = static_cast<float>(l);
    for (int64_t d = 0; d < d_all; ++d) out.acc[j * d_all + d] = static_cast<float>(acc[d]);
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

bool CpuHasIsa(Isa isa) {
  if (isa == Isa::kScalar) return true;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512dq");
  switch (isa) {
    case Isa::kAvx2:
      return RAGGED_CPU_HAVE_AVX2 && avx2;
    case Isa::kAvx512:
      return RAGGED_CPU_HAVE_AVX512 && avx512;
    case Isa::kAvx512Bf16:
      return RAGGED_CPU_HAVE_AVX512BF16 && avx512 && __builtin_cpu_supports("avx512bf16");
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

  const int64_t B = p.batch, HKV = p.num_kv_heads, G = p.group_size, D = p.head_dim;
  const int64_t esize = DTypeSize(p.dtype);
  // Pairs (b, g) end to end, b-major, weighted by their valid positions.
  std::vector<KvRange> ranges(B);
  std::vector<int64_t> offsets(B * HKV + 1, 0);
  for (int64_t b = 0; b < B; ++b) {
    ranges[b] =
        ComputeKvRange(p.sequence_start[b * p.start_stride], p.sequence_end[b * p.end_stride],
                       p.capacity, p.kv_offset, p.total_capacity, p.window_left, p.window_right);
    const int64_t len = ranges[b].end - ranges[b].begin;
    if (len == 0) {
      for (int64_t h = 0; h < p.num_q_heads; ++h) WriteHead(p, b, h, kNegInf, 0.0, nullptr);
    }
    for (int64_t g = 0; g < HKV; ++g) offsets[b * HKV + g + 1] = offsets[b * HKV + g] + len;
  }
  const int64_t npairs = B * HKV;
  const int64_t total = offsets[npairs];
  if (total == 0) {
    if (config.stats != nullptr) *config.stats = stats;
    return absl::OkStatus();
  }

  int64_t threads = config.num_threads > 0 ? config.num_threads : omp_get_max_threads();
  if (config.min_work_per_thread > 0) {
    const int64_t work = total * G * D * 2;
    threads = std::min(threads, std::max<int64_t>(1, work / config.min_work_per_thread));
  }
  threads = std::max<int64_t>(1, std::min(threads, total));

  // The work is cut into `shares` equal contiguous shares, handed out dynamically, so that a thread
  // that is slowed down (a busy machine) does not hold the others at the end.
  const int64_t shares =
      threads == 1 ? 1 : std::min(total, threads * std::max(1, config.shares_per_thread));

  // Per thread: the kernel's scratch and one pair state; then two slots per share for the pieces
  // of pairs that a cut falls into.
  const int64_t state_floats = StateFloats(p);
  const int64_t scratch_floats = RoundUp16(cpu::ScratchFloats(G, D));
  const int64_t per_thread = scratch_floats + state_floats;
  HostBuffer work_buffer =
      HostBuffer::Allocate(DType::kF32, {threads * per_thread + 2 * shares * state_floats});
  float* const work = work_buffer.data_as<float>();
  float* const slots = work + threads * per_thread;
  std::vector<int64_t> slot_pair(2 * shares, -1);
  int team_size = 0;

  const char* const query = static_cast<const char*>(p.query);
  const char* const key = static_cast<const char*>(p.key);
  const char* const value = static_cast<const char*>(p.value);
#pragma omp parallel num_threads(static_cast <int>(threads))
  {
    const int tid = omp_get_thread_num();
    if (tid == 0) team_size = omp_get_num_threads();
    float* const scratch = work + tid * per_thread;
    const PairState own = StateAt(p, scratch + scratch_floats);
#pragma omp for schedule(dynamic, 1)
    for (int64_t share = 0; share < shares; ++share) {
      const int64_t w0 = total * share / shares, w1 = total * (share + 1) / shares;
      int nslots = 0;
      int64_t i = std::upper_bound(offsets.begin(), offsets.end(), w0) - offsets.begin() - 1;
      for (; i < npairs && offsets[i] < w1; ++i) {
        const int64_t lo = std::max(w0, offsets[i]) - offsets[i];
        const int64_t hi = std::min(w1, offsets[i + 1]) - offsets[i];
        if (hi <= lo) continue;
        const int64_t b = i / HKV, g = i % HKV;
        const bool whole = lo == 0 && hi == offsets[i + 1] - offsets[i];
        const int64_t slot = 2 * share + nslots;
        const PairState s = whole ? own : StateAt(p, slots + slot * state_floats);
        const int64_t t0 = ranges[b].begin + lo;
        cpu::PieceArgs a;
        a.query = query + (b * p.q_stride_b + g * G * p.q_stride_h) * esize;
        a.q_stride_h = p.q_stride_h;
        a.key = key + (b * p.k_stride_b + t0 * p.k_stride_s + g * p.k_stride_h) * esize;
        a.k_stride = p.k_stride_s;
        a.value = value + (b * p.v_stride_b + t0 * p.v_stride_s + g * p.v_stride_h) * esize;
        a.v_stride = p.v_stride_s;
        a.num_tokens = hi - lo;
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
          WritePair(p, b, g, s);
        } else {
          slot_pair[slot] = i;  // at most two: the first and the last pair of this share
          ++nslots;
        }
      }
    }
  }

  // Pairs that were cut: their pieces sit in consecutive used slots, in position order.
  std::vector<PairState> pieces;
  for (int64_t s = 0; s < 2 * shares;) {
    if (slot_pair[s] < 0) {
      ++s;
      continue;
    }
    const int64_t pair = slot_pair[s];
    pieces.clear();
    for (; s < 2 * shares && (slot_pair[s] == pair || slot_pair[s] < 0); ++s) {
      if (slot_pair[s] == pair) pieces.push_back(StateAt(p, slots + s * state_floats));
    }
    MergePieces(p, pieces);
    WritePair(p, pair / HKV, pair % HKV, pieces[0]);
    ++stats.split_pairs;
  }
  stats.threads = team_size;
  if (config.stats != nullptr) *config.stats = stats;
  return absl::OkStatus();
}

}  // namespace ragged::internal
