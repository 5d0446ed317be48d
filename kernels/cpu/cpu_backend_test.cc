// The CPU backend against the double-precision reference: shapes (dtypes x head dims x GQA group
// sizes), every feature of SPEC.md section 1 at thread counts 1 and 2, every instruction set this
// CPU has (with the fallbacks for head dims the wide ones cannot take), non-finite inputs, the
// split of long rows across threads and its exact merge, and the errors of the backend's own knobs.
//
// Most cases force the work to be shared even when tiny (min_work_per_thread = 0), so that the
// piece-and-merge path runs in every suite and not only on large inputs.
#include "kernels/cpu/cpu_backend.h"

#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/problem.h"
#include "kernels/reference.h"
#include "kernels/test_util.h"
#include "runtime/buffer.h"
#include "runtime/status.h"

namespace ragged {
namespace {

using internal::CpuHasIsa;
using internal::CpuRunConfig;
using internal::CpuRunStats;
using internal::cpu::Isa;
using testing::HostProblem;
using testing::MakeHostProblem;
using testing::MatchesReference;
using testing::Sinks;
using testing::TestCase;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

std::string DTypeStr(DType t) { return std::string(DTypeName(t)); }

// Validates for the cpu platform and runs the backend with `config`.
absl::Status RunBackend(const RaggedDecodeAttentionArgs& args,
                        const RaggedDecodeAttentionOptions& options, CpuRunConfig config,
                        CpuRunStats* stats = nullptr) {
  RAGGED_ASSIGN_OR_RETURN(Problem p, ValidateProblem(args, options, Platform::kCpu));
  config.stats = stats;
  return internal::RunCpu(p, config);
}

// Runs the backend on `args` (whose output and lse are hp's buffers) and compares with the
// reference of the same arguments.
void RunAndCompare(const HostProblem& hp, const RaggedDecodeAttentionArgs& args,
                   const RaggedDecodeAttentionOptions& options, const CpuRunConfig& config,
                   CpuRunStats* stats = nullptr) {
  auto ref = ComputeReference(args, options);
  ASSERT_TRUE(ref.ok()) << ref.status();
  absl::Status s = RunBackend(args, options, config, stats);
  ASSERT_TRUE(s.ok()) << s;
  TensorView lse = hp.lse.view();
  EXPECT_TRUE(MatchesReference(*ref, hp.output.view(), args.lse ? &lse : nullptr, hp.c.dtype))
      << hp.c.ToString();
}

CpuRunConfig Shared(int threads) {
  CpuRunConfig config;
  config.num_threads = threads;
  config.min_work_per_thread = 0;
  return config;
}

// ---------------------------------------------------------------------------------------------
// Shapes: dtype x head_dim x group size, ragged rows with start offsets, two threads.

class CpuShapeTest : public ::testing::TestWithParam<std::tuple<DType, int, int>> {};

TEST_P(CpuShapeTest, MatchesReference) {
  const auto [dtype, head_dim, group] = GetParam();
  TestCase c;
  c.batch = 3;
  c.capacity = 80;
  c.num_kv_heads = 2;
  c.num_q_heads = 2 * group;
  c.head_dim = head_dim;
  c.dtype = dtype;
  c.seed = static_cast<uint64_t>(head_dim * 31 + group);
  testing::RandomLengths(c, /*offsets=*/true, /*allow_empty=*/false, c.seed);
  c.end[1] = c.capacity;  // one long row, split between the threads
  c.start[1] = 0;
  HostProblem hp = MakeHostProblem(c);
  RunAndCompare(hp, hp.args(), hp.options(Platform::kCpu), Shared(2));
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuShapeTest,
                         ::testing::Combine(::testing::Values(DType::kF32, DType::kF16,
                                                              DType::kBF16),
                                            ::testing::Values(64, 80, 96, 128, 256),
                                            ::testing::Values(1, 2, 4, 7, 8, 16)),
                         [](const auto& info) {
                           return absl::StrCat(DTypeStr(std::get<0>(info.param)), "_d",
                                               std::get<1>(info.param), "_g",
                                               std::get<2>(info.param));
                         });

// ---------------------------------------------------------------------------------------------
// Features, each at thread counts 1 and 2.

enum class Feature {
  kWindowLeft,         // (16, unbounded)
  kWindowLeftRight,    // (8, 0)
  kWindowRightOnly,    // (unbounded, 0)
  kWindowOwnPosition,  // (0, 0): one position per row
  kSoftCap,            // cap 5
  kSinksShared,        // [NS], NS = 2
  kSinksPerKvHead,     // [HKV, 1], aux in the query's dtype
  kSinksPerQueryHead,  // [HQ, 1]
  kEverything,         // window + cap + [HQ, 2] sinks + custom scale
  kF32Output,
  kQuery4d,  // [B, 3, HQ, D]: token 2 is used
  kEmptyAndOneTokenRows,
  kEmptyRowsWithSinks,
  kKvOffsetShard,  // a sequence shard: key/value rows [24, 64) of 80, kv_offset 24
  kStridedKv,      // key/value views inside larger buffers (padded heads and positions)
  kLongRow,        // one row of 3000 positions, cut between the threads
};

struct FeatureCase {
  Feature feature;
  const char* name;
};
void PrintTo(const FeatureCase& f, std::ostream* os) { *os << f.name; }

const FeatureCase kFeatures[] = {
    {Feature::kWindowLeft, "WindowLeft"},
    {Feature::kWindowLeftRight, "WindowLeftRight"},
    {Feature::kWindowRightOnly, "WindowRightOnly"},
    {Feature::kWindowOwnPosition, "WindowOwnPosition"},
    {Feature::kSoftCap, "SoftCap"},
    {Feature::kSinksShared, "SinksShared"},
    {Feature::kSinksPerKvHead, "SinksPerKvHead"},
    {Feature::kSinksPerQueryHead, "SinksPerQueryHead"},
    {Feature::kEverything, "Everything"},
    {Feature::kF32Output, "F32Output"},
    {Feature::kQuery4d, "Query4d"},
    {Feature::kEmptyAndOneTokenRows, "EmptyAndOneTokenRows"},
    {Feature::kEmptyRowsWithSinks, "EmptyRowsWithSinks"},
    {Feature::kKvOffsetShard, "KvOffsetShard"},
    {Feature::kStridedKv, "StridedKv"},
    {Feature::kLongRow, "LongRow"},
};

// Copies a contiguous [B, S, HKV, D] tensor into a view with padded strides inside `storage`.
TensorView StridedCopy(const HostBuffer& src, HostBuffer& storage) {
  const Shape& s = src.shape();
  const int64_t B = s[0], S = s[1], HKV = s[2], D = s[3];
  const int64_t pad_h = HKV + 1, pad_s = S + 3, pad_d = D + 16;
  storage = HostBuffer::Allocate(src.dtype(), {B, pad_s, pad_h, pad_d});
  testing::PoisonWithNaN(storage);  // padding must never be read
  const int64_t strides[] = {pad_s * pad_h * pad_d, pad_h * pad_d, pad_d, 1};
  TensorView view(storage.data(), src.dtype(), {B, S, HKV, D}, strides);
  const int64_t esize = DTypeSize(src.dtype());
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < S; ++t) {
      for (int64_t g = 0; g < HKV; ++g) {
        std::memcpy(static_cast<char*>(storage.data()) +
                        (b * strides[0] + t * strides[1] + g * strides[2]) * esize,
                    static_cast<const char*>(src.data()) + (((b * S + t) * HKV + g) * D) * esize,
                    D * esize);
      }
    }
  }
  return view;
}

class CpuFeatureTest : public ::testing::TestWithParam<std::tuple<FeatureCase, DType, int>> {};

TEST_P(CpuFeatureTest, MatchesReference) {
  const auto [fc, dtype, threads] = GetParam();
  TestCase c;
  c.batch = 4;
  c.capacity = 80;
  c.num_q_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = 128;
  c.dtype = dtype;
  c.seed = 100 + static_cast<uint64_t>(fc.feature);
  testing::RandomLengths(c, /*offsets=*/true, /*allow_empty=*/false, c.seed);
  switch (fc.feature) {
    case Feature::kWindowLeft:
      c.window = SlidingWindow{16, -1};
      break;
    case Feature::kWindowLeftRight:
      c.window = SlidingWindow{8, 0};
      break;
    case Feature::kWindowRightOnly:
      c.window = SlidingWindow{-1, 0};
      break;
    case Feature::kWindowOwnPosition:
      c.window = SlidingWindow{0, 0};
      break;
    case Feature::kSoftCap:
      c.soft_cap = 5.0f;
      c.input_scale = 2.0;  // logits of several units, where tanh bends
      break;
    case Feature::kSinksShared:
      c.sinks = Sinks::kShared;
      c.num_sinks = 2;
      break;
    case Feature::kSinksPerKvHead:
      c.sinks = Sinks::kPerKvHead;
      c.aux_dtype = dtype;
      break;
    case Feature::kSinksPerQueryHead:
      c.sinks = Sinks::kPerQueryHead;
      break;
    case Feature::kEverything:
      c.window = SlidingWindow{20, 0};
      c.soft_cap = 8.0f;
      c.sinks = Sinks::kPerQueryHead;
      c.num_sinks = 2;
      c.softmax_scale = 0.3f;
      break;
    case Feature::kF32Output:
      c.f32_output = true;
      break;
    case Feature::kQuery4d:
      c.query_tokens = 3;
      break;
    case Feature::kEmptyAndOneTokenRows:
    case Feature::kEmptyRowsWithSinks:
      c.start = {0, 5, 80, 79};  // empty at 0, one token, empty at S, one token at the end
      c.end = {0, 6, 80, 80};
      if (fc.feature == Feature::kEmptyRowsWithSinks) c.sinks = Sinks::kPerKvHead;
      break;
    case Feature::kKvOffsetShard:
      c.window = SlidingWindow{30, 0};
      break;
    case Feature::kStridedKv:
      break;
    case Feature::kLongRow:
      c.batch = 1;
      c.capacity = 3000;
      c.start = {7};
      c.end = {2990};
      c.sinks = Sinks::kPerQueryHead;
      break;
  }
  HostProblem hp = MakeHostProblem(c);
  RaggedDecodeAttentionArgs args = hp.args();
  RaggedDecodeAttentionOptions options = hp.options(Platform::kCpu);
  HostBuffer key_storage, value_storage;
  if (fc.feature == Feature::kKvOffsetShard) {
    args.key = args.key.Slice(1, 24, 40);
    args.value = args.value.Slice(1, 24, 40);
    options.kv_offset = 24;
    options.kv_total_capacity = c.capacity;
  } else if (fc.feature == Feature::kStridedKv) {
    args.key = StridedCopy(hp.key, key_storage);
    args.value = StridedCopy(hp.value, value_storage);
    ASSERT_FALSE(args.key.is_contiguous());
  }
  CpuRunStats stats;
  RunAndCompare(hp, args, options, Shared(threads), &stats);
  if (fc.feature == Feature::kLongRow && threads > 1) {
    EXPECT_EQ(stats.threads, threads);
    EXPECT_GT(stats.split_rows, 0);  // the merge really ran
  }
}

INSTANTIATE_TEST_SUITE_P(Features, CpuFeatureTest,
                         ::testing::Combine(::testing::ValuesIn(kFeatures),
                                            ::testing::Values(DType::kF32, DType::kF16,
                                                              DType::kBF16),
                                            ::testing::Values(1, 2)),
                         [](const auto& info) {
                           return absl::StrCat(std::get<0>(info.param).name, "_",
                                               DTypeStr(std::get<1>(info.param)), "_t",
                                               std::get<2>(info.param));
                         });

// ---------------------------------------------------------------------------------------------
// Every instruction set this CPU has, with the head dims that make the wide ones fall back.

struct IsaShape {
  int head_dim;
  int group;
};
void PrintTo(const IsaShape& s, std::ostream* os) {
  *os << "head_dim " << s.head_dim << ", group " << s.group;
}

class CpuIsaTest : public ::testing::TestWithParam<std::tuple<Isa, DType, IsaShape, bool>> {};

TEST_P(CpuIsaTest, MatchesReference) {
  const auto [isa, dtype, shape, features] = GetParam();
  if (!CpuHasIsa(isa)) GTEST_SKIP() << "this CPU or build lacks " << internal::CpuIsaName(isa);
  TestCase c;
  c.batch = 3;
  c.capacity = 70;
  c.num_kv_heads = 2;
  c.num_q_heads = 2 * shape.group;
  c.head_dim = shape.head_dim;
  c.dtype = dtype;
  c.seed = static_cast<uint64_t>(shape.head_dim + 7 * static_cast<int>(isa));
  testing::RandomLengths(c, /*offsets=*/true, /*allow_empty=*/true, c.seed);
  c.start[0] = 0;
  c.end[0] = 70;
  if (features) {
    c.window = SlidingWindow{40, 0};
    c.soft_cap = 6.0f;
    c.input_scale = 2.0;
    c.sinks = Sinks::kPerKvHead;
  }
  HostProblem hp = MakeHostProblem(c);
  CpuRunConfig config = Shared(2);
  config.isa = isa;
  CpuRunStats stats;
  RunAndCompare(hp, hp.args(), hp.options(Platform::kCpu), config, &stats);
  // The kernel that ran: the one asked for, or the widest narrower one that takes the shape.
  Isa want = isa;
  if (want == Isa::kAvx512Bf16 && dtype != DType::kBF16) want = Isa::kAvx512;
  if (want >= Isa::kAvx512 && shape.head_dim % 16 != 0) want = Isa::kAvx2;
  if (want >= Isa::kAvx2 && shape.head_dim % 8 != 0) want = Isa::kScalar;
  EXPECT_EQ(internal::CpuIsaName(stats.isa), internal::CpuIsaName(want));
}

INSTANTIATE_TEST_SUITE_P(
    Isas, CpuIsaTest,
    ::testing::Combine(::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAvx512Bf16),
                       ::testing::Values(DType::kF32, DType::kF16, DType::kBF16),
                       ::testing::Values(IsaShape{128, 4}, IsaShape{80, 7}, IsaShape{72, 2},
                                         IsaShape{19, 3}),
                       ::testing::Bool()),
    [](const auto& info) {
      const IsaShape s = std::get<2>(info.param);
      return absl::StrCat(internal::CpuIsaName(std::get<0>(info.param)), "_",
                          DTypeStr(std::get<1>(info.param)), "_d", s.head_dim, "_g", s.group,
                          std::get<3>(info.param) ? "_features" : "_plain");
    });

// ---------------------------------------------------------------------------------------------
// Non-finite inputs on every instruction set: the heads that meet them are non-finite, the others
// are finite and match the reference; never a crash.

class CpuNonFiniteTest : public ::testing::TestWithParam<std::tuple<Isa, DType>> {};

TEST_P(CpuNonFiniteTest, PoisonStaysInItsHeads) {
  const auto [isa, dtype] = GetParam();
  if (!CpuHasIsa(isa)) GTEST_SKIP() << "this CPU or build lacks " << internal::CpuIsaName(isa);
  TestCase c;
  c.batch = 3;
  c.capacity = 50;
  c.num_q_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 32;
  c.dtype = dtype;
  c.start = {0, 3, 0};
  c.end = {50, 40, 50};
  HostProblem hp = MakeHostProblem(c);
  const int64_t S = 50, HKV = 2, D = 32, HQ = 4;
  auto at = [&](int64_t b, int64_t t, int64_t g, int64_t d) {
    return ((b * S + t) * HKV + g) * D + d;
  };
  // Row 0, KV head 0: a NaN key. Row 1, KV head 1: an infinite value. Row 2, KV head 0: a -inf
  // key at the first position (a logit of -inf, weight 0: finite). Positions outside row 1's
  // range are NaN everywhere (never read).
  StoreFromFloat(hp.key.data(), dtype, at(0, 20, 0, 5), kNaN);
  StoreFromFloat(hp.value.data(), dtype, at(1, 30, 1, 0), kInf);
  for (int64_t d = 0; d < D; ++d) StoreFromFloat(hp.key.data(), dtype, at(2, 0, 0, d), -kInf);
  for (int64_t t : {0, 1, 2, 40, 49}) {
    for (int64_t g = 0; g < HKV; ++g) {
      for (int64_t d = 0; d < D; ++d) {
        StoreFromFloat(hp.key.data(), dtype, at(1, t, g, d), kNaN);
        StoreFromFloat(hp.value.data(), dtype, at(1, t, g, d), kNaN);
      }
    }
  }
  for (int64_t h = 0; h < 2; ++h) {  // query > 0 where the key is -inf: the logit is -inf
    for (int64_t d = 0; d < D; ++d) {
      StoreFromFloat(hp.query.data(), dtype, (2 * HQ + h) * D + d, 0.5f);
    }
  }
  CpuRunConfig config = Shared(2);
  config.isa = isa;
  RunAndCompare(hp, hp.args(), hp.options(Platform::kCpu), config);
  for (int64_t b = 0; b < 3; ++b) {
    for (int64_t h = 0; h < HQ; ++h) {
      bool finite = std::isfinite(hp.lse.data_as<float>()[b * HQ + h]);
      for (int64_t d = 0; d < D; ++d) {
        finite = finite && std::isfinite(LoadAsFloat(hp.output.data(), hp.output.dtype(),
                                                     (b * HQ + h) * D + d));
      }
      const bool poisoned = (b == 0 && h < 2) || (b == 1 && h >= 2);
      EXPECT_EQ(finite, !poisoned) << "row " << b << " head " << h;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Isas, CpuNonFiniteTest,
    ::testing::Combine(::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAvx512Bf16),
                       ::testing::Values(DType::kF32, DType::kF16, DType::kBF16)),
    [](const auto& info) {
      return absl::StrCat(internal::CpuIsaName(std::get<0>(info.param)), "_",
                          DTypeStr(std::get<1>(info.param)));
    });

// ---------------------------------------------------------------------------------------------
// Precision of long rows on every instruction set (f32 inputs): 2^17 positions whose weight is
// dominated by three spikes (logit 20 against about 0), so that the running sums are far larger
// than each later term. Summed naively in f32, the background's share (about 1e-4 of the output)
// would be lost.

class CpuLongRowTest : public ::testing::TestWithParam<std::tuple<Isa, int>> {};

TEST_P(CpuLongRowTest, KeepsTheSmallTerms) {
  const auto [isa, threads] = GetParam();
  if (!CpuHasIsa(isa)) GTEST_SKIP() << "this CPU or build lacks " << internal::CpuIsaName(isa);
  TestCase c;
  c.batch = 1;
  c.capacity = (1 << 17) + 5;
  c.num_q_heads = 2;
  c.num_kv_heads = 1;
  c.head_dim = 16;
  c.dtype = DType::kF32;
  c.softmax_scale = 1.0f;
  c.input_scale = 0.05;
  HostProblem hp = MakeHostProblem(c);
  const int64_t D = 16;
  float* q = hp.query.data_as<float>();
  float* k = hp.key.data_as<float>();
  float* v = hp.value.data_as<float>();
  for (int64_t i = 0; i < 2 * D; ++i) q[i] = i % D == 0 ? 4.0f : 0.0f;
  const int64_t spikes[] = {3, 1 << 16, c.capacity - 1};
  for (int i = 0; i < 3; ++i) {
    k[spikes[i] * D] = 5.0f;  // logit 20
    for (int64_t d = 0; d < D; ++d) v[spikes[i] * D + d] = 2.0f * static_cast<float>(i + 1);
  }
  CpuRunConfig config = Shared(threads);
  config.isa = isa;
  RunAndCompare(hp, hp.args(), hp.options(Platform::kCpu), config);
  // Whatever the reference says: the spikes share the weight, so the output is near 4.
  EXPECT_NEAR(hp.output.data_as<float>()[1], 4.0f, 0.05f);
}

INSTANTIATE_TEST_SUITE_P(Isas, CpuLongRowTest,
                         ::testing::Combine(::testing::Values(Isa::kScalar, Isa::kAvx2,
                                                              Isa::kAvx512),
                                            ::testing::Values(1, 2)),
                         [](const auto& info) {
                           return absl::StrCat(internal::CpuIsaName(std::get<0>(info.param)), "_t",
                                               std::get<1>(info.param));
                         });

// ---------------------------------------------------------------------------------------------
// Threads: one long row and a short one, cut into as many pieces as threads; the merge is exact.

class CpuThreadTest : public ::testing::TestWithParam<int> {};

TEST_P(CpuThreadTest, PiecesMergeExactly) {
  const int threads = GetParam();
  TestCase c;
  c.batch = 2;
  c.capacity = 2000;
  c.num_q_heads = 4;
  c.num_kv_heads = 1;
  c.head_dim = 64;
  c.dtype = DType::kF32;
  c.start = {0, 1990};
  c.end = {2000, 2000};
  c.sinks = Sinks::kShared;
  HostProblem hp = MakeHostProblem(c);
  CpuRunStats stats;
  RunAndCompare(hp, hp.args(), hp.options(Platform::kCpu), Shared(threads), &stats);
  EXPECT_EQ(stats.threads, threads);
  EXPECT_EQ(stats.split_rows, threads > 1 ? 1 : 0);
}

INSTANTIATE_TEST_SUITE_P(Threads, CpuThreadTest, ::testing::Values(1, 2, 3, 5));

TEST(CpuThreadCountTest, ZeroMeansOpenMpDefault) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(3);  // what OMP_NUM_THREADS=3 sets
  TestCase c;
  c.capacity = 512;
  HostProblem hp = MakeHostProblem(c);
  CpuRunStats stats;
  RunAndCompare(hp, hp.args(), hp.options(Platform::kCpu), Shared(0), &stats);
  omp_set_num_threads(saved);
  EXPECT_EQ(stats.threads, 3);
}

TEST(CpuThreadCountTest, SmallProblemsUseFewerThreads) {
  TestCase c;  // 2 rows of 64 positions: far below the default minimum work per thread
  HostProblem hp = MakeHostProblem(c);
  CpuRunConfig config;
  config.num_threads = 4;
  CpuRunStats stats;
  RunAndCompare(hp, hp.args(), hp.options(Platform::kCpu), config, &stats);
  EXPECT_EQ(stats.threads, 1);
}

// ---------------------------------------------------------------------------------------------
// The public entry point, and errors.

class CpuPlatformTest : public ::testing::TestWithParam<Platform> {};

TEST_P(CpuPlatformTest, PublicApiMatchesReference) {
  TestCase c;
  c.batch = 5;
  c.capacity = 96;
  c.num_q_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = 64;
  c.dtype = DType::kBF16;
  c.sinks = Sinks::kPerQueryHead;
  testing::RandomLengths(c, /*offsets=*/true, /*allow_empty=*/true, 5);
  HostProblem hp = MakeHostProblem(c);
  RaggedDecodeAttentionOptions options = hp.options(GetParam());
  options.num_threads = 2;
  auto ref = ComputeReference(hp.args(), options);
  ASSERT_TRUE(ref.ok()) << ref.status();
  absl::Status s = RaggedDecodeAttention(hp.args(), options);
  ASSERT_TRUE(s.ok()) << s;
  TensorView lse = hp.lse.view();
  EXPECT_TRUE(MatchesReference(*ref, hp.output.view(), &lse, c.dtype));
}

INSTANTIATE_TEST_SUITE_P(Platforms, CpuPlatformTest,
                         ::testing::Values(Platform::kCpu, Platform::kAuto),
                         [](const auto& info) { return std::string(PlatformName(info.param)); });

TEST(CpuErrorTest, OutOfRangeRowIsNamed) {
  TestCase c;
  c.batch = 3;
  c.start = {0, 10, 0};
  c.end = {64, 65, 5};  // row 1 ends past S = 64
  HostProblem hp = MakeHostProblem(c);
  absl::Status s = RaggedDecodeAttention(hp.args(), hp.options(Platform::kCpu));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("row 1"), absl::string_view::npos) << s;
}

TEST(CpuErrorTest, UnknownIsaName) {
  auto isa = internal::ParseCpuIsa("avx9000");
  EXPECT_EQ(isa.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(isa.status().message().find("avx9000"), absl::string_view::npos) << isa.status();
  EXPECT_NE(isa.status().message().find("avx512bf16"), absl::string_view::npos) << isa.status();
}

// Sets an environment variable for the life of the object.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (old_.has_value()) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(CpuErrorTest, BadIsaEnvironmentVariable) {
  ScopedEnv env("RAGGED_CPU_ISA", "sse9");
  TestCase c;
  HostProblem hp = MakeHostProblem(c);
  absl::Status s = RaggedDecodeAttention(hp.args(), hp.options(Platform::kCpu));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("RAGGED_CPU_ISA"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("sse9"), absl::string_view::npos) << s;
}

TEST(CpuIsaSelectionTest, EnvironmentCapsTheInstructionSet) {
  ScopedEnv env("RAGGED_CPU_ISA", "scalar");
  auto isa = internal::DefaultCpuIsa();
  ASSERT_TRUE(isa.ok()) << isa.status();
  EXPECT_EQ(*isa, Isa::kScalar);
  TestCase c;
  HostProblem hp = MakeHostProblem(c);
  CpuRunStats stats;
  RunAndCompare(hp, hp.args(), hp.options(Platform::kCpu), Shared(1), &stats);
  EXPECT_EQ(stats.isa, Isa::kScalar);
}

TEST(CpuErrorTest, MissingInstructionSetIsFailedPrecondition) {
  Isa missing = Isa::kScalar;
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512, Isa::kAvx512Bf16}) {
    if (!CpuHasIsa(isa)) {
      missing = isa;
      break;
    }
  }
  if (missing == Isa::kScalar) GTEST_SKIP() << "this CPU has every instruction set";
  TestCase c;
  HostProblem hp = MakeHostProblem(c);
  CpuRunConfig config;
  config.isa = missing;
  absl::Status s = RunBackend(hp.args(), hp.options(Platform::kCpu), config);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find(internal::CpuIsaName(missing)), absl::string_view::npos) << s;
}

}  // namespace
}  // namespace ragged
