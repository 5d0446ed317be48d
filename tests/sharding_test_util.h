// Helpers shared by the sharded-op tests (sharding_mpi_test, sharding_gpu_test,
// sharding_threads_test, reliability_fault_test): mesh shapes, a rank's host shards of a global
// problem cut by the op's boxes, and the reference restricted to a rank's output box.
#ifndef RAGGED_TESTS_SHARDING_TEST_UTIL_H_
#define RAGGED_TESTS_SHARDING_TEST_UTIL_H_

#include <cstdint>
#include <ostream>
#include <string>

#include "kernels/reference.h"
#include "kernels/test_util.h"
#include "runtime/buffer.h"
#include "sharding/sharded_attention.h"

namespace ragged::testing {

// A dp x sp x tp mesh ("dp=2,sp=1,tp=4" as text, "dp2sp1tp4" as a test name).
struct MeshShape {
  int dp = 1, sp = 1, tp = 1;
  int size() const { return dp * sp * tp; }
  std::string Text() const;
  std::string Name() const;
};
void PrintTo(const MeshShape& m, std::ostream* os);

// The sharded op's sink layout for a test case's sinks.
SinkLayout LayoutOf(Sinks s);

// The attention arguments over one rank's buffers (host or device: anything with view() and
// data()); a null aux or lse buffer means the problem has none.
template <typename Buffer>
RaggedDecodeAttentionArgs ArgsOfBuffers(const Buffer& query, const Buffer& key, const Buffer& value,
                                        const Buffer& start, const Buffer& end, const Buffer& aux,
                                        const Buffer& output, const Buffer& lse) {
  RaggedDecodeAttentionArgs a;
  a.query = query.view();
  a.key = key.view();
  a.value = value.view();
  a.sequence_start = start.view();
  a.sequence_end = end.view();
  if (aux.data() != nullptr) a.softmax_aux = aux.view();
  a.output = output.view();
  if (lse.data() != nullptr) a.lse = lse.view();
  return a;
}

// This rank's shards of a global host problem, cut by the op's boxes, with a NaN-poisoned output
// (and lse, when the problem has one).
struct LocalProblem {
  HostBuffer query, key, value, start, end, aux, output, lse;
  RaggedDecodeAttentionArgs args() const;
};

// The shard of `global` that the op assigns this rank for tensor `t` (a failed extraction fails
// the current test).
HostBuffer CutShard(const ShardedAttention& op, ShardedTensor t, const TensorView& global);

LocalProblem CutProblem(const ShardedAttention& op, const HostProblem& p);

// The reference restricted to a box of the output ([B, HQ, D]); lse to the same rows and heads.
ReferenceResult RefBox(const ReferenceResult& ref, const ShardBox& box, int64_t hq, int64_t d);

}  // namespace ragged::testing

#endif  // RAGGED_TESTS_SHARDING_TEST_UTIL_H_
