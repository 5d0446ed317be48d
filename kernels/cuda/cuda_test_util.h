// GPU test helpers: copies of a HostProblem on a CUDA device, and a run-and-compare helper.
//
// DeviceProblem owns device copies of a HostProblem's inputs, NaN-poisoned outputs and a
// workspace, and exposes device views as RaggedDecodeAttentionArgs. Header-only so that each
// GPU test binary stays one source file. Not thread-safe.
#ifndef RAGGED_KERNELS_CUDA_CUDA_TEST_UTIL_H_
#define RAGGED_KERNELS_CUDA_CUDA_TEST_UTIL_H_

#include <cuda_runtime.h>

#include <vector>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "kernels/problem.h"
#include "kernels/ragged_decode_attention.h"
#include "kernels/reference.h"
#include "kernels/test_util.h"
#include "runtime/buffer.h"
#include "runtime/status.h"

namespace ragged::testing {

#define RAGGED_SKIP_WITHOUT_GPU()                                                               \
  do {                                                                                          \
    if (::ragged::CudaDeviceCount() == 0) {                                                     \
      GTEST_SKIP() << "no CUDA device is visible: the CUDA kernels cannot run on this machine"; \
    }                                                                                           \
  } while (0)

#define RAGGED_ASSERT_OK(expr)                                    \
  do {                                                            \
    const ::absl::Status s_ = ::ragged::internal::AsStatus(expr); \
    ASSERT_TRUE(s_.ok()) << s_;                                   \
  } while (0)

inline absl::StatusOr<DeviceBuffer> UploadBuffer(const HostBuffer& h, cudaStream_t s) {
  RAGGED_ASSIGN_OR_RETURN(DeviceBuffer d, DeviceBuffer::Allocate(h.dtype(), h.shape(), 0));
  RAGGED_RETURN_IF_ERROR(d.CopyFromHost(h.view(), s));
  return d;
}

struct DeviceProblem {
  DeviceBuffer q, k, v, start, end, aux, out, lse, ws;
  RaggedDecodeAttentionArgs args;  // device views of the buffers above
};

// Copies `hp` to device 0 on `s` and sizes the workspace for `opts` (platform must be CUDA).
inline absl::StatusOr<DeviceProblem> Upload(const HostProblem& hp,
                                            const RaggedDecodeAttentionOptions& opts,
                                            cudaStream_t s) {
  DeviceProblem d;
  RAGGED_ASSIGN_OR_RETURN(d.q, UploadBuffer(hp.query, s));
  RAGGED_ASSIGN_OR_RETURN(d.k, UploadBuffer(hp.key, s));
  RAGGED_ASSIGN_OR_RETURN(d.v, UploadBuffer(hp.value, s));
  RAGGED_ASSIGN_OR_RETURN(d.start, UploadBuffer(hp.start, s));
  RAGGED_ASSIGN_OR_RETURN(d.end, UploadBuffer(hp.end, s));
  RAGGED_ASSIGN_OR_RETURN(d.out, UploadBuffer(hp.output, s));  // NaN-poisoned by MakeHostProblem
  RAGGED_ASSIGN_OR_RETURN(d.lse, UploadBuffer(hp.lse, s));
  d.args.query = d.q.view();
  d.args.key = d.k.view();
  d.args.value = d.v.view();
  d.args.sequence_start = d.start.view();
  d.args.sequence_end = d.end.view();
  d.args.output = d.out.view();
  if (hp.c.with_lse) d.args.lse = d.lse.view();
  if (hp.c.sinks != Sinks::kNone) {
    RAGGED_ASSIGN_OR_RETURN(d.aux, UploadBuffer(hp.aux, s));
    d.args.softmax_aux = d.aux.view();
  }
  RAGGED_ASSIGN_OR_RETURN(int64_t bytes, RaggedDecodeAttentionWorkspaceSize(d.args, opts));
  RAGGED_ASSIGN_OR_RETURN(d.ws, DeviceBuffer::AllocateBytes(bytes, 0));
  // Garbage in the workspace: the kernels must not depend on its contents.
  RAGGED_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(d.ws.data(), 0xA5, bytes, s));
  d.args.workspace = d.ws.data();
  d.args.workspace_bytes = bytes;
  return d;
}

// Output and lse copied back to the host.
struct HostResult {
  HostBuffer out, lse;
};

inline absl::StatusOr<HostResult> Download(const DeviceProblem& d, cudaStream_t s) {
  HostResult r;
  r.out = HostBuffer::Allocate(d.out.dtype(), d.out.shape());
  r.lse = HostBuffer::Allocate(d.lse.dtype(), d.lse.shape());
  RAGGED_RETURN_IF_ERROR(d.out.CopyToHost(r.out.view(), s));
  RAGGED_RETURN_IF_ERROR(d.lse.CopyToHost(r.lse.view(), s));
  RAGGED_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s));
  return r;
}

// The reference for `hp` under `opts` (any platform; start/end are clamped as on the device, not
// validated, so out-of-range rows give the clamped result).
inline absl::StatusOr<ReferenceResult> ClampedReference(const HostProblem& hp,
                                                        RaggedDecodeAttentionOptions opts) {
  opts.platform = Platform::kReference;
  opts.kernel_config.reset();
  RAGGED_ASSIGN_OR_RETURN(Problem p, ValidateProblem(hp.args(), opts, Platform::kReference));
  return ComputeReference(p);
}

// The output (and lse) of a call on `d`, queued on `s`, copied back and compared with the
// reference for `hp` under `opts`.
inline ::testing::AssertionResult DeviceResultMatches(const HostProblem& hp, const DeviceProblem& d,
                                                      const RaggedDecodeAttentionOptions& opts,
                                                      cudaStream_t s) {
  absl::StatusOr<ReferenceResult> ref = ClampedReference(hp, opts);
  if (!ref.ok()) return ::testing::AssertionFailure() << "reference: " << ref.status();
  absl::StatusOr<HostResult> r = Download(d, s);
  if (!r.ok()) return ::testing::AssertionFailure() << "download: " << r.status();
  TensorView lse = r->lse.view();
  return MatchesReference(*ref, r->out.view(), hp.c.with_lse ? &lse : nullptr, hp.c.dtype);
}

// Runs `hp` on the GPU with `opts` and compares with the reference.
inline ::testing::AssertionResult RunOnGpuAndCompare(const HostProblem& hp,
                                                     RaggedDecodeAttentionOptions opts) {
  opts.platform = Platform::kCuda;
  absl::StatusOr<DeviceProblem> d = Upload(hp, opts, nullptr);
  if (!d.ok()) return ::testing::AssertionFailure() << "upload: " << d.status();
  absl::Status s = RaggedDecodeAttention(d->args, opts, nullptr);
  if (!s.ok()) return ::testing::AssertionFailure() << "RaggedDecodeAttention: " << s;
  return DeviceResultMatches(hp, *d, opts, nullptr);
}

}  // namespace ragged::testing

#endif  // RAGGED_KERNELS_CUDA_CUDA_TEST_UTIL_H_
