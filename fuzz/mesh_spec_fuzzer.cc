// Fuzz target: the Mesh and PartitionSpec parsers, NamedSharding and the sharding plan
// (sharding/mesh.h, sharding/partition_spec.h, sharding/shard_plan.h).
//
// Input: 12 bytes of shape choices, then text lines: the mesh ("dp=2,tp=2"), then up to seven
// PartitionSpecs (query, key, value, sequence_start, sequence_end, softmax_aux, output). Missing
// lines are empty (the one-rank mesh, replicated specs).
//
// What must hold, or the target aborts:
// - The parsers return OK or InvalidArgument with a message; never a crash or a sanitizer report.
// - A parsed mesh has size() = the product of its axis sizes, prints as text that parses back to
//   the same mesh, and maps ranks to coordinates and back.
// - A parsed spec prints as text that parses back to an equal spec.
// - For a mesh and a spec that NamedSharding accepts, and a shape that CheckShape accepts: every
//   rank's box lies inside the tensor, has LocalShape's shape, starts at a multiple of it, and the
//   boxes of all ranks cover every element exactly (number of shards x replication).
// - A plan that PlanShardedAttention accepts has local sizes that multiply back to the global
//   ones, and every rank's box of every tensor lies inside that tensor.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "fuzz/fuzz_input.h"
#include "sharding/mesh.h"
#include "sharding/partition_spec.h"
#include "sharding/shard_plan.h"

namespace ragged::fuzz {
namespace {

// Ranks whose boxes are checked one by one (all of them up to this many).
constexpr int kMaxRanksChecked = 256;

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "mesh_spec_fuzzer: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

void CheckError(const absl::Status& s, const std::string& what) {
  if (s.ok()) return;
  if (s.code() != absl::StatusCode::kInvalidArgument || s.message().empty()) {
    Fail(what + ": expected OK or InvalidArgument with a message, got " + s.ToString());
  }
}

void CheckMesh(const Mesh& mesh) {
  int64_t product = 1;
  for (const MeshAxis& a : mesh.axes()) product *= a.size;
  if (product != mesh.size() || mesh.size() < 1) {
    Fail("mesh " + mesh.ToString() + ": size " + std::to_string(mesh.size()) + ", product " +
         std::to_string(product));
  }
  auto again = Mesh::Parse(mesh.ToString());
  if (!again.ok() || !(*again == mesh)) {
    Fail("mesh " + mesh.ToString() + " does not parse back: " + again.status().ToString());
  }
  for (int r : {0, mesh.size() / 2, mesh.size() - 1}) {
    const std::vector<int> c = mesh.Coordinates(r);
    if (static_cast<int>(c.size()) != mesh.num_axes() || mesh.RankAt(c) != r) {
      Fail("mesh " + mesh.ToString() + ": rank " + std::to_string(r) + " does not round-trip");
    }
  }
}

void CheckSpec(const PartitionSpec& spec) {
  auto again = PartitionSpec::Parse(spec.ToString());
  if (!again.ok() || *again != spec) {
    Fail("spec " + spec.ToString() + " does not parse back: " + again.status().ToString());
  }
}

std::vector<int> RanksToCheck(int size) {
  std::vector<int> ranks;
  if (size <= kMaxRanksChecked) {
    for (int r = 0; r < size; ++r) ranks.push_back(r);
  } else {
    for (int r : {0, 1, size / 3, size / 2, size - 2, size - 1}) ranks.push_back(r);
  }
  return ranks;
}

void CheckSharding(const NamedSharding& sharding, const Shape& shape) {
  absl::Status s = sharding.CheckShape(shape, "fuzzed");
  CheckError(s, "CheckShape");
  if (!s.ok()) return;
  auto local = sharding.LocalShape(shape, "fuzzed");
  if (!local.ok()) Fail("LocalShape after CheckShape: " + local.status().ToString());
  if (local->size() != shape.size()) Fail("LocalShape has the wrong rank");
  const Mesh& mesh = sharding.mesh();
  int64_t local_elements = 1, global_elements = 1;
  for (size_t d = 0; d < shape.size(); ++d) {
    const int64_t n = sharding.NumShards(static_cast<int>(d));
    if ((*local)[d] * n != shape[d]) {
      Fail("dimension " + std::to_string(d) + ": " + std::to_string(n) + " shards of " +
           std::to_string((*local)[d]) + " for a size of " + std::to_string(shape[d]));
    }
    local_elements *= (*local)[d];
    global_elements *= shape[d];
  }
  const std::vector<int> ranks = RanksToCheck(mesh.size());
  for (int r : ranks) {
    auto box = sharding.Box(shape, r, "fuzzed");
    if (!box.ok()) Fail("Box after CheckShape: " + box.status().ToString());
    if (box->shape != *local) Fail("rank " + std::to_string(r) + "'s box differs from LocalShape");
    for (size_t d = 0; d < shape.size(); ++d) {
      const int64_t o = box->offset[d];
      if (o < 0 || o + box->shape[d] > shape[d] || ((*local)[d] > 0 && o % (*local)[d] != 0)) {
        Fail("rank " + std::to_string(r) + ": box offset " + std::to_string(o) + " in dimension " +
             std::to_string(d) + " is outside or misaligned");
      }
    }
  }
  // Coverage: every element held by the same number of ranks (the replication factor).
  if (static_cast<int>(ranks.size()) == mesh.size() && global_elements > 0 &&
      global_elements <= 4096) {
    std::vector<int> count(global_elements, 0);
    for (int r : ranks) {
      const ShardBox box = *sharding.Box(shape, r, "fuzzed");
      const size_t rank = shape.size();
      std::vector<int64_t> idx(rank, 0);
      for (int64_t i = 0; i < local_elements; ++i) {
        int64_t flat = 0;
        for (size_t d = 0; d < rank; ++d) flat = flat * shape[d] + box.offset[d] + idx[d];
        ++count[flat];
        for (int d = static_cast<int>(rank) - 1; d >= 0; --d) {
          if (++idx[d] < box.shape[d]) break;
          idx[d] = 0;
        }
      }
    }
    const int64_t copies = mesh.size() * local_elements / global_elements;
    for (int64_t i = 0; i < global_elements; ++i) {
      if (count[i] != copies) {
        Fail("element " + std::to_string(i) + " is held by " + std::to_string(count[i]) +
             " ranks, expected " + std::to_string(copies));
      }
    }
  }
}

void CheckPlan(const ShardPlan& plan) {
  const AttentionShape& s = plan.shape;
  if (plan.local_batch * plan.batch_shards != s.batch ||
      plan.local_q_heads * plan.head_shards != s.num_q_heads ||
      plan.local_capacity * plan.seq_shards != s.capacity) {
    Fail("plan's local sizes do not multiply back: " + plan.ToString());
  }
  if (plan.kv_heads_replicated ? plan.local_kv_heads != 1
                               : plan.local_kv_heads * plan.head_shards != s.num_kv_heads) {
    Fail("plan's local KV heads are wrong: " + plan.ToString());
  }
  for (ShardedTensor t :
       {ShardedTensor::kQuery, ShardedTensor::kKey, ShardedTensor::kValue,
        ShardedTensor::kSequenceStart, ShardedTensor::kSequenceEnd, ShardedTensor::kSoftmaxAux,
        ShardedTensor::kOutput, ShardedTensor::kLse}) {
    if (t == ShardedTensor::kSoftmaxAux && s.sinks == SinkLayout::kNone) continue;
    if (t == ShardedTensor::kLse && !s.with_lse) continue;
    const Shape global = plan.GlobalShape(t);
    for (int r : RanksToCheck(plan.mesh.size())) {
      const ShardBox box = plan.Box(t, r);
      if (box.shape.size() != global.size() || box.offset.size() != global.size()) {
        Fail(std::string(ShardedTensorName(t)) + ": box of the wrong rank");
      }
      for (size_t d = 0; d < global.size(); ++d) {
        if (box.offset[d] < 0 || box.offset[d] + box.shape[d] > global[d]) {
          Fail(std::string(ShardedTensorName(t)) + ": rank " + std::to_string(r) +
               "'s box leaves the tensor in dimension " + std::to_string(d) + "\n" +
               plan.ToString());
        }
      }
    }
  }
}

}  // namespace
}  // namespace ragged::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ragged;
  using namespace ragged::fuzz;
  constexpr size_t kHeader = 12;
  FuzzInput in(data, size < kHeader ? size : kHeader);
  AttentionShape shape;
  shape.batch = in.IntInRange(1, 16) - (in.OneIn(16) ? 1 : 0);
  shape.capacity = in.Pick<int64_t>({64, 16, 1, 8, 128, 12, 0, 96});
  shape.num_kv_heads = in.Pick<int64_t>({2, 1, 4, 8, 3});
  shape.num_q_heads = shape.num_kv_heads * in.Pick<int64_t>({2, 1, 4, 8, 3});
  shape.head_dim = in.Pick<int64_t>({8, 16, 1, 64});
  shape.dtype = in.Pick<DType>({DType::kBF16, DType::kF32, DType::kF16});
  shape.sinks = in.Pick<SinkLayout>(
      {SinkLayout::kNone, SinkLayout::kShared, SinkLayout::kPerKvHead, SinkLayout::kPerQueryHead});
  shape.num_sinks = shape.sinks == SinkLayout::kNone ? 0 : in.IntInRange(1, 3);
  shape.with_lse = in.Bool();
  if (in.Bool()) shape.output_dtype = DType::kF32;
  // A free-form shape for NamedSharding: rank 0..4, small dimensions.
  Shape free_shape;
  for (int d = in.IntInRange(0, 4); d > 0; --d)
    free_shape.push_back(in.Pick<int64_t>({4, 8, 6, 1, 0, 12, 16, 3}));

  const size_t text_begin = size < kHeader ? size : kHeader;
  const absl::string_view text(reinterpret_cast<const char*>(data) + text_begin, size - text_begin);
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  lines.resize(8);

  auto mesh = Mesh::Parse(lines[0]);
  CheckError(mesh.status(), "Mesh::Parse");
  if (mesh.ok()) CheckMesh(*mesh);
  std::vector<PartitionSpec> specs(7);
  bool specs_ok = true;
  for (int i = 0; i < 7; ++i) {
    auto spec = PartitionSpec::Parse(lines[i + 1]);
    CheckError(spec.status(), "PartitionSpec::Parse");
    if (!spec.ok()) {
      specs_ok = false;
      continue;
    }
    CheckSpec(*spec);
    specs[i] = *spec;
  }
  if (!mesh.ok()) return 0;

  // NamedSharding of the first spec over the free-form shape.
  auto sharding = NamedSharding::Create(*mesh, specs[0]);
  CheckError(sharding.status(), "NamedSharding::Create");
  if (sharding.ok()) CheckSharding(*sharding, free_shape);

  if (!specs_ok) return 0;
  ShardedAttentionSpecs s;
  s.query = specs[0];
  s.key = specs[1];
  s.value = specs[2];
  s.sequence_start = specs[3];
  s.sequence_end = specs[4];
  s.softmax_aux = specs[5];
  s.output = specs[6];
  auto plan = PlanShardedAttention(*mesh, s, shape);
  CheckError(plan.status(), "PlanShardedAttention");
  static const bool verbose = std::getenv("RAGGED_FUZZ_VERBOSE") != nullptr;
  if (verbose) {
    std::fprintf(stderr, "mesh %s; %s; plan: %s\n", mesh->ToString().c_str(), s.ToString().c_str(),
                 plan.status().ToString().c_str());
  }
  if (plan.ok()) CheckPlan(*plan);
  return 0;
}
