// Kernel configs of the CUDA decode kernels: the heuristic, candidates, the autotune policy and the
// config cache.
//
// Everything here is host-only C++ (no CUDA), so that the rules are tested on any machine:
// - ResolveKernelConfig fills the zero fields of a requested KernelConfig with the heuristic's
//   choice for a shape and a device and checks the result (InvalidArgument naming the field).
// - CandidateKernelConfigs lists the configs the autotuner times for a shape.
// - AutotunePolicyFromEnv reads RAGGED_AUTOTUNE: "off" (the heuristic only, caches ignored),
//   "heuristic" (the default: a cached tuned config when there is one, else the heuristic; never
//   times anything), "autotune" (as heuristic, but a shape missing from the cache is timed on its
//   first call, outside CUDA-graph capture, and the winner stored).
// - AutotuneCache maps a key (shape signature + device) to a config, in memory and in a JSON file
//   under AutotuneCacheDir(). Reads tolerate a missing or corrupt file (it is ignored, and
//   replaced at the next write); writes take an flock on "<file>.lock", merge with what is on
//   disk, write a temporary file and rename it over the old one, so concurrent writers (threads or
//   processes) never leave a torn file.
//
// Thread-safety: all functions are thread-safe; AutotuneCache serializes its own state.
//
//   ShapeSignature sig = ShapeSignature::FromProblem(problem);
//   AutotuneCache& cache = AutotuneCache::Global();
//   std::optional<KernelConfig> hit = cache.Lookup(CacheKey(sig, device));
#ifndef RAGGED_KERNELS_AUTOTUNE_H_
#define RAGGED_KERNELS_AUTOTUNE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "kernels/kernel_config.h"
#include "kernels/problem.h"
#include "runtime/dtype.h"

namespace ragged {

// What the config rules need to know about a CUDA device.
struct DeviceInfo {
  std::string name;                // "NVIDIA H100 80GB HBM3"
  int cc_major = 0, cc_minor = 0;  // compute capability
  int num_sms = 0;                 // multiprocessors
  int smem_per_sm = 0;             // shared memory per multiprocessor, bytes
  int smem_per_block_optin = 0;    // largest dynamic shared memory of one CTA, bytes
  bool wgmma = false;              // the backend runs the wgmma decode variant here (an sm_90a
                                   // build, compute capability 9.0, RAGGED_WGMMA not "0")
  std::string Key() const;         // "NVIDIA H100 80GB HBM3|sm_90|132" (+ "|wgmma")
};

// The shape of a call, without the lengths (which change every step).
struct ShapeSignature {
  DType dtype = DType::kBF16;
  int64_t batch = 0, capacity = 0, num_q_heads = 0, num_kv_heads = 0, head_dim = 0;
  bool window = false, soft_cap = false, sinks = false;

  static ShapeSignature FromProblem(const Problem& p);
  int64_t group_size() const { return num_kv_heads > 0 ? num_q_heads / num_kv_heads : 0; }
  std::string Key() const;  // "bf16|B64|S8192|HQ32|HKV8|D128|w0|c0|s0"
};

std::string CacheKey(const ShapeSignature& sig, const DeviceInfo& dev);

// Head dims with compiled CUDA kernels.
inline bool IsCudaHeadDim(int64_t d) {
  return d == 64 || d == 80 || d == 96 || d == 128 || d == 256;
}
// Upper bound of KernelConfig::num_splits in multiples of the SM count (sizes the workspace).
constexpr int kMaxCtasPerSm = 4;
// Default of KernelConfig::chunk_size.
constexpr int kDefaultChunkSize = 256;

// True when the kernels for `dtype` use tensor cores (f16, bf16); f32 uses the SIMT path.
inline bool UsesMma(DType dtype) { return dtype != DType::kF32; }

// Dynamic shared memory of the decode kernel for a resolved config.
int64_t DecodeSmemBytes(const KernelConfig& resolved, const ShapeSignature& sig);

// Fills the zero fields of `requested` and validates the result for `sig` on `dev`.
// num_splits stays 0 when it was 0 (the backend then uses every resident CTA slot).
absl::StatusOr<KernelConfig> ResolveKernelConfig(const KernelConfig& requested,
                                                 const ShapeSignature& sig, const DeviceInfo& dev);
// The heuristic's config (ResolveKernelConfig of an all-zero config). Never fails for a supported
// dtype and head dim.
absl::StatusOr<KernelConfig> HeuristicKernelConfig(const ShapeSignature& sig,
                                                   const DeviceInfo& dev);
// The configs the autotuner times: all resolved and valid, the heuristic's first, no duplicates.
std::vector<KernelConfig> CandidateKernelConfigs(const ShapeSignature& sig, const DeviceInfo& dev);

// True when the config and shape take the warpgroup-MMA (wgmma) decode variant on `dev`
// (DeviceInfo::wgmma): 16-bit types, head_dim 128, 64 heads per CTA in 4 warps (one warpgroup,
// one warp per 16 heads) and 64-position tiles, as the heuristic picks for groups of 64 or more
// (MQA).
bool WgmmaEligible(const KernelConfig& resolved, const ShapeSignature& sig, const DeviceInfo& dev);

// How much faster than the heuristic's config a candidate must be, as a fraction of the
// heuristic's time on the tuning call, to replace it. The cache is keyed by shape, not by the
// lengths of the call that was timed: a config that wins by a hair on one call's lengths can lose
// several points on others (an H100: the config tuned on full rows of L_full was 0.1% faster
// there and 8% slower on L_ragged's uniform lengths, which reuse its entry).
constexpr double kAutotuneMargin = 0.03;
// The autotuner's pick among candidates timed `times_us` (index 0: the heuristic's config; +inf:
// a candidate that could not run): the fastest when it beats the heuristic by more than `margin`
// of the heuristic's time, else 0. -1 when nothing ran (all +inf or empty).
int PickTunedConfig(const std::vector<double>& times_us, double margin);

enum class AutotunePolicy { kOff, kHeuristic, kAutotune };
absl::string_view AutotunePolicyName(AutotunePolicy p);
// "off", "heuristic", "autotune"; InvalidArgument otherwise.
absl::StatusOr<AutotunePolicy> ParseAutotunePolicy(absl::string_view name);
// RAGGED_AUTOTUNE; unset or empty: kHeuristic. An unknown value is an error (the message names it).
absl::StatusOr<AutotunePolicy> AutotunePolicyFromEnv();
// $RAGGED_CACHE_DIR, else $XDG_CACHE_HOME/ragged, else $HOME/.cache/ragged; "" when none is set.
std::string AutotuneCacheDir();

class AutotuneCache {
 public:
  // `file`: the JSON file; "" keeps the cache in memory only.
  explicit AutotuneCache(std::string file);
  AutotuneCache(const AutotuneCache&) = delete;
  AutotuneCache& operator=(const AutotuneCache&) = delete;

  // The config stored for `key`: memory first, then the file (read once, on the first lookup).
  std::optional<KernelConfig> Lookup(const std::string& key);
  // Stores `config` (with its measured time) in memory and, when there is a file, on disk.
  // The in-memory entry is kept even when writing the file fails (the error is returned).
  absl::Status Insert(const std::string& key, const KernelConfig& config, double time_us);
  const std::string& file() const { return file_; }
  // Number of entries in memory.
  size_t size();

  // The process-wide cache, in AutotuneCacheDir()/autotune.json (memory only without a dir).
  static AutotuneCache& Global();

 private:
  void LoadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string file_;
  absl::Mutex mu_;
  bool loaded_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, KernelConfig> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ragged

#endif  // RAGGED_KERNELS_AUTOTUNE_H_
