#include "sharding/mesh.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "runtime/status.h"

namespace ragged {
namespace {

bool IsIdentifier(absl::string_view s) {
  if (s.empty()) return false;
  if (!(absl::ascii_isalpha(s[0]) || s[0] == '_')) return false;
  for (char c : s) {
    if (!(absl::ascii_isalnum(c) || c == '_')) return false;
  }
  return true;
}

}  // namespace

Mesh::Mesh(std::vector<MeshAxis> axes) : axes_(std::move(axes)) {
  for (const MeshAxis& a : axes_) size_ *= a.size;
}

absl::StatusOr<Mesh> Mesh::Create(std::vector<MeshAxis> axes) {
  int64_t product = 1;
  for (size_t i = 0; i < axes.size(); ++i) {
    const MeshAxis& a = axes[i];
    if (!IsIdentifier(a.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("mesh axis ", i, ": name \"", a.name,
                       "\" is not an identifier ([A-Za-z_][A-Za-z0-9_]*)"));
    }
    if (a.name == "None" || a.name == "_") {
      return absl::InvalidArgumentError(
          absl::StrCat("mesh axis ", i, ": \"", a.name,
                       "\" is reserved (it means replicated in a PartitionSpec)"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (axes[j].name == a.name) {
        return absl::InvalidArgumentError(absl::StrCat("mesh axis \"", a.name,
                                                       "\" appears twice (axes ", j, " and ", i,
                                                       "); axis names must be unique"));
      }
    }
    if (a.size < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("mesh axis \"", a.name, "\": size must be >= 1, got ", a.size));
    }
    product *= a.size;
    if (product > (int64_t{1} << 30)) {
      return absl::InvalidArgumentError("mesh: the product of the axis sizes is too large");
    }
  }
  return Mesh(std::move(axes));
}

absl::StatusOr<Mesh> Mesh::Parse(absl::string_view text) {
  std::vector<MeshAxis> axes;
  if (absl::StripAsciiWhitespace(text).empty()) return Mesh();
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    absl::string_view p = absl::StripAsciiWhitespace(part);
    std::vector<absl::string_view> kv = absl::StrSplit(p, '=');
    if (p.empty() || kv.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          "mesh \"", text, "\": expected name=size, got \"", p, "\" (example: dp=2,tp=4)"));
    }
    absl::string_view name = absl::StripAsciiWhitespace(kv[0]);
    absl::string_view size_text = absl::StripAsciiWhitespace(kv[1]);
    int size = 0;
    if (!absl::SimpleAtoi(size_text, &size)) {
      return absl::InvalidArgumentError(absl::StrCat("mesh \"", text, "\": the size of axis \"",
                                                     name, "\" is not an integer: \"", size_text,
                                                     "\""));
    }
    axes.push_back(MeshAxis{std::string(name), size});
  }
  absl::StatusOr<Mesh> mesh = Create(std::move(axes));
  if (!mesh.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("mesh \"", text, "\": ", mesh.status().message()));
  }
  return mesh;
}

int Mesh::AxisIndex(absl::string_view name) const {
  for (int i = 0; i < num_axes(); ++i) {
    if (axes_[i].name == name) return i;
  }
  return -1;
}

int Mesh::AxisSize(absl::string_view name) const {
  const int i = AxisIndex(name);
  return i < 0 ? 1 : axes_[i].size;
}

int Mesh::AxesSize(absl::Span<const std::string> axes) const {
  int n = 1;
  for (const std::string& a : axes) n *= AxisSize(a);
  return n;
}

absl::Status Mesh::CheckAxes(absl::Span<const std::string> axes) const {
  for (size_t i = 0; i < axes.size(); ++i) {
    if (AxisIndex(axes[i]) < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("axis '", axes[i], "' is not in the mesh (", ToString(), ")"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (axes[j] == axes[i]) {
        return absl::InvalidArgumentError(absl::StrCat("axis '", axes[i], "' is named twice in (",
                                                       absl::StrJoin(axes, ", "), ")"));
      }
    }
  }
  return absl::OkStatus();
}

std::vector<int> Mesh::Coordinates(int rank) const {
  RAGGED_CHECK(rank >= 0 && rank < size_);
  std::vector<int> c(axes_.size());
  for (int i = num_axes() - 1; i >= 0; --i) {
    c[i] = rank % axes_[i].size;
    rank /= axes_[i].size;
  }
  return c;
}

int Mesh::RankAt(absl::Span<const int> coordinates) const {
  RAGGED_CHECK(static_cast<int>(coordinates.size()) == num_axes());
  int r = 0;
  for (int i = 0; i < num_axes(); ++i) {
    RAGGED_CHECK(coordinates[i] >= 0 && coordinates[i] < axes_[i].size);
    r = r * axes_[i].size + coordinates[i];
  }
  return r;
}

std::vector<int> Mesh::AxisIndicesOrDie(absl::Span<const std::string> axes) const {
  RAGGED_CHECK(CheckAxes(axes).ok());
  std::vector<int> idx;
  for (const std::string& a : axes) idx.push_back(AxisIndex(a));
  return idx;
}

int Mesh::GroupIndex(int rank, absl::Span<const std::string> axes) const {
  const std::vector<int> idx = AxisIndicesOrDie(axes);
  const std::vector<int> c = Coordinates(rank);
  int g = 0;
  for (int i = 0; i < num_axes(); ++i) {
    bool in_group = false;
    for (int j : idx) in_group |= (j == i);
    if (!in_group) g = g * axes_[i].size + c[i];
  }
  return g;
}

int Mesh::IndexInGroup(int rank, absl::Span<const std::string> axes) const {
  const std::vector<int> idx = AxisIndicesOrDie(axes);
  const std::vector<int> c = Coordinates(rank);
  int k = 0;
  for (int j : idx) k = k * axes_[j].size + c[j];
  return k;
}

std::vector<int> Mesh::GroupRanks(int rank, absl::Span<const std::string> axes) const {
  const std::vector<int> idx = AxisIndicesOrDie(axes);
  const int n = AxesSize(axes);
  std::vector<int> ranks(n);
  std::vector<int> c = Coordinates(rank);
  for (int k = 0; k < n; ++k) {
    // Coordinates on the group's axes of member k: row-major over `axes`, the last fastest.
    int rest = k;
    for (int j = static_cast<int>(idx.size()) - 1; j >= 0; --j) {
      c[idx[j]] = rest % axes_[idx[j]].size;
      rest /= axes_[idx[j]].size;
    }
    ranks[k] = RankAt(c);
  }
  return ranks;
}

std::string Mesh::ToString() const {
  return absl::StrJoin(axes_, ",", [](std::string* out, const MeshAxis& a) {
    absl::StrAppend(out, a.name, "=", a.size);
  });
}

// ---------------------------------------------------------------------------------------------
// MeshCommunicators

MeshCommunicators::MeshCommunicators(Mesh mesh, Communicator* world,
                                     std::unique_ptr<Communicator> owned)
    : mesh_(std::move(mesh)), owned_world_(std::move(owned)), world_(world) {}

absl::StatusOr<std::unique_ptr<MeshCommunicators>> MeshCommunicators::Borrow(Mesh mesh,
                                                                             Communicator* world) {
  if (world == nullptr) return absl::InvalidArgumentError("MeshCommunicators: world is null");
  if (world->size() != mesh.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mesh (", mesh.ToString(), ") has ", mesh.size(), " ranks but the world communicator has ",
        world->size(), "; the product of the mesh axis sizes must equal the number of ranks"));
  }
  return std::unique_ptr<MeshCommunicators>(new MeshCommunicators(std::move(mesh), world, nullptr));
}

absl::StatusOr<std::unique_ptr<MeshCommunicators>> MeshCommunicators::Own(
    Mesh mesh, std::unique_ptr<Communicator> world) {
  Communicator* w = world.get();
  RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<MeshCommunicators> c, Borrow(std::move(mesh), w));
  c->owned_world_ = std::move(world);
  return c;
}

std::vector<std::string> MeshCommunicators::Canonical(absl::Span<const std::string> axes) const {
  std::vector<std::string> key;
  for (const std::string& a : axes) {
    if (mesh_.AxisSize(a) > 1) key.push_back(a);
  }
  return key;
}

absl::StatusOr<Communicator*> MeshCommunicators::ForAxes(absl::Span<const std::string> axes) {
  RAGGED_RETURN_IF_ERROR(mesh_.CheckAxes(axes));
  std::vector<std::string> key = Canonical(axes);
  if (auto it = cache_.find(key); it != cache_.end()) return it->second;
  std::vector<std::string> all;
  for (const MeshAxis& a : mesh_.axes()) {
    if (a.size > 1) all.push_back(a.name);
  }
  if (key == all) {
    cache_[key] = world_;
    return world_;
  }
  const int rank = world_->rank();
  RAGGED_ASSIGN_OR_RETURN(
      std::unique_ptr<Communicator> comm,
      world_->Split(mesh_.GroupIndex(rank, key), mesh_.IndexInGroup(rank, key)));
  ++num_splits_;
  if (comm->size() != mesh_.AxesSize(key) || comm->rank() != mesh_.IndexInGroup(rank, key)) {
    return absl::InternalError(absl::StrCat("Split for axes (", absl::StrJoin(key, ", "),
                                            ") gave rank ", comm->rank(), " of ", comm->size(),
                                            "; expected rank ", mesh_.IndexInGroup(rank, key),
                                            " of ", mesh_.AxesSize(key)));
  }
  Communicator* p = comm.get();
  owned_[key] = std::move(comm);
  cache_[key] = p;
  return p;
}

absl::Status MeshCommunicators::Provide(absl::Span<const std::string> axes, Communicator* comm) {
  RAGGED_RETURN_IF_ERROR(mesh_.CheckAxes(axes));
  if (comm == nullptr) return absl::InvalidArgumentError("Provide: communicator is null");
  std::vector<std::string> key = Canonical(axes);
  const std::string what = absl::StrCat("(", absl::StrJoin(axes, ", "), ")");
  if (cache_.count(key) != 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("the group along axes ", what, " already has a communicator"));
  }
  const int want_size = mesh_.AxesSize(key);
  const int want_rank = mesh_.IndexInGroup(world_->rank(), key);
  if (comm->size() != want_size || comm->rank() != want_rank) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the communicator handed in for axes ", what, " is rank ", comm->rank(), " of ",
        comm->size(), "; the group of mesh rank ", world_->rank(), " in mesh (", mesh_.ToString(),
        ") needs rank ", want_rank, " of ", want_size));
  }
  cache_[key] = comm;
  return absl::OkStatus();
}

}  // namespace ragged
