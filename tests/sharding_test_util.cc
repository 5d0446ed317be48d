#include "tests/sharding_test_util.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "sharding/scatter.h"

namespace ragged::testing {

std::string MeshShape::Text() const { return absl::StrCat("dp=", dp, ",sp=", sp, ",tp=", tp); }
std::string MeshShape::Name() const { return absl::StrCat("dp", dp, "sp", sp, "tp", tp); }
void PrintTo(const MeshShape& m, std::ostream* os) { *os << m.Text(); }

SinkLayout LayoutOf(Sinks s) {
  switch (s) {
    case Sinks::kNone:
      return SinkLayout::kNone;
    case Sinks::kShared:
      return SinkLayout::kShared;
    case Sinks::kPerKvHead:
      return SinkLayout::kPerKvHead;
    case Sinks::kPerQueryHead:
      return SinkLayout::kPerQueryHead;
  }
  return SinkLayout::kNone;
}

RaggedDecodeAttentionArgs LocalProblem::args() const {
  return ArgsOfBuffers(query, key, value, start, end, aux, output, lse);
}

HostBuffer CutShard(const ShardedAttention& op, ShardedTensor t, const TensorView& global) {
  HostBuffer b = HostBuffer::Allocate(global.dtype(), op.LocalShape(t));
  absl::Status s = ExtractShard(global, op.Box(t), b.view());
  EXPECT_TRUE(s.ok()) << ShardedTensorName(t) << ": " << s;
  return b;
}

LocalProblem CutProblem(const ShardedAttention& op, const HostProblem& p) {
  LocalProblem l;
  l.query = CutShard(op, ShardedTensor::kQuery, p.query.view());
  l.key = CutShard(op, ShardedTensor::kKey, p.key.view());
  l.value = CutShard(op, ShardedTensor::kValue, p.value.view());
  l.start = CutShard(op, ShardedTensor::kSequenceStart, p.start.view());
  l.end = CutShard(op, ShardedTensor::kSequenceEnd, p.end.view());
  if (p.c.sinks != Sinks::kNone) l.aux = CutShard(op, ShardedTensor::kSoftmaxAux, p.aux.view());
  l.output = HostBuffer::Allocate(p.c.output_dtype, op.LocalShape(ShardedTensor::kOutput));
  PoisonWithNaN(l.output);
  if (p.c.with_lse) {
    l.lse = HostBuffer::Allocate(DType::kF32, op.LocalShape(ShardedTensor::kLse));
    PoisonWithNaN(l.lse);
  }
  return l;
}

ReferenceResult RefBox(const ReferenceResult& ref, const ShardBox& box, int64_t hq, int64_t d) {
  ReferenceResult r;
  for (int64_t b = 0; b < box.shape[0]; ++b) {
    for (int64_t h = 0; h < box.shape[1]; ++h) {
      const int64_t gb = b + box.offset[0], gh = h + box.offset[1];
      for (int64_t x = 0; x < d; ++x) r.output.push_back(ref.output[(gb * hq + gh) * d + x]);
      r.lse.push_back(ref.lse[gb * hq + gh]);
    }
  }
  return r;
}

}  // namespace ragged::testing
