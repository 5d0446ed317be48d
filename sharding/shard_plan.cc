#include "sharding/shard_plan.h"

#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/status.h"

namespace ragged {
namespace {

absl::Status Invalid(absl::string_view tensor, absl::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat(tensor, ": ", msg));
}

std::string AxesToString(const Mesh& mesh, absl::Span<const std::string> axes) {
  std::vector<std::string> parts;
  for (const std::string& a : axes) parts.push_back(absl::StrCat(a, "=", mesh.AxisSize(a)));
  return absl::StrCat("(", absl::StrJoin(parts, ", "), ")");
}

// True when `prefix` is a leading part of `axes`.
bool IsPrefix(absl::Span<const std::string> prefix, absl::Span<const std::string> axes) {
  if (prefix.size() > axes.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (prefix[i] != axes[i]) return false;
  }
  return true;
}

const char* SinkLayoutText(SinkLayout s) {
  switch (s) {
    case SinkLayout::kNone:
      return "none";
    case SinkLayout::kShared:
      return "[NS]";
    case SinkLayout::kPerKvHead:
      return "[HKV, NS]";
    case SinkLayout::kPerQueryHead:
      return "[HQ, NS]";
  }
  return "?";
}

}  // namespace

const char* ShardedTensorName(ShardedTensor t) {
  switch (t) {
    case ShardedTensor::kQuery:
      return "query";
    case ShardedTensor::kKey:
      return "key";
    case ShardedTensor::kValue:
      return "value";
    case ShardedTensor::kSequenceStart:
      return "sequence_start";
    case ShardedTensor::kSequenceEnd:
      return "sequence_end";
    case ShardedTensor::kSoftmaxAux:
      return "softmax_aux";
    case ShardedTensor::kOutput:
      return "output";
    case ShardedTensor::kLse:
      return "lse";
  }
  return "?";
}

std::string AttentionShape::ToString() const {
  std::string s =
      absl::StrCat("B=", batch, " S=", capacity, " HQ=", num_q_heads, " HKV=", num_kv_heads,
                   " D=", head_dim, " ", DTypeName(dtype), " out=", DTypeName(out_dtype()));
  if (sinks != SinkLayout::kNone) {
    absl::StrAppend(&s, " sinks=", SinkLayoutText(sinks), " NS=", num_sinks, " ",
                    DTypeName(aux_dtype));
  }
  if (with_lse) absl::StrAppend(&s, " lse");
  return s;
}

ShardedAttentionSpecs ShardedAttentionSpecs::Typical(const Mesh& mesh, SinkLayout sinks,
                                                     bool gather_output) {
  auto axis = [&](const char* name) {
    return mesh.AxisIndex(name) >= 0 ? PartitionSpec::Entry{name} : PartitionSpec::Entry{};
  };
  ShardedAttentionSpecs s;
  s.query = PartitionSpec({axis("dp"), axis("tp")});
  s.key = PartitionSpec({axis("dp"), axis("sp"), axis("tp")});
  s.value = s.key;
  s.sequence_start = PartitionSpec({axis("dp")});
  s.sequence_end = s.sequence_start;
  if (sinks == SinkLayout::kPerKvHead || sinks == SinkLayout::kPerQueryHead) {
    s.softmax_aux = PartitionSpec({axis("tp")});
  }
  s.output = gather_output ? PartitionSpec() : s.query;
  return s;
}

std::string ShardedAttentionSpecs::ToString() const {
  return absl::StrCat("query=", query.ToString(), " key=", key.ToString(),
                      " value=", value.ToString(), " start=", sequence_start.ToString(),
                      " end=", sequence_end.ToString(), " aux=", softmax_aux.ToString(),
                      " out=", output.ToString());
}

std::vector<std::string> ShardPlan::gather_axes() const {
  std::vector<std::string> axes = gather_batch_axes;
  axes.insert(axes.end(), gather_head_axes.begin(), gather_head_axes.end());
  return axes;
}

int64_t ShardPlan::BatchIndex(int rank) const { return mesh.IndexInGroup(rank, batch_axes); }
int64_t ShardPlan::HeadIndex(int rank) const { return mesh.IndexInGroup(rank, head_axes); }
int64_t ShardPlan::SeqIndex(int rank) const { return mesh.IndexInGroup(rank, seq_axes); }
int64_t ShardPlan::FirstKvHead(int rank) const {
  const int64_t group = shape.num_q_heads / shape.num_kv_heads;
  return HeadIndex(rank) * local_q_heads / group;
}

Shape ShardPlan::GlobalShape(ShardedTensor t) const {
  const AttentionShape& s = shape;
  switch (t) {
    case ShardedTensor::kQuery:
    case ShardedTensor::kOutput:
      return {s.batch, s.num_q_heads, s.head_dim};
    case ShardedTensor::kKey:
    case ShardedTensor::kValue:
      return {s.batch, s.capacity, s.num_kv_heads, s.head_dim};
    case ShardedTensor::kSequenceStart:
    case ShardedTensor::kSequenceEnd:
      return {s.batch};
    case ShardedTensor::kLse:
      return {s.batch, s.num_q_heads};
    case ShardedTensor::kSoftmaxAux:
      switch (s.sinks) {
        case SinkLayout::kNone:
          return {};
        case SinkLayout::kShared:
          return {s.num_sinks};
        case SinkLayout::kPerKvHead:
          return {s.num_kv_heads, s.num_sinks};
        case SinkLayout::kPerQueryHead:
          return {s.num_q_heads, s.num_sinks};
      }
  }
  return {};
}

ShardBox ShardPlan::Box(ShardedTensor t, int rank) const {
  RAGGED_CHECK(rank >= 0 && rank < mesh.size());
  const Shape global = GlobalShape(t);
  ShardBox box;
  box.shape = global;
  box.offset.assign(global.size(), 0);
  switch (t) {
    case ShardedTensor::kQuery:
      box.shape = {local_batch, local_q_heads, shape.head_dim};
      box.offset = {BatchIndex(rank) * local_batch, HeadIndex(rank) * local_q_heads, 0};
      break;
    case ShardedTensor::kKey:
    case ShardedTensor::kValue:
      box.shape = {local_batch, local_capacity, local_kv_heads, shape.head_dim};
      box.offset = {BatchIndex(rank) * local_batch, SeqIndex(rank) * local_capacity,
                    FirstKvHead(rank), 0};
      break;
    case ShardedTensor::kSequenceStart:
    case ShardedTensor::kSequenceEnd:
      box.shape = {local_batch};
      box.offset = {BatchIndex(rank) * local_batch};
      break;
    case ShardedTensor::kSoftmaxAux:
      if (aux_split && shape.sinks == SinkLayout::kPerQueryHead) {
        box.shape[0] = local_q_heads;
        box.offset[0] = HeadIndex(rank) * local_q_heads;
      } else if (aux_split && shape.sinks == SinkLayout::kPerKvHead) {
        box.shape[0] = local_kv_heads;
        box.offset[0] = FirstKvHead(rank);
      }
      break;
    case ShardedTensor::kOutput:
    case ShardedTensor::kLse: {
      // The output spec keeps a leading part of the per-shard axes of each dimension.
      const int64_t nb = batch_shards / gather_batch_size, nh = head_shards / gather_head_size;
      const PartitionSpec::Entry& ob = specs.output.entry(0);
      const PartitionSpec::Entry& oh = specs.output.entry(1);
      box.shape[0] = shape.batch / nb;
      box.shape[1] = shape.num_q_heads / nh;
      box.offset[0] = mesh.IndexInGroup(rank, ob) * box.shape[0];
      box.offset[1] = mesh.IndexInGroup(rank, oh) * box.shape[1];
      break;
    }
  }
  return box;
}

Shape ShardPlan::LocalShape(ShardedTensor t) const { return Box(t, 0).shape; }

std::pair<int64_t, int64_t> ShardPlan::KernelAuxRows(int rank) const {
  switch (shape.sinks) {
    case SinkLayout::kNone:
    case SinkLayout::kShared:
      return {0, 0};
    case SinkLayout::kPerQueryHead:
      if (aux_split) return {0, local_q_heads};
      return {HeadIndex(rank) * local_q_heads, local_q_heads};
    case SinkLayout::kPerKvHead:
      if (aux_split) return {0, local_kv_heads};
      return {FirstKvHead(rank), local_kv_heads};
  }
  return {0, 0};
}

std::string ShardPlan::ToString() const {
  std::string s = absl::StrCat("mesh (", mesh.ToString(), ") ", shape.ToString(), "\n");
  absl::StrAppend(&s, "  batch over ", AxesToString(mesh, batch_axes), ", heads over ",
                  AxesToString(mesh, head_axes), ", sequence over ", AxesToString(mesh, seq_axes),
                  kv_heads_replicated ? ", KV heads replicated" : "", "\n");
  absl::StrAppend(&s, "  per rank: query ", ShapeToString(LocalShape(ShardedTensor::kQuery)),
                  ", key/value ", ShapeToString(LocalShape(ShardedTensor::kKey)), ", output ",
                  ShapeToString(LocalShape(ShardedTensor::kOutput)), "\n");
  absl::StrAppend(&s, "  merge over ", AxesToString(mesh, seq_axes), ", gather over ",
                  AxesToString(mesh, gather_axes()));
  return s;
}

absl::StatusOr<ShardPlan> PlanShardedAttention(const Mesh& mesh, const ShardedAttentionSpecs& specs,
                                               const AttentionShape& shape) {
  ShardPlan plan;
  plan.mesh = mesh;
  plan.shape = shape;
  plan.specs = specs;
  const AttentionShape& s = shape;

  // The global problem itself.
  if (s.batch < 1 || s.capacity < 1 || s.num_q_heads < 1 || s.num_kv_heads < 1 || s.head_dim < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("sharded attention: every size must be >= 1, got ", s.ToString()));
  }
  if (s.num_q_heads % s.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("query/key: num_q_heads (", s.num_q_heads,
                                                   ") must be a multiple of num_kv_heads (",
                                                   s.num_kv_heads, ")"));
  }
  if (!IsFloating(s.dtype)) {
    return Invalid("query",
                   absl::StrCat("expected dtype f32, f16 or bf16, got ", DTypeName(s.dtype)));
  }
  if (s.out_dtype() != s.dtype && s.out_dtype() != DType::kF32) {
    return Invalid("output", absl::StrCat("expected dtype ", DTypeName(s.dtype), " or f32, got ",
                                          DTypeName(s.out_dtype())));
  }
  if (s.sinks != SinkLayout::kNone) {
    if (s.num_sinks < 1) {
      return Invalid("softmax_aux", absl::StrCat("expected num_sinks >= 1, got ", s.num_sinks));
    }
    if (s.aux_dtype != DType::kF32 && s.aux_dtype != s.dtype) {
      return Invalid("softmax_aux", absl::StrCat("expected dtype f32 or ", DTypeName(s.dtype),
                                                 ", got ", DTypeName(s.aux_dtype)));
    }
  }

  // Each spec on its own: axes in the mesh, once; no longer than the tensor.
  struct Named {
    ShardedTensor tensor;
    const PartitionSpec* spec;
  };
  std::vector<Named> all = {{ShardedTensor::kQuery, &specs.query},
                            {ShardedTensor::kKey, &specs.key},
                            {ShardedTensor::kValue, &specs.value},
                            {ShardedTensor::kSequenceStart, &specs.sequence_start},
                            {ShardedTensor::kSequenceEnd, &specs.sequence_end},
                            {ShardedTensor::kSoftmaxAux, &specs.softmax_aux},
                            {ShardedTensor::kOutput, &specs.output}};
  for (const Named& n : all) {
    const char* name = ShardedTensorName(n.tensor);
    absl::StatusOr<NamedSharding> ns = NamedSharding::Create(mesh, *n.spec);
    if (!ns.ok()) return Invalid(name, ns.status().message());
    const Shape global = plan.GlobalShape(n.tensor);
    if (n.tensor == ShardedTensor::kSoftmaxAux && s.sinks == SinkLayout::kNone) {
      if (!n.spec->Trimmed().entries().empty()) {
        return Invalid(name, absl::StrCat("PartitionSpec", n.spec->ToString(),
                                          " is given, but the call has no sinks"));
      }
      continue;
    }
    if (n.spec->size() > static_cast<int>(global.size())) {
      return Invalid(
          name, absl::StrCat("PartitionSpec", n.spec->ToString(), " has ", n.spec->size(),
                             " entries, but the tensor has rank ", global.size(), " (global shape ",
                             ShapeToString(global), "); a spec may not be longer than the tensor"));
    }
  }

  // Dimensions that may not be split.
  struct Fixed {
    const PartitionSpec* spec;
    const char* tensor;
    int dim;
    const char* what;
  };
  std::vector<Fixed> fixed = {{&specs.query, "query", 2, "head_dim"},
                              {&specs.key, "key", 3, "head_dim"},
                              {&specs.value, "value", 3, "head_dim"},
                              {&specs.output, "output", 2, "head_dim"}};
  if (s.sinks == SinkLayout::kShared) fixed.push_back({&specs.softmax_aux, "softmax_aux", 0, "NS"});
  if (s.sinks == SinkLayout::kPerKvHead || s.sinks == SinkLayout::kPerQueryHead) {
    fixed.push_back({&specs.softmax_aux, "softmax_aux", 1, "NS"});
  }
  for (const Fixed& f : fixed) {
    const PartitionSpec::Entry& e = f.spec->entry(f.dim);
    if (!e.empty()) {
      return Invalid(
          f.tensor,
          absl::StrCat("dimension ", f.dim, " (", f.what, ") may not be split, but PartitionSpec",
                       f.spec->ToString(), " splits it over ", AxesToString(mesh, e)));
    }
  }

  if (specs.key != specs.value) {
    return Invalid("value",
                   absl::StrCat("PartitionSpec", specs.value.ToString(),
                                " differs from the key's PartitionSpec", specs.key.ToString(),
                                "; key and value must be sharded alike"));
  }

  // The sequence axes: only key and value may name them.
  plan.seq_axes = specs.key.entry(1);
  plan.seq_shards = mesh.AxesSize(plan.seq_axes);
  for (const Named& n : all) {
    if (n.tensor == ShardedTensor::kKey || n.tensor == ShardedTensor::kValue) continue;
    for (const std::string& a : plan.seq_axes) {
      if (n.spec->Names(a)) {
        if (n.tensor == ShardedTensor::kOutput) {
          return Invalid("output",
                         absl::StrCat("the output spec may not name '", a,
                                      "': it splits the key/value sequence, whose partial "
                                      "results are merged, so the output is whole along it"));
        }
        return Invalid(ShardedTensorName(n.tensor),
                       absl::StrCat("PartitionSpec", n.spec->ToString(), " names axis '", a,
                                    "', which splits the key/value sequence; only key and value "
                                    "may be split along the sequence"));
      }
    }
  }

  // Batch axes agree.
  plan.batch_axes = specs.query.entry(0);
  plan.batch_shards = mesh.AxesSize(plan.batch_axes);
  for (const Named& n : all) {
    if (n.tensor == ShardedTensor::kSoftmaxAux || n.tensor == ShardedTensor::kOutput ||
        n.tensor == ShardedTensor::kQuery) {
      continue;
    }
    if (n.spec->entry(0) != plan.batch_axes) {
      return Invalid(
          ShardedTensorName(n.tensor),
          absl::StrCat("the batch dimension is split over ", AxesToString(mesh, n.spec->entry(0)),
                       ", but the query's over ", AxesToString(mesh, plan.batch_axes),
                       "; every batched tensor must split the batch over the same axes"));
    }
  }

  // Head axes agree.
  plan.head_axes = specs.query.entry(1);
  plan.head_shards = mesh.AxesSize(plan.head_axes);
  if (specs.key.entry(2) != plan.head_axes) {
    return Invalid(
        "key", absl::StrCat("the KV heads (dimension 2) are split over ",
                            AxesToString(mesh, specs.key.entry(2)), ", but the query heads over ",
                            AxesToString(mesh, plan.head_axes),
                            "; query and KV heads must be split over the same axes"));
  }

  // Divisibility: query (B, HQ), start/end (B), key/value (B, S, and HKV unless replicated).
  const std::vector<std::string> q_dims = {"batch", "num_q_heads", "head_dim"};
  const std::vector<std::string> kv_dims = {"batch", "seq", "num_kv_heads", "head_dim"};
  const std::vector<std::string> b_dims = {"batch"};
  auto check = [&](const PartitionSpec& spec, ShardedTensor t,
                   const std::vector<std::string>& dims) -> absl::Status {
    RAGGED_ASSIGN_OR_RETURN(NamedSharding ns, NamedSharding::Create(mesh, spec));
    return ns.CheckShape(plan.GlobalShape(t), ShardedTensorName(t), dims);
  };
  RAGGED_RETURN_IF_ERROR(check(specs.query, ShardedTensor::kQuery, q_dims));
  RAGGED_RETURN_IF_ERROR(check(specs.sequence_start, ShardedTensor::kSequenceStart, b_dims));
  RAGGED_RETURN_IF_ERROR(check(specs.sequence_end, ShardedTensor::kSequenceEnd, b_dims));
  const int64_t n_h = plan.head_shards;
  if (s.num_kv_heads % n_h == 0) {
    RAGGED_RETURN_IF_ERROR(check(specs.key, ShardedTensor::kKey, kv_dims));
    RAGGED_RETURN_IF_ERROR(check(specs.value, ShardedTensor::kValue, kv_dims));
    plan.local_kv_heads = s.num_kv_heads / n_h;
  } else if (n_h % s.num_kv_heads == 0) {
    // KV heads replicated: check B and S only.
    std::vector<PartitionSpec::Entry> e = specs.key.entries();
    e.resize(2);
    RAGGED_RETURN_IF_ERROR(check(PartitionSpec(e), ShardedTensor::kKey, kv_dims));
    plan.kv_heads_replicated = true;
    plan.local_kv_heads = 1;
  } else {
    return Invalid("key", absl::StrCat("the ", s.num_kv_heads, " KV heads cannot be split over ",
                                       AxesToString(mesh, plan.head_axes), ", ", n_h,
                                       " shards: the number of shards must divide HKV, or be a "
                                       "multiple of it (then KV heads are replicated)"));
  }
  plan.local_batch = s.batch / plan.batch_shards;
  plan.local_q_heads = s.num_q_heads / n_h;
  plan.local_capacity = s.capacity / plan.seq_shards;

  // Sinks ([NS] is replicated: its only dimension may not be split, checked above).
  if (s.sinks == SinkLayout::kPerKvHead || s.sinks == SinkLayout::kPerQueryHead) {
    const PartitionSpec::Entry& e = specs.softmax_aux.entry(0);
    if (!e.empty() && e != plan.head_axes) {
      return Invalid("softmax_aux",
                     absl::StrCat("the heads (dimension 0) are split over ", AxesToString(mesh, e),
                                  ", but the query heads over ", AxesToString(mesh, plan.head_axes),
                                  "; a per-head aux is split over the head axes or replicated"));
    }
    plan.aux_split = !e.empty() && n_h > 1;
  }

  // Output: a leading part of the per-shard axes of each dimension; gather the rest.
  const PartitionSpec::Entry& ob = specs.output.entry(0);
  const PartitionSpec::Entry& oh = specs.output.entry(1);
  for (auto [entry, axes, what] : {std::tuple{&ob, &plan.batch_axes, "batch is"},
                                   std::tuple{&oh, &plan.head_axes, "heads are"}}) {
    if (!IsPrefix(*entry, *axes)) {
      return Invalid("output",
                     absl::StrCat("the ", what, " split over ", AxesToString(mesh, *axes),
                                  " per shard; the output spec may keep a leading part of these "
                                  "axes (major first) and gather the rest, but names ",
                                  AxesToString(mesh, *entry)));
    }
  }
  plan.gather_batch_axes.assign(plan.batch_axes.begin() + ob.size(), plan.batch_axes.end());
  plan.gather_head_axes.assign(plan.head_axes.begin() + oh.size(), plan.head_axes.end());
  plan.gather_batch_size = mesh.AxesSize(plan.gather_batch_axes);
  plan.gather_head_size = mesh.AxesSize(plan.gather_head_axes);
  return plan;
}

}  // namespace ragged
