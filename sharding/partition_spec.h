// PartitionSpec and NamedSharding: how a global tensor is split over the axes of a Mesh.
//
// A PartitionSpec has one entry per tensor dimension, in the spirit of jax.sharding.PartitionSpec:
// an empty entry (replicated), one mesh axis, or an ordered tuple of axes, major to minor (the
// dimension is cut into prod(sizes) blocks; the block of a rank is the row-major index of its
// coordinates over the tuple). Dimensions past the end of the spec are replicated, and so is the
// tensor over every axis the spec does not name.
//
// Text syntax (Parse; ToString writes it back):
//   spec   := entries | ["P" | "PartitionSpec"] "(" entries ")"   outer parentheses are optional
//   entries:= [entry ("," entry)* [","]]         "" and "()" are the fully replicated spec
//   entry  := axis | "None" | "_" | "(" [axis ("," axis)* [","]] ")"   an inner "()" is None too
//   axis   := identifier, optionally quoted: dp, 'dp' or "dp"
// When the whole text is wrapped in one pair of parentheses, that pair is the outer one: "(dp, tp)"
// is two entries. A spec of one tuple entry is written "((dp, tp))" or "(dp, tp),".
// Examples: "dp,tp", "(dp, sp, tp, None)", "dp,(sp,tp),_", "P('dp', None)" (as JAX prints one).
//
// NamedSharding pairs a mesh with a spec whose axes it has checked (each axis in the mesh, none
// used twice), and answers, for a global shape, the local shape of every shard and the global
// offset of a rank's shard. Errors are InvalidArgument in JAX's manner, naming the tensor, the
// dimension and its size, the axes and their sizes. Both types are immutable values, thread-safe.
//
//   RAGGED_ASSIGN_OR_RETURN(PartitionSpec spec, PartitionSpec::Parse("(dp, sp, tp, None)"));
//   RAGGED_ASSIGN_OR_RETURN(NamedSharding kv, NamedSharding::Create(mesh, spec));
//   RAGGED_ASSIGN_OR_RETURN(ShardBox box, kv.Box({B, S, HKV, D}, rank, "key"));
#ifndef RAGGED_SHARDING_PARTITION_SPEC_H_
#define RAGGED_SHARDING_PARTITION_SPEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "runtime/tensor.h"
#include "sharding/mesh.h"

namespace ragged {

class PartitionSpec {
 public:
  // The axes of one dimension, major to minor; empty: replicated.
  using Entry = std::vector<std::string>;

  // The fully replicated spec.
  PartitionSpec() = default;
  // Unchecked; NamedSharding::Create checks the axes against a mesh. Example:
  // PartitionSpec({{"dp"}, {"sp", "tp"}, {}}).
  explicit PartitionSpec(std::vector<Entry> entries) : entries_(std::move(entries)) {}
  // Parses the syntax above. InvalidArgument names the text, the position and what was expected;
  // also for an axis named twice.
  static absl::StatusOr<PartitionSpec> Parse(absl::string_view text);

  // Number of entries (the dimensions it covers; later ones are replicated).
  int size() const { return static_cast<int>(entries_.size()); }
  const std::vector<Entry>& entries() const { return entries_; }
  // The axes of dimension `dim`; empty for a replicated dimension, including dim >= size().
  const Entry& entry(int dim) const;
  // Every axis named, in order of appearance.
  std::vector<std::string> Axes() const;
  bool Names(absl::string_view axis) const;
  // The same spec without trailing replicated entries (equal specs compare equal after this).
  PartitionSpec Trimmed() const;

  // "(dp, (sp, tp), None)"; "()" when fully replicated.
  std::string ToString() const;
  friend bool operator==(const PartitionSpec& a, const PartitionSpec& b) {
    return a.Trimmed().entries_ == b.Trimmed().entries_;
  }
  friend bool operator!=(const PartitionSpec& a, const PartitionSpec& b) { return !(a == b); }

 private:
  std::vector<Entry> entries_;
};

// "(dp, tp)" for a tuple of axes, "dp" for one, "None" for none.
std::string EntryToString(const PartitionSpec::Entry& entry);

// The part of a global tensor that one rank holds: global elements [offset, offset + shape).
struct ShardBox {
  Shape offset;  // [rank of the tensor]
  Shape shape;   // [rank of the tensor]
  friend bool operator==(const ShardBox& a, const ShardBox& b) {
    return a.offset == b.offset && a.shape == b.shape;
  }
};

class NamedSharding {
 public:
  // InvalidArgument when the spec names an axis the mesh lacks, or an axis twice.
  static absl::StatusOr<NamedSharding> Create(Mesh mesh, PartitionSpec spec);

  const Mesh& mesh() const { return mesh_; }
  const PartitionSpec& spec() const { return spec_; }

  // Checks the spec against a tensor of `global_shape`: no more entries than dimensions, and every
  // split dimension divisible by the product of its axes' sizes. `tensor` names it in errors;
  // `dim_names` (optional, one per dimension) names the dimensions.
  absl::Status CheckShape(absl::Span<const int64_t> global_shape,
                          absl::string_view tensor = "tensor",
                          absl::Span<const std::string> dim_names = {}) const;
  // Number of blocks dimension `dim` is cut into (1 when replicated).
  int64_t NumShards(int dim) const;
  // The block of dimension `dim` that `rank` holds.
  int64_t ShardIndex(int dim, int rank) const;
  // The local shape of every shard (they all have the same), after CheckShape.
  absl::StatusOr<Shape> LocalShape(absl::Span<const int64_t> global_shape,
                                   absl::string_view tensor = "tensor") const;
  // The shard of `rank` (0 <= rank < mesh().size()), after CheckShape.
  absl::StatusOr<ShardBox> Box(absl::Span<const int64_t> global_shape, int rank,
                               absl::string_view tensor = "tensor") const;
  // The axes the spec does not name: every shard is replicated over them.
  std::vector<std::string> ReplicatedAxes() const;

  // "NamedSharding(mesh=(dp=2,tp=2), spec=(dp, tp))".
  std::string ToString() const;

 private:
  NamedSharding(Mesh mesh, PartitionSpec spec) : mesh_(std::move(mesh)), spec_(std::move(spec)) {}
  Mesh mesh_;
  PartitionSpec spec_;
};

}  // namespace ragged

#endif  // RAGGED_SHARDING_PARTITION_SPEC_H_
