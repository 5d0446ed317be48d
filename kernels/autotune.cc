#include "kernels/autotune.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/cuda/smem_layout.h"
#include "nlohmann/json.hpp"

namespace ragged {
namespace {

absl::Status Invalid(const std::string& s) { return absl::InvalidArgumentError(s); }

// Shared memory the runtime keeps per CTA on top of the dynamic request.
constexpr int kReservedSmemPerCta = 1024;

int RoundUp(int x, int m) { return (x + m - 1) / m * m; }

}  // namespace

std::string DeviceInfo::Key() const {
  return absl::StrFormat("%s|sm_%d%d|%d%s", name, cc_major, cc_minor, num_sms,
                         wgmma ? "|wgmma" : "");
}

ShapeSignature ShapeSignature::FromProblem(const Problem& p) {
  ShapeSignature s;
  s.dtype = p.dtype;
  s.batch = p.batch;
  s.capacity = p.capacity;
  s.num_q_heads = p.num_q_heads;
  s.num_kv_heads = p.num_kv_heads;
  s.head_dim = p.head_dim;
  s.window = p.window_left >= 0 || p.window_right >= 0;
  s.soft_cap = p.soft_cap > 0.0f;
  s.sinks = p.has_sinks();
  return s;
}

std::string ShapeSignature::Key() const {
  return absl::StrFormat("%s|B%d|S%d|HQ%d|HKV%d|D%d|w%d|c%d|s%d", DTypeName(dtype), batch, capacity,
                         num_q_heads, num_kv_heads, head_dim, window ? 1 : 0, soft_cap ? 1 : 0,
                         sinks ? 1 : 0);
}

std::string CacheKey(const ShapeSignature& sig, const DeviceInfo& dev) {
  return absl::StrCat(sig.Key(), "@", dev.Key());
}

int64_t DecodeSmemBytes(const KernelConfig& c, const ShapeSignature& sig) {
  const bool mma = UsesMma(sig.dtype);
  const int nsplit = mma ? c.num_warps / (c.heads_per_block / 16) : 1;
  return internal::ComputeSmemLayout(static_cast<int>(DTypeSize(sig.dtype)),
                                     static_cast<int>(sig.head_dim), c.heads_per_block, c.block_n,
                                     c.stages, nsplit, mma)
      .total;
}

absl::StatusOr<KernelConfig> ResolveKernelConfig(const KernelConfig& req, const ShapeSignature& sig,
                                                 const DeviceInfo& dev) {
  if (!IsFloating(sig.dtype)) {
    return Invalid(absl::StrCat("dtype: the CUDA kernels handle f32, f16 and bf16, got ",
                                DTypeName(sig.dtype)));
  }
  if (!IsCudaHeadDim(sig.head_dim)) {
    return Invalid(absl::StrCat(
        "head_dim: the CUDA kernels are instantiated for 64, 80, 96, 128 and 256, got ",
        sig.head_dim));
  }
  if (sig.num_kv_heads < 1 || sig.num_q_heads % sig.num_kv_heads != 0) {
    return Invalid(absl::StrCat("num_q_heads (", sig.num_q_heads,
                                ") must be a multiple of num_kv_heads (", sig.num_kv_heads, ")"));
  }
  for (auto [v, name] :
       {std::pair{req.chunk_size, "chunk_size"}, std::pair{req.num_splits, "num_splits"},
        std::pair{req.heads_per_block, "heads_per_block"}, std::pair{req.block_n, "block_n"},
        std::pair{req.num_warps, "num_warps"}, std::pair{req.stages, "stages"}}) {
    if (v < 0) return Invalid(absl::StrCat("kernel_config.", name, ": expected >= 0, got ", v));
  }
  const int64_t group = sig.group_size();
  const bool mma = UsesMma(sig.dtype);
  KernelConfig c = req;
  if (mma) {
    if (c.heads_per_block == 0) c.heads_per_block = group <= 16 ? 16 : group <= 32 ? 32 : 64;
    if (c.heads_per_block != 16 && c.heads_per_block != 32 && c.heads_per_block != 64) {
      return Invalid(absl::StrCat(
          "kernel_config.heads_per_block: the tensor-core kernels take 16, 32 or 64, got ",
          c.heads_per_block));
    }
    // Defaults: four warps (one per 16 heads, the rest splitting the positions of a tile) and
    // tiles of 64 positions.
    auto default_warps = [](int mtiles, int block_n) {
      return mtiles * std::max(1, std::min(block_n / 16, 4 / mtiles));
    };
    if (c.block_n == 0 && c.num_warps != 0) {
      c.block_n = std::max(64, 16 * (c.num_warps / (c.heads_per_block / 16)));
    }
    if (c.block_n == 0) {
      // While even a two-stage pipeline does not fit (head_dim 256 on smaller devices), halve the
      // tile, then the heads per CTA (when not requested).
      const int optin = dev.smem_per_block_optin > 0 ? dev.smem_per_block_optin : 48 * 1024;
      KernelConfig t = c;
      t.stages = c.stages > 0 ? c.stages : 2;
      for (;;) {
        const int mtiles = t.heads_per_block / 16;
        // 128 positions for head_dim 64 (measured: 86% vs 79% of the read ceiling with 64 on
        // an H100), 64 otherwise.
        t.block_n = sig.head_dim <= 64 ? 128 : 64;
        t.num_warps = c.num_warps != 0 ? c.num_warps : default_warps(mtiles, t.block_n);
        while (t.block_n > 16 && DecodeSmemBytes(t, sig) > optin) {
          t.block_n /= 2;
          if (c.num_warps == 0) t.num_warps = default_warps(mtiles, t.block_n);
        }
        if (DecodeSmemBytes(t, sig) <= optin || req.heads_per_block != 0 ||
            t.heads_per_block == 16) {
          break;
        }
        t.heads_per_block /= 2;
      }
      c.heads_per_block = t.heads_per_block;
      c.block_n = t.block_n;
      if (c.num_warps == 0) c.num_warps = t.num_warps;
    }
    const int mtiles = c.heads_per_block / 16;
    if (c.num_warps == 0) c.num_warps = default_warps(mtiles, c.block_n);
    if (c.block_n % 16 != 0 || c.block_n > 256) {
      return Invalid(absl::StrCat(
          "kernel_config.block_n: the tensor-core kernels take a multiple of 16 up to 256, got ",
          c.block_n));
    }
    if (c.num_warps % mtiles != 0) {
      return Invalid(absl::StrCat("kernel_config.num_warps: a multiple of heads_per_block / 16 (",
                                  mtiles, ") is needed, got ", c.num_warps));
    }
    const int nsplit = c.num_warps / mtiles;
    if (c.block_n % (16 * nsplit) != 0) {
      return Invalid(absl::StrCat("kernel_config.num_warps: ", c.num_warps, " warps split block_n ",
                                  c.block_n, " into ", nsplit,
                                  " parts, which must be multiples of 16 positions"));
    }
    if (c.num_warps * 32 > internal::kMaxDecodeThreads) {
      return Invalid(absl::StrCat("kernel_config.num_warps: at most ",
                                  internal::kMaxDecodeThreads / 32, " warps, got ", c.num_warps));
    }
  } else {
    if (c.heads_per_block == 0) c.heads_per_block = static_cast<int>(std::min<int64_t>(group, 16));
    if (c.heads_per_block < 1 || c.heads_per_block > 16) {
      return Invalid(absl::StrCat(
          "kernel_config.heads_per_block: the f32 kernels take 1 to 16, got ", c.heads_per_block));
    }
    if (c.block_n == 0) c.block_n = 32;
    if (c.block_n != 32) {
      return Invalid(
          absl::StrCat("kernel_config.block_n: the f32 kernels take 32, got ", c.block_n));
    }
    if (c.num_warps == 0) c.num_warps = 4;
    if (c.num_warps != 4) {
      return Invalid(
          absl::StrCat("kernel_config.num_warps: the f32 kernels take 4, got ", c.num_warps));
    }
    if (req.heads_per_block == 0) {
      // Fewer heads per CTA (more head slices) while a two-stage pipeline does not fit.
      const int optin = dev.smem_per_block_optin > 0 ? dev.smem_per_block_optin : 48 * 1024;
      KernelConfig t = c;
      t.stages = c.stages > 0 ? c.stages : 2;
      while (t.heads_per_block > 1 && DecodeSmemBytes(t, sig) > optin) t.heads_per_block /= 2;
      c.heads_per_block = t.heads_per_block;
    }
  }
  const int optin = dev.smem_per_block_optin > 0 ? dev.smem_per_block_optin : 48 * 1024;
  const int per_sm = dev.smem_per_sm > 0 ? dev.smem_per_sm : optin;
  if (c.stages == 0) {
    // Deepest pipeline (up to 4) that still lets two CTAs share an SM; else the deepest that fits.
    KernelConfig t = c;
    for (int s = 4; s >= 2 && c.stages == 0; --s) {
      t.stages = s;
      if (DecodeSmemBytes(t, sig) + kReservedSmemPerCta <= per_sm / 2) c.stages = s;
    }
    for (int s = 4; s >= 2 && c.stages == 0; --s) {
      t.stages = s;
      if (DecodeSmemBytes(t, sig) <= optin) c.stages = s;
    }
    if (c.stages == 0) c.stages = 2;
  }
  if (c.stages < 2 || c.stages > 5) {
    return Invalid(absl::StrCat("kernel_config.stages: expected 2 to 5, got ", c.stages));
  }
  const int64_t smem = DecodeSmemBytes(c, sig);
  if (smem > optin) {
    return Invalid(absl::StrCat("kernel_config: needs ", smem,
                                " bytes of shared memory per CTA, the device allows ", optin, " (",
                                c.ToString(), ")"));
  }
  if (c.chunk_size == 0) c.chunk_size = kDefaultChunkSize;
  const int64_t max_splits = static_cast<int64_t>(kMaxCtasPerSm) * std::max(1, dev.num_sms);
  if (c.num_splits > max_splits) {
    return Invalid(absl::StrCat("kernel_config.num_splits: expected at most ", max_splits, " (",
                                kMaxCtasPerSm, " per SM), got ", c.num_splits));
  }
  return c;
}

absl::StatusOr<KernelConfig> HeuristicKernelConfig(const ShapeSignature& sig,
                                                   const DeviceInfo& dev) {
  return ResolveKernelConfig(KernelConfig{}, sig, dev);
}

std::vector<KernelConfig> CandidateKernelConfigs(const ShapeSignature& sig, const DeviceInfo& dev) {
  std::vector<KernelConfig> out;
  auto add = [&](const KernelConfig& want) {
    absl::StatusOr<KernelConfig> c = ResolveKernelConfig(want, sig, dev);
    if (!c.ok()) return;
    if (std::find(out.begin(), out.end(), *c) == out.end()) out.push_back(*c);
  };
  absl::StatusOr<KernelConfig> h = HeuristicKernelConfig(sig, dev);
  if (!h.ok()) return out;
  out.push_back(*h);
  const int64_t group = sig.group_size();
  const int optin = dev.smem_per_block_optin > 0 ? dev.smem_per_block_optin : 48 * 1024;
  const int per_sm = dev.smem_per_sm > 0 ? dev.smem_per_sm : optin;
  // For a tile shape: the deepest pipeline (up to 4) with two CTAs per SM, and the deepest (up to
  // 5) with one.
  auto add_depths = [&](KernelConfig c) {
    for (int two_per_sm : {1, 0}) {
      for (int stages = two_per_sm ? 4 : 5; stages >= 2; --stages) {
        c.stages = stages;
        const int64_t smem = DecodeSmemBytes(c, sig);
        if (two_per_sm ? smem + kReservedSmemPerCta <= per_sm / 2 : smem <= optin) {
          add(c);
          break;
        }
      }
    }
  };
  if (UsesMma(sig.dtype)) {
    const int max_hpb = RoundUp(static_cast<int>(std::max<int64_t>(group, 16)), 16);
    for (int hpb : {16, 32, 64}) {
      if (hpb > max_hpb) continue;
      const int mtiles = hpb / 16;
      for (int nsplit : {1, 2, 4, 8}) {
        const int warps = mtiles * nsplit;
        if (warps < 2 || warps * 32 > internal::kMaxDecodeThreads) continue;
        for (int block_n : {32, 64, 128}) {
          if (block_n % (16 * nsplit) != 0) continue;
          KernelConfig c;
          c.heads_per_block = hpb;
          c.block_n = block_n;
          c.num_warps = warps;
          c.chunk_size = kDefaultChunkSize;
          add_depths(c);
        }
      }
    }
  } else {
    for (int hpb : {16, 8, 4}) {
      if (hpb > std::max<int64_t>(group, 1) && hpb != 4) continue;
      KernelConfig c;
      c.heads_per_block = static_cast<int>(std::min<int64_t>(hpb, group));
      c.block_n = 32;
      c.num_warps = 4;
      c.chunk_size = kDefaultChunkSize;
      add_depths(c);
    }
  }
  // Grids of 1 to 4 CTAs per SM for the heuristic's tile shape: fewer shares (fewer partials) or
  // more, smaller ones than resident slots (a second wave evens out the CTAs' finishing times).
  for (int per_sm = 1; per_sm <= kMaxCtasPerSm; ++per_sm) {
    KernelConfig c = *h;
    c.num_splits = per_sm * std::max(1, dev.num_sms);
    add(c);
  }
  return out;
}

bool WgmmaEligible(const KernelConfig& c, const ShapeSignature& sig, const DeviceInfo& dev) {
  return dev.wgmma && UsesMma(sig.dtype) && sig.head_dim == 128 && c.heads_per_block == 64 &&
         c.num_warps == 4 && c.block_n == 64;
}

int PickTunedConfig(const std::vector<double>& times_us, double margin) {
  int best = -1;
  for (size_t i = 0; i < times_us.size(); ++i) {
    if (!std::isfinite(times_us[i])) continue;
    if (best < 0 || times_us[i] < times_us[best]) best = static_cast<int>(i);
  }
  if (best <= 0 || times_us.empty() || !std::isfinite(times_us[0])) return best;
  return times_us[best] < times_us[0] * (1.0 - margin) ? best : 0;
}

absl::string_view AutotunePolicyName(AutotunePolicy p) {
  switch (p) {
    case AutotunePolicy::kOff:
      return "off";
    case AutotunePolicy::kHeuristic:
      return "heuristic";
    case AutotunePolicy::kAutotune:
      return "autotune";
  }
  return "unknown";
}

absl::StatusOr<AutotunePolicy> ParseAutotunePolicy(absl::string_view name) {
  if (name == "off") return AutotunePolicy::kOff;
  if (name == "heuristic") return AutotunePolicy::kHeuristic;
  if (name == "autotune") return AutotunePolicy::kAutotune;
  return Invalid(
      absl::StrCat("RAGGED_AUTOTUNE: expected off, heuristic or autotune, got \"", name, "\""));
}

absl::StatusOr<AutotunePolicy> AutotunePolicyFromEnv() {
  const char* v = std::getenv("RAGGED_AUTOTUNE");
  if (v == nullptr || *v == '\0') return AutotunePolicy::kHeuristic;
  return ParseAutotunePolicy(v);
}

std::string AutotuneCacheDir() {
  const char* dir = std::getenv("RAGGED_CACHE_DIR");
  if (dir != nullptr && *dir != '\0') return dir;
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg != nullptr && *xdg != '\0') return absl::StrCat(xdg, "/ragged");
  const char* home = std::getenv("HOME");
  if (home != nullptr && *home != '\0') return absl::StrCat(home, "/.cache/ragged");
  return "";
}

namespace {

nlohmann::json ConfigToJson(const KernelConfig& c, double time_us) {
  return nlohmann::json{{"chunk_size", c.chunk_size},
                        {"num_splits", c.num_splits},
                        {"heads_per_block", c.heads_per_block},
                        {"block_n", c.block_n},
                        {"num_warps", c.num_warps},
                        {"stages", c.stages},
                        {"time_us", time_us}};
}

std::optional<KernelConfig> ConfigFromJson(const nlohmann::json& j) {
  if (!j.is_object()) return std::nullopt;
  KernelConfig c;
  for (auto [field, name] :
       {std::pair{&c.chunk_size, "chunk_size"}, std::pair{&c.num_splits, "num_splits"},
        std::pair{&c.heads_per_block, "heads_per_block"}, std::pair{&c.block_n, "block_n"},
        std::pair{&c.num_warps, "num_warps"}, std::pair{&c.stages, "stages"}}) {
    auto it = j.find(name);
    if (it == j.end() || !it->is_number_integer()) return std::nullopt;
    const int64_t v = it->get<int64_t>();
    if (v < 0 || v > (1 << 20)) return std::nullopt;
    *field = static_cast<int>(v);
  }
  return c;
}

// Reads the entries of a cache file; a missing, unreadable or corrupt file gives no entries.
nlohmann::json ReadEntries(const std::string& file) {
  std::ifstream in(file);
  if (!in) return nlohmann::json::object();
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json doc = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return nlohmann::json::object();
  auto it = doc.find("entries");
  if (it == doc.end() || !it->is_object()) return nlohmann::json::object();
  return *it;
}

absl::Status MakeDirs(const std::string& dir) {
  if (dir.empty()) return absl::OkStatus();
  std::string partial;
  std::stringstream ss(dir);
  std::string part;
  if (dir[0] == '/') partial = "/";
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    partial += part + "/";
    if (mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::UnavailableError(
          absl::StrCat("autotune cache: cannot create ", partial, ": ", std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

AutotuneCache::AutotuneCache(std::string file) : file_(std::move(file)) {}

void AutotuneCache::LoadLocked() {
  if (loaded_) return;
  loaded_ = true;
  if (file_.empty()) return;
  nlohmann::json entries = ReadEntries(file_);
  for (auto it = entries.begin(); it != entries.end(); ++it) {
    std::optional<KernelConfig> c = ConfigFromJson(it.value());
    if (c.has_value() && entries_.find(it.key()) == entries_.end()) entries_[it.key()] = *c;
  }
}

std::optional<KernelConfig> AutotuneCache::Lookup(const std::string& key) {
  absl::MutexLock lock(&mu_);
  LoadLocked();
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

size_t AutotuneCache::size() {
  absl::MutexLock lock(&mu_);
  LoadLocked();
  return entries_.size();
}

absl::Status AutotuneCache::Insert(const std::string& key, const KernelConfig& config,
                                   double time_us) {
  absl::MutexLock lock(&mu_);
  LoadLocked();
  entries_[key] = config;
  if (file_.empty()) return absl::OkStatus();

  const size_t slash = file_.find_last_of('/');
  if (slash != std::string::npos) {
    absl::Status s = MakeDirs(file_.substr(0, slash));
    if (!s.ok()) return s;
  }
  // One writer at a time (threads of other processes included): read, merge, write, rename.
  const std::string lock_path = file_ + ".lock";
  const int lock_fd = open(lock_path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (lock_fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("autotune cache: cannot open ", lock_path, ": ", std::strerror(errno)));
  }
  while (flock(lock_fd, LOCK_EX) != 0 && errno == EINTR) {
  }
  nlohmann::json entries = ReadEntries(file_);
  for (auto it = entries.begin(); it != entries.end(); ++it) {
    std::optional<KernelConfig> c = ConfigFromJson(it.value());
    if (c.has_value() && entries_.find(it.key()) == entries_.end()) entries_[it.key()] = *c;
  }
  entries[key] = ConfigToJson(config, time_us);
  const nlohmann::json doc{{"version", 1}, {"entries", entries}};
  std::random_device rd;
  const std::string tmp = absl::StrCat(file_, ".tmp.", getpid(), ".", rd());
  absl::Status status = absl::OkStatus();
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << doc.dump(1) << "\n";
    out.flush();
    if (!out) {
      status = absl::UnavailableError(absl::StrCat("autotune cache: cannot write ", tmp));
    }
  }
  if (status.ok() && std::rename(tmp.c_str(), file_.c_str()) != 0) {
    status = absl::UnavailableError(absl::StrCat("autotune cache: cannot rename ", tmp, " to ",
                                                 file_, ": ", std::strerror(errno)));
  }
  if (!status.ok()) std::remove(tmp.c_str());
  flock(lock_fd, LOCK_UN);
  close(lock_fd);
  return status;
}

AutotuneCache& AutotuneCache::Global() {
  static AutotuneCache* cache = [] {
    const std::string dir = AutotuneCacheDir();
    return new AutotuneCache(dir.empty() ? "" : dir + "/autotune.json");
  }();
  return *cache;
}

}  // namespace ragged
