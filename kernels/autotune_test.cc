// The config rules, the autotune policy and the config cache, on the CPU (no GPU needed).
#include "kernels/autotune.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace ragged {
namespace {

// An H100 SXM as the CUDA runtime describes it.
DeviceInfo H100() {
  DeviceInfo d;
  d.name = "NVIDIA H100 80GB HBM3";
  d.cc_major = 9;
  d.cc_minor = 0;
  d.num_sms = 132;
  d.smem_per_sm = 233472;
  d.smem_per_block_optin = 232448;
  d.wgmma = true;
  return d;
}

// An A100-like device with less shared memory.
DeviceInfo A100() {
  DeviceInfo d = H100();
  d.name = "NVIDIA A100-SXM4-80GB";
  d.cc_major = 8;
  d.num_sms = 108;
  d.smem_per_sm = 167936;
  d.smem_per_block_optin = 166912;
  d.wgmma = false;
  return d;
}

ShapeSignature Sig(DType t, int64_t hq, int64_t hkv, int64_t d) {
  ShapeSignature s;
  s.dtype = t;
  s.batch = 32;
  s.capacity = 8192;
  s.num_q_heads = hq;
  s.num_kv_heads = hkv;
  s.head_dim = d;
  return s;
}

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    if (value == nullptr) {
      unsetenv(name);
    } else {
      setenv(name, value, 1);
    }
  }
  ~ScopedEnv() {
    if (had_) {
      setenv(name_.c_str(), old_.c_str(), 1);
    } else {
      unsetenv(name_.c_str());
    }
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

std::string TempDir() {
  char tmpl[] = "/tmp/ragged_autotune_test_XXXXXX";
  const char* d = mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return d == nullptr ? "/tmp" : d;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---------------------------------------------------------------------------------------------

TEST(HeuristicTest, HeadDim64UsesLongerTiles) {
  absl::StatusOr<KernelConfig> c = HeuristicKernelConfig(Sig(DType::kBF16, 32, 8, 64), H100());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->block_n, 128);
  EXPECT_EQ(c->num_warps, 4);
}

TEST(HeuristicTest, SmallGroupOnH100UsesOneRowBlockAndTwoCtasPerSm) {
  absl::StatusOr<KernelConfig> c = HeuristicKernelConfig(Sig(DType::kBF16, 32, 8, 128), H100());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->heads_per_block, 16);
  EXPECT_EQ(c->block_n, 64);
  EXPECT_EQ(c->num_warps, 4);
  EXPECT_GE(c->stages, 2);
  EXPECT_EQ(c->num_splits, 0);
  EXPECT_EQ(c->chunk_size, kDefaultChunkSize);
  EXPECT_LE(DecodeSmemBytes(*c, Sig(DType::kBF16, 32, 8, 128)) + 1024, H100().smem_per_sm / 2);
}

TEST(HeuristicTest, MqaTakesTheWholeGroupUpToSixtyFourHeads) {
  absl::StatusOr<KernelConfig> c = HeuristicKernelConfig(Sig(DType::kF16, 64, 1, 128), H100());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->heads_per_block, 64);
  EXPECT_EQ(c->num_warps, 4);
  EXPECT_EQ(c->block_n, 64);
}

TEST(HeuristicTest, F32UsesTheSimtShape) {
  absl::StatusOr<KernelConfig> c = HeuristicKernelConfig(Sig(DType::kF32, 12, 4, 80), H100());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->heads_per_block, 3);
  EXPECT_EQ(c->block_n, 32);
  EXPECT_EQ(c->num_warps, 4);
}

TEST(HeuristicTest, HeadDim256FitsOnASmallerDevice) {
  for (DType t : {DType::kF32, DType::kBF16}) {
    const ShapeSignature s = Sig(t, 64, 4, 256);
    absl::StatusOr<KernelConfig> a = HeuristicKernelConfig(s, A100());
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_LE(DecodeSmemBytes(*a, s), A100().smem_per_block_optin);
    absl::StatusOr<KernelConfig> h = HeuristicKernelConfig(s, H100());
    ASSERT_TRUE(h.ok()) << h.status();
    EXPECT_LE(DecodeSmemBytes(*h, s), H100().smem_per_block_optin);
  }
}

struct BadConfigCase {
  std::string name;
  DType dtype;
  int64_t head_dim;
  KernelConfig config;
  std::string message_part;
};

class ResolveErrorTest : public ::testing::TestWithParam<BadConfigCase> {};

TEST_P(ResolveErrorTest, IsInvalidArgumentNamingTheField) {
  const BadConfigCase& bc = GetParam();
  absl::StatusOr<KernelConfig> c =
      ResolveKernelConfig(bc.config, Sig(bc.dtype, 32, 8, bc.head_dim), H100());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find(bc.message_part), absl::string_view::npos) << c.status();
}

KernelConfig With(int KernelConfig::*field, int v) {
  KernelConfig c;
  c.*field = v;
  return c;
}

INSTANTIATE_TEST_SUITE_P(
    All, ResolveErrorTest,
    ::testing::Values(
        BadConfigCase{"HeadsPerBlock24", DType::kBF16, 128,
                      With(&KernelConfig::heads_per_block, 24), "heads_per_block"},
        BadConfigCase{"BlockN40", DType::kBF16, 128, With(&KernelConfig::block_n, 40), "block_n"},
        BadConfigCase{"WarpsDoNotSplitTheTile", DType::kBF16, 128,
                      [] {
                        KernelConfig c;
                        c.heads_per_block = 16;
                        c.block_n = 64;
                        c.num_warps = 8;
                        return c;
                      }(),
                      "num_warps"},
        BadConfigCase{"WarpsNotAMultipleOfRowBlocks", DType::kBF16, 128,
                      [] {
                        KernelConfig c;
                        c.heads_per_block = 64;
                        c.num_warps = 6;
                        return c;
                      }(),
                      "num_warps"},
        BadConfigCase{"TooManyWarps", DType::kBF16, 128,
                      [] {
                        KernelConfig c;
                        c.heads_per_block = 64;
                        c.block_n = 64;
                        c.num_warps = 16;
                        return c;
                      }(),
                      "warps"},
        BadConfigCase{"Stages9", DType::kBF16, 128, With(&KernelConfig::stages, 9), "stages"},
        BadConfigCase{"NegativeChunk", DType::kBF16, 128, With(&KernelConfig::chunk_size, -1),
                      "chunk_size"},
        BadConfigCase{"TooManySplits", DType::kBF16, 128, With(&KernelConfig::num_splits, 100000),
                      "num_splits"},
        BadConfigCase{"SharedMemory", DType::kBF16, 256,
                      [] {
                        KernelConfig c;
                        c.heads_per_block = 64;
                        c.block_n = 32;
                        c.stages = 5;
                        return c;
                      }(),
                      "shared memory"},
        BadConfigCase{"F32BlockN", DType::kF32, 128, With(&KernelConfig::block_n, 64), "block_n"},
        BadConfigCase{"F32Heads", DType::kF32, 128, With(&KernelConfig::heads_per_block, 17),
                      "heads_per_block"},
        BadConfigCase{"HeadDim72", DType::kBF16, 72, KernelConfig{}, "head_dim"}),
    [](const ::testing::TestParamInfo<BadConfigCase>& info) { return info.param.name; });

using CandidateParam = std::tuple<DType, int, int>;  // dtype, group, head_dim

class CandidateTest : public ::testing::TestWithParam<CandidateParam> {};

TEST_P(CandidateTest, CandidatesAreResolvedValidUniqueAndStartWithTheHeuristic) {
  const auto [dtype, group, head_dim] = GetParam();
  const ShapeSignature s = Sig(dtype, group * 2, 2, head_dim);
  for (const DeviceInfo& dev : {H100(), A100()}) {
    const std::vector<KernelConfig> cands = CandidateKernelConfigs(s, dev);
    ASSERT_FALSE(cands.empty());
    absl::StatusOr<KernelConfig> h = HeuristicKernelConfig(s, dev);
    ASSERT_TRUE(h.ok());
    EXPECT_EQ(cands.front(), *h);
    for (size_t i = 0; i < cands.size(); ++i) {
      absl::StatusOr<KernelConfig> r = ResolveKernelConfig(cands[i], s, dev);
      ASSERT_TRUE(r.ok()) << cands[i].ToString() << ": " << r.status();
      EXPECT_EQ(*r, cands[i]);
      EXPECT_LE(DecodeSmemBytes(cands[i], s), dev.smem_per_block_optin);
      for (size_t j = 0; j < i; ++j) EXPECT_NE(cands[i], cands[j]);
    }
    EXPECT_LE(cands.size(), 56u);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CandidateTest,
                         ::testing::Combine(::testing::Values(DType::kF32, DType::kF16,
                                                              DType::kBF16),
                                            ::testing::Values(1, 4, 8, 16, 64, 128),
                                            ::testing::Values(64, 80, 96, 128, 256)),
                         [](const ::testing::TestParamInfo<CandidateParam>& info) {
                           return absl::StrCat(DTypeName(std::get<0>(info.param)), "_G",
                                               std::get<1>(info.param), "_D",
                                               std::get<2>(info.param));
                         });

TEST(WgmmaEligibleTest, MqaOnHopperOnly) {
  const ShapeSignature mqa = Sig(DType::kBF16, 64, 1, 128);
  absl::StatusOr<KernelConfig> h = HeuristicKernelConfig(mqa, H100());
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_TRUE(WgmmaEligible(*h, mqa, H100())) << h->ToString();
  EXPECT_FALSE(WgmmaEligible(*h, mqa, A100()));  // no wgmma there
  DeviceInfo no_wgmma = H100();
  no_wgmma.wgmma = false;
  EXPECT_FALSE(WgmmaEligible(*h, mqa, no_wgmma));
  EXPECT_NE(H100().Key(), no_wgmma.Key());  // tuned configs are kept apart
  KernelConfig eight_warps = *h;
  eight_warps.num_warps = 8;
  EXPECT_FALSE(WgmmaEligible(eight_warps, mqa, H100()));
  KernelConfig long_tiles = *h;
  long_tiles.block_n = 128;
  EXPECT_FALSE(WgmmaEligible(long_tiles, mqa, H100()));
  // Small groups (16 heads per CTA), other head dims and f32 take the other paths.
  const ShapeSignature gqa = Sig(DType::kBF16, 32, 8, 128);
  EXPECT_FALSE(WgmmaEligible(*HeuristicKernelConfig(gqa, H100()), gqa, H100()));
  const ShapeSignature d64 = Sig(DType::kF16, 64, 1, 64);
  EXPECT_FALSE(WgmmaEligible(*HeuristicKernelConfig(d64, H100()), d64, H100()));
  const ShapeSignature f32 = Sig(DType::kF32, 64, 1, 128);
  EXPECT_FALSE(WgmmaEligible(*HeuristicKernelConfig(f32, H100()), f32, H100()));
}

TEST(PickTunedConfigTest, KeepsTheHeuristicUnlessACandidateBeatsItByTheMargin) {
  // Index 0 is the heuristic's time.
  EXPECT_EQ(PickTunedConfig({100.0, 99.0, 98.0}, 0.03), 0);  // 2% faster: not enough
  EXPECT_EQ(PickTunedConfig({100.0, 99.0, 96.0}, 0.03), 2);  // 4% faster: replaces it
  EXPECT_EQ(PickTunedConfig({100.0, 96.0, 95.0}, 0.03), 2);  // the fastest wins
  EXPECT_EQ(PickTunedConfig({100.0, 97.0}, 0.03), 0);        // exactly the margin: kept
  EXPECT_EQ(PickTunedConfig({100.0, 120.0}, 0.0), 0);
  EXPECT_EQ(PickTunedConfig({100.0, 99.0}, 0.0), 1);  // no margin: plain fastest
}

TEST(PickTunedConfigTest, CandidatesThatDidNotRunAreSkipped) {
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(PickTunedConfig({inf, 50.0, 40.0}, 0.03), 2);  // no heuristic time: fastest
  EXPECT_EQ(PickTunedConfig({100.0, inf, 90.0}, 0.03), 2);
  EXPECT_EQ(PickTunedConfig({100.0, inf}, 0.03), 0);
  EXPECT_EQ(PickTunedConfig({inf, inf}, 0.03), -1);
  EXPECT_EQ(PickTunedConfig({}, 0.03), -1);
}

TEST(KeyTest, SignatureAndDeviceKeysNameEverythingThatChangesTheChoice) {
  ShapeSignature s = Sig(DType::kBF16, 32, 8, 128);
  s.soft_cap = true;
  EXPECT_EQ(s.Key(), "bf16|B32|S8192|HQ32|HKV8|D128|w0|c1|s0");
  EXPECT_EQ(H100().Key(), "NVIDIA H100 80GB HBM3|sm_90|132|wgmma");
  EXPECT_EQ(A100().Key(), "NVIDIA A100-SXM4-80GB|sm_80|108");
  EXPECT_EQ(CacheKey(s, H100()), s.Key() + "@" + H100().Key());
  EXPECT_NE(CacheKey(s, H100()), CacheKey(s, A100()));
}

TEST(KernelConfigTest, ToStringNamesEveryField) {
  KernelConfig c{256, 132, 16, 64, 4, 3};
  EXPECT_EQ(c.ToString(), "chunk=256 splits=132 hpb=16 block_n=64 warps=4 stages=3");
}

// ---------------------------------------------------------------------------------------------
// Policy and cache location.

TEST(PolicyTest, ParsesTheThreeNames) {
  EXPECT_EQ(*ParseAutotunePolicy("off"), AutotunePolicy::kOff);
  EXPECT_EQ(*ParseAutotunePolicy("heuristic"), AutotunePolicy::kHeuristic);
  EXPECT_EQ(*ParseAutotunePolicy("autotune"), AutotunePolicy::kAutotune);
  for (AutotunePolicy p :
       {AutotunePolicy::kOff, AutotunePolicy::kHeuristic, AutotunePolicy::kAutotune}) {
    EXPECT_EQ(*ParseAutotunePolicy(AutotunePolicyName(p)), p);
  }
}

TEST(PolicyTest, UnknownNameIsAnErrorNamingIt) {
  absl::StatusOr<AutotunePolicy> p = ParseAutotunePolicy("always");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("always"), absl::string_view::npos);
}

TEST(PolicyTest, EnvironmentDefaultsToHeuristic) {
  {
    ScopedEnv e("RAGGED_AUTOTUNE", nullptr);
    EXPECT_EQ(*AutotunePolicyFromEnv(), AutotunePolicy::kHeuristic);
  }
  {
    ScopedEnv e("RAGGED_AUTOTUNE", "");
    EXPECT_EQ(*AutotunePolicyFromEnv(), AutotunePolicy::kHeuristic);
  }
  {
    ScopedEnv e("RAGGED_AUTOTUNE", "off");
    EXPECT_EQ(*AutotunePolicyFromEnv(), AutotunePolicy::kOff);
  }
  {
    ScopedEnv e("RAGGED_AUTOTUNE", "autotune");
    EXPECT_EQ(*AutotunePolicyFromEnv(), AutotunePolicy::kAutotune);
  }
  {
    ScopedEnv e("RAGGED_AUTOTUNE", "bogus");
    EXPECT_FALSE(AutotunePolicyFromEnv().ok());
  }
}

TEST(CacheDirTest, PrecedenceIsRaggedThenXdgThenHome) {
  ScopedEnv a("RAGGED_CACHE_DIR", "/r");
  ScopedEnv b("XDG_CACHE_HOME", "/x");
  ScopedEnv c("HOME", "/h");
  EXPECT_EQ(AutotuneCacheDir(), "/r");
  {
    ScopedEnv u("RAGGED_CACHE_DIR", nullptr);
    EXPECT_EQ(AutotuneCacheDir(), "/x/ragged");
    ScopedEnv v("XDG_CACHE_HOME", "");
    EXPECT_EQ(AutotuneCacheDir(), "/h/.cache/ragged");
    ScopedEnv w("HOME", nullptr);
    EXPECT_EQ(AutotuneCacheDir(), "");
  }
}

// ---------------------------------------------------------------------------------------------
// The cache.

KernelConfig Some(int i) { return KernelConfig{256, i, 16, 64, 4, 2 + i % 3}; }

TEST(AutotuneCacheTest, MemoryOnly) {
  AutotuneCache cache("");
  EXPECT_FALSE(cache.Lookup("k").has_value());
  EXPECT_TRUE(cache.Insert("k", Some(1), 12.5).ok());
  EXPECT_EQ(cache.Lookup("k"), Some(1));
  EXPECT_TRUE(cache.Insert("k", Some(2), 10.0).ok());
  EXPECT_EQ(cache.Lookup("k"), Some(2));
  EXPECT_EQ(cache.size(), 1u);
}

TEST(AutotuneCacheTest, PersistsAcrossInstancesAndCreatesDirectories) {
  const std::string file = TempDir() + "/a/b/autotune.json";
  {
    AutotuneCache cache(file);
    EXPECT_TRUE(cache.Insert("x", Some(3), 1.0).ok());
    EXPECT_TRUE(cache.Insert("y", Some(4), 2.0).ok());
  }
  AutotuneCache again(file);
  EXPECT_EQ(again.Lookup("x"), Some(3));
  EXPECT_EQ(again.Lookup("y"), Some(4));
  EXPECT_FALSE(again.Lookup("z").has_value());
  EXPECT_NE(ReadFile(file).find("\"time_us\""), std::string::npos);
}

TEST(AutotuneCacheTest, CorruptFileIsIgnoredAndReplaced) {
  const std::string file = TempDir() + "/autotune.json";
  {
    std::ofstream out(file);
    out << "{\"version\": 1, \"entries\": {\"x\": {\"chunk_size\": 25";  // torn
  }
  AutotuneCache cache(file);
  EXPECT_FALSE(cache.Lookup("x").has_value());
  EXPECT_TRUE(cache.Insert("y", Some(5), 3.0).ok());
  AutotuneCache again(file);
  EXPECT_EQ(again.Lookup("y"), Some(5));
}

TEST(AutotuneCacheTest, MalformedEntriesAreSkipped) {
  const std::string file = TempDir() + "/autotune.json";
  {
    std::ofstream out(file);
    out << R"({"version": 1, "entries": {
      "good": {"chunk_size": 256, "num_splits": 0, "heads_per_block": 16, "block_n": 64,
               "num_warps": 4, "stages": 2, "time_us": 5},
      "negative": {"chunk_size": -3, "num_splits": 0, "heads_per_block": 16, "block_n": 64,
                   "num_warps": 4, "stages": 2},
      "string": {"chunk_size": "256", "num_splits": 0, "heads_per_block": 16, "block_n": 64,
                 "num_warps": 4, "stages": 2},
      "missing": {"chunk_size": 256},
      "array": [1, 2, 3]}})";
  }
  AutotuneCache cache(file);
  EXPECT_EQ(cache.Lookup("good"), (KernelConfig{256, 0, 16, 64, 4, 2}));
  EXPECT_FALSE(cache.Lookup("negative").has_value());
  EXPECT_FALSE(cache.Lookup("string").has_value());
  EXPECT_FALSE(cache.Lookup("missing").has_value());
  EXPECT_FALSE(cache.Lookup("array").has_value());
  EXPECT_EQ(cache.size(), 1u);
}

TEST(AutotuneCacheTest, ConcurrentWritersLoseNothingAndLeaveAValidFile) {
  const std::string file = TempDir() + "/autotune.json";
  constexpr int kThreads = 8, kPerThread = 10;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      AutotuneCache cache(file);  // one instance per writer, as separate processes would have
      for (int i = 0; i < kPerThread; ++i) {
        EXPECT_TRUE(cache.Insert(absl::StrCat("t", t, "_", i), Some(t * kPerThread + i), i).ok());
      }
    });
  }
  for (std::thread& th : threads) th.join();
  AutotuneCache reader(file);
  EXPECT_EQ(reader.size(), static_cast<size_t>(kThreads * kPerThread));
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      EXPECT_EQ(reader.Lookup(absl::StrCat("t", t, "_", i)), Some(t * kPerThread + i));
    }
  }
}

TEST(AutotuneCacheTest, ConcurrentProcessesLeaveAValidFile) {
  const std::string file = TempDir() + "/autotune.json";
  constexpr int kProcs = 4, kPerProc = 10;
  std::vector<pid_t> pids;
  for (int p = 0; p < kProcs; ++p) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      AutotuneCache cache(file);
      bool ok = true;
      for (int i = 0; i < kPerProc; ++i) {
        ok = ok && cache.Insert(absl::StrCat("p", p, "_", i), Some(i), i).ok();
      }
      _exit(ok ? 0 : 1);
    }
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  AutotuneCache reader(file);
  EXPECT_EQ(reader.size(), static_cast<size_t>(kProcs * kPerProc));
}

TEST(AutotuneCacheTest, UnwritableLocationKeepsTheMemoryEntryAndReportsTheError) {
  AutotuneCache cache("/proc/ragged_cannot_write_here/autotune.json");
  const absl::Status s = cache.Insert("k", Some(1), 1.0);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(cache.Lookup("k"), Some(1));
}

}  // namespace
}  // namespace ragged
