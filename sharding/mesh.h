// Mesh: the ranks of a job arranged as a grid with named axes, and the communicators of its groups.
//
// A Mesh is a value: named axes with sizes (`dp=2,tp=4`) whose product is the number of ranks. Rank
// r sits at the coordinates of r in row-major order over the axes: the last axis varies fastest and
// is the innermost one (put the bandwidth-hungry `tp` last). The group of a rank along a set of
// axes is the ranks that share its coordinates on every other axis; within the group, ranks are
// ordered row-major over the given axes in the order given (the first is the major one), which is
// the order in which a PartitionSpec tuple splits a dimension. Mesh is immutable and thread-safe.
//
// MeshCommunicators owns or borrows the world communicator (whose rank r is mesh rank r) and makes
// the communicator of each group once, by Split of the world (color = the group's index, key = the
// rank's index in it), caching it for reuse. Splits are collective over the world: every rank asks
// for the same axes in the same order (an SPMD program does). A caller may hand in a communicator
// it already has for a set of axes (Provide); it is borrowed, never destroyed. Not thread-safe: one
// thread uses a MeshCommunicators and its communicators at a time.
//
//   RAGGED_ASSIGN_OR_RETURN(Mesh mesh, Mesh::Parse("dp=2,tp=4"));
//   RAGGED_ASSIGN_OR_RETURN(auto comms, MeshCommunicators::Borrow(mesh, world));
//   RAGGED_ASSIGN_OR_RETURN(Communicator* tp, comms->ForAxes({"tp"}));
#ifndef RAGGED_SHARDING_MESH_H_
#define RAGGED_SHARDING_MESH_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "runtime/communicator.h"

namespace ragged {

struct MeshAxis {
  std::string name;  // an identifier: [A-Za-z_][A-Za-z0-9_]*, not "None" nor "_"
  int size = 1;      // >= 1
  friend bool operator==(const MeshAxis& a, const MeshAxis& b) {
    return a.name == b.name && a.size == b.size;
  }
};

class Mesh {
 public:
  // The mesh of one rank with no axes.
  Mesh() = default;
  // InvalidArgument for an empty or reserved name, a name used twice, or a size < 1.
  static absl::StatusOr<Mesh> Create(std::vector<MeshAxis> axes);
  // Parses "name=size,name=size,..." (spaces allowed around tokens), e.g. "dp=2,tp=4". The empty
  // string is the one-rank mesh. InvalidArgument names the offending part.
  static absl::StatusOr<Mesh> Parse(absl::string_view text);

  const std::vector<MeshAxis>& axes() const { return axes_; }
  int num_axes() const { return static_cast<int>(axes_.size()); }
  // Number of ranks: the product of the axis sizes.
  int size() const { return size_; }
  // Index of the axis `name`, or -1 when the mesh has no such axis.
  int AxisIndex(absl::string_view name) const;
  // Size of axis `name`; 1 when the mesh has no such axis.
  int AxisSize(absl::string_view name) const;
  // Product of the sizes of `axes` (1 for none); unknown axes count as 1.
  int AxesSize(absl::Span<const std::string> axes) const;

  // OK when every name is an axis of this mesh and none repeats. InvalidArgument otherwise,
  // naming the axis and the mesh.
  absl::Status CheckAxes(absl::Span<const std::string> axes) const;

  // Mesh coordinates of `rank` (0 <= rank < size()), one per axis.
  std::vector<int> Coordinates(int rank) const;
  // The rank at `coordinates` (one per axis, each within its axis).
  int RankAt(absl::Span<const int> coordinates) const;

  // Groups along `axes` (which must pass CheckAxes). A group has AxesSize(axes) ranks.
  // GroupIndex: which group `rank` is in, the row-major index of its coordinates on the other axes
  // (in mesh order); groups are numbered 0 .. size() / AxesSize(axes) - 1.
  int GroupIndex(int rank, absl::Span<const std::string> axes) const;
  // IndexInGroup: the position of `rank` in its group, row-major over `axes` in the order given.
  int IndexInGroup(int rank, absl::Span<const std::string> axes) const;
  // GroupRanks: the ranks of `rank`'s group, ordered by IndexInGroup.
  std::vector<int> GroupRanks(int rank, absl::Span<const std::string> axes) const;

  // "dp=2,tp=4" (Parse reads it back); "" for the one-rank mesh.
  std::string ToString() const;
  friend bool operator==(const Mesh& a, const Mesh& b) { return a.axes_ == b.axes_; }

 private:
  explicit Mesh(std::vector<MeshAxis> axes);
  std::vector<int> AxisIndicesOrDie(absl::Span<const std::string> axes) const;

  std::vector<MeshAxis> axes_;
  int size_ = 1;
};

class MeshCommunicators {
 public:
  // Borrows `world`, which must outlive this object. InvalidArgument when world->size() differs
  // from mesh.size().
  static absl::StatusOr<std::unique_ptr<MeshCommunicators>> Borrow(Mesh mesh, Communicator* world);
  // Takes ownership of `world`.
  static absl::StatusOr<std::unique_ptr<MeshCommunicators>> Own(
      Mesh mesh, std::unique_ptr<Communicator> world);
  MeshCommunicators(const MeshCommunicators&) = delete;
  MeshCommunicators& operator=(const MeshCommunicators&) = delete;

  const Mesh& mesh() const { return mesh_; }
  // This process's mesh rank (its world rank).
  int rank() const { return world_->rank(); }
  Communicator& world() const { return *world_; }

  // The communicator of this rank's group along `axes` (rank in it = Mesh::IndexInGroup). On the
  // first request for a group it is made by Split of the world: collective over the world, so every
  // rank must make the same requests in the same order. Axes of size 1 do not change a group, so
  // they are ignored; when the remaining axes are all the mesh's axes of size > 1 in mesh order,
  // the world itself is returned (no Split). The pointer stays valid while this object lives.
  absl::StatusOr<Communicator*> ForAxes(absl::Span<const std::string> axes);
  // Hands in an existing communicator for the group along `axes` (borrowed; it must outlive this
  // object and have the group's size, with this rank at its IndexInGroup). Later ForAxes calls for
  // that group return it. Local: no communication. InvalidArgument on a mismatch;
  // AlreadyExists when that group already has a communicator.
  absl::Status Provide(absl::Span<const std::string> axes, Communicator* comm);

  // Number of Split calls made so far (the cache at work).
  int num_splits() const { return num_splits_; }

 private:
  MeshCommunicators(Mesh mesh, Communicator* world, std::unique_ptr<Communicator> owned);
  // The axes of size > 1 from `axes`, in the order given; empty means the group of one rank.
  std::vector<std::string> Canonical(absl::Span<const std::string> axes) const;

  Mesh mesh_;
  std::unique_ptr<Communicator> owned_world_;
  Communicator* world_;
  std::map<std::vector<std::string>, std::unique_ptr<Communicator>> owned_;
  std::map<std::vector<std::string>, Communicator*> cache_;
  int num_splits_ = 0;
};

}  // namespace ragged

#endif  // RAGGED_SHARDING_MESH_H_
