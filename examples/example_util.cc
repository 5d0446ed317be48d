#include "examples/example_util.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "examples/npy.h"
#include "kernels/problem.h"
#include "kernels/reference.h"
#include "runtime/status.h"

namespace ragged::examples {
namespace {

// A counter-based generator: element i of a tensor depends only on (seed, stream, i), so the
// inputs are the same for any thread count and can be filled in parallel.
uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Normal(0, stddev) values rounded to the buffer's dtype (Box-Muller on two hashed uniforms).
void FillNormal(const HostBuffer& buf, uint64_t seed, uint64_t stream, double stddev) {
  const int64_t n = buf.num_elements();
  const uint64_t key = SplitMix64(seed * 0x100000001b3ull + stream);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t a = SplitMix64(key ^ (2 * static_cast<uint64_t>(i)));
    const uint64_t b = SplitMix64(key ^ (2 * static_cast<uint64_t>(i) + 1));
    const double u1 = (static_cast<double>(a >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    const double u2 = static_cast<double>(b >> 11) * 0x1.0p-53;
    const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
    StoreFromFloat(buf.data(), buf.dtype(), i, static_cast<float>(z * stddev));
  }
}

absl::Status ReadLengthsFile(const std::string& path, int64_t batch, int64_t capacity,
                             int32_t* start, int32_t* end) {
  std::ifstream f(path);
  if (!f) return absl::NotFoundError(absl::StrCat("--lengths=file:", path, ": cannot open"));
  std::string line;
  int64_t row = 0, line_no = 0;
  while (std::getline(f, line)) {
    ++line_no;
    absl::string_view text = line;
    if (size_t hash = text.find('#'); hash != absl::string_view::npos) text = text.substr(0, hash);
    text = absl::StripAsciiWhitespace(text);
    if (text.empty()) continue;
    std::vector<absl::string_view> parts =
        absl::StrSplit(text, absl::ByAnyChar(" \t,"), absl::SkipEmpty());
    int64_t s = 0, e = 0;
    bool ok = parts.size() == 1 ? absl::SimpleAtoi(parts[0], &e)
                                : parts.size() == 2 && absl::SimpleAtoi(parts[0], &s) &&
                                      absl::SimpleAtoi(parts[1], &e);
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":", line_no, ": expected \"end\" or \"start end\", got \"", text, "\""));
    }
    if (s < 0 || s > e || e > capacity) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", line_no, ": row ", row, " [", s,
                                                     ", ", e, ") is not within [0, ", capacity,
                                                     "] (--capacity)"));
    }
    if (row >= batch) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_no, ": more rows than --batch=", batch));
    }
    start[row] = static_cast<int32_t>(s);
    end[row] = static_cast<int32_t>(e);
    ++row;
  }
  if (row != batch) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": has ", row, " rows, --batch is ", batch));
  }
  return absl::OkStatus();
}

absl::Status CheckRank(const NpyArray& a, const std::string& name, int rank, const char* layout) {
  if (static_cast<int>(a.shape().size()) != rank) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": expected ", layout, ", got shape ", ShapeToString(a.shape())));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LengthsSpec> ParseLengths(absl::string_view text) {
  LengthsSpec spec;
  if (text == "full") {
    spec.mode = LengthMode::kFull;
  } else if (text == "uniform") {
    spec.mode = LengthMode::kUniform;
  } else if (text == "offset") {
    spec.mode = LengthMode::kOffset;
  } else if (absl::ConsumePrefix(&text, "file:") && !text.empty()) {
    spec.mode = LengthMode::kFile;
    spec.path = std::string(text);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--lengths: expected full, uniform, offset or file:PATH, got \"", text, "\""));
  }
  return spec;
}

absl::StatusOr<std::optional<SlidingWindow>> ParseWindow(absl::string_view text) {
  if (text.empty() || text == "none") return std::optional<SlidingWindow>();
  std::vector<absl::string_view> parts = absl::StrSplit(text, ',');
  SlidingWindow w;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &w.left) ||
      !absl::SimpleAtoi(parts[1], &w.right)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--window: expected \"LEFT,RIGHT\" (e.g. 1024,0; -1 is unbounded) or none, got \"", text,
        "\""));
  }
  return std::optional<SlidingWindow>(w);
}

absl::StatusOr<SinkMode> ParseSinks(absl::string_view text) {
  if (text == "none" || text.empty()) return SinkMode::kNone;
  if (text == "shared") return SinkMode::kShared;
  if (text == "kv_head") return SinkMode::kPerKvHead;
  if (text == "q_head") return SinkMode::kPerQueryHead;
  return absl::InvalidArgumentError(
      absl::StrCat("--sinks: expected none, shared, kv_head or q_head, got \"", text, "\""));
}

Shape DecodeInputs::OutputShape() const {
  if (query.shape().size() == 4) return {batch(), 1, num_q_heads(), query.shape()[3]};
  return {batch(), num_q_heads(), query.shape()[2]};
}

HostBuffer DecodeInputs::AllocateOutput() const {
  return HostBuffer::Allocate(dtype(), OutputShape());
}

HostBuffer DecodeInputs::AllocateLse() const {
  return HostBuffer::Allocate(DType::kF32, {batch(), num_q_heads()});
}

RaggedDecodeAttentionArgs DecodeInputs::Args(const TensorView& output,
                                             std::optional<TensorView> lse) const {
  RaggedDecodeAttentionArgs a;
  a.query = query.view();
  a.key = key.view();
  a.value = value.view();
  a.sequence_start = start.view();
  a.sequence_end = end.view();
  if (aux) a.softmax_aux = aux->view();
  a.output = output;
  a.lse = lse;
  return a;
}

absl::StatusOr<DecodeInputs> GenerateInputs(const InputSpec& spec) {
  const int64_t B = spec.batch, S = spec.capacity, HQ = spec.num_q_heads, HKV = spec.num_kv_heads,
                D = spec.head_dim;
  const std::pair<const char*, int64_t> sizes[] = {
      {"--batch", B}, {"--capacity", S}, {"--q_heads", HQ}, {"--kv_heads", HKV}, {"--head_dim", D}};
  for (const auto& [name, v] : sizes) {
    if (v <= 0) return absl::InvalidArgumentError(absl::StrCat(name, " must be > 0, got ", v));
  }
  if (S > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat("--capacity ", S, " does not fit in int32"));
  }
  if (spec.sinks != SinkMode::kNone && spec.num_sinks <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--num_sinks must be > 0 with sinks, got ", spec.num_sinks));
  }
  DecodeInputs in;
  in.query = HostBuffer::Allocate(spec.dtype, {B, HQ, D});
  in.key = HostBuffer::Allocate(spec.dtype, {B, S, HKV, D});
  in.value = HostBuffer::Allocate(spec.dtype, {B, S, HKV, D});
  FillNormal(in.query, spec.seed, 1, 1.0);
  FillNormal(in.key, spec.seed, 2, 1.0);
  FillNormal(in.value, spec.seed, 3, 1.0);
  in.start = HostBuffer::Allocate(DType::kI32, {B});
  in.end = HostBuffer::Allocate(DType::kI32, {B});
  int32_t* start = in.start.data_as<int32_t>();
  int32_t* end = in.end.data_as<int32_t>();
  std::mt19937_64 rng(spec.seed * 31 + 5);
  for (int64_t b = 0; b < B; ++b) {
    int64_t s = 0, e = S;
    if (spec.lengths.mode == LengthMode::kUniform || spec.lengths.mode == LengthMode::kOffset) {
      const int64_t len = std::uniform_int_distribution<int64_t>(1, S)(rng);
      if (spec.lengths.mode == LengthMode::kOffset) {
        s = std::uniform_int_distribution<int64_t>(0, S - len)(rng);
      }
      e = s + len;
    }
    start[b] = static_cast<int32_t>(s);
    end[b] = static_cast<int32_t>(e);
  }
  if (spec.lengths.mode == LengthMode::kFile) {
    RAGGED_RETURN_IF_ERROR(ReadLengthsFile(spec.lengths.path, B, S, start, end));
  }
  switch (spec.sinks) {
    case SinkMode::kNone:
      break;
    case SinkMode::kShared:
      in.aux = HostBuffer::Allocate(DType::kF32, {spec.num_sinks});
      break;
    case SinkMode::kPerKvHead:
      in.aux = HostBuffer::Allocate(DType::kF32, {HKV, spec.num_sinks});
      break;
    case SinkMode::kPerQueryHead:
      in.aux = HostBuffer::Allocate(DType::kF32, {HQ, spec.num_sinks});
      break;
  }
  if (in.aux) FillNormal(*in.aux, spec.seed, 4, 2.0);
  return in;
}

absl::StatusOr<DecodeInputs> LoadInputs(const std::string& dir) {
  DecodeInputs in;
  auto load = [&](const char* name, HostBuffer& dst) -> absl::Status {
    RAGGED_ASSIGN_OR_RETURN(NpyArray a, ReadNpy(absl::StrCat(dir, "/", name)));
    dst = std::move(a.data);
    return absl::OkStatus();
  };
  RAGGED_RETURN_IF_ERROR(load("query.npy", in.query));
  RAGGED_RETURN_IF_ERROR(load("key.npy", in.key));
  RAGGED_RETURN_IF_ERROR(load("value.npy", in.value));
  RAGGED_RETURN_IF_ERROR(load("sequence_start.npy", in.start));
  RAGGED_RETURN_IF_ERROR(load("sequence_end.npy", in.end));
  const std::string aux_path = absl::StrCat(dir, "/softmax_aux.npy");
  if (std::ifstream(aux_path).good()) {
    in.aux.emplace();
    RAGGED_RETURN_IF_ERROR(load("softmax_aux.npy", *in.aux));
  }
  // The accessors above index these dimensions; the library checks everything else.
  const auto rank_of = [](const HostBuffer& b) { return static_cast<int>(b.shape().size()); };
  if (rank_of(in.query) != 3 && rank_of(in.query) != 4) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, "/query.npy: expected [B, HQ, D] or [B, T, HQ, D], got shape ",
                     ShapeToString(in.query.shape())));
  }
  for (auto [buf, name] : {std::pair{&in.key, "key.npy"}, std::pair{&in.value, "value.npy"}}) {
    if (rank_of(*buf) != 4) {
      return absl::InvalidArgumentError(absl::StrCat(
          dir, "/", name, ": expected [B, S, HKV, D], got shape ", ShapeToString(buf->shape())));
    }
  }
  for (auto [buf, name] :
       {std::pair{&in.start, "sequence_start.npy"}, std::pair{&in.end, "sequence_end.npy"}}) {
    if (rank_of(*buf) != 1 || buf->dtype() != DType::kI32) {
      return absl::InvalidArgumentError(
          absl::StrCat(dir, "/", name, ": expected int32 [B] ('<i4'), got ",
                       DTypeName(buf->dtype()), ShapeToString(buf->shape())));
    }
  }
  return in;
}

int64_t ValidKvBytes(const DecodeInputs& in, const std::optional<SlidingWindow>& window) {
  const int64_t S = in.capacity();
  int64_t positions = 0;
  for (int64_t b = 0; b < in.batch(); ++b) {
    const KvRange r =
        ComputeKvRange(in.start.data_as<int32_t>()[b], in.end.data_as<int32_t>()[b], S, 0, S,
                       window ? window->left : -1, window ? window->right : -1);
    positions += r.end - r.begin;
  }
  return positions * in.num_kv_heads() * in.head_dim() * 2 * DTypeSize(in.dtype());
}

std::vector<int64_t> SampleRows(const DecodeInputs& in, int64_t count, uint64_t seed) {
  const int64_t B = in.batch();
  std::vector<int64_t> rows;
  if (count <= 0 || count >= B) {
    for (int64_t b = 0; b < B; ++b) rows.push_back(b);
    return rows;
  }
  int64_t longest = 0;
  const int32_t* s = in.start.data_as<int32_t>();
  const int32_t* e = in.end.data_as<int32_t>();
  for (int64_t b = 1; b < B; ++b) {
    if (e[b] - s[b] > e[longest] - s[longest]) longest = b;
  }
  rows = {0, B - 1, longest};
  std::mt19937_64 rng(seed * 977 + 3);
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  while (static_cast<int64_t>(rows.size()) < count) {
    const int64_t r = std::uniform_int_distribution<int64_t>(0, B - 1)(rng);
    if (std::find(rows.begin(), rows.end(), r) == rows.end()) rows.push_back(r);
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

double ExampleTolerance(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 1e-4;
    case DType::kF16:
      return 2e-3;
    case DType::kBF16:
      return 1e-2;
    default:
      return 0.0;
  }
}

absl::StatusOr<VerifyResult> Verify(const DecodeInputs& in, const TensorView& output,
                                    const TensorView* lse,
                                    const RaggedDecodeAttentionOptions& options,
                                    const std::vector<int64_t>& rows) {
  VerifyResult v;
  v.tolerance = ExampleTolerance(in.dtype());
  const int64_t HQ = in.num_q_heads(), D = in.head_dim();
  const int64_t row_elems = HQ * D;
  if (output.num_elements() != in.batch() * row_elems || !output.is_contiguous()) {
    return absl::InternalError(absl::StrCat("verify: output ", output.DebugString(),
                                            " is not a contiguous [B, HQ, D] tensor"));
  }
  RaggedDecodeAttentionOptions ref_options = options;
  ref_options.platform = Platform::kReference;
  for (int64_t b : rows) {
    // The reference of one row: slice every batched tensor to [b, b + 1).
    HostBuffer scratch = HostBuffer::Allocate(output.dtype(), {1, HQ, D});
    RaggedDecodeAttentionArgs a;
    a.query = in.query.view().Slice(0, b, 1);
    a.key = in.key.view().Slice(0, b, 1);
    a.value = in.value.view().Slice(0, b, 1);
    a.sequence_start = in.start.view().Slice(0, b, 1);
    a.sequence_end = in.end.view().Slice(0, b, 1);
    if (in.aux) a.softmax_aux = in.aux->view();
    if (in.query.shape().size() == 4) {
      a.output = TensorView(scratch.data(), scratch.dtype(), Shape{1, 1, HQ, D});
    } else {
      a.output = scratch.view();
    }
    RAGGED_ASSIGN_OR_RETURN(ReferenceResult ref, ComputeReference(a, ref_options));
    double max_ref = 0.0;
    for (double x : ref.output) max_ref = std::max(max_ref, std::abs(x));
    const double denom = std::max(1.0, max_ref);
    for (int64_t i = 0; i < row_elems; ++i) {
      const double got = LoadAsFloat(output.data(), output.dtype(), b * row_elems + i);
      const double want = ref.output[i];
      double err = std::abs(got - want) / denom;
      if (std::isnan(got) != std::isnan(want)) err = std::numeric_limits<double>::infinity();
      if (std::isnan(want) && std::isnan(got)) err = 0.0;
      if (err > v.max_error) {
        v.max_error = err;
        v.detail = absl::StrFormat("row %d head %d dim %d: got %.6g, reference %.6g", b, i / D,
                                   i % D, got, want);
      }
    }
    if (lse != nullptr) {
      for (int64_t h = 0; h < HQ; ++h) {
        const double got = lse->data_as<float>()[b * HQ + h];
        const double want = ref.lse[h];
        double err = 0.0;
        if (std::isinf(want) || std::isnan(want)) {
          err = (got == want || (std::isnan(got) && std::isnan(want)))
                    ? 0.0
                    : std::numeric_limits<double>::infinity();
        } else {
          err = std::abs(got - want) / std::max(1.0, std::abs(want));
          if (std::isnan(err)) err = std::numeric_limits<double>::infinity();
        }
        if (err > v.max_lse_error) {
          v.max_lse_error = err;
          if (err > v.tolerance) {
            v.detail =
                absl::StrFormat("lse row %d head %d: got %.6g, reference %.6g", b, h, got, want);
          }
        }
      }
    }
    ++v.rows;
  }
  v.passed = v.max_error <= v.tolerance && v.max_lse_error <= v.tolerance;
  return v;
}

int HostThreads(int requested) { return requested > 0 ? requested : omp_get_max_threads(); }

TimeStats Summarize(std::vector<double> ms) {
  TimeStats t;
  t.count = static_cast<int64_t>(ms.size());
  if (ms.empty()) return t;
  std::sort(ms.begin(), ms.end());
  const size_t n = ms.size();
  t.median_ms = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
  t.min_ms = ms.front();
  t.max_ms = ms.back();
  double sum = 0.0;
  for (double x : ms) sum += x;
  t.mean_ms = sum / static_cast<double>(n);
  return t;
}

std::string FormatBytes(double bytes) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000.0 && u < 4) {
    bytes /= 1000.0;
    ++u;
  }
  return absl::StrFormat(u == 0 ? "%.0f %s" : "%.2f %s", bytes, units[u]);
}

std::string FormatRate(double bytes_per_second) {
  return absl::StrCat(FormatBytes(bytes_per_second), "/s");
}

void Table::Add(std::string key, std::string value) {
  rows_.emplace_back(std::move(key), std::move(value));
}

void Table::Rule() { rows_.emplace_back("\x01", ""); }

void Table::Print(std::FILE* out) const {
  size_t key_width = 0, width = title_.size();
  for (const auto& [k, v] : rows_) {
    if (k == "\x01") continue;
    key_width = std::max(key_width, k.size());
  }
  for (const auto& [k, v] : rows_) {
    if (k != "\x01") width = std::max(width, key_width + 2 + v.size());
  }
  const std::string rule(width, '-');
  std::fprintf(out, "%s\n%s\n", title_.c_str(), rule.c_str());
  for (const auto& [k, v] : rows_) {
    if (k == "\x01") {
      std::fprintf(out, "%s\n", rule.c_str());
    } else {
      std::fprintf(out, "%-*s  %s\n", static_cast<int>(key_width), k.c_str(), v.c_str());
    }
  }
  std::fflush(out);
}

}  // namespace ragged::examples
