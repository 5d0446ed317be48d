#include "sharding/partition_spec.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/status.h"

namespace ragged {
namespace {

enum class Tok { kName, kNone, kOpen, kClose, kComma };

struct Token {
  Tok kind;
  std::string text;
  size_t pos;  // offset in the parsed text, for messages
};

absl::Status SyntaxError(absl::string_view text, size_t pos, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("PartitionSpec \"", text, "\": ", what, " at position ", pos));
}

absl::StatusOr<std::vector<Token>> Tokenize(absl::string_view text) {
  std::vector<Token> toks;
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (absl::ascii_isspace(c)) {
      ++i;
    } else if (c == '(' || c == ')' || c == ',') {
      toks.push_back({c == '(' ? Tok::kOpen : (c == ')' ? Tok::kClose : Tok::kComma), "", i});
      ++i;
    } else if (c == '\'' || c == '"' || absl::ascii_isalpha(c) || c == '_') {
      const size_t start = i;
      char quote = 0;
      if (c == '\'' || c == '"') {
        quote = c;
        ++i;
      }
      const size_t name_start = i;
      while (i < text.size() && (absl::ascii_isalnum(text[i]) || text[i] == '_')) ++i;
      std::string name(text.substr(name_start, i - name_start));
      if (quote != 0) {
        if (i >= text.size() || text[i] != quote) {
          return SyntaxError(text, start, "unterminated or invalid quoted axis name");
        }
        ++i;
      }
      if (name.empty() || !(absl::ascii_isalpha(name[0]) || name[0] == '_')) {
        return SyntaxError(text, start, "expected an axis name");
      }
      const bool none = quote == 0 && (name == "None" || name == "_");
      toks.push_back({none ? Tok::kNone : Tok::kName, std::move(name), start});
    } else {
      return SyntaxError(text, i, absl::StrCat("unexpected character '", std::string(1, c), "'"));
    }
  }
  return toks;
}

}  // namespace

// An axis named like a replicated entry ("None", "_") is written quoted, so that the text parses
// back to the same spec.
std::string AxisToString(const std::string& axis) {
  return axis == "None" || axis == "_" ? absl::StrCat("'", axis, "'") : axis;
}

std::string EntryToString(const PartitionSpec::Entry& entry) {
  if (entry.empty()) return "None";
  if (entry.size() == 1) return AxisToString(entry[0]);
  return absl::StrCat(
      "(",
      absl::StrJoin(entry, ", ",
                    [](std::string* out, const std::string& a) { out->append(AxisToString(a)); }),
      ")");
}

absl::StatusOr<PartitionSpec> PartitionSpec::Parse(absl::string_view text) {
  absl::string_view body = absl::StripAsciiWhitespace(text);
  // A JAX-printed spec: PartitionSpec('dp', None) or P('dp', None).
  for (absl::string_view prefix : {"PartitionSpec", "P"}) {
    if (absl::StartsWith(body, prefix)) {
      absl::string_view rest = absl::StripLeadingAsciiWhitespace(body.substr(prefix.size()));
      if (absl::StartsWith(rest, "(")) {
        body = rest;
        break;
      }
    }
  }
  RAGGED_ASSIGN_OR_RETURN(std::vector<Token> toks, Tokenize(text));
  // Drop the prefix tokens: it was a name token followed by '('.
  size_t begin = 0, end = toks.size();
  if (body.size() != absl::StripAsciiWhitespace(text).size()) begin = 1;
  // Outer parentheses: the first token is '(' and its match is the last token.
  if (end > begin && toks[begin].kind == Tok::kOpen) {
    int depth = 0;
    size_t match = end;
    for (size_t i = begin; i < end; ++i) {
      if (toks[i].kind == Tok::kOpen) ++depth;
      if (toks[i].kind == Tok::kClose && --depth == 0) {
        match = i;
        break;
      }
    }
    if (match == end) return SyntaxError(text, toks[begin].pos, "unbalanced '('");
    if (match == end - 1) {
      ++begin;
      --end;
    } else if (begin == 1) {
      return SyntaxError(text, toks[match + 1].pos, "unexpected text after the spec's ')'");
    }
  } else if (begin == 1) {
    return SyntaxError(text, 0, "expected '(' after the spec's name");
  }

  std::vector<Entry> entries;
  size_t i = begin;
  while (i < end) {
    const Token& t = toks[i];
    Entry entry;
    switch (t.kind) {
      case Tok::kName:
        entry.push_back(t.text);
        ++i;
        break;
      case Tok::kNone:
        ++i;
        break;
      case Tok::kComma:
        return SyntaxError(text, t.pos, "empty entry; write None or _ for a replicated dimension");
      case Tok::kClose:
        return SyntaxError(text, t.pos, "unbalanced ')'");
      case Tok::kOpen: {
        ++i;
        bool need_name = true;
        while (true) {
          if (i >= end) return SyntaxError(text, t.pos, "unbalanced '('");
          const Token& u = toks[i];
          if (u.kind == Tok::kClose) {
            ++i;
            break;
          }
          if (u.kind == Tok::kOpen) {
            return SyntaxError(text, u.pos, "nested tuples are not allowed");
          }
          if (u.kind == Tok::kNone) {
            return SyntaxError(text, u.pos, "None inside a tuple of axes");
          }
          if (need_name) {
            if (u.kind != Tok::kName) return SyntaxError(text, u.pos, "expected an axis name");
            entry.push_back(u.text);
            need_name = false;
          } else {
            if (u.kind != Tok::kComma) return SyntaxError(text, u.pos, "expected ',' or ')'");
            need_name = true;
          }
          ++i;
        }
        break;
      }
    }
    entries.push_back(std::move(entry));
    if (i < end) {
      if (toks[i].kind == Tok::kClose) return SyntaxError(text, toks[i].pos, "unbalanced ')'");
      if (toks[i].kind != Tok::kComma) {
        return SyntaxError(text, toks[i].pos, "expected ',' between entries");
      }
      ++i;
    }
  }
  PartitionSpec spec(std::move(entries));
  const std::vector<std::string> axes = spec.Axes();
  for (size_t a = 0; a < axes.size(); ++a) {
    for (size_t b = 0; b < a; ++b) {
      if (axes[a] == axes[b]) {
        return absl::InvalidArgumentError(
            absl::StrCat("PartitionSpec \"", text, "\": axis '", axes[a],
                         "' is used more than once; a mesh axis may split at most one dimension"));
      }
    }
  }
  return spec;
}

const PartitionSpec::Entry& PartitionSpec::entry(int dim) const {
  static const Entry* const kEmpty = new Entry();
  if (dim < 0 || dim >= size()) return *kEmpty;
  return entries_[dim];
}

std::vector<std::string> PartitionSpec::Axes() const {
  std::vector<std::string> axes;
  for (const Entry& e : entries_) axes.insert(axes.end(), e.begin(), e.end());
  return axes;
}

bool PartitionSpec::Names(absl::string_view axis) const {
  for (const Entry& e : entries_) {
    for (const std::string& a : e) {
      if (a == axis) return true;
    }
  }
  return false;
}

PartitionSpec PartitionSpec::Trimmed() const {
  std::vector<Entry> e = entries_;
  while (!e.empty() && e.back().empty()) e.pop_back();
  return PartitionSpec(std::move(e));
}

std::string PartitionSpec::ToString() const {
  return absl::StrCat(
      "(",
      absl::StrJoin(entries_, ", ",
                    [](std::string* out, const Entry& e) { out->append(EntryToString(e)); }),
      ")");
}

// ---------------------------------------------------------------------------------------------
// NamedSharding

absl::StatusOr<NamedSharding> NamedSharding::Create(Mesh mesh, PartitionSpec spec) {
  std::vector<int> dim_of_axis(mesh.num_axes(), -1);
  for (int d = 0; d < spec.size(); ++d) {
    for (const std::string& a : spec.entry(d)) {
      const int i = mesh.AxisIndex(a);
      if (i < 0) {
        return absl::InvalidArgumentError(absl::StrCat("PartitionSpec", spec.ToString(), ": axis '",
                                                       a, "' is not in the mesh (", mesh.ToString(),
                                                       ")"));
      }
      if (dim_of_axis[i] >= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("PartitionSpec", spec.ToString(), ": axis '", a,
                         "' is used more than once (dimensions ", dim_of_axis[i], " and ", d,
                         "); a mesh axis may split at most one dimension"));
      }
      dim_of_axis[i] = d;
    }
  }
  return NamedSharding(std::move(mesh), std::move(spec));
}

absl::Status NamedSharding::CheckShape(absl::Span<const int64_t> global_shape,
                                       absl::string_view tensor,
                                       absl::Span<const std::string> dim_names) const {
  const int rank = static_cast<int>(global_shape.size());
  if (spec_.size() > rank) {
    return absl::InvalidArgumentError(
        absl::StrCat(tensor, ": PartitionSpec", spec_.ToString(), " has ", spec_.size(),
                     " entries, but the tensor has rank ", rank, " (global shape ",
                     ShapeToString(global_shape), "); a spec may not be longer than the tensor"));
  }
  for (int d = 0; d < spec_.size(); ++d) {
    const PartitionSpec::Entry& e = spec_.entry(d);
    if (e.empty()) continue;
    const int64_t n = NumShards(d);
    if (global_shape[d] % n != 0) {
      std::vector<int> sizes;
      for (const std::string& a : e) sizes.push_back(mesh_.AxisSize(a));
      const std::string dim = static_cast<int>(dim_names.size()) > d
                                  ? absl::StrCat(d, " (", dim_names[d], ")")
                                  : absl::StrCat(d);
      return absl::InvalidArgumentError(
          absl::StrCat(tensor, ": dimension ", dim, " of size ", global_shape[d], " (global shape ",
                       ShapeToString(global_shape), ") is split over axes (",
                       absl::StrJoin(e, ", "), ") of sizes (", absl::StrJoin(sizes, ", "), "), ", n,
                       " shards; ", global_shape[d], " is not divisible by ", n));
    }
  }
  return absl::OkStatus();
}

int64_t NamedSharding::NumShards(int dim) const { return mesh_.AxesSize(spec_.entry(dim)); }

int64_t NamedSharding::ShardIndex(int dim, int rank) const {
  return mesh_.IndexInGroup(rank, spec_.entry(dim));
}

absl::StatusOr<Shape> NamedSharding::LocalShape(absl::Span<const int64_t> global_shape,
                                                absl::string_view tensor) const {
  RAGGED_RETURN_IF_ERROR(CheckShape(global_shape, tensor));
  Shape local(global_shape.begin(), global_shape.end());
  for (int d = 0; d < spec_.size(); ++d) local[d] /= NumShards(d);
  return local;
}

absl::StatusOr<ShardBox> NamedSharding::Box(absl::Span<const int64_t> global_shape, int rank,
                                            absl::string_view tensor) const {
  if (rank < 0 || rank >= mesh_.size()) {
    return absl::InvalidArgumentError(absl::StrCat(tensor, ": rank ", rank, " is not in the mesh (",
                                                   mesh_.ToString(), ", ", mesh_.size(),
                                                   " ranks)"));
  }
  ShardBox box;
  RAGGED_ASSIGN_OR_RETURN(box.shape, LocalShape(global_shape, tensor));
  box.offset.assign(global_shape.size(), 0);
  for (int d = 0; d < spec_.size(); ++d) box.offset[d] = ShardIndex(d, rank) * box.shape[d];
  return box;
}

std::vector<std::string> NamedSharding::ReplicatedAxes() const {
  std::vector<std::string> axes;
  for (const MeshAxis& a : mesh_.axes()) {
    if (!spec_.Names(a.name)) axes.push_back(a.name);
  }
  return axes;
}

std::string NamedSharding::ToString() const {
  return absl::StrCat("NamedSharding(mesh=(", mesh_.ToString(), "), spec=", spec_.ToString(), ")");
}

}  // namespace ragged
