#include "examples/npy.h"

#include <bit>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ragged {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the .npy reader copies little-endian data as is");

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;
// NumPy's own reader refuses headers over 10000 bytes unless told otherwise; we allow more, but
// bound it so that a corrupt length cannot make us scan gigabytes.
constexpr uint64_t kMaxHeaderBytes = 1 << 20;

// The header text, printable and short, for error messages.
std::string Quote(absl::string_view text) {
  constexpr size_t kMax = 160;
  std::string out = absl::CHexEscape(text.substr(0, kMax));
  if (text.size() > kMax) absl::StrAppend(&out, "...");
  return absl::StrCat("'", out, "'");
}

absl::Status Malformed(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("npy: ", what));
}

// A parsed header value: a string, a bool, or a tuple of non-negative integers.
struct Value {
  enum class Kind { kString, kBool, kTuple } kind = Kind::kString;
  std::string str;
  bool boolean = false;
  std::vector<int64_t> tuple;
};

// A parser for the small subset of Python literals that .npy headers use.
class HeaderParser {
 public:
  explicit HeaderParser(absl::string_view text) : text_(text) {}

  absl::Status Parse(std::optional<Value>& descr, std::optional<Value>& fortran,
                     std::optional<Value>& shape) {
    SkipSpace();
    if (!Consume('{')) return Error("expected '{' at the start of the header");
    while (true) {
      SkipSpace();
      if (Consume('}')) break;
      auto key = ParseString();
      if (!key.ok()) return key.status();
      SkipSpace();
      if (!Consume(':')) return Error(absl::StrCat("expected ':' after key '", *key, "'"));
      SkipSpace();
      std::optional<Value>* slot = nullptr;
      if (*key == "descr") {
        slot = &descr;
      } else if (*key == "fortran_order") {
        slot = &fortran;
      } else if (*key == "shape") {
        slot = &shape;
      } else {
        return Error(absl::StrCat("unexpected key '", absl::CHexEscape(*key),
                                  "' (expected 'descr', 'fortran_order', 'shape')"));
      }
      if (slot->has_value()) return Error(absl::StrCat("key '", *key, "' appears twice"));
      auto value = ParseValue(*key);
      if (!value.ok()) return value.status();
      *slot = std::move(*value);
      SkipSpace();
      if (Consume(',')) continue;
      SkipSpace();
      if (Consume('}')) break;
      return Error("expected ',' or '}' after a value");
    }
    SkipSpace();
    if (pos_ != text_.size()) return Error("unexpected text after the closing '}'");
    return absl::OkStatus();
  }

 private:
  absl::Status Error(absl::string_view what) const {
    return Malformed(
        absl::StrCat("bad header: ", what, " at header offset ", pos_, " in ", Quote(text_)));
  }

  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool Consume(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool ConsumeWord(absl::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    const size_t after = pos_ + word.size();
    if (after < text_.size() &&
        (std::isalnum(static_cast<unsigned char>(text_[after])) || text_[after] == '_')) {
      return false;
    }
    pos_ = after;
    return true;
  }

  absl::StatusOr<std::string> ParseString() {
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"')) {
      return Error("expected a quoted string");
    }
    const char quote = text_[pos_++];
    const size_t begin = pos_;
    while (pos_ < text_.size() && text_[pos_] != quote) {
      if (text_[pos_] == '\\') return Error("escape sequences in strings are not supported");
      if (text_[pos_] == '\n') return Error("unterminated string");
      ++pos_;
    }
    if (pos_ >= text_.size()) return Error("unterminated string");
    std::string s(text_.substr(begin, pos_ - begin));
    ++pos_;
    return s;
  }

  absl::StatusOr<int64_t> ParseInt() {
    if (pos_ < text_.size() && text_[pos_] == '-') return Error("negative dimension in 'shape'");
    if (pos_ >= text_.size() || !std::isdigit(static_cast<unsigned char>(text_[pos_]))) {
      return Error("expected a dimension (a non-negative integer) in 'shape'");
    }
    int64_t v = 0;
    while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) {
      const int digit = text_[pos_] - '0';
      if (v > (std::numeric_limits<int64_t>::max() - digit) / 10) {
        return Error("dimension too large in 'shape'");
      }
      v = v * 10 + digit;
      ++pos_;
    }
    Consume('L');  // Python 2 long literals, as old NumPy versions wrote them.
    return v;
  }

  absl::StatusOr<Value> ParseValue(absl::string_view key) {
    Value v;
    if (pos_ >= text_.size()) return Error(absl::StrCat("missing value for '", key, "'"));
    const char c = text_[pos_];
    if (c == '\'' || c == '"') {
      auto s = ParseString();
      if (!s.ok()) return s.status();
      v.kind = Value::Kind::kString;
      v.str = std::move(*s);
      return v;
    }
    if (ConsumeWord("True")) {
      v.kind = Value::Kind::kBool;
      v.boolean = true;
      return v;
    }
    if (ConsumeWord("False")) {
      v.kind = Value::Kind::kBool;
      v.boolean = false;
      return v;
    }
    if (c == '[') {
      return Error(absl::StrCat("'", key, "' is a list (structured dtypes are not supported)"));
    }
    if (c != '(') return Error(absl::StrCat("unsupported value for '", key, "'"));
    ++pos_;
    v.kind = Value::Kind::kTuple;
    bool saw_comma = false;
    while (true) {
      SkipSpace();
      if (Consume(')')) break;
      if (static_cast<int>(v.tuple.size()) >= kMaxNpyRank) {
        return Error(absl::StrCat("more than ", kMaxNpyRank, " dimensions in 'shape'"));
      }
      auto d = ParseInt();
      if (!d.ok()) return d.status();
      v.tuple.push_back(*d);
      SkipSpace();
      if (Consume(',')) {
        saw_comma = true;
        continue;
      }
      SkipSpace();
      if (Consume(')')) break;
      return Error("expected ',' or ')' in 'shape'");
    }
    if (v.tuple.size() == 1 && !saw_comma) {
      return Error("'shape' (n) is an integer, not a tuple (a 1-d shape is written (n,))");
    }
    return v;
  }

  absl::string_view text_;
  size_t pos_ = 0;
};

absl::StatusOr<DType> DTypeFromDescr(absl::string_view descr) {
  if (descr == "<f4") return DType::kF32;
  if (descr == "<f2") return DType::kF16;
  if (descr == "<i4") return DType::kI32;
  if (descr == "<V2" || descr == "|V2" || descr == "bfloat16") return DType::kBF16;
  std::string hint;
  if (!descr.empty() && descr[0] == '>') hint = " (big-endian data is not supported)";
  if (descr == "<f8") hint = " (convert with .astype(np.float32))";
  if (descr == "<i8") hint = " (convert with .astype(np.int32))";
  return Malformed(absl::StrCat("unsupported descr '", absl::CHexEscape(descr), "'", hint,
                                "; accepted: '<f4', '<f2', '<i4', bfloat16 as '<V2', '|V2' or "
                                "'bfloat16'"));
}

}  // namespace

absl::string_view NpyDescr(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "<f4";
    case DType::kF16:
      return "<f2";
    case DType::kBF16:
      return "<V2";
    case DType::kI32:
      return "<i4";
  }
  return "?";
}

absl::StatusOr<NpyArray> ParseNpy(absl::Span<const uint8_t> bytes) {
  if (bytes.size() < kMagicSize + 2 || std::memcmp(bytes.data(), kMagic, kMagicSize) != 0) {
    return Malformed(absl::StrCat("not a .npy file: the first bytes are not \\x93NUMPY (",
                                  bytes.size(), " bytes in all)"));
  }
  const int major = bytes[6], minor = bytes[7];
  size_t len_bytes = 0;
  if (major == 1 && minor == 0) {
    len_bytes = 2;
  } else if ((major == 2 || major == 3) && minor == 0) {
    len_bytes = 4;
  } else {
    return Malformed(absl::StrCat("unsupported format version ", major, ".", minor,
                                  " (accepted: 1.0, 2.0, 3.0)"));
  }
  const size_t prefix = kMagicSize + 2 + len_bytes;
  if (bytes.size() < prefix) {
    return Malformed(
        absl::StrCat("truncated: ", bytes.size(), " bytes, the header length needs ", prefix));
  }
  uint64_t header_len = 0;
  for (size_t i = 0; i < len_bytes; ++i) {
    header_len |= static_cast<uint64_t>(bytes[kMagicSize + 2 + i]) << (8 * i);
  }
  if (header_len > kMaxHeaderBytes) {
    return Malformed(absl::StrCat("header length ", header_len, " exceeds the limit of ",
                                  kMaxHeaderBytes, " bytes"));
  }
  if (bytes.size() - prefix < header_len) {
    return Malformed(absl::StrCat("truncated: the header says ", header_len, " bytes, but only ",
                                  bytes.size() - prefix, " follow the ", prefix, "-byte prefix"));
  }
  const absl::string_view header(reinterpret_cast<const char*>(bytes.data()) + prefix, header_len);

  std::optional<Value> descr, fortran, shape;
  HeaderParser parser(header);
  if (absl::Status s = parser.Parse(descr, fortran, shape); !s.ok()) return s;
  if (!descr) return Malformed(absl::StrCat("header has no 'descr': ", Quote(header)));
  if (!fortran) return Malformed(absl::StrCat("header has no 'fortran_order': ", Quote(header)));
  if (!shape) return Malformed(absl::StrCat("header has no 'shape': ", Quote(header)));
  if (descr->kind != Value::Kind::kString) return Malformed("'descr' is not a string");
  if (fortran->kind != Value::Kind::kBool) return Malformed("'fortran_order' is not True/False");
  if (shape->kind != Value::Kind::kTuple) return Malformed("'shape' is not a tuple");
  auto dtype = DTypeFromDescr(descr->str);
  if (!dtype.ok()) return dtype.status();
  if (fortran->boolean) {
    return Malformed(
        "Fortran order ('fortran_order': True) is not supported; save a C-ordered array "
        "(np.ascontiguousarray(x))");
  }

  // Size of the data, checked against overflow.
  const int64_t item = DTypeSize(*dtype);
  // Also without the zero dimensions: views of the array compute strides from them.
  int64_t nonzero = item;
  for (int64_t d : shape->tuple) {
    if (d == 0) continue;
    if (nonzero > std::numeric_limits<int64_t>::max() / d) {
      return Malformed(absl::StrCat("shape (", absl::StrJoin(shape->tuple, ", "),
                                    ") is too large"));
    }
    nonzero *= d;
  }
  int64_t elements = 1;
  for (int64_t d : shape->tuple) {
    if (d != 0 && elements > std::numeric_limits<int64_t>::max() / item / d) {
      return Malformed(
          absl::StrCat("shape (", absl::StrJoin(shape->tuple, ", "), ") is too large"));
    }
    elements *= d;
  }
  const uint64_t data_bytes = static_cast<uint64_t>(elements * item);
  const uint64_t available = bytes.size() - prefix - header_len;
  if (available != data_bytes) {
    return Malformed(
        absl::StrCat(available < data_bytes ? "truncated data: " : "trailing bytes: ", "shape (",
                     absl::StrJoin(shape->tuple, ", "), ") of ", descr->str, " needs ", data_bytes,
                     " bytes, the file has ", available, " after the header"));
  }

  NpyArray out;
  out.data = HostBuffer::Allocate(*dtype, shape->tuple);
  if (data_bytes > 0) {
    std::memcpy(out.data.data(), bytes.data() + prefix + header_len, data_bytes);
  }
  return out;
}

absl::StatusOr<NpyArray> ReadNpy(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof(chunk), f)) > 0)
    bytes.insert(bytes.end(), chunk, chunk + n);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) return absl::UnavailableError(absl::StrCat(path, ": read error"));
  auto parsed = ParseNpy(bytes);
  if (!parsed.ok()) {
    return absl::Status(parsed.status().code(),
                        absl::StrCat(path, ": ", parsed.status().message()));
  }
  return parsed;
}

absl::StatusOr<std::string> SerializeNpy(const TensorView& tensor) {
  if (!tensor.device().is_cpu()) {
    return absl::InvalidArgumentError(
        absl::StrCat("npy: can only write host tensors, got ", tensor.DebugString()));
  }
  if (!tensor.is_contiguous()) {
    return absl::InvalidArgumentError(
        absl::StrCat("npy: can only write contiguous tensors, got ", tensor.DebugString()));
  }
  std::string shape = "(";
  for (int i = 0; i < tensor.rank(); ++i) {
    absl::StrAppend(&shape, i ? ", " : "", tensor.dim(i));
  }
  if (tensor.rank() == 1) shape += ",";
  shape += ")";
  std::string dict = absl::StrCat("{'descr': '", NpyDescr(tensor.dtype()),
                                  "', 'fortran_order': False, 'shape': ", shape, ", }");
  // Pad with spaces and end with '\n' so that the data is 64-byte aligned.
  size_t prefix = kMagicSize + 2 + 2;
  int major = 1;
  if (prefix + dict.size() + 1 > 65535) {
    prefix = kMagicSize + 2 + 4;
    major = 2;
  }
  const size_t total = (prefix + dict.size() + 1 + 63) / 64 * 64;
  dict.append(total - prefix - dict.size() - 1, ' ');
  dict.push_back('\n');
  const uint64_t header_len = dict.size();

  std::string out(kMagic, kMagicSize);
  out.push_back(static_cast<char>(major));
  out.push_back(0);
  for (size_t i = 0; i < prefix - kMagicSize - 2; ++i) {
    out.push_back(static_cast<char>((header_len >> (8 * i)) & 0xff));
  }
  out += dict;
  out.append(static_cast<const char*>(tensor.data()), tensor.nbytes());
  return out;
}

absl::Status WriteNpy(const std::string& path, const TensorView& tensor) {
  auto bytes = SerializeNpy(tensor);
  if (!bytes.ok()) return bytes.status();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    return absl::UnavailableError(absl::StrCat(path, ": cannot create: ", std::strerror(errno)));
  }
  const size_t written = std::fwrite(bytes->data(), 1, bytes->size(), f);
  const bool close_failed = std::fclose(f) != 0;
  if (written != bytes->size() || close_failed) {
    return absl::UnavailableError(absl::StrCat(path, ": write failed: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace ragged
