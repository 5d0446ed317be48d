// The CPU backend of RaggedDecodeAttention: multi-threaded (OpenMP) and vectorized, with the
// instruction set chosen at run time, so one build runs on any x86-64.
//
// Entry point for Platform::kCpu (and kAuto on host tensors). Reads host tensors described by a
// validated Problem and writes the output and lse. Scratch (a few hundred KiB per thread, for the
// staged key and value rows) is kept per thread and reused by later calls, so that a decode step
// does not pay for allocating and faulting in fresh pages; it is freed when the thread exits.
//
// How the work is split: the rows of the batch are laid end to end, weighted by their valid
// positions (after the window), and the total is cut into a few equal contiguous shares per thread,
// handed out dynamically (a thread slowed down by a busy machine does not hold the others). A row
// that a cut falls into is computed in pieces, possibly by several threads, and the pieces'
// partial results (max, sum of exponentials, unnormalized output) are merged exactly afterwards;
// sinks enter once, at that final step. So a small batch with long sequences keeps every thread
// busy, work follows the valid positions (never the capacity S), and empty rows cost nothing but
// their output (zeros, and lse = -inf or the sinks' log-sum-exp). Within a piece the kernel walks
// the positions in chunks and, for each chunk, every KV head in turn: each key and value row is
// read once for all the query heads of its GQA group, and memory is read in whole rows.
//
// Instruction sets (cpu_kernel.h): AVX-512 with bf16 dot products, AVX-512, AVX2 + FMA + F16C, and
// portable scalar C++, chosen by what the CPU reports and by head_dim (a multiple of 16 for
// AVX-512, of 8 for AVX2; other head dims use the scalar kernel). f16 and bf16 are converted to f32
// in registers; all arithmetic and accumulation is f32. The environment variable RAGGED_CPU_ISA
// (scalar, avx2, avx512, avx512bf16) caps the choice, for comparisons.
//
// Non-finite inputs give non-finite outputs for the heads that meet them, never a crash.
//
// Thread-safety: concurrent calls on distinct outputs are safe. Threads: options.num_threads, or
// OpenMP's default (OMP_NUM_THREADS) when 0; fewer for problems too small to share.
#ifndef RAGGED_KERNELS_CPU_CPU_BACKEND_H_
#define RAGGED_KERNELS_CPU_CPU_BACKEND_H_

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/cpu/cpu_kernel.h"
#include "kernels/problem.h"
#include "kernels/ragged_decode_attention.h"

namespace ragged::internal {

// Computes the problem on the host with the default CpuRunConfig and options.num_threads.
absl::Status RunCpu(const Problem& problem, const RaggedDecodeAttentionOptions& options);

// What one call did, for tests and benchmarks.
struct CpuRunStats {
  int threads = 0;                   // the OpenMP team that ran the kernels (0: no work)
  cpu::Isa isa = cpu::Isa::kScalar;  // the kernel's instruction set
  int64_t split_rows = 0;            // batch rows computed in pieces and merged
};

// What RunCpu decides by itself, exposed for tests and benchmarks.
struct CpuRunConfig {
  int num_threads = 0;          // 0: OpenMP's default (OMP_NUM_THREADS)
  std::optional<cpu::Isa> isa;  // none: DefaultCpuIsa(); must be one this CPU has
  // Fewer threads when a thread would get fewer multiply-adds than this (0: always num_threads,
  // which tests use to split tiny problems).
  int64_t min_work_per_thread = int64_t{1} << 20;
  // With more than one thread the work is cut into this many shares per thread, handed out
  // dynamically.
  int shares_per_thread = 4;
  CpuRunStats* stats = nullptr;  // filled in when not null
};
absl::Status RunCpu(const Problem& problem, const CpuRunConfig& config);

// True when this CPU (and OS) can run `isa`.
bool CpuHasIsa(cpu::Isa isa);
// The widest instruction set this CPU has, capped by RAGGED_CPU_ISA; InvalidArgument when that
// variable holds an unknown name.
absl::StatusOr<cpu::Isa> DefaultCpuIsa();
// The instruction set whose kernel runs for this problem when `isa` is asked for (narrower when
// head_dim or the dtype needs it).
cpu::Isa KernelIsaFor(const Problem& problem, cpu::Isa isa);
// "scalar", "avx2", "avx512", "avx512bf16", and back.
absl::string_view CpuIsaName(cpu::Isa isa);
absl::StatusOr<cpu::Isa> ParseCpuIsa(absl::string_view name);

}  // namespace ragged::internal

#endif  // RAGGED_KERNELS_CPU_CPU_BACKEND_H_
