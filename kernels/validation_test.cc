// Every bad input to the public API returns InvalidArgument (or FailedPrecondition) whose message
// names the argument and the values, before any work: one parameterized case per error.
#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "gtest/gtest.h"
#include "kernels/ragged_decode_attention.h"
#include "kernels/test_util.h"

namespace ragged {
namespace {

using testing::HostProblem;
using testing::MakeHostProblem;
using testing::Sinks;
using testing::TestCase;

// Storage that outlives a mutation (for replacement tensors).
struct Scratch {
  HostBuffer a, b;
};

struct BadInput {
  std::string name;
  // Mutates valid args/options into the bad input.
  std::function<void(RaggedDecodeAttentionArgs&, RaggedDecodeAttentionOptions&, Scratch&)> mutate;
  absl::StatusCode code;
  std::vector<std::string> message_parts;  // each must appear in the message
};

class ValidationTest : public ::testing::TestWithParam<BadInput> {};

TEST_P(ValidationTest, ReturnsClearError) {
  TestCase c;
  c.batch = 3;
  c.capacity = 16;
  c.num_q_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.dtype = DType::kBF16;
  c.sinks = Sinks::kPerKvHead;
  HostProblem p = MakeHostProblem(c);
  RaggedDecodeAttentionArgs args = p.args();
  RaggedDecodeAttentionOptions options = p.options(Platform::kCpu);
  ASSERT_TRUE(RaggedDecodeAttention(args, options).ok()) << "the unmutated input must be valid";
  Scratch scratch;
  GetParam().mutate(args, options, scratch);
  for (Platform platform : {Platform::kCpu, Platform::kReference}) {
    options.platform = platform;
    absl::Status s = RaggedDecodeAttention(args, options);
    EXPECT_EQ(s.code(), GetParam().code) << s;
    for (const std::string& part : GetParam().message_parts) {
      EXPECT_NE(s.message().find(part), absl::string_view::npos)
          << "message \"" << s.message() << "\" lacks \"" << part << "\"";
    }
  }
}

// Replaces `t` by a fresh tensor of `dtype` and `shape` held in `hold`.
void Replace(TensorView& t, HostBuffer& hold, DType dtype, std::vector<int64_t> shape) {
  hold = HostBuffer::Allocate(dtype, shape);
  t = hold.view();
}

constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;
using Args = RaggedDecodeAttentionArgs;
using Opts = RaggedDecodeAttentionOptions;

const BadInput kBadInputs[] = {
    {"QueryRank",
     [](Args& a, Opts&, Scratch& s) {
       Replace(a.query, s.a, DType::kBF16, {3, 32});
     },
     kInvalid,
     {"query", "rank 3 or 4", "got rank 2", "[3, 32]"}},
    {"QueryDtype",
     [](Args& a, Opts&, Scratch& s) {
       Replace(a.query, s.a, DType::kI32, {3, 4, 8});
     },
     kInvalid,
     {"query", "f32, f16 or bf16", "i32"}},
    {"QueryTokensZero",
     [](Args& a, Opts&, Scratch& s) {
       Replace(a.query, s.a, DType::kBF16, {3, 0, 4, 8});
     },
     kInvalid,
     {"query", "at least one token"}},
    {"KeyDtype",
     [](Args& a, Opts&, Scratch& s) {
       Replace(a.key, s.a, DType::kF16, {3, 16, 2, 8});
     },
     kInvalid,
     {"key", "bf16", "f16"}},
    {"KeyRank",
     [](Args& a, Opts&, Scratch& s) {
       Replace(a.key, s.a, DType::kBF16, {3, 16, 16});
     },
     kInvalid,
     {"key", "rank 4", "got rank 3"}},
    {"KeyBatch",
     [](Args& a, Opts&, Scratch& s) {
       Replace(a.key, s.a, DType::kBF16, {2, 16, 2, 8});
     },
     kInvalid,
     {"key", "batch", "to be 3", "got 2"}},
    {"KeyHeadDim",
     [](Args& a, Opts&, Scratch& s) {
       Replace(a.key, s.a, DType::kBF16, {3, 16, 2, 16});
     },
     kInvalid,
     {"key", "head_dim", "to be 8", "got 16"}},
    {"ValueSeq",
     [](Args& a, Opts&, Scratch& s) {
       Replace(a.value, s.a, DType::kBF16, {3, 15, 2, 8});
     },
     kInvalid,
     {"value", "seq", "to be 16", "got 15"}},
    {"ValueHeads",
     [](Args& a, Opts&, Scratch& s) {
       Replace(a.value, s.a, DType::kBF16, {3, 16, 1, 8});
     },
     kInvalid,
     {"value", "num_kv_heads", "to be 2", "got 1"}},
    {"HeadsNotDivisible",
     [](Args& a, Opts&, Scratch& s) {
       Replace(a.key, s.a, DType::kBF16, {3, 16, 3, 8});
       Replace(a.value, s.b, DType::kBF16, {3, 16, 3, 8});
     },
     kInvalid,
     {"num_q_heads (4)", "multiple of num_kv_heads (3)"}},
    {"StartDtype",
     [](Args& a, Opts&, Scratch& s) { Replace(a.sequence_start, s.a, DType::kF32, {3}); },
     kInvalid,
     {"sequence_start", "i32", "f32"}},
    {"EndShape",
     [](Args& a, Opts&, Scratch& s) { Replace(a.sequence_end, s.a, DType::kI32, {4}); },
     kInvalid,
     {"sequence_end", "to be 3", "got 4"}},
    {"OutputHeads",
     [](Args& a, Opts&, Scratch& s) {
       Replace(a.output, s.a, DType::kBF16, {3, 2, 8});
     },
     kInvalid,
     {"output", "num_q_heads", "to be 4", "got 2"}},
    {"OutputDtype",
     [](Args& a, Opts&, Scratch& s) {
       Replace(a.output, s.a, DType::kF16, {3, 4, 8});
     },
     kInvalid,
     {"output", "bf16", "or f32", "got f16"}},
    {"Output4dTokens",
     [](Args& a, Opts&, Scratch& s) {
       Replace(a.output, s.a, DType::kBF16, {3, 2, 4, 8});
     },
     kInvalid,
     {"output", "[batch, 1, num_q_heads, head_dim]"}},
    {"LseDtype",
     [](Args& a, Opts&, Scratch& s) {
       s.a = HostBuffer::Allocate(DType::kBF16, {3, 4});
       a.lse = s.a.view();
     },
     kInvalid,
     {"lse", "f32", "bf16"}},
    {"LseShape",
     [](Args& a, Opts&, Scratch& s) {
       s.a = HostBuffer::Allocate(DType::kF32, {3, 2});
       a.lse = s.a.view();
     },
     kInvalid,
     {"lse", "num_q_heads", "to be 4", "got 2"}},
    {"AuxRows",
     [](Args& a, Opts&, Scratch& s) {
       s.a = HostBuffer::Allocate(DType::kF32, {3, 1});
       a.softmax_aux = s.a.view();
     },
     kInvalid,
     {"softmax_aux", "num_kv_heads (2)", "num_q_heads (4)", "got 3"}},
    {"AuxRank",
     [](Args& a, Opts&, Scratch& s) {
       s.a = HostBuffer::Allocate(DType::kF32, {2, 1, 1});
       a.softmax_aux = s.a.view();
     },
     kInvalid,
     {"softmax_aux", "rank 1 or 2", "got rank 3"}},
    {"AuxDtype",
     [](Args& a, Opts&, Scratch& s) {
       s.a = HostBuffer::Allocate(DType::kF16, {2, 1});
       a.softmax_aux = s.a.view();
     },
     kInvalid,
     {"softmax_aux", "f32 or bf16", "got f16"}},
    {"AuxNoSinks",
     [](Args& a, Opts&, Scratch& s) {
       s.a = HostBuffer::Allocate(DType::kF32, {2, 0});
       a.softmax_aux = s.a.view();
     },
     kInvalid,
     {"softmax_aux", "at least one sink"}},
    {"ScaleZero",
     [](Args&, Opts& o, Scratch&) { o.softmax_scale = 0.0f; },
     kInvalid,
     {"softmax_scale", "finite value > 0", "got 0"}},
    {"ScaleNegative",
     [](Args&, Opts& o, Scratch&) { o.softmax_scale = -1.0f; },
     kInvalid,
     {"softmax_scale", "got -1"}},
    {"ScaleNaN",
     [](Args&, Opts& o, Scratch&) { o.softmax_scale = std::numeric_limits<float>::quiet_NaN(); },
     kInvalid,
     {"softmax_scale", "got nan"}},
    {"ScaleInf",
     [](Args&, Opts& o, Scratch&) { o.softmax_scale = std::numeric_limits<float>::infinity(); },
     kInvalid,
     {"softmax_scale", "got inf"}},
    {"CapZero",
     [](Args&, Opts& o, Scratch&) { o.logits_soft_cap = 0.0f; },
     kInvalid,
     {"logits_soft_cap", "finite value > 0", "got 0"}},
    {"CapNegative",
     [](Args&, Opts& o, Scratch&) { o.logits_soft_cap = -30.0f; },
     kInvalid,
     {"logits_soft_cap", "got -30"}},
    {"CapInf",
     [](Args&, Opts& o, Scratch&) { o.logits_soft_cap = std::numeric_limits<float>::infinity(); },
     kInvalid,
     {"logits_soft_cap", "got inf"}},
    {"WindowBothUnbounded",
     [](Args&, Opts& o, Scratch&) {
       o.sliding_window = SlidingWindow{-1, -5};
     },
     kInvalid,
     {"sliding_window", "left -1", "right -5"}},
    {"StartAfterEnd",
     [](Args& a, Opts&, Scratch&) {
       a.sequence_start.data_as<int32_t>()[1] = 9;
       a.sequence_end.data_as<int32_t>()[1] = 4;
     },
     kInvalid,
     {"row 1", "[9, 4)", "<= 16"}},
    {"EndPastCapacity",
     [](Args& a, Opts&, Scratch&) { a.sequence_end.data_as<int32_t>()[2] = 17; },
     kInvalid,
     {"row 2", "[0, 17)", "<= 16"}},
    {"StartNegative",
     [](Args& a, Opts&, Scratch&) { a.sequence_start.data_as<int32_t>()[0] = -1; },
     kInvalid,
     {"row 0", "[-1, 16)"}},
    {"InnerStride",
     [](Args& a, Opts&, Scratch&) {
       a.key = TensorView(a.key.data(), a.key.dtype(), a.key.shape(), {256, 16, 8, 2});
     },
     kInvalid,
     {"key", "innermost stride 1", "got 2"}},
    {"NegativeStride",
     [](Args& a, Opts&, Scratch&) {
       a.value = TensorView(a.value.data(), a.value.dtype(), a.value.shape(), {256, -16, 8, 1});
     },
     kInvalid,
     {"value", "stride 1 is negative"}},
    {"NullData",
     [](Args& a, Opts&, Scratch&) {
       a.query = TensorView(nullptr, a.query.dtype(), a.query.shape());
     },
     kInvalid,
     {"query", "null"}},
    {"KvOffsetNegative",
     [](Args&, Opts& o, Scratch&) { o.kv_offset = -3; },
     kInvalid,
     {"kv_offset", "got -3"}},
    {"KvOffsetOverflowsWithSeq",
     [](Args&, Opts& o, Scratch&) { o.kv_offset = std::numeric_limits<int64_t>::max() - 2; },
     kInvalid,
     {"kv_offset", "too large"}},
    {"NullTensorWithHugeDims",
     [](Args& a, Opts&, Scratch&) {
       // Explicit strides: contiguous ones for these dims would overflow int64.
       const int64_t shape[] = {int64_t{1} << 40, int64_t{1} << 40, int64_t{1} << 40, 128};
       const int64_t strides[] = {0, 0, 0, 1};
       a.key = TensorView(nullptr, a.key.dtype(), shape, strides);
     },
     kInvalid,
     {"key", "null"}},
    {"OutputOverlapsItself",
     [](Args& a, Opts&, Scratch&) {
       // Heads 0 and 1 of a row share memory: stride 0 on the head axis.
       const int64_t strides[] = {a.output.stride(0), 0, 1};
       a.output = TensorView(a.output.data(), a.output.dtype(), a.output.shape(), strides);
     },
     kInvalid,
     {"output", "share memory", "must not overlap"}},
    {"OutputRowsInterleaveWithHeads",
     [](Args& a, Opts&, Scratch&) {
       // Row stride smaller than the head axis' span: rows overlap the next rows' heads.
       const int64_t strides[] = {a.output.stride(1), a.output.stride(1), 1};
       a.output = TensorView(a.output.data(), a.output.dtype(), a.output.shape(), strides);
     },
     kInvalid,
     {"output", "share memory"}},
    {"LseOverlapsItself",
     [](Args& a, Opts&, Scratch&) {
       const int64_t strides[] = {0, 1};
       a.lse = TensorView(a.lse->data(), a.lse->dtype(), a.lse->shape(), strides);
     },
     kInvalid,
     {"lse", "share memory"}},
    {"TotalCapacityTooSmall",
     [](Args&, Opts& o, Scratch&) {
       o.kv_offset = 8;
       o.kv_total_capacity = 20;
     },
     kInvalid,
     {"kv_total_capacity", "at least kv_offset + seq (24)", "got 20"}},
    {"NumThreadsNegative",
     [](Args&, Opts& o, Scratch&) { o.num_threads = -2; },
     kInvalid,
     {"num_threads", "got -2"}},
    {"KeyOnAnotherDevice",
     [](Args& a, Opts&, Scratch&) {
       a.key = TensorView(a.key.data(), a.key.dtype(), a.key.shape(), Device::Cuda(0));
     },
     kInvalid,
     {"key", "on cpu", "cuda:0"}},
};

INSTANTIATE_TEST_SUITE_P(BadInputs, ValidationTest, ::testing::ValuesIn(kBadInputs),
                         [](const auto& info) { return info.param.name; });

TEST(PlatformValidationTest, CudaPlatformNeedsCudaTensors) {
  HostProblem p = MakeHostProblem(TestCase{});
  RaggedDecodeAttentionOptions o = p.options(Platform::kCuda);
  absl::Status s = RaggedDecodeAttention(p.args(), o);
  if (BuiltWithCuda()) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("CUDA device"), absl::string_view::npos) << s;
  } else {
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_NE(s.message().find("no CUDA"), absl::string_view::npos) << s;
  }
}

TEST(PlatformValidationTest, ParsePlatform) {
  EXPECT_EQ(*ParsePlatform("cpu"), Platform::kCpu);
  EXPECT_EQ(*ParsePlatform("auto"), Platform::kAuto);
  EXPECT_EQ(*ParsePlatform("cuda"), Platform::kCuda);
  auto bad = ParsePlatform("tpu");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("tpu"), absl::string_view::npos);
}

TEST(PlatformValidationTest, WorkspaceIsZeroOnTheCpu) {
  HostProblem p = MakeHostProblem(TestCase{});
  auto n = RaggedDecodeAttentionWorkspaceSize(p.args(), p.options(Platform::kCpu));
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0);
}

}  // namespace
}  // namespace ragged
