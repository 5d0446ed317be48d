#include "kernels/reference.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "runtime/status.h"

namespace ragged {
namespace {

double Load(const void* base, DType t, int64_t index) {
  return static_cast<double>(LoadAsFloat(base, t, index));
}

}  // namespace

ReferenceResult ComputeReference(const Problem& p) {
  const int64_t B = p.batch, HQ = p.num_q_heads, D = p.head_dim;
  ReferenceResult r;
  r.output.assign(B * HQ * D, 0.0);
  r.lse.assign(B * HQ, -std::numeric_limits<double>::infinity());
  std::vector<double> logits;
  for (int64_t b = 0; b < B; ++b) {
    const KvRange range =
        ComputeKvRange(p.sequence_start[b * p.start_stride], p.sequence_end[b * p.end_stride],
                       p.capacity, p.kv_offset, p.total_capacity, p.window_left, p.window_right);
    for (int64_t h = 0; h < HQ; ++h) {
      const int64_t g = h / p.group_size;
      // Logits over the valid positions (steps 4-5).
      logits.clear();
      for (int64_t t = range.begin; t < range.end; ++t) {
        double dot = 0.0;
        for (int64_t d = 0; d < D; ++d) {
          dot += Load(p.query, p.dtype, b * p.q_stride_b + h * p.q_stride_h + d) *
                 Load(p.key, p.dtype, b * p.k_stride_b + t * p.k_stride_s + g * p.k_stride_h + d);
        }
        double x = static_cast<double>(p.softmax_scale) * dot;
        if (p.soft_cap > 0.0f) x = p.soft_cap * std::tanh(x / p.soft_cap);
        logits.push_back(x);
      }
      // Sinks (step 6): raw logits.
      std::vector<double> sinks;
      for (int64_t j = 0; j < p.num_sinks; ++j) {
        sinks.push_back(
            Load(p.aux, p.aux_dtype, p.AuxRow(h) * p.aux_stride_row + j * p.aux_stride_sink));
      }
      // Step 7-8.
      double m = -std::numeric_limits<double>::infinity();
      for (double x : logits) m = std::max(m, x);
      for (double a : sinks) m = std::max(m, a);
      double* out = &r.output[(b * HQ + h) * D];
      if (logits.empty()) {
        if (!sinks.empty()) {
          double denom = 0.0;
          for (double a : sinks) denom += std::exp(a - m);
          r.lse[b * HQ + h] = m + std::log(denom);
        }
        continue;  // output stays 0
      }
      double denom = 0.0;
      for (double a : sinks) denom += std::exp(a - m);
      for (size_t i = 0; i < logits.size(); ++i) {
        const double w = std::exp(logits[i] - m);
        denom += w;
        const int64_t t = range.begin + static_cast<int64_t>(i);
        for (int64_t d = 0; d < D; ++d) {
          out[d] += w * Load(p.value, p.dtype,
                             b * p.v_stride_b + t * p.v_stride_s + g * p.v_stride_h + d);
        }
      }
      for (int64_t d = 0; d < D; ++d) out[d] /= denom;
      r.lse[b * HQ + h] = m + std::log(denom);
    }
  }
  return r;
}

absl::StatusOr<ReferenceResult> ComputeReference(const RaggedDecodeAttentionArgs& args,
                                                 const RaggedDecodeAttentionOptions& options) {
  RAGGED_ASSIGN_OR_RETURN(Problem p, ValidateProblem(args, options, Platform::kReference));
  std::vector<int32_t> start(p.batch), end(p.batch);
  for (int64_t b = 0; b < p.batch; ++b) {
    start[b] = p.sequence_start[b * p.start_stride];
    end[b] = p.sequence_end[b * p.end_stride];
  }
  RAGGED_RETURN_IF_ERROR(ValidateRangesOnHost(p, start.data(), end.data()));
  return ComputeReference(p);
}

namespace internal {

absl::Status RunReference(const Problem& p) {
  ReferenceResult r = ComputeReference(p);
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t h = 0; h < p.num_q_heads; ++h) {
      for (int64_t d = 0; d < p.head_dim; ++d) {
        StoreFromFloat(p.output, p.output_dtype, b * p.o_stride_b + h * p.o_stride_h + d,
                       static_cast<float>(r.output[(b * p.num_q_heads + h) * p.head_dim + d]));
      }
      if (p.lse != nullptr) {
        p.lse[b * p.lse_stride_b + h * p.lse_stride_h] =
            static_cast<float>(r.lse[b * p.num_q_heads + h]);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace internal
}  // namespace ragged
