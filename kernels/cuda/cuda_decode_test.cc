// The CUDA decode kernels against the double-precision reference, on a GPU (label gpu).
//
// Every case draws fresh random inputs, poisons the output with NaN and fills the workspace with
// garbage before the run. Without a visible GPU every test skips with the reason.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/autotune.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_test_kernels.h"
#include "kernels/cuda/cuda_test_util.h"
#include "kernels/cuda/decode_launch.h"
#include "kernels/ragged_decode_attention.h"
#include "kernels/test_util.h"

namespace ragged {
namespace {

// The autotune test writes a cache: keep it in a fresh temporary directory, set before anything
// reads the environment.
const bool kCacheDirSet = [] {
  char tmpl[] = "/tmp/ragged_cuda_test_XXXXXX";
  const char* dir = mkdtemp(tmpl);
  if (dir != nullptr) setenv("RAGGED_CACHE_DIR", dir, 1);
  return dir != nullptr;
}();

using testing::ClampedReference;
using testing::DeviceProblem;
using testing::Download;
using testing::HostProblem;
using testing::HostResult;
using testing::MakeHostProblem;
using testing::MatchesReference;
using testing::RunOnGpuAndCompare;
using testing::Sinks;
using testing::TestCase;
using testing::Upload;

// Rows that cover the edge cases: a full row, a row of length 1 at an offset, an empty row, and
// ragged rows with random offsets.
void EdgeAndRaggedLengths(TestCase& c, uint64_t seed) {
  testing::RandomLengths(c, /*offsets=*/true, /*allow_empty=*/false, seed);
  const int32_t S = static_cast<int32_t>(c.capacity);
  if (c.batch > 0) {
    c.start[0] = 0;
    c.end[0] = S;
  }
  if (c.batch > 1) {
    c.start[1] = S / 3;
    c.end[1] = S / 3 + 1;
  }
  if (c.batch > 2) {
    c.start[2] = S / 2;
    c.end[2] = S / 2;
  }
}

// A schedule that splits nearly every pair over several CTAs (one tile per CTA share minimum),
// so that the combine path runs as much as the direct path.
KernelConfig ManySplits() {
  KernelConfig c;
  c.chunk_size = 1;
  return c;
}

std::string DTypeTag(DType t) { return std::string(DTypeName(t)); }

// ---------------------------------------------------------------------------------------------
// dtype x head_dim x group size x schedule.

using ShapeParam = std::tuple<DType, int, int, bool>;  // dtype, head_dim, group, many_splits

class CudaDecodeShapeTest : public ::testing::TestWithParam<ShapeParam> {};

TEST_P(CudaDecodeShapeTest, MatchesReference) {
  RAGGED_SKIP_WITHOUT_GPU();
  const auto [dtype, head_dim, group, many_splits] = GetParam();
  TestCase c;
  c.dtype = dtype;
  c.head_dim = head_dim;
  c.num_kv_heads = group <= 16 ? 2 : 1;
  c.num_q_heads = group * c.num_kv_heads;
  c.batch = 5;
  c.capacity = 300;
  c.seed = 1000 + head_dim * 7 + group;
  EdgeAndRaggedLengths(c, c.seed);
  HostProblem hp = MakeHostProblem(c);
  RaggedDecodeAttentionOptions o = hp.options(Platform::kCuda);
  if (many_splits) o.kernel_config = ManySplits();
  EXPECT_TRUE(RunOnGpuAndCompare(hp, o)) << c.ToString();
}

INSTANTIATE_TEST_SUITE_P(
    AllShapes, CudaDecodeShapeTest,
    ::testing::Combine(::testing::Values(DType::kF32, DType::kF16, DType::kBF16),
                       ::testing::Values(64, 80, 96, 128, 256),
                       ::testing::Values(1, 4, 8, 16, 64, 128), ::testing::Bool()),
    [](const ::testing::TestParamInfo<ShapeParam>& info) {
      return absl::StrCat(DTypeTag(std::get<0>(info.param)), "_D", std::get<1>(info.param), "_G",
                          std::get<2>(info.param),
                          std::get<3>(info.param) ? "_ManySplits" : "_Default");
    });

// ---------------------------------------------------------------------------------------------
// Features, per dtype.

enum class Feature {
  kWindowLeft,
  kWindowBoth,
  kWindowRightOnly,
  kSoftCap,
  kSinksShared,
  kSinksPerKvHead,
  kSinksPerQueryHead,
  kSinksQueryDtype,
  kSinksOnEmptyRows,
  kF32Output,
  kQuery4D,
  kNoLse,
  kScale,
  kLongRows,
  kAllRowsEmpty,
  kAllFeatures,
};

std::string FeatureName(Feature f) {
  switch (f) {
    case Feature::kWindowLeft:
      return "WindowLeft";
    case Feature::kWindowBoth:
      return "WindowBoth";
    case Feature::kWindowRightOnly:
      return "WindowRightOnly";
    case Feature::kSoftCap:
      return "SoftCap";
    case Feature::kSinksShared:
      return "SinksShared";
    case Feature::kSinksPerKvHead:
      return "SinksPerKvHead";
    case Feature::kSinksPerQueryHead:
      return "SinksPerQueryHead";
    case Feature::kSinksQueryDtype:
      return "SinksQueryDtype";
    case Feature::kSinksOnEmptyRows:
      return "SinksOnEmptyRows";
    case Feature::kF32Output:
      return "F32Output";
    case Feature::kQuery4D:
      return "Query4D";
    case Feature::kNoLse:
      return "NoLse";
    case Feature::kScale:
      return "Scale";
    case Feature::kLongRows:
      return "LongRows";
    case Feature::kAllRowsEmpty:
      return "AllRowsEmpty";
    case Feature::kAllFeatures:
      return "AllFeatures";
  }
  return "Unknown";
}

// How the work is cut: the heuristic's grid; one tile per CTA share at least (nearly every pair
// split, the combine for few pairs); two CTAs (more than 4 pairs per CTA: the combine over split
// pairs, CombineSplitKernel); or five CTAs (fewer than 4 pairs per CTA but few pieces per pair:
// the combine with a warp per query head, CombineWarpKernel).
enum class Schedule { kDefault, kManySplits, kTwoCtas, kFiveCtas };

// dtype, feature, schedule, group size (8; or 64, which runs the wgmma variant for 16-bit types
// on an H100 with an sm_90a build: head_dim 128, 64 heads per CTA).
using FeatureParam = std::tuple<DType, Feature, Schedule, int>;

class CudaDecodeFeatureTest : public ::testing::TestWithParam<FeatureParam> {};

TEST_P(CudaDecodeFeatureTest, MatchesReference) {
  RAGGED_SKIP_WITHOUT_GPU();
  const auto [dtype, feature, schedule, group] = GetParam();
  TestCase c;
  c.dtype = dtype;
  c.batch = 6;
  c.capacity = 400;
  c.num_q_heads = 2 * group;
  c.num_kv_heads = 2;
  c.head_dim = 128;
  c.seed = 77 + static_cast<int>(feature);
  EdgeAndRaggedLengths(c, c.seed);
  switch (feature) {
    case Feature::kWindowLeft:
      c.window = SlidingWindow{37, -1};
      break;
    case Feature::kWindowBoth:
      c.window = SlidingWindow{100, 0};
      break;
    case Feature::kWindowRightOnly:
      c.window = SlidingWindow{-1, 0};
      break;
    case Feature::kSoftCap:
      c.soft_cap = 5.0f;
      c.input_scale = 3.0;  // logits large enough for the cap to matter
      break;
    case Feature::kSinksShared:
      c.sinks = Sinks::kShared;
      c.num_sinks = 3;
      break;
    case Feature::kSinksPerKvHead:
      c.sinks = Sinks::kPerKvHead;
      c.num_sinks = 2;
      break;
    case Feature::kSinksPerQueryHead:
      c.sinks = Sinks::kPerQueryHead;
      break;
    case Feature::kSinksQueryDtype:
      c.sinks = Sinks::kPerQueryHead;
      c.aux_dtype = dtype;
      break;
    case Feature::kSinksOnEmptyRows:
      c.sinks = Sinks::kPerKvHead;
      c.start = {0, 5, 9, 400, 0, 17};
      c.end = {0, 5, 9, 400, 400, 18};
      break;
    case Feature::kF32Output:
      c.f32_output = true;
      break;
    case Feature::kQuery4D:
      c.query_tokens = 3;
      break;
    case Feature::kNoLse:
      c.with_lse = false;
      break;
    case Feature::kScale:
      c.softmax_scale = 0.3f;
      break;
    case Feature::kLongRows:
      c.capacity = 5000;
      c.batch = 3;
      EdgeAndRaggedLengths(c, c.seed);
      break;
    case Feature::kAllRowsEmpty:
      c.start.assign(c.batch, 7);
      c.end.assign(c.batch, 7);
      break;
    case Feature::kAllFeatures:
      c.window = SlidingWindow{150, 0};
      c.soft_cap = 30.0f;
      c.sinks = Sinks::kPerQueryHead;
      c.query_tokens = 2;
      c.f32_output = true;
      c.input_scale = 2.0;
      break;
  }
  HostProblem hp = MakeHostProblem(c);
  RaggedDecodeAttentionOptions o = hp.options(Platform::kCuda);
  if (schedule == Schedule::kManySplits) o.kernel_config = ManySplits();
  if (schedule == Schedule::kTwoCtas || schedule == Schedule::kFiveCtas) {
    o.kernel_config = KernelConfig{};
    o.kernel_config->num_splits = schedule == Schedule::kTwoCtas ? 2 : 5;
    o.kernel_config->chunk_size = 1;
  }
  EXPECT_TRUE(RunOnGpuAndCompare(hp, o)) << c.ToString() << " " << FeatureName(feature);
}

INSTANTIATE_TEST_SUITE_P(
    AllFeatures, CudaDecodeFeatureTest,
    ::testing::Combine(::testing::Values(DType::kF32, DType::kF16, DType::kBF16),
                       ::testing::Values(Feature::kWindowLeft, Feature::kWindowBoth,
                                         Feature::kWindowRightOnly, Feature::kSoftCap,
                                         Feature::kSinksShared, Feature::kSinksPerKvHead,
                                         Feature::kSinksPerQueryHead, Feature::kSinksQueryDtype,
                                         Feature::kSinksOnEmptyRows, Feature::kF32Output,
                                         Feature::kQuery4D, Feature::kNoLse, Feature::kScale,
                                         Feature::kLongRows, Feature::kAllRowsEmpty,
                                         Feature::kAllFeatures),
                       ::testing::Values(Schedule::kDefault, Schedule::kManySplits,
                                         Schedule::kTwoCtas, Schedule::kFiveCtas),
                       ::testing::Values(8, 64)),
    [](const ::testing::TestParamInfo<FeatureParam>& info) {
      const Schedule sc = std::get<2>(info.param);
      return absl::StrCat(DTypeTag(std::get<0>(info.param)), "_",
                          FeatureName(std::get<1>(info.param)),
                          sc == Schedule::kManySplits ? "_ManySplits"
                          : sc == Schedule::kTwoCtas  ? "_TwoCtas"
                          : sc == Schedule::kFiveCtas ? "_FiveCtas"
                                                      : "_Default",
                          "_G", std::get<3>(info.param));
    });

// ---------------------------------------------------------------------------------------------
// Explicit kernel configs: every tile shape, pipeline depth and grid size computes the same thing.

struct ConfigCase {
  DType dtype;
  int group;
  KernelConfig config;
  std::string name;
};

KernelConfig Cfg(int hpb, int block_n, int warps, int stages, int splits = 0, int chunk = 0) {
  KernelConfig c;
  c.heads_per_block = hpb;
  c.block_n = block_n;
  c.num_warps = warps;
  c.stages = stages;
  c.num_splits = splits;
  c.chunk_size = chunk;
  return c;
}

std::vector<ConfigCase> ConfigCases() {
  std::vector<ConfigCase> v;
  for (DType t : {DType::kBF16, DType::kF16}) {
    const std::string tn = DTypeTag(t);
    v.push_back({t, 8, Cfg(16, 32, 2, 2), tn + "_G8_hpb16_n32_w2_s2"});
    v.push_back({t, 8, Cfg(16, 64, 4, 3), tn + "_G8_hpb16_n64_w4_s3"});
    v.push_back({t, 8, Cfg(16, 128, 8, 2), tn + "_G8_hpb16_n128_w8_s2"});
    v.push_back({t, 8, Cfg(16, 128, 2, 4), tn + "_G8_hpb16_n128_w2_s4"});
    v.push_back({t, 8, Cfg(16, 64, 4, 5), tn + "_G8_hpb16_n64_w4_s5"});
    v.push_back({t, 8, Cfg(16, 64, 4, 4, 1), tn + "_G8_one_cta"});
    v.push_back({t, 8, Cfg(16, 64, 4, 2, 7, 16), tn + "_G8_seven_ctas"});
    v.push_back({t, 24, Cfg(32, 32, 4, 3), tn + "_G24_hpb32_n32_w4"});
    v.push_back({t, 24, Cfg(32, 64, 2, 2), tn + "_G24_hpb32_n64_w2"});
    v.push_back({t, 24, Cfg(16, 64, 4, 3), tn + "_G24_hpb16_slices"});
    v.push_back({t, 100, Cfg(64, 16, 4, 2), tn + "_G100_hpb64_n16_w4"});
    v.push_back({t, 100, Cfg(64, 64, 4, 3), tn + "_G100_hpb64_n64_w4"});
    v.push_back({t, 100, Cfg(64, 32, 8, 3), tn + "_G100_hpb64_n32_w8"});
    v.push_back({t, 100, Cfg(32, 32, 2, 2, 0, 32), tn + "_G100_hpb32_slices"});
  }
  v.push_back({DType::kF32, 8, Cfg(8, 32, 4, 2), "f32_G8_hpb8_s2"});
  v.push_back({DType::kF32, 8, Cfg(3, 32, 4, 4, 5, 32), "f32_G8_hpb3_s4_five_ctas"});
  v.push_back({DType::kF32, 40, Cfg(16, 32, 4, 3), "f32_G40_hpb16"});
  return v;
}

class CudaDecodeConfigTest : public ::testing::TestWithParam<ConfigCase> {};

TEST_P(CudaDecodeConfigTest, MatchesReference) {
  RAGGED_SKIP_WITHOUT_GPU();
  const ConfigCase& cc = GetParam();
  TestCase c;
  c.dtype = cc.dtype;
  c.num_kv_heads = 2;
  c.num_q_heads = cc.group * 2;
  c.head_dim = 96;
  c.batch = 4;
  c.capacity = 700;
  c.sinks = Sinks::kPerQueryHead;
  c.seed = 4242;
  EdgeAndRaggedLengths(c, c.seed);
  HostProblem hp = MakeHostProblem(c);
  RaggedDecodeAttentionOptions o = hp.options(Platform::kCuda);
  o.kernel_config = cc.config;
  EXPECT_TRUE(RunOnGpuAndCompare(hp, o)) << cc.config.ToString();
}

INSTANTIATE_TEST_SUITE_P(Configs, CudaDecodeConfigTest, ::testing::ValuesIn(ConfigCases()),
                         [](const ::testing::TestParamInfo<ConfigCase>& info) {
                           return info.param.name;
                         });

// ---------------------------------------------------------------------------------------------
// Views: a sequence shard (kv_offset) and strided K/V, per dtype.

class CudaDecodeViewTest : public ::testing::TestWithParam<DType> {};

TEST_P(CudaDecodeViewTest, SequenceShardWithOffset) {
  RAGGED_SKIP_WITHOUT_GPU();
  TestCase c;
  c.dtype = GetParam();
  c.batch = 5;
  c.capacity = 600;
  c.num_q_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = 64;
  c.window = SlidingWindow{250, 0};
  c.seed = 9;
  EdgeAndRaggedLengths(c, c.seed);
  HostProblem hp = MakeHostProblem(c);
  // This shard holds global positions [200, 450) of the 600-position cache.
  const int64_t off = 200, len = 250;
  RaggedDecodeAttentionOptions o = hp.options(Platform::kCuda);
  o.kv_offset = off;
  o.kv_total_capacity = c.capacity;
  RaggedDecodeAttentionArgs host_args = hp.args();
  host_args.key = hp.key.view().Slice(1, off, len);
  host_args.value = hp.value.view().Slice(1, off, len);
  RaggedDecodeAttentionOptions ro = o;
  ro.platform = Platform::kReference;
  absl::StatusOr<ReferenceResult> ref = ComputeReference(host_args, ro);
  RAGGED_ASSERT_OK(ref);
  absl::StatusOr<DeviceProblem> d = Upload(hp, hp.options(Platform::kCuda), nullptr);
  RAGGED_ASSERT_OK(d);
  d->args.key = d->k.view().Slice(1, off, len);
  d->args.value = d->v.view().Slice(1, off, len);
  RAGGED_ASSERT_OK(RaggedDecodeAttention(d->args, o, nullptr));
  absl::StatusOr<HostResult> r = Download(*d, nullptr);
  RAGGED_ASSERT_OK(r);
  TensorView lse = r->lse.view();
  EXPECT_TRUE(MatchesReference(*ref, r->out.view(), &lse, c.dtype));
}

TEST_P(CudaDecodeViewTest, StridedKeyAndValue) {
  RAGGED_SKIP_WITHOUT_GPU();
  TestCase c;
  c.dtype = GetParam();
  c.batch = 3;
  c.capacity = 257;
  c.num_q_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = 80;
  c.seed = 10;
  EdgeAndRaggedLengths(c, c.seed);
  HostProblem hp = MakeHostProblem(c);
  absl::StatusOr<ReferenceResult> ref = ClampedReference(hp, hp.options(Platform::kReference));
  RAGGED_ASSERT_OK(ref);
  // K and V inside a wider tensor [B, S, 2 * HKV, D] whose other heads are NaN.
  const int64_t B = c.batch, S = c.capacity, HKV = c.num_kv_heads, D = c.head_dim;
  std::vector<DeviceBuffer> keep;
  RaggedDecodeAttentionOptions o = hp.options(Platform::kCuda);
  absl::StatusOr<DeviceProblem> d = Upload(hp, o, nullptr);
  RAGGED_ASSERT_OK(d);
  for (int which = 0; which < 2; ++which) {
    const HostBuffer& src = which == 0 ? hp.key : hp.value;
    HostBuffer wide = HostBuffer::Allocate(c.dtype, {B, S, 2 * HKV, D});
    testing::PoisonWithNaN(wide);
    const int64_t esize = DTypeSize(c.dtype);
    for (int64_t bs = 0; bs < B * S; ++bs) {
      std::memcpy(static_cast<char*>(wide.data()) + bs * 2 * HKV * D * esize,
                  static_cast<const char*>(src.data()) + bs * HKV * D * esize, HKV * D * esize);
    }
    absl::StatusOr<DeviceBuffer> dw = testing::UploadBuffer(wide, nullptr);
    RAGGED_ASSERT_OK(dw);
    const int64_t shape[] = {B, S, HKV, D};
    const int64_t strides[] = {S * 2 * HKV * D, 2 * HKV * D, D, 1};
    TensorView view(dw->data(), c.dtype, shape, strides, Device::Cuda(0));
    (which == 0 ? d->args.key : d->args.value) = view;
    keep.push_back(std::move(*dw));
  }
  RAGGED_ASSERT_OK(RaggedDecodeAttention(d->args, o, nullptr));
  absl::StatusOr<HostResult> r = Download(*d, nullptr);
  RAGGED_ASSERT_OK(r);
  TensorView lse = r->lse.view();
  EXPECT_TRUE(MatchesReference(*ref, r->out.view(), &lse, c.dtype));
}

TEST_P(CudaDecodeViewTest, AutoPlatformPicksCudaForDeviceTensors) {
  RAGGED_SKIP_WITHOUT_GPU();
  TestCase c;
  c.dtype = GetParam();
  c.seed = 11;
  HostProblem hp = MakeHostProblem(c);
  RaggedDecodeAttentionOptions o = hp.options(Platform::kAuto);
  EXPECT_TRUE(RunOnGpuAndCompare(hp, o));
  absl::StatusOr<DeviceProblem> d = Upload(hp, o, nullptr);
  RAGGED_ASSERT_OK(d);
  RAGGED_ASSERT_OK(RaggedDecodeAttention(d->args, o, nullptr));
  EXPECT_TRUE(DeviceResultMatches(hp, *d, o, nullptr));
}

// Large batches (more rows than a CTA has threads, so the schedule scans them in chunks, and more
// than its row cache), with empty and one-token rows spread over the batch and sinks (which empty
// rows must still report in lse).
TEST_P(CudaDecodeViewTest, LargeBatchesWithEmptyAndOneTokenRows) {
  RAGGED_SKIP_WITHOUT_GPU();
  for (int64_t batch : {200, 1500}) {
    for (bool many_splits : {false, true}) {
      TestCase c;
      c.dtype = GetParam();
      c.batch = batch;
      c.capacity = 96;
      c.num_q_heads = 8;
      c.num_kv_heads = 2;
      c.head_dim = 64;
      c.sinks = Sinks::kPerQueryHead;
      c.seed = 12 + batch;
      testing::RandomLengths(c, /*offsets=*/true, /*allow_empty=*/true, c.seed);
      for (int64_t b = 0; b < batch; b += 7) c.end[b] = c.start[b];  // empty rows
      for (int64_t b = 3; b < batch; b += 11) {
        c.end[b] = std::min<int32_t>(c.start[b] + 1, static_cast<int32_t>(c.capacity));
      }
      HostProblem hp = MakeHostProblem(c);
      RaggedDecodeAttentionOptions o = hp.options(Platform::kCuda);
      if (many_splits) o.kernel_config = ManySplits();
      EXPECT_TRUE(RunOnGpuAndCompare(hp, o)) << "batch " << batch << " many_splits " << many_splits;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(DTypes, CudaDecodeViewTest,
                         ::testing::Values(DType::kF32, DType::kF16, DType::kBF16),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return DTypeTag(info.param);
                         });

// ---------------------------------------------------------------------------------------------
// Stream semantics: graph capture and replay with new lengths, determinism, device clamping.

class CudaDecodeStreamTest : public ::testing::TestWithParam<DType> {};

// Six ragged rows (edge lengths included), 16 query heads on 4 KV heads, head_dim 128, sinks per
// KV head.
TestCase SmallStreamCase(DType dtype, int seed) {
  TestCase c;
  c.dtype = dtype;
  c.batch = 6;
  c.capacity = 1000;
  c.num_q_heads = 16;
  c.num_kv_heads = 4;
  c.head_dim = 128;
  c.sinks = Sinks::kPerKvHead;
  c.seed = seed;
  EdgeAndRaggedLengths(c, c.seed);
  return c;
}

TEST_P(CudaDecodeStreamTest, GraphCaptureReplaysWithNewLengths) {
  RAGGED_SKIP_WITHOUT_GPU();
  TestCase c = SmallStreamCase(GetParam(), 12);
  HostProblem hp = MakeHostProblem(c);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  RaggedDecodeAttentionOptions o = hp.options(Platform::kCuda);
  absl::StatusOr<DeviceProblem> d = Upload(hp, o, s);
  RAGGED_ASSERT_OK(d);
  cudaGraph_t graph;
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  const absl::Status captured = RaggedDecodeAttention(d->args, o, s);
  ASSERT_EQ(cudaStreamEndCapture(s, &graph), cudaSuccess);
  RAGGED_ASSERT_OK(captured);
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (int replay = 0; replay < 4; ++replay) {
    TestCase lengths = c;
    testing::RandomLengths(lengths, /*offsets=*/replay % 2 == 1, /*allow_empty=*/true,
                           100 + replay);
    if (replay == 3) {
      lengths.start.assign(c.batch, 0);
      lengths.end.assign(c.batch, static_cast<int32_t>(c.capacity));
    }
    for (int64_t b = 0; b < c.batch; ++b) {
      hp.start.data_as<int32_t>()[b] = lengths.start[b];
      hp.end.data_as<int32_t>()[b] = lengths.end[b];
    }
    RAGGED_ASSERT_OK(d->start.CopyFromHost(hp.start.view(), s));
    RAGGED_ASSERT_OK(d->end.CopyFromHost(hp.end.view(), s));
    ASSERT_EQ(cudaMemsetAsync(d->out.data(), 0xFF, d->out.nbytes(), s), cudaSuccess);  // NaN
    ASSERT_EQ(cudaMemsetAsync(d->lse.data(), 0xFF, d->lse.nbytes(), s), cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
    EXPECT_TRUE(DeviceResultMatches(hp, *d, o, s)) << "replay " << replay;
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
}

// On Hopper the decode kernel is a programmatic dependent of the stream's previous kernel. A
// producer that lets its dependents launch at once (griddepcontrol.launch_dependents) and writes
// Q, K, V and the ranges 20 ms later must still be waited for: a decode (or a combine, which
// reads the ranges before its own wait) that read its inputs early would see NaN and empty rows.
TEST_P(CudaDecodeStreamTest, WaitsForAProducerThatLetsItLaunchEarly) {
  RAGGED_SKIP_WITHOUT_GPU();
  TestCase c = SmallStreamCase(GetParam(), 17);
  HostProblem hp = MakeHostProblem(c);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  // Long enough for a reader that did not wait to see the old contents, under compute-sanitizer
  // too.
  constexpr int kDelayUs = 20000;
  absl::StatusOr<DeviceInfo> dev = internal::CudaDeviceInfo(0);
  RAGGED_ASSERT_OK(dev);
  if (dev->cc_major >= 9) {
    // The setup can catch a consumer that does not wait: one launched behind the same producer
    // reads the old word. Both kernels run once first, so that loading their module (lazily, at
    // the first launch) does not delay the reader past the producer's write.
    absl::StatusOr<DeviceBuffer> words = DeviceBuffer::AllocateBytes(12, 0);
    RAGGED_ASSERT_OK(words);
    uint32_t* w = static_cast<uint32_t*>(words->data());  // old, new, what the reader saw
    ASSERT_EQ(testing::LaunchLateCopy(testing::CopyJobs{}, 0, s), cudaSuccess);
    ASSERT_EQ(testing::LaunchEarlyRead(w, w + 2, s), cudaSuccess);
    const uint32_t init[3] = {0xFFFFFFFFu, 0x12345678u, 0u};
    ASSERT_EQ(cudaMemcpyAsync(w, init, sizeof(init), cudaMemcpyHostToDevice, s), cudaSuccess);
    testing::CopyJobs one;
    one.job[one.count++] = testing::CopyJob{w, w + 1, 4};
    ASSERT_EQ(testing::LaunchLateCopy(one, kDelayUs, s), cudaSuccess);
    ASSERT_EQ(testing::LaunchEarlyRead(w, w + 2, s), cudaSuccess);
    uint32_t got[3];
    ASSERT_EQ(cudaMemcpyAsync(got, w, sizeof(got), cudaMemcpyDeviceToHost, s), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    EXPECT_EQ(got[0], 0x12345678u);
    // compute-sanitizer runs launches one after another, so there nothing launches early
    // (scripts/compute-sanitizer says so with RAGGED_TEST_SERIALIZED_LAUNCHES=1).
    const char* serialized = std::getenv("RAGGED_TEST_SERIALIZED_LAUNCHES");
    if (serialized == nullptr || std::string(serialized) != "1") {
      EXPECT_EQ(got[2], 0xFFFFFFFFu) << "the early reader saw the producer's write";
    }
  }
  for (bool many_splits : {false, true}) {
    RaggedDecodeAttentionOptions o = hp.options(Platform::kCuda);
    if (many_splits) o.kernel_config = ManySplits();
    absl::StatusOr<DeviceProblem> d = Upload(hp, o, s);
    RAGGED_ASSERT_OK(d);
    // The real inputs move to staging buffers; the call's own get NaN (Q, K, V) and empty rows.
    std::vector<DeviceBuffer> staged;
    testing::CopyJobs jobs;
    for (DeviceBuffer* b : {&d->q, &d->k, &d->v, &d->start, &d->end}) {
      absl::StatusOr<DeviceBuffer> copy = DeviceBuffer::AllocateBytes(b->nbytes(), 0);
      RAGGED_ASSERT_OK(copy);
      ASSERT_EQ(cudaMemcpyAsync(copy->data(), b->data(), b->nbytes(), cudaMemcpyDeviceToDevice, s),
                cudaSuccess);
      const bool ranges = b == &d->start || b == &d->end;
      ASSERT_EQ(cudaMemsetAsync(b->data(), ranges ? 0 : 0xFF, b->nbytes(), s), cudaSuccess);
      jobs.job[jobs.count++] =
          testing::CopyJob{b->data(), copy->data(), static_cast<size_t>(b->nbytes())};
      staged.push_back(std::move(*copy));
    }
    ASSERT_EQ(testing::LaunchLateCopy(jobs, kDelayUs, s), cudaSuccess);
    RAGGED_ASSERT_OK(RaggedDecodeAttention(d->args, o, s));
    EXPECT_TRUE(DeviceResultMatches(hp, *d, o, s)) << "many_splits " << many_splits;
  }
  cudaStreamDestroy(s);
}

std::vector<float> GpuOutput(const HostProblem& hp, const RaggedDecodeAttentionOptions& o);

// `batch` rows of [0, capacity) on `kv_heads` KV heads of 4 query heads each, head_dim 128, a
// sink per query head: the cases of the CTA-count tests below.
TestCase CtaCountCase(DType dtype, int64_t batch, int64_t kv_heads, int64_t capacity,
                      uint64_t seed) {
  TestCase c;
  c.dtype = dtype;
  c.batch = batch;
  c.capacity = capacity;
  c.num_kv_heads = kv_heads;
  c.num_q_heads = 4 * kv_heads;
  c.head_dim = 128;
  c.sinks = Sinks::kPerQueryHead;
  c.seed = seed;
  c.start.assign(batch, 0);
  c.end.assign(batch, static_cast<int32_t>(capacity));
  return c;
}

// `c` with the default CUDA options: against the reference (with lse), and bitwise equal to itself
// on a second run.
void ExpectMatchesAndRepeats(const TestCase& c) {
  HostProblem hp = MakeHostProblem(c);
  RaggedDecodeAttentionOptions o = hp.options(Platform::kCuda);
  EXPECT_TRUE(RunOnGpuAndCompare(hp, o)) << c.ToString();
  const std::vector<float> a = GpuOutput(hp, o), b = GpuOutput(hp, o);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << c.ToString();
}

// Rows with equal tile counts let the library run fewer CTAs so that shares align with (row, KV
// head) pairs. With the default chunk (4 tiles per CTA at least): 64 pairs of 2 tiles on 32 CTAs
// (two whole pairs each), 6 pairs of 32 tiles on 48 CTAs (8 equal pieces each), the same from
// unequal lengths of equal tile counts, 300 pairs of 4 tiles (on an H100's 264 slots too far to
// align), and a window that makes every row's range 16 tiles (12 pairs on 48 CTAs). Also 300 rows
// of unequal lengths and 4 tiles each: more rows than threads, so the schedule loads the rows
// past the first block's. Each against the reference, with sinks and lse; also bitwise equal to
// itself on a second run.
TEST_P(CudaDecodeStreamTest, UniformRowsAlignSharesWithPairs) {
  RAGGED_SKIP_WITHOUT_GPU();
  struct Case {
    int64_t batch, kv_heads, capacity;
    bool unequal_lengths, window;
  };
  for (const Case& k : {Case{16, 4, 128, false, false}, Case{3, 2, 2000, false, false},
                        Case{3, 2, 2000, true, false}, Case{75, 4, 200, false, false},
                        Case{6, 2, 3000, false, true}, Case{300, 1, 242, true, false}}) {
    TestCase c = CtaCountCase(GetParam(), k.batch, k.kv_heads, k.capacity, 30 + k.batch);
    if (k.unequal_lengths) {
      // Every row keeps the same number of 64-position tiles (the last one partial).
      for (int64_t b = 0; b < k.batch; ++b) c.end[b] -= static_cast<int32_t>(b * 7 % 40);
    }
    if (k.window) c.window = SlidingWindow{1023, 0};  // 1,024 positions: 16 tiles per row
    ExpectMatchesAndRepeats(c);
  }
}

// Batch 1 launches one CTA per SM, as many as a multiple of the KV heads, where that keeps 7/8 of
// the SMs: one KV head (every CTA a piece of one pair), 8 and 3 (pieces of unequal tile counts
// where the tiles do not divide), a range that starts past 0, a window; and, on an H100's 132
// SMs, 100 KV heads (a multiple would keep 100 SMs: the resident slots instead) and 160 (more
// than the SMs).
TEST_P(CudaDecodeStreamTest, SingleRowOneCtaPerSm) {
  RAGGED_SKIP_WITHOUT_GPU();
  struct Case {
    int64_t kv_heads, capacity;
    int32_t start, end;
    bool window;
  };
  for (const Case& k : {Case{1, 20000, 0, 20000, false}, Case{8, 6000, 0, 6000, false},
                        Case{3, 5000, 100, 4900, false}, Case{8, 6000, 0, 5999, true},
                        Case{100, 300, 0, 300, false}, Case{160, 300, 0, 300, false}}) {
    TestCase c = CtaCountCase(GetParam(), 1, k.kv_heads, k.capacity, 50 + k.kv_heads);
    c.start = {k.start};
    c.end = {k.end};
    if (k.window) c.window = SlidingWindow{1023, 0};
    ExpectMatchesAndRepeats(c);
  }
}

TEST_P(CudaDecodeStreamTest, BitwiseDeterministic) {
  RAGGED_SKIP_WITHOUT_GPU();
  TestCase c;
  c.dtype = GetParam();
  c.batch = 4;
  c.capacity = 3000;
  c.num_q_heads = 32;
  c.num_kv_heads = 4;
  c.head_dim = 128;
  c.sinks = Sinks::kShared;
  c.seed = 13;
  EdgeAndRaggedLengths(c, c.seed);
  HostProblem hp = MakeHostProblem(c);
  // 264 CTAs (the CTA-per-head combine) and 5 CTAs (the warp-per-head combine).
  KernelConfig five_ctas;
  five_ctas.num_splits = 5;
  five_ctas.chunk_size = 1;
  for (const KernelConfig& config : {ManySplits(), five_ctas}) {
    RaggedDecodeAttentionOptions o = hp.options(Platform::kCuda);
    o.kernel_config = config;
    std::vector<HostResult> results;
    for (int run = 0; run < 3; ++run) {
      absl::StatusOr<DeviceProblem> d = Upload(hp, o, nullptr);
      RAGGED_ASSERT_OK(d);
      ASSERT_EQ(cudaMemset(d->ws.data(), run * 0x3C, d->ws.nbytes()), cudaSuccess);
      RAGGED_ASSERT_OK(RaggedDecodeAttention(d->args, o, nullptr));
      absl::StatusOr<HostResult> r = Download(*d, nullptr);
      RAGGED_ASSERT_OK(r);
      results.push_back(std::move(*r));
    }
    for (int run = 1; run < 3; ++run) {
      EXPECT_EQ(
          std::memcmp(results[0].out.data(), results[run].out.data(), results[0].out.nbytes()), 0)
          << "output differs between run 0 and run " << run << " with " << config.ToString();
      EXPECT_EQ(
          std::memcmp(results[0].lse.data(), results[run].lse.data(), results[0].lse.nbytes()), 0)
          << "lse differs between run 0 and run " << run << " with " << config.ToString();
    }
  }
}

// Many (row, query head) pairs of few pieces: the warp-per-head combine without its prefetch
// (4 x 3,072 warps do not fit an H100 at once with it), with empty and one-position rows.
TEST_P(CudaDecodeStreamTest, WarpCombineOfAManyHeadBatch) {
  RAGGED_SKIP_WITHOUT_GPU();
  TestCase c;
  c.dtype = GetParam();
  c.batch = 48;
  c.capacity = 300;
  c.num_q_heads = 64;
  c.num_kv_heads = 1;
  c.head_dim = 128;
  c.sinks = Sinks::kPerQueryHead;
  c.seed = 15;
  EdgeAndRaggedLengths(c, c.seed);
  HostProblem hp = MakeHostProblem(c);
  RaggedDecodeAttentionOptions o = hp.options(Platform::kCuda);
  KernelConfig config;
  config.chunk_size = 1;
  o.kernel_config = config;
  EXPECT_TRUE(RunOnGpuAndCompare(hp, o));
}

TEST_P(CudaDecodeStreamTest, OutOfRangeStartEndAreClampedOnTheDevice) {
  RAGGED_SKIP_WITHOUT_GPU();
  TestCase c;
  c.dtype = GetParam();
  c.batch = 5;
  c.capacity = 200;
  c.num_q_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = 64;
  c.seed = 14;
  // Negative start, end past S, end before start (empty), both past S (empty), both negative.
  c.start = {-50, 10, 150, 500, -9};
  c.end = {120, 900, 100, 600, -1};
  HostProblem hp = MakeHostProblem(c);
  RaggedDecodeAttentionOptions o = hp.options(Platform::kCuda);
  absl::StatusOr<ReferenceResult> ref = ClampedReference(hp, o);
  RAGGED_ASSERT_OK(ref);
  // The clamped reference: row 0 is [0, 120), row 1 [10, 200), rows 2-4 empty.
  EXPECT_EQ(ref->lse[2 * c.num_q_heads], -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(RunOnGpuAndCompare(hp, o));
}

TEST_P(CudaDecodeStreamTest, ValidateRangesNamesTheBadRow) {
  RAGGED_SKIP_WITHOUT_GPU();
  TestCase c;
  c.dtype = GetParam();
  c.batch = 3;
  c.capacity = 64;
  c.start = {0, 5, 0};
  c.end = {64, 70, 3};
  HostProblem hp = MakeHostProblem(c);
  RaggedDecodeAttentionOptions o = hp.options(Platform::kCuda);
  o.validate_ranges = true;
  absl::StatusOr<DeviceProblem> d = Upload(hp, o, nullptr);
  RAGGED_ASSERT_OK(d);
  const absl::Status s = RaggedDecodeAttention(d->args, o, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("row 1"), absl::string_view::npos) << s;
}

INSTANTIATE_TEST_SUITE_P(DTypes, CudaDecodeStreamTest,
                         ::testing::Values(DType::kF32, DType::kF16, DType::kBF16),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return DTypeTag(info.param);
                         });

// ---------------------------------------------------------------------------------------------
// Errors.

class CudaDecodeErrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RAGGED_SKIP_WITHOUT_GPU();
    TestCase c;
    c.dtype = DType::kBF16;
    c.head_dim = 64;
    hp_ = MakeHostProblem(c);
    opts_ = hp_.options(Platform::kCuda);
    absl::StatusOr<DeviceProblem> d = Upload(hp_, opts_, nullptr);
    ASSERT_TRUE(d.ok()) << d.status();
    d_ = std::move(*d);
  }
  HostProblem hp_;
  RaggedDecodeAttentionOptions opts_;
  DeviceProblem d_;
};

TEST_F(CudaDecodeErrorTest, UninstantiatedHeadDim) {
  TestCase c;
  c.dtype = DType::kBF16;
  c.head_dim = 72;
  HostProblem hp = MakeHostProblem(c);
  RaggedDecodeAttentionOptions o = hp.options(Platform::kCuda);
  absl::StatusOr<DeviceProblem> d = Upload(hp, o, nullptr);
  RAGGED_ASSERT_OK(d);
  const absl::Status s = RaggedDecodeAttention(d->args, o, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("head_dim"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("72"), absl::string_view::npos) << s;
}

TEST_F(CudaDecodeErrorTest, MisalignedKeyStride) {
  // A seq stride of HKV * D + 4 bf16 elements (8 bytes) breaks 16-byte vector loads.
  const int64_t B = hp_.c.batch, S = hp_.c.capacity, HKV = hp_.c.num_kv_heads, D = hp_.c.head_dim;
  absl::StatusOr<DeviceBuffer> big = DeviceBuffer::Allocate(DType::kBF16, {B, S, HKV * D + 4}, 0);
  RAGGED_ASSERT_OK(big);
  const int64_t shape[] = {B, S, HKV, D};
  const int64_t strides[] = {S * (HKV * D + 4), HKV * D + 4, D, 1};
  d_.args.key = TensorView(big->data(), DType::kBF16, shape, strides, Device::Cuda(0));
  const absl::Status s = RaggedDecodeAttention(d_.args, opts_, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("key"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("16-byte"), absl::string_view::npos) << s;
}

TEST_F(CudaDecodeErrorTest, WorkspaceTooSmall) {
  d_.args.workspace_bytes = 16;
  const absl::Status s = RaggedDecodeAttention(d_.args, opts_, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("workspace"), absl::string_view::npos) << s;
}

TEST_F(CudaDecodeErrorTest, MissingWorkspace) {
  d_.args.workspace = nullptr;
  const absl::Status s = RaggedDecodeAttention(d_.args, opts_, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("null"), absl::string_view::npos) << s;
}

TEST_F(CudaDecodeErrorTest, BadKernelConfig) {
  KernelConfig k;
  k.heads_per_block = 24;
  opts_.kernel_config = k;
  const absl::Status s = RaggedDecodeAttention(d_.args, opts_, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("heads_per_block"), absl::string_view::npos) << s;
}

TEST_F(CudaDecodeErrorTest, ConfigTooLargeForSharedMemory) {
  opts_.kernel_config = Cfg(64, 256, 8, 5);
  const absl::Status s = RaggedDecodeAttention(d_.args, opts_, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("kernel_config"), absl::string_view::npos) << s;
}

TEST_F(CudaDecodeErrorTest, DeviceThatIsNotThere) {
  const int count = CudaDeviceCount();
  auto on_missing = [&](TensorView t) {
    return TensorView(t.data(), t.dtype(), t.shape(), t.strides(), Device::Cuda(count));
  };
  RaggedDecodeAttentionArgs a = d_.args;
  a.query = on_missing(a.query);
  a.key = on_missing(a.key);
  a.value = on_missing(a.value);
  a.sequence_start = on_missing(a.sequence_start);
  a.sequence_end = on_missing(a.sequence_end);
  a.output = on_missing(a.output);
  a.lse = on_missing(*a.lse);
  const absl::Status s = RaggedDecodeAttention(a, opts_, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find(absl::StrCat("cuda:", count)), absl::string_view::npos) << s;
}

TEST_F(CudaDecodeErrorTest, BadAutotunePolicy) {
  setenv("RAGGED_AUTOTUNE", "sometimes", 1);
  const absl::Status s = RaggedDecodeAttention(d_.args, opts_, nullptr);
  unsetenv("RAGGED_AUTOTUNE");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("sometimes"), absl::string_view::npos) << s;
}

// ---------------------------------------------------------------------------------------------
// The wgmma variant: on a compute capability 9.0 device with an sm_90a build, the heuristic's
// config for an MQA-sized group takes it (so the G64 feature tests and the D128 G64/G128 shape
// tests above run it); the same problem with RAGGED_WGMMA=0 (mma.sync) gives nearly the same
// output.

DeviceInfo ThisDevice() {
  absl::StatusOr<DeviceInfo> d = internal::CudaDeviceInfo(0);
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? *d : DeviceInfo{};
}

TEST(CudaWgmmaTest, MqaHeuristicConfigTakesTheWgmmaVariantOnHopper) {
  RAGGED_SKIP_WITHOUT_GPU();
  const DeviceInfo dev = ThisDevice();
  if (dev.cc_major != 9 || dev.cc_minor != 0) GTEST_SKIP() << "needs compute capability 9.0";
  ASSERT_TRUE(internal::WgmmaCompiled())
      << "this build has no sm_90a code (CMAKE_CUDA_ARCHITECTURES)";
  if (!dev.wgmma) GTEST_SKIP() << "RAGGED_WGMMA=0";
  ShapeSignature sig;
  sig.dtype = DType::kBF16;
  sig.batch = 64;
  sig.capacity = 8192;
  sig.num_q_heads = 64;
  sig.num_kv_heads = 1;
  sig.head_dim = 128;
  absl::StatusOr<KernelConfig> h = HeuristicKernelConfig(sig, dev);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_TRUE(WgmmaEligible(*h, sig, dev)) << h->ToString();
}

// Output of `hp` under `o` on the GPU, as floats.
std::vector<float> GpuOutput(const HostProblem& hp, const RaggedDecodeAttentionOptions& o) {
  absl::StatusOr<DeviceProblem> d = Upload(hp, o, nullptr);
  EXPECT_TRUE(d.ok()) << d.status();
  if (!d.ok()) return {};
  const absl::Status s = RaggedDecodeAttention(d->args, o, nullptr);
  EXPECT_TRUE(s.ok()) << s;
  absl::StatusOr<HostResult> r = Download(*d, nullptr);
  EXPECT_TRUE(r.ok()) << r.status();
  if (!s.ok() || !r.ok()) return {};
  std::vector<float> v(r->out.view().num_elements());
  for (size_t i = 0; i < v.size(); ++i) {
    v[i] = LoadAsFloat(r->out.data(), r->out.dtype(), static_cast<int64_t>(i));
  }
  return v;
}

TEST(CudaWgmmaTest, WgmmaAndMmaSyncAgree) {
  RAGGED_SKIP_WITHOUT_GPU();
  for (DType t : {DType::kBF16, DType::kF16}) {
    TestCase c;
    c.dtype = t;
    c.batch = 4;
    c.capacity = 700;
    c.num_q_heads = 64;
    c.num_kv_heads = 1;
    c.head_dim = 128;
    c.seed = 91;
    EdgeAndRaggedLengths(c, c.seed);
    HostProblem hp = MakeHostProblem(c);
    RaggedDecodeAttentionOptions o = hp.options(Platform::kCuda);
    o.kernel_config = ManySplits();
    // Each path against the reference, then against each other (same inputs, both in f32
    // accumulation: they differ by rounding only). RAGGED_WGMMA is read once per process, so
    // the mma.sync run comes from the config: 8 warps (nsplit 2) is not wgmma-eligible.
    EXPECT_TRUE(RunOnGpuAndCompare(hp, o)) << DTypeName(t);
    const std::vector<float> wg = GpuOutput(hp, o);
    RaggedDecodeAttentionOptions o2 = o;
    o2.kernel_config->heads_per_block = 64;
    o2.kernel_config->num_warps = 8;
    o2.kernel_config->block_n = 64;
    EXPECT_TRUE(RunOnGpuAndCompare(hp, o2)) << DTypeName(t);
    const std::vector<float> ms = GpuOutput(hp, o2);
    ASSERT_EQ(wg.size(), ms.size());
    ASSERT_FALSE(wg.empty());
    double worst = 0;
    for (size_t i = 0; i < wg.size(); ++i) {
      worst = std::max(worst, std::abs(static_cast<double>(wg[i]) - ms[i]));
    }
    EXPECT_LT(worst, 2e-2) << DTypeName(t);
  }
}

// ---------------------------------------------------------------------------------------------
// The autotune policy on a GPU: a tuned config is cached and used, and the result is right.

TEST(CudaAutotuneTest, AutotunePolicyTimesCachesAndComputes) {
  RAGGED_SKIP_WITHOUT_GPU();
  ASSERT_TRUE(kCacheDirSet);
  TestCase c;
  c.dtype = DType::kBF16;
  c.batch = 3;
  c.capacity = 900;
  c.num_q_heads = 16;
  c.num_kv_heads = 2;
  c.head_dim = 128;
  c.seed = 15;
  EdgeAndRaggedLengths(c, c.seed);
  HostProblem hp = MakeHostProblem(c);
  RaggedDecodeAttentionOptions o = hp.options(Platform::kCuda);
  setenv("RAGGED_AUTOTUNE", "autotune", 1);
  const bool ok = RunOnGpuAndCompare(hp, o);
  unsetenv("RAGGED_AUTOTUNE");
  EXPECT_TRUE(ok);
  const DeviceInfo dev = ThisDevice();
  ShapeSignature sig;
  sig.dtype = c.dtype;
  sig.batch = c.batch;
  sig.capacity = c.capacity;
  sig.num_q_heads = c.num_q_heads;
  sig.num_kv_heads = c.num_kv_heads;
  sig.head_dim = c.head_dim;
  std::optional<KernelConfig> hit = AutotuneCache::Global().Lookup(CacheKey(sig, dev));
  ASSERT_TRUE(hit.has_value());
  const std::vector<KernelConfig> candidates = CandidateKernelConfigs(sig, dev);
  EXPECT_NE(std::find(candidates.begin(), candidates.end(), *hit), candidates.end())
      << hit->ToString();
  // Persisted under RAGGED_CACHE_DIR.
  EXPECT_EQ(AutotuneCache::Global().file(),
            std::string(std::getenv("RAGGED_CACHE_DIR")) + "/autotune.json");
  AutotuneCache reread(AutotuneCache::Global().file());
  EXPECT_EQ(reread.Lookup(CacheKey(sig, dev)), hit);
}

}  // namespace
}  // namespace ragged
