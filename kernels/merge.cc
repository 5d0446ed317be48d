#include "kernels/merge.h"

#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/status.h"

#if RAGGED_WITH_CUDA
#include "kernels/cuda/merge_cuda.h"
#endif

namespace ragged {
namespace {

absl::Status Invalid(const std::string& s) { return absl::InvalidArgumentError(s); }

struct MergeShape {
  int64_t parts, batch, heads, dim, aux_rows_per_head_div, num_sinks;
  int aux_kind;  // 0 none, 1 shared, 2 per kv head, 3 per q head
};

absl::StatusOr<MergeShape> CheckMerge(const MergePartialsArgs& a) {
  MergeShape m{};
  const TensorView& po = a.partial_output;
  const TensorView& pl = a.partial_lse;
  if (po.rank() != 4) {
    return Invalid(absl::StrCat("partial_output: expected rank 4 [parts, batch, heads, dim], got ",
                                ShapeToString(po.shape())));
  }
  if (!IsFloating(po.dtype())) return Invalid("partial_output: expected a floating dtype");
  m.parts = po.dim(0);
  m.batch = po.dim(1);
  m.heads = po.dim(2);
  m.dim = po.dim(3);
  const int64_t want_lse[] = {m.parts, m.batch, m.heads};
  if (pl.rank() != 3 || pl.dtype() != DType::kF32 || pl.dim(0) != m.parts || pl.dim(1) != m.batch ||
      pl.dim(2) != m.heads) {
    return Invalid(absl::StrCat("partial_lse: expected f32", ShapeToString(want_lse), ", got ",
                                pl.DebugString()));
  }
  const int64_t want_out[] = {m.batch, m.heads, m.dim};
  const TensorView& o = a.output;
  if (o.rank() != 3 || o.dim(0) != m.batch || o.dim(1) != m.heads || o.dim(2) != m.dim ||
      !IsFloating(o.dtype())) {
    return Invalid(absl::StrCat("output: expected a floating tensor of shape ",
                                ShapeToString(want_out), ", got ", o.DebugString()));
  }
  if (a.lse.has_value()) {
    const int64_t want[] = {m.batch, m.heads};
    if (a.lse->rank() != 2 || a.lse->dtype() != DType::kF32 || a.lse->dim(0) != m.batch ||
        a.lse->dim(1) != m.heads) {
      return Invalid(
          absl::StrCat("lse: expected f32", ShapeToString(want), ", got ", a.lse->DebugString()));
    }
  }
  if (a.softmax_aux.has_value()) {
    const TensorView& x = *a.softmax_aux;
    const int64_t hkv = a.num_kv_heads > 0 ? a.num_kv_heads : m.heads;
    if (m.heads % hkv != 0) {
      return Invalid(
          absl::StrCat("num_kv_heads: ", hkv, " does not divide the ", m.heads, " query heads"));
    }
    if (x.rank() == 1) {
      m.aux_kind = 1;
      m.num_sinks = x.dim(0);
    } else if (x.rank() == 2 && x.dim(0) == m.heads) {
      m.aux_kind = 3;
      m.num_sinks = x.dim(1);
    } else if (x.rank() == 2 && x.dim(0) == hkv) {
      m.aux_kind = 2;
      m.num_sinks = x.dim(1);
      m.aux_rows_per_head_div = m.heads / hkv;
    } else {
      return Invalid(absl::StrCat("softmax_aux: expected [NS], [", hkv, ", NS] or [", m.heads,
                                  ", NS], got ", ShapeToString(x.shape())));
    }
    if (!IsFloating(x.dtype())) return Invalid("softmax_aux: expected a floating dtype");
  }
  for (const TensorView* t : {&po, &pl, &o}) {
    if (!(t->device() == po.device())) {
      return Invalid(absl::StrCat("merge: all tensors must be on one device; got ",
                                  po.device().ToString(), " and ", t->device().ToString()));
    }
  }
  return m;
}

// Strided element offset of index (i0, i1, ...) in `t`.
int64_t Offset(const TensorView& t, std::initializer_list<int64_t> idx) {
  int64_t off = 0;
  int i = 0;
  for (int64_t x : idx) off += x * t.stride(i++);
  return off;
}

absl::Status MergeOnHost(const MergePartialsArgs& a, const MergeShape& m) {
  const double kNegInf = -std::numeric_limits<double>::infinity();
  std::vector<double> acc(m.dim);
  for (int64_t b = 0; b < m.batch; ++b) {
    for (int64_t h = 0; h < m.heads; ++h) {
      double mx = kNegInf;
      for (int64_t i = 0; i < m.parts; ++i) {
        double l = a.partial_lse.data_as<float>()[Offset(a.partial_lse, {i, b, h})];
        if (std::isnan(l))
          mx = l;
        else if (!std::isnan(mx))
          mx = std::max(mx, l);
      }
      std::vector<double> sinks;
      if (m.aux_kind != 0) {
        const int64_t row =
            m.aux_kind == 1 ? 0 : (m.aux_kind == 2 ? h / m.aux_rows_per_head_div : h);
        for (int64_t j = 0; j < m.num_sinks; ++j) {
          const TensorView& x = *a.softmax_aux;
          const int64_t off = m.aux_kind == 1 ? Offset(x, {j}) : Offset(x, {row, j});
          sinks.push_back(LoadAsFloat(x.data(), x.dtype(), off));
        }
      }
      double sink_max = kNegInf;
      for (double s : sinks) sink_max = std::max(sink_max, s);
      const double top = std::isnan(mx) ? mx : std::max(mx, sink_max);
      std::fill(acc.begin(), acc.end(), 0.0);
      double denom = 0.0;
      if (mx != kNegInf) {
        for (int64_t i = 0; i < m.parts; ++i) {
          double l = a.partial_lse.data_as<float>()[Offset(a.partial_lse, {i, b, h})];
          if (l == kNegInf) continue;
          const double w = std::exp(l - top);
          denom += w;
          for (int64_t d = 0; d < m.dim; ++d) {
            acc[d] += w * LoadAsFloat(a.partial_output.data(), a.partial_output.dtype(),
                                      Offset(a.partial_output, {i, b, h, d}));
          }
        }
      }
      for (double s : sinks) denom += std::exp(s - top);
      const bool any = mx != kNegInf;
      for (int64_t d = 0; d < m.dim; ++d) {
        StoreFromFloat(a.output.data(), a.output.dtype(), Offset(a.output, {b, h, d}),
                       any ? static_cast<float>(acc[d] / denom) : 0.0f);
      }
      if (a.lse.has_value()) {
        const double lse = (denom > 0.0 || std::isnan(denom)) ? top + std::log(denom) : kNegInf;
        a.lse->data_as<float>()[Offset(*a.lse, {b, h})] = static_cast<float>(lse);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status MergePartials(const MergePartialsArgs& args, Stream stream) {
  RAGGED_ASSIGN_OR_RETURN(MergeShape m, CheckMerge(args));
  if (args.partial_output.device().is_cpu()) return MergeOnHost(args, m);
#if RAGGED_WITH_CUDA
  return internal::MergePartialsCuda(args, stream);
#else
  return absl::FailedPreconditionError("MergePartials: CUDA tensors, but ragged has no CUDA");
#endif
}

}  // namespace ragged
