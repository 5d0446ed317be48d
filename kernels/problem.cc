#include "kernels/problem.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace ragged {
namespace {

absl::Status Invalid(const std::string& msg) { return absl::InvalidArgumentError(msg); }

// Checks `t`'s rank, dtype set, and that its innermost stride is 1 and no stride is negative.
absl::Status CheckTensor(const TensorView& t, absl::string_view name, int rank_a, int rank_b,
                         absl::string_view expected_layout) {
  bool has_zero_dim = false;
  for (int64_t d : t.shape()) has_zero_dim = has_zero_dim || d == 0;
  if (t.data() == nullptr && !has_zero_dim) {
    return Invalid(
        absl::StrCat(name, ": data pointer is null for a non-empty tensor ", t.DebugString()));
  }
  if (t.rank() != rank_a && t.rank() != rank_b) {
    std::string want =
        rank_a == rank_b ? absl::StrCat(rank_a) : absl::StrCat(rank_a, " or ", rank_b);
    return Invalid(absl::StrCat(name, ": expected rank ", want, " ", expected_layout, ", got rank ",
                                t.rank(), " ", ShapeToString(t.shape())));
  }
  for (int i = 0; i < t.rank(); ++i) {
    if (t.dim(i) < 0) {
      return Invalid(
          absl::StrCat(name, ": dimension ", i, " is negative: ", ShapeToString(t.shape())));
    }
    if (t.stride(i) < 0) {
      return Invalid(absl::StrCat(name, ": stride ", i, " is negative (", t.stride(i), ")"));
    }
  }
  if (t.rank() > 0 && t.dim(t.rank() - 1) > 1 && t.stride(t.rank() - 1) != 1) {
    return Invalid(
        absl::StrCat(name, ": expected innermost stride 1, got ", t.stride(t.rank() - 1)));
  }
  return absl::OkStatus();
}

// Checks that no two elements of `t` share an address (an output that overlaps itself would hold
// whichever write lands last). With the dims of extent > 1 sorted by stride, each stride must be
// at least the previous stride times the previous extent.
absl::Status CheckNoSelfOverlap(const TensorView& t, absl::string_view name) {
  std::vector<std::pair<int64_t, int64_t>> dims;  // (stride, extent)
  for (int i = 0; i < t.rank(); ++i) {
    if (t.dim(i) == 0) return absl::OkStatus();  // no elements
    if (t.dim(i) > 1) dims.emplace_back(t.stride(i), t.dim(i));
  }
  std::sort(dims.begin(), dims.end());
  int64_t span = 1;  // elements spanned by the dims so far
  for (const auto& [stride, extent] : dims) {
    if (stride < span) {
      std::string strides;
      for (int i = 0; i < t.rank(); ++i) absl::StrAppend(&strides, i ? ", " : "", t.stride(i));
      return Invalid(absl::StrCat(name, ": strides (", strides, ") for shape ",
                                  ShapeToString(t.shape()),
                                  " make distinct elements share memory; an output must not "
                                  "overlap itself"));
    }
    if (stride > std::numeric_limits<int64_t>::max() / extent) {
      return Invalid(
          absl::StrCat(name, ": strides too large for shape ", ShapeToString(t.shape())));
    }
    span = stride * extent;
  }
  return absl::OkStatus();
}

absl::Status CheckDim(const TensorView& t, absl::string_view name, int dim, absl::string_view what,
                      int64_t expected) {
  if (t.dim(dim) != expected) {
    return Invalid(absl::StrCat(name, ": expected dimension ", dim, " (", what, ") to be ",
                                expected, ", got ", t.dim(dim), " in shape ",
                                ShapeToString(t.shape())));
  }
  return absl::OkStatus();
}

absl::Status CheckDevice(const TensorView& t, absl::string_view name, Device device) {
  if (!(t.device() == device)) {
    return Invalid(absl::StrCat(name, ": expected a tensor on ", device.ToString(), ", got one on ",
                                t.device().ToString()));
  }
  return absl::OkStatus();
}

// The stride of a dimension of extent 1 is never used to move: 0, so that no backend forms an
// out-of-range pointer from it.
int64_t StrideOf(const TensorView& t, int i) { return t.dim(i) == 1 ? 0 : t.stride(i); }

}  // namespace

absl::string_view PlatformName(Platform p) {
  switch (p) {
    case Platform::kAuto:
      return "auto";
    case Platform::kCpu:
      return "cpu";
    case Platform::kCuda:
      return "cuda";
    case Platform::kReference:
      return "reference";
  }
  return "unknown";
}

absl::StatusOr<Platform> ParsePlatform(absl::string_view name) {
  if (name == "auto") return Platform::kAuto;
  if (name == "cpu") return Platform::kCpu;
  if (name == "cuda" || name == "gpu") return Platform::kCuda;
  if (name == "reference") return Platform::kReference;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown platform \"", name, "\"; expected one of auto, cpu, cuda, reference"));
}

absl::StatusOr<Problem> ValidateProblem(const RaggedDecodeAttentionArgs& args,
                                        const RaggedDecodeAttentionOptions& options,
                                        Platform platform) {
  Problem p;
  const TensorView& q = args.query;
  const TensorView& k = args.key;
  const TensorView& v = args.value;

  // Query: [B, HQ, D] or [B, T, HQ, D].
  if (auto s = CheckTensor(q, "query", 3, 4,
                           "[batch, num_q_heads, head_dim] or "
                           "[batch, tokens, num_q_heads, head_dim]");
      !s.ok()) {
    return s;
  }
  if (!IsFloating(q.dtype())) {
    return Invalid(
        absl::StrCat("query: expected dtype f32, f16 or bf16, got ", DTypeName(q.dtype())));
  }
  p.query_is_4d = q.rank() == 4;
  const int hq_dim = p.query_is_4d ? 2 : 1;
  p.batch = q.dim(0);
  p.num_q_heads = q.dim(hq_dim);
  p.head_dim = q.dim(hq_dim + 1);
  p.dtype = q.dtype();
  if (p.query_is_4d && q.dim(1) < 1) {
    return Invalid(absl::StrCat("query: expected at least one token (dimension 1), got 0 in shape ",
                                ShapeToString(q.shape())));
  }
  if (p.num_q_heads < 1) return Invalid("query: expected num_q_heads >= 1, got 0");
  if (p.head_dim < 1) return Invalid("query: expected head_dim >= 1, got 0");

  // Key and value: [B, S, HKV, D].
  for (auto [t, name] : {std::pair{&k, "key"}, std::pair{&v, "value"}}) {
    if (auto s = CheckTensor(*t, name, 4, 4, "[batch, seq, num_kv_heads, head_dim]"); !s.ok()) {
      return s;
    }
    if (t->dtype() != p.dtype) {
      return Invalid(absl::StrCat(name, ": expected dtype ", DTypeName(p.dtype),
                                  " (the query's), got ", DTypeName(t->dtype())));
    }
    if (auto s = CheckDim(*t, name, 0, "batch", p.batch); !s.ok()) return s;
    if (auto s = CheckDim(*t, name, 3, "head_dim", p.head_dim); !s.ok()) return s;
  }
  p.capacity = k.dim(1);
  p.num_kv_heads = k.dim(2);
  if (auto s = CheckDim(v, "value", 1, "seq", p.capacity); !s.ok()) return s;
  if (auto s = CheckDim(v, "value", 2, "num_kv_heads", p.num_kv_heads); !s.ok()) return s;
  if (p.num_kv_heads < 1) return Invalid("key: expected num_kv_heads >= 1, got 0");
  if (p.num_q_heads % p.num_kv_heads != 0) {
    return Invalid(absl::StrCat("query/key: num_q_heads (", p.num_q_heads,
                                ") must be a multiple of num_kv_heads (", p.num_kv_heads, ")"));
  }
  p.group_size = p.num_q_heads / p.num_kv_heads;

  // start / end: [B] int32.
  for (auto [t, name] : {std::pair{&args.sequence_start, "sequence_start"},
                         std::pair{&args.sequence_end, "sequence_end"}}) {
    if (auto s = CheckTensor(*t, name, 1, 1, "[batch]"); !s.ok()) return s;
    if (t->dtype() != DType::kI32) {
      return Invalid(absl::StrCat(name, ": expected dtype i32, got ", DTypeName(t->dtype())));
    }
    if (auto s = CheckDim(*t, name, 0, "batch", p.batch); !s.ok()) return s;
  }

  // Output: [B, HQ, D] or [B, 1, HQ, D].
  const TensorView& o = args.output;
  if (auto s = CheckTensor(o, "output", 3, 4, "[batch, num_q_heads, head_dim]"); !s.ok()) return s;
  if (o.dtype() != p.dtype && o.dtype() != DType::kF32) {
    return Invalid(absl::StrCat("output: expected dtype ", DTypeName(p.dtype),
                                " (the query's) or f32, got ", DTypeName(o.dtype())));
  }
  const int o_h = o.rank() == 4 ? 2 : 1;
  if (o.rank() == 4 && o.dim(1) != 1) {
    return Invalid(
        absl::StrCat("output: a 4-D output must be [batch, 1, num_q_heads, head_dim], got ",
                     ShapeToString(o.shape())));
  }
  if (auto s = CheckDim(o, "output", 0, "batch", p.batch); !s.ok()) return s;
  if (auto s = CheckDim(o, "output", o_h, "num_q_heads", p.num_q_heads); !s.ok()) return s;
  if (auto s = CheckDim(o, "output", o_h + 1, "head_dim", p.head_dim); !s.ok()) return s;
  if (auto s = CheckNoSelfOverlap(o, "output"); !s.ok()) return s;
  p.output_dtype = o.dtype();

  // lse: [B, HQ] f32.
  if (args.lse.has_value()) {
    const TensorView& l = *args.lse;
    if (auto s = CheckTensor(l, "lse", 2, 2, "[batch, num_q_heads]"); !s.ok()) return s;
    if (l.dtype() != DType::kF32) {
      return Invalid(absl::StrCat("lse: expected dtype f32, got ", DTypeName(l.dtype())));
    }
    if (auto s = CheckDim(l, "lse", 0, "batch", p.batch); !s.ok()) return s;
    if (auto s = CheckDim(l, "lse", 1, "num_q_heads", p.num_q_heads); !s.ok()) return s;
    if (auto s = CheckNoSelfOverlap(l, "lse"); !s.ok()) return s;
  }

  // Sinks.
  if (args.softmax_aux.has_value()) {
    const TensorView& a = *args.softmax_aux;
    if (auto s = CheckTensor(a, "softmax_aux", 1, 2,
                             "[num_sinks], [num_kv_heads, num_sinks] or "
                             "[num_q_heads, num_sinks]");
        !s.ok()) {
      return s;
    }
    if (a.dtype() != DType::kF32 && a.dtype() != p.dtype) {
      return Invalid(absl::StrCat("softmax_aux: expected dtype f32 or ", DTypeName(p.dtype),
                                  " (the query's), got ", DTypeName(a.dtype())));
    }
    p.aux_dtype = a.dtype();
    if (a.rank() == 1) {
      p.sink_layout = SinkLayout::kShared;
      p.num_sinks = a.dim(0);
      p.aux_stride_row = 0;
      p.aux_stride_sink = StrideOf(a, 0);
    } else {
      p.num_sinks = a.dim(1);
      p.aux_stride_row = StrideOf(a, 0);
      p.aux_stride_sink = StrideOf(a, 1);
      if (a.dim(0) == p.num_q_heads) {
        p.sink_layout = SinkLayout::kPerQueryHead;  // also HQ == HKV, where both mean the same
      } else if (a.dim(0) == p.num_kv_heads) {
        p.sink_layout = SinkLayout::kPerKvHead;
      } else {
        return Invalid(absl::StrCat("softmax_aux: expected dimension 0 to be num_kv_heads (",
                                    p.num_kv_heads, ") or num_q_heads (", p.num_q_heads, "), got ",
                                    a.dim(0), " in shape ", ShapeToString(a.shape())));
      }
    }
    if (p.num_sinks < 1) {
      return Invalid(absl::StrCat("softmax_aux: expected at least one sink, got shape ",
                                  ShapeToString(a.shape())));
    }
    p.aux = a.data();
  }

  // Options.
  p.softmax_scale = options.softmax_scale.has_value()
                        ? *options.softmax_scale
                        : static_cast<float>(1.0 / std::sqrt(static_cast<double>(p.head_dim)));
  if (!std::isfinite(p.softmax_scale) || !(p.softmax_scale > 0.0f)) {
    return Invalid(
        absl::StrCat("softmax_scale: expected a finite value > 0, got ", p.softmax_scale));
  }
  if (options.logits_soft_cap.has_value()) {
    float c = *options.logits_soft_cap;
    if (!std::isfinite(c) || !(c > 0.0f)) {
      return Invalid(absl::StrCat("logits_soft_cap: expected a finite value > 0, got ", c));
    }
    p.soft_cap = c;
  }
  if (options.sliding_window.has_value()) {
    const SlidingWindow& w = *options.sliding_window;
    if (w.left < 0 && w.right < 0) {
      return Invalid(absl::StrCat("sliding_window: both sides are unbounded (left ", w.left,
                                  ", right ", w.right,
                                  "); expected at least one side >= 0, or no window"));
    }
    p.window_left = w.left < 0 ? -1 : w.left;
    p.window_right = w.right < 0 ? -1 : w.right;
  }
  if (options.kv_offset < 0) {
    return Invalid(absl::StrCat("kv_offset: expected a value >= 0, got ", options.kv_offset));
  }
  if (options.kv_offset > std::numeric_limits<int64_t>::max() - p.capacity) {
    return Invalid(absl::StrCat("kv_offset: too large (", options.kv_offset, ")"));
  }
  p.kv_offset = options.kv_offset;
  p.total_capacity =
      options.kv_total_capacity > 0 ? options.kv_total_capacity : p.kv_offset + p.capacity;
  if (p.total_capacity < p.kv_offset + p.capacity) {
    return Invalid(absl::StrCat("kv_total_capacity: expected at least kv_offset + seq (",
                                p.kv_offset + p.capacity, "), got ", options.kv_total_capacity));
  }
  if (options.num_threads < 0) {
    return Invalid(absl::StrCat("num_threads: expected a value >= 0, got ", options.num_threads));
  }

  // Devices: every tensor where the platform computes.
  p.device = platform == Platform::kCuda ? q.device() : Device::Cpu();
  if (platform == Platform::kCuda && !q.device().is_cuda()) {
    return Invalid(
        absl::StrCat("query: the cuda platform needs tensors on a CUDA device, got one on ",
                     q.device().ToString()));
  }
  for (auto [t, name] : {std::pair{&q, "query"}, std::pair{&k, "key"}, std::pair{&v, "value"},
                         std::pair{&args.sequence_start, "sequence_start"},
                         std::pair{&args.sequence_end, "sequence_end"}, std::pair{&o, "output"}}) {
    if (auto s = CheckDevice(*t, name, p.device); !s.ok()) return s;
  }
  if (args.lse.has_value()) {
    if (auto s = CheckDevice(*args.lse, "lse", p.device); !s.ok()) return s;
  }
  if (args.softmax_aux.has_value()) {
    if (auto s = CheckDevice(*args.softmax_aux, "softmax_aux", p.device); !s.ok()) return s;
  }

  // Pointers and strides.
  const int64_t esize = DTypeSize(p.dtype);
  const char* qbase = static_cast<const char*>(q.data());
  if (p.query_is_4d && qbase != nullptr) qbase += (q.dim(1) - 1) * StrideOf(q, 1) * esize;
  p.query = qbase;
  p.q_stride_b = StrideOf(q, 0);
  p.q_stride_h = StrideOf(q, hq_dim);
  p.key = k.data();
  p.k_stride_b = StrideOf(k, 0);
  p.k_stride_s = StrideOf(k, 1);
  p.k_stride_h = StrideOf(k, 2);
  p.value = v.data();
  p.v_stride_b = StrideOf(v, 0);
  p.v_stride_s = StrideOf(v, 1);
  p.v_stride_h = StrideOf(v, 2);
  p.sequence_start = args.sequence_start.data_as<const int32_t>();
  p.start_stride = StrideOf(args.sequence_start, 0);
  p.sequence_end = args.sequence_end.data_as<const int32_t>();
  p.end_stride = StrideOf(args.sequence_end, 0);
  p.output = o.data();
  p.o_stride_b = StrideOf(o, 0);
  p.o_stride_h = StrideOf(o, o_h);
  if (args.lse.has_value()) {
    p.lse = args.lse->data_as<float>();
    p.lse_stride_b = StrideOf(*args.lse, 0);
    p.lse_stride_h = StrideOf(*args.lse, 1);
  }
  return p;
}

absl::Status ValidateRangesOnHost(const Problem& problem, const int32_t* start,
                                  const int32_t* end) {
  for (int64_t b = 0; b < problem.batch; ++b) {
    const int64_t s = start[b], e = end[b];
    if (s < 0 || e < s || e > problem.total_capacity) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "sequence_start/sequence_end: row %d has [start, end) = [%d, %d); expected "
          "0 <= start <= end <= %d (the KV capacity)",
          b, s, e, problem.total_capacity));
    }
  }
  return absl::OkStatus();
}

}  // namespace ragged
