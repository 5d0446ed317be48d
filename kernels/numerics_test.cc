// Numerics at the edges of the contract: non-finite inputs, very long rows, element offsets past
// 2^31 (64-bit indexing), rows of one token, and logits of 1e4 and more. This file builds two
// binaries: numerics_test runs the host platforms (cpu and reference); numerics_gpu_test
// (RAGGED_NUMERICS_GPU, label gpu) runs the same cases on the cuda platform, except the 64-bit
// offsets, whose sparse mapping exists only on the host, and skips without a GPU. Every case is
// compared with the double-precision reference, NaN for NaN, and additionally with a property that
// holds whatever the reference says (a poisoned row is non-finite, a one-token row returns its
// value exactly, ...), so that a reference bug cannot make a case pass vacuously.
#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/problem.h"
#include "kernels/ragged_decode_attention.h"
#include "kernels/reference.h"
#include "kernels/test_util.h"
#include "runtime/buffer.h"

#if RAGGED_NUMERICS_GPU
#include "kernels/cuda/cuda_test_util.h"
#endif

namespace ragged {
namespace {

using testing::HostProblem;
using testing::MakeHostProblem;
using testing::MatchesReference;
using testing::Sinks;
using testing::TestCase;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

std::string PlatformDTypeName(Platform p, DType t) {
  return std::string(PlatformName(p)) + "_" + std::string(DTypeName(t));
}

float Get(const HostBuffer& b, int64_t i) { return LoadAsFloat(b.data(), b.dtype(), i); }
void Set(const HostBuffer& b, int64_t i, float v) { StoreFromFloat(b.data(), b.dtype(), i, v); }

#if RAGGED_NUMERICS_GPU
// The CUDA kernels are instantiated for head_dim 64, 80, 96, 128 and 256: the GPU binary runs
// every case at 64.
constexpr int64_t HeadDim(int64_t) { return 64; }
#else
constexpr int64_t HeadDim(int64_t host_head_dim) { return host_head_dim; }
#endif

#if RAGGED_NUMERICS_GPU
// The platforms of this binary.
#define RAGGED_NUMERICS_PLATFORMS ::testing::Values(Platform::kCuda)
#define RAGGED_NUMERICS_SKIP_WITHOUT_DEVICE() RAGGED_SKIP_WITHOUT_GPU()
#else
#define RAGGED_NUMERICS_PLATFORMS ::testing::Values(Platform::kCpu, Platform::kReference)
#define RAGGED_NUMERICS_SKIP_WITHOUT_DEVICE() \
  do {                                        \
  } while (0)
#endif

// Runs the problem on options.platform; the output and lse land in p.output and p.lse (on the
// cuda platform: through device copies).
absl::Status Run(const HostProblem& p, const RaggedDecodeAttentionOptions& options) {
#if RAGGED_NUMERICS_GPU
  if (options.platform == Platform::kCuda) {
    RAGGED_ASSIGN_OR_RETURN(testing::DeviceProblem d, testing::Upload(p, options, nullptr));
    RAGGED_RETURN_IF_ERROR(RaggedDecodeAttention(d.args, options, nullptr));
    RAGGED_ASSIGN_OR_RETURN(testing::HostResult r, testing::Download(d, nullptr));
    std::memcpy(p.output.data(), r.out.data(), p.output.nbytes());
    std::memcpy(p.lse.data(), r.lse.data(), p.lse.nbytes());
    return absl::OkStatus();
  }
#endif
  return RaggedDecodeAttention(p.args(), options);
}

// Runs the problem on `platform` and checks it against the reference (NaN for NaN).
void RunAndCompare(const HostProblem& p, const RaggedDecodeAttentionOptions& options) {
  absl::Status s = Run(p, options);
  ASSERT_TRUE(s.ok()) << s;
  auto ref = ComputeReference(p.args(), options);
  ASSERT_TRUE(ref.ok()) << ref.status();
  TensorView lse = p.lse.view();
  EXPECT_TRUE(MatchesReference(*ref, p.output.view(), p.c.with_lse ? &lse : nullptr, p.c.dtype));
}

// Like RunAndCompare, but where the reference is non-finite the backend need only be non-finite
// too (an online softmax may turn the reference's inf into NaN: inf * 0 when it rescales).
void RunAndCompareNonFinite(const HostProblem& p, const RaggedDecodeAttentionOptions& options) {
  absl::Status s = Run(p, options);
  ASSERT_TRUE(s.ok()) << s;
  auto ref = ComputeReference(p.args(), options);
  ASSERT_TRUE(ref.ok()) << ref.status();
  const double tol = testing::Tolerance(p.c.dtype);
  double scale = 1.0;
  for (double v : ref->output) {
    if (std::isfinite(v)) scale = std::max(scale, std::abs(v));
  }
  for (size_t i = 0; i < ref->output.size(); ++i) {
    const double want = ref->output[i];
    const double got = Get(p.output, static_cast<int64_t>(i));
    if (std::isfinite(want)) {
      EXPECT_NEAR(got, want, tol * scale) << "output element " << i;
    } else {
      EXPECT_FALSE(std::isfinite(got)) << "output element " << i << ": reference " << want;
    }
  }
  for (size_t i = 0; i < ref->lse.size(); ++i) {
    const double want = ref->lse[i];
    const double got = p.lse.data_as<float>()[i];
    if (std::isfinite(want)) {
      EXPECT_NEAR(got, want, tol * std::max(1.0, std::abs(want))) << "lse " << i;
    } else {
      EXPECT_FALSE(std::isfinite(got)) << "lse " << i << ": reference " << want;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Non-finite inputs.

// Layout of the poisoned problem: B=2, S=16, HQ=4, HKV=2 (group 2), D=8; row 0 attends [2, 12),
// row 1 attends [0, 16) and is never poisoned.
enum class Poison {
  kQueryNaN,          // query[0, h=1, d=2]: every logit of (0, 1) is NaN
  kKeyNaN,            // key[0, t=5, g=0, d=3]: heads 0 and 1 of row 0
  kValueNaN,          // value[0, t=5, g=1, d=3]: element d=3 of heads 2 and 3 of row 0
  kValueInf,          // value[0, t=7, g=0, d=0] = +inf: element d=0 of heads 0 and 1
  kKeyPlusInf,        // key[0, t=2, g=0, d=0] = +inf with query[0, 0..1, 0] = 1: logit +inf
  kKeyMinusInfFirst,  // key[0, t=2, g=0, d=0] = -inf, the first valid position: logit -inf,
                      // weight 0 (an online softmax must not compute -inf - -inf)
  kSinkNaN,           // aux[g=1] = NaN: heads 2 and 3 of both rows
  kNaNOutsideRange,   // key and value NaN at t=0, 1, 12, 15 of row 0: never attended
  kNaNOutsideWindow,  // window (3, 0): query at 11 attends [8, 12); NaN at t=2..7
  kNaNInUnusedToken,  // a 4-D query [B, 2, HQ, D]: NaN in token 0, only token 1 is used
};

struct PoisonCase {
  Poison poison;
  const char* name;
  // (b, h) pairs whose output or lse must be non-finite; every other (b, h) must be finite.
  std::vector<std::pair<int, int>> non_finite;
};

const PoisonCase kPoisonCases[] = {
    {Poison::kQueryNaN, "QueryNaN", {{0, 1}}},
    {Poison::kKeyNaN, "KeyNaN", {{0, 0}, {0, 1}}},
    {Poison::kValueNaN, "ValueNaN", {{0, 2}, {0, 3}}},
    {Poison::kValueInf, "ValueInf", {{0, 0}, {0, 1}}},
    {Poison::kKeyPlusInf, "KeyPlusInf", {{0, 0}, {0, 1}}},
    {Poison::kKeyMinusInfFirst, "KeyMinusInfFirst", {}},
    {Poison::kSinkNaN, "SinkNaN", {{0, 2}, {0, 3}, {1, 2}, {1, 3}}},
    {Poison::kNaNOutsideRange, "NaNOutsideRange", {}},
    {Poison::kNaNOutsideWindow, "NaNOutsideWindow", {}},
    {Poison::kNaNInUnusedToken, "NaNInUnusedToken", {}},
};

class NonFiniteTest : public ::testing::TestWithParam<std::tuple<PoisonCase, Platform, DType>> {};

TEST_P(NonFiniteTest, PropagatesWithoutCrash) {
  RAGGED_NUMERICS_SKIP_WITHOUT_DEVICE();
  const auto& [pc, platform, dtype] = GetParam();
  TestCase c;
  c.batch = 2;
  c.capacity = 16;
  c.num_q_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = HeadDim(8);
  c.dtype = dtype;
  c.start = {2, 0};
  c.end = {12, 16};
  c.sinks = Sinks::kPerKvHead;
  if (pc.poison == Poison::kNaNOutsideWindow) c.window = SlidingWindow{3, 0};
  if (pc.poison == Poison::kNaNInUnusedToken) c.query_tokens = 2;
  HostProblem p = MakeHostProblem(c);
  const int64_t D = c.head_dim, HKV = 2, HQ = 4, S = 16;
  auto kv = [&](int64_t b, int64_t t, int64_t g, int64_t d) {
    return ((b * S + t) * HKV + g) * D + d;
  };
  switch (pc.poison) {
    case Poison::kQueryNaN:
      Set(p.query, (0 * HQ + 1) * D + 2, kNaN);
      break;
    case Poison::kKeyNaN:
      Set(p.key, kv(0, 5, 0, 3), kNaN);
      break;
    case Poison::kValueNaN:
      Set(p.value, kv(0, 5, 1, 3), kNaN);
      break;
    case Poison::kValueInf:
      Set(p.value, kv(0, 7, 0, 0), kInf);
      break;
    case Poison::kKeyPlusInf:
    case Poison::kKeyMinusInfFirst:
      Set(p.query, (0 * HQ + 0) * D + 0, 1.0f);
      Set(p.query, (0 * HQ + 1) * D + 0, 1.0f);
      Set(p.key, kv(0, 2, 0, 0), pc.poison == Poison::kKeyPlusInf ? kInf : -kInf);
      break;
    case Poison::kSinkNaN:
      Set(p.aux, 1, kNaN);  // aux [HKV, 1]: row g=1
      break;
    case Poison::kNaNOutsideRange:
      for (int t : {0, 1, 12, 15}) {
        for (int g = 0; g < HKV; ++g) {
          for (int d = 0; d < D; ++d) {
            Set(p.key, kv(0, t, g, d), kNaN);
            Set(p.value, kv(0, t, g, d), kNaN);
          }
        }
      }
      break;
    case Poison::kNaNOutsideWindow:
      for (int t = 2; t < 8; ++t) {
        for (int d = 0; d < D; ++d) {
          Set(p.key, kv(0, t, 0, d), kNaN);
          Set(p.value, kv(0, t, 1, d), kInf);
        }
      }
      break;
    case Poison::kNaNInUnusedToken:
      for (int64_t i = 0; i < HQ * D; ++i) Set(p.query, i, kNaN);  // token 0 of row 0
      break;
  }
  RaggedDecodeAttentionOptions options = p.options(platform);
  ASSERT_NO_FATAL_FAILURE(RunAndCompareNonFinite(p, options));
  // The property, independent of the reference.
  for (int b = 0; b < 2; ++b) {
    for (int h = 0; h < HQ; ++h) {
      bool finite = std::isfinite(p.lse.data_as<float>()[b * HQ + h]);
      for (int d = 0; d < D; ++d)
        finite = finite && std::isfinite(Get(p.output, (b * HQ + h) * D + d));
      bool poisoned = false;
      for (auto [pb, ph] : pc.non_finite) poisoned = poisoned || (pb == b && ph == h);
      EXPECT_EQ(finite, !poisoned) << "row " << b << " head " << h;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Poisons, NonFiniteTest,
    ::testing::Combine(::testing::ValuesIn(kPoisonCases), RAGGED_NUMERICS_PLATFORMS,
                       ::testing::Values(DType::kF32, DType::kBF16, DType::kF16)),
    [](const auto& info) {
      return std::string(std::get<0>(info.param).name) + "_" +
             PlatformDTypeName(std::get<1>(info.param), std::get<2>(info.param));
    });

// ---------------------------------------------------------------------------------------------
// Very long rows: one row of 2^20 + 3 positions. Background keys are small; three spikes (before
// 2^16, past 2^16 and at the end of the row) carry almost all the weight, so a backend that drops
// or misplaces any part of a long row moves the output by O(1), far beyond the tolerance.

class LongRowTest : public ::testing::TestWithParam<std::tuple<Platform, DType>> {};

TEST_P(LongRowTest, MatchesReference) {
  RAGGED_NUMERICS_SKIP_WITHOUT_DEVICE();
  const auto& [platform, dtype] = GetParam();
  TestCase c;
  c.batch = 1;
  c.capacity = (1 << 20) + 3;
  c.num_q_heads = 2;
  c.num_kv_heads = 1;
  c.head_dim = HeadDim(4);
  c.dtype = dtype;
  c.softmax_scale = 1.0f;
  c.input_scale = 0.1;
  HostProblem p = MakeHostProblem(c);
  const int64_t D = c.head_dim;
  for (int h = 0; h < 2; ++h) {
    for (int d = 0; d < D; ++d) Set(p.query, h * D + d, d == 0 ? 4.0f : 0.0f);
  }
  const int64_t spikes[] = {100, (1 << 16) + 7, c.capacity - 2};
  for (int i = 0; i < 3; ++i) {
    Set(p.key, spikes[i] * D + 0, 5.0f);  // logit 20
    for (int d = 0; d < D; ++d) Set(p.value, spikes[i] * D + d, static_cast<float>(i + 1) * 2.0f);
  }
  ASSERT_NO_FATAL_FAILURE(RunAndCompare(p, p.options(platform)));
  // Property: the three spikes have equal weight and dominate: output ~ mean(2, 4, 6) = 4.
  for (int h = 0; h < 2; ++h) EXPECT_NEAR(Get(p.output, h * D + 1), 4.0f, 0.1f);
}

INSTANTIATE_TEST_SUITE_P(Rows, LongRowTest,
                         ::testing::Combine(RAGGED_NUMERICS_PLATFORMS,
                                            ::testing::Values(DType::kF32, DType::kBF16)),
                         [](const auto& info) {
                           return PlatformDTypeName(std::get<0>(info.param),
                                                    std::get<1>(info.param));
                         });

// ---------------------------------------------------------------------------------------------
// 64-bit indexing. Key and value live in a sparse mapping of more than 2^33 elements: the batch
// stride is 2^32 + 64 elements, so row 1's elements sit past 2^32 (an index computed in 32 bits
// wraps to row 0's memory or before the mapping). Only the pages used are ever touched. The
// answer must equal that of the same problem laid out compactly.

// An anonymous mapping reserved without backing; pages materialize (zeroed) when touched.
class SparseRegion {
 public:
  explicit SparseRegion(size_t bytes) : bytes_(bytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    data_ = p == MAP_FAILED ? nullptr : p;
  }
  ~SparseRegion() {
    if (data_ != nullptr) munmap(data_, bytes_);
  }
  SparseRegion(const SparseRegion&) = delete;
  SparseRegion& operator=(const SparseRegion&) = delete;
  void* data() const { return data_; }

 private:
  size_t bytes_;
  void* data_;
};

#if !RAGGED_NUMERICS_GPU
class LargeOffsetTest : public ::testing::TestWithParam<std::tuple<Platform, DType>> {};

TEST_P(LargeOffsetTest, BatchStridePast2To32) {
  const auto& [platform, dtype] = GetParam();
  const int64_t B = 2, S = 6, HKV = 2, HQ = 4, D = 16;
  const int64_t stride_b = (int64_t{1} << 32) + 64;  // elements
  const int64_t stride_s = HKV * D, stride_h = D;
  const int64_t esize = DTypeSize(dtype);
  const size_t bytes = static_cast<size_t>((stride_b * (B - 1) + S * stride_s) * esize);
  SparseRegion key_region(bytes), value_region(bytes);
  if (key_region.data() == nullptr || value_region.data() == nullptr) {
    GTEST_SKIP() << "cannot reserve 2 x " << (bytes >> 30)
                 << " GiB of address space (mmap MAP_NORESERVE failed)";
  }
  // The compact twin: the same values in an ordinary contiguous problem.
  TestCase c;
  c.batch = B;
  c.capacity = S;
  c.num_q_heads = HQ;
  c.num_kv_heads = HKV;
  c.head_dim = D;
  c.dtype = dtype;
  c.start = {1, 0};
  c.end = {6, 5};
  HostProblem compact = MakeHostProblem(c);
  HostProblem sparse = MakeHostProblem(c);
  const int64_t row = S * HKV * D;
  for (int64_t b = 0; b < B; ++b) {
    std::memcpy(static_cast<char*>(key_region.data()) + b * stride_b * esize,
                static_cast<char*>(compact.key.data()) + b * row * esize, row * esize);
    std::memcpy(static_cast<char*>(value_region.data()) + b * stride_b * esize,
                static_cast<char*>(compact.value.data()) + b * row * esize, row * esize);
  }
  std::memcpy(sparse.query.data(), compact.query.data(), compact.query.nbytes());
  RaggedDecodeAttentionArgs args = sparse.args();
  args.key =
      TensorView(key_region.data(), dtype, {B, S, HKV, D}, {stride_b, stride_s, stride_h, 1});
  args.value =
      TensorView(value_region.data(), dtype, {B, S, HKV, D}, {stride_b, stride_s, stride_h, 1});
  const RaggedDecodeAttentionOptions options = compact.options(platform);

  // The validated problem keeps the 64-bit stride.
  auto problem = ValidateProblem(args, options, platform);
  ASSERT_TRUE(problem.ok()) << problem.status();
  EXPECT_EQ(problem->k_stride_b, stride_b);
  EXPECT_EQ(problem->v_stride_b, stride_b);

  absl::Status s = RaggedDecodeAttention(args, options);
  ASSERT_TRUE(s.ok()) << s;
  auto want = ComputeReference(compact.args(), options);
  ASSERT_TRUE(want.ok()) << want.status();
  TensorView lse = sparse.lse.view();
  EXPECT_TRUE(MatchesReference(*want, sparse.output.view(), &lse, dtype));
}

INSTANTIATE_TEST_SUITE_P(Offsets, LargeOffsetTest,
                         ::testing::Combine(::testing::Values(Platform::kCpu, Platform::kReference),
                                            ::testing::Values(DType::kF32, DType::kBF16)),
                         [](const auto& info) {
                           return PlatformDTypeName(std::get<0>(info.param),
                                                    std::get<1>(info.param));
                         });
#endif  // !RAGGED_NUMERICS_GPU

// ---------------------------------------------------------------------------------------------
// Rows of one token: the output is that token's value, exactly (its weight is exactly 1), and
// lse is its logit. With a sink the weight is e^x / (e^x + e^a).

class OneTokenTest : public ::testing::TestWithParam<std::tuple<Platform, DType, bool>> {};

TEST_P(OneTokenTest, OutputIsTheTokensValue) {
  RAGGED_NUMERICS_SKIP_WITHOUT_DEVICE();
  const auto& [platform, dtype, window] = GetParam();
  TestCase c;
  c.batch = 4;
  c.capacity = 40;
  c.num_q_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = HeadDim(16);
  c.dtype = dtype;
  c.f32_output = false;
  if (window) {
    // Full rows, but a window (0, 0) leaves only the query's own position.
    c.start = {0, 0, 5, 38};
    c.end = {1, 8, 32, 40};
    c.window = SlidingWindow{0, 0};
  } else {
    c.start = {0, 7, 31, 39};
    c.end = {1, 8, 32, 40};
  }
  HostProblem p = MakeHostProblem(c);
  ASSERT_NO_FATAL_FAILURE(RunAndCompare(p, p.options(platform)));
  const int64_t D = c.head_dim, HQ = 4, HKV = 2, S = 40;
  // Weight 1 up to the rounding of exp and of the output dtype.
  const float tol = static_cast<float>(testing::Tolerance(dtype));
  for (int64_t b = 0; b < 4; ++b) {
    const int64_t t = p.c.end[b] - 1;
    for (int64_t h = 0; h < HQ; ++h) {
      const int64_t g = h / 2;
      double dot = 0.0;
      for (int64_t d = 0; d < D; ++d) {
        const float v = Get(p.value, ((b * S + t) * HKV + g) * D + d);
        EXPECT_NEAR(Get(p.output, (b * HQ + h) * D + d), v, tol * std::max(1.0f, std::abs(v)))
            << "b=" << b << " h=" << h << " d=" << d;
        dot += static_cast<double>(Get(p.query, (b * HQ + h) * D + d)) *
               Get(p.key, ((b * S + t) * HKV + g) * D + d);
      }
      const double scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
      EXPECT_NEAR(p.lse.data_as<float>()[b * HQ + h], dot * scale,
                  1e-4 * std::max(1.0, std::abs(dot)));
    }
  }
}

TEST_P(OneTokenTest, WithASink) {
  RAGGED_NUMERICS_SKIP_WITHOUT_DEVICE();
  const auto& [platform, dtype, window] = GetParam();
  TestCase c;
  c.batch = 2;
  c.capacity = 8;
  c.num_q_heads = 2;
  c.num_kv_heads = 1;
  c.head_dim = HeadDim(8);
  c.dtype = dtype;
  c.start = {3, 7};
  c.end = {4, 8};
  if (window) c.window = SlidingWindow{0, 0};
  c.sinks = Sinks::kShared;
  HostProblem p = MakeHostProblem(c);
  ASSERT_NO_FATAL_FAILURE(RunAndCompare(p, p.options(platform)));
}

INSTANTIATE_TEST_SUITE_P(Rows, OneTokenTest,
                         ::testing::Combine(RAGGED_NUMERICS_PLATFORMS,
                                            ::testing::Values(DType::kF32, DType::kBF16,
                                                              DType::kF16),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           return PlatformDTypeName(std::get<0>(info.param),
                                                    std::get<1>(info.param)) +
                                  (std::get<2>(info.param) ? "_window" : "_range");
                         });

// ---------------------------------------------------------------------------------------------
// Large logits. query = e_0 and key[t, 0] = c_t in [-1, 1] with one maximum c = 1 (and the next
// below 0.5), so logits are scale * c_t: magnitude `scale`, positive or negative, and the gap to
// the runner-up is scale / 2. Without a cap the output is the argmax's value and lse the max
// logit; with a cap of 30 the logits are 30 tanh(x / 30) and everything stays finite too.

class LargeLogitTest
    : public ::testing::TestWithParam<std::tuple<Platform, DType, float, bool, bool>> {};

TEST_P(LargeLogitTest, StaysFinite) {
  RAGGED_NUMERICS_SKIP_WITHOUT_DEVICE();
  const auto& [platform, dtype, magnitude, negative, cap] = GetParam();
  TestCase c;
  c.batch = 2;
  c.capacity = 32;
  c.num_q_heads = 2;
  c.num_kv_heads = 1;
  c.head_dim = HeadDim(8);
  c.dtype = dtype;
  c.start = {0, 9};
  c.end = {32, 20};
  c.softmax_scale = magnitude;
  if (cap) c.soft_cap = 30.0f;
  HostProblem p = MakeHostProblem(c);
  const int64_t D = c.head_dim, S = 32, HQ = 2;
  const int64_t argmax[] = {17, 12};
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t h = 0; h < HQ; ++h) {
      for (int64_t d = 0; d < D; ++d) Set(p.query, (b * HQ + h) * D + d, d == 0 ? 1.0f : 0.0f);
    }
    for (int64_t t = 0; t < S; ++t) {
      // c_t in {-1, -0.875, ..., 0.25}, and 1 at the argmax; shifted down by 2 when negative.
      float ct = t == argmax[b] ? 1.0f : -1.0f + 0.125f * static_cast<float>(t % 11);
      if (negative) ct -= 2.0f;
      Set(p.key, (b * S + t) * D + 0, ct);
    }
  }
  ASSERT_NO_FATAL_FAILURE(RunAndCompare(p, p.options(platform)));
  for (int64_t i = 0; i < 2 * HQ; ++i) {
    EXPECT_TRUE(std::isfinite(p.lse.data_as<float>()[i])) << i;
    for (int64_t d = 0; d < D; ++d) EXPECT_TRUE(std::isfinite(Get(p.output, i * D + d))) << i;
  }
  if (!cap) {
    // The argmax wins outright.
    for (int64_t b = 0; b < 2; ++b) {
      const float want_lse = magnitude * (negative ? -1.0f : 1.0f);
      for (int64_t h = 0; h < HQ; ++h) {
        EXPECT_NEAR(p.lse.data_as<float>()[b * HQ + h], want_lse, 1e-5 * magnitude);
        for (int64_t d = 0; d < D; ++d) {
          const float v = Get(p.value, (b * S + argmax[b]) * D + d);
          EXPECT_NEAR(Get(p.output, (b * HQ + h) * D + d), v,
                      testing::Tolerance(dtype) * std::max(1.0f, std::abs(v)));
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Logits, LargeLogitTest,
    ::testing::Combine(RAGGED_NUMERICS_PLATFORMS,
                       ::testing::Values(DType::kF32, DType::kBF16, DType::kF16),
                       ::testing::Values(1e4f, 1e6f, 1e30f), ::testing::Bool(), ::testing::Bool()),
    [](const auto& info) {
      const float m = std::get<2>(info.param);
      return PlatformDTypeName(std::get<0>(info.param), std::get<1>(info.param)) + "_1e" +
             std::to_string(static_cast<int>(std::lround(std::log10(m)))) +
             (std::get<3>(info.param) ? "_negative" : "_positive") +
             (std::get<4>(info.param) ? "_cap30" : "_nocap");
    });

}  // namespace
}  // namespace ragged
