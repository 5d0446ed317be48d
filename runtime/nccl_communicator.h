// NcclCommunicator: the Communicator over NCCL, for device buffers (the GPU backend).
//
// One communicator drives one CUDA device (`device()`). Calls are stream-ordered: the work is
// queued on the call's stream (nullptr: the communicator's stream, which is the legacy default
// stream unless one was given to Borrow). Communicators that we create are NCCL *non-blocking*
// communicators (ncclConfig_t::blocking = 0): no NCCL call blocks the host, so every call can be
// bounded by the deadline (`timeout()`):
//   - wait_for_completion (the default): each collective waits until its work on the stream is
//     done, polling the stream and ncclCommGetAsyncError. A peer that fails or never arrives
//     gives DeadlineExceeded (or Unavailable/Internal for an error NCCL reports) within the
//     deadline, after which the communicator is aborted (ncclCommAbort: the stuck kernels exit)
//     and broken. While the stream is being captured into a CUDA graph the wait is skipped.
//   - otherwise a collective returns once its work is queued (for overlap); Barrier() and Wait()
//     remain the bounded points where a hang becomes an error.
// Init and Split are bounded the same way. After an error every later call fails with
// FailedPrecondition quoting it.
//
// Ownership: Create, CreateForDevices and Split make owned communicators, destroyed with
// ncclCommFinalize + ncclCommDestroy (bounded; ncclCommAbort when broken or when finalizing
// exceeds the deadline). Borrow wraps an engine's ncclComm_t (and stream) without ownership: it
// is never finalized, destroyed or aborted, even on a deadline (the error tells the owner to
// abort it); it keeps whatever blocking mode the engine chose. Each communicator owns a CUDA
// event and a 4-byte device scratch buffer on its device.
// Thread-safety: one thread at a time per communicator. Several communicators of one process
// (CreateForDevices) are driven each from its own thread, as NCCL requires without groups.
//
//   // One rank per GPU, under mpirun:
//   RAGGED_ASSIGN_OR_RETURN(auto process, Process::Init(&argc, &argv));
//   RAGGED_ASSIGN_OR_RETURN(auto nccl, process->CreateWorldCommunicator(CommBackend::kNccl));
//   RAGGED_RETURN_IF_ERROR(nccl->AllGather(d_send, d_recv, n, DType::kBF16, stream));
#ifndef RAGGED_RUNTIME_NCCL_COMMUNICATOR_H_
#define RAGGED_RUNTIME_NCCL_COMMUNICATOR_H_

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "runtime/communicator.h"
#include "runtime/dtype.h"
#include "runtime/stream.h"

namespace ragged {

struct NcclOptions {
  // The deadline of each call, init and split included.
  absl::Duration timeout = kDefaultCommTimeout;
  // Wait for each collective's completion (bounded), or return once it is queued. See above.
  bool wait_for_completion = true;
};

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `bootstrap`, a host (MPI) communicator: its ranks become this one's ranks, in
  // order. Rank 0 makes the ncclUniqueId, a Broadcast over `bootstrap` shares it, and every rank
  // initializes on CUDA device `device` (ncclCommInitRankConfig, non-blocking). Check first with
  // CheckOneRankPerGpu (bootstrap.h) that no two ranks share a GPU.
  // InvalidArgument (bootstrap not MPI), FailedPrecondition (no such device), DeadlineExceeded,
  // or the NCCL/CUDA error.
  static absl::StatusOr<std::unique_ptr<NcclCommunicator>> Create(Communicator& bootstrap,
                                                                  int device,
                                                                  const NcclOptions& options = {});
  // One process, several GPUs, no launcher: communicator i is rank i on devices[i]
  // (grouped non-blocking ncclCommInitRankConfig). InvalidArgument for an empty list or a
  // repeated device; FailedPrecondition for a device that is not visible.
  static absl::StatusOr<std::vector<std::unique_ptr<NcclCommunicator>>> CreateForDevices(
      absl::Span<const int> devices, const NcclOptions& options = {});
  // Wraps an engine's communicator and stream (nullptr: the legacy default stream) without
  // ownership. The engine keeps `comm` alive while the result lives.
  static absl::StatusOr<std::unique_ptr<NcclCommunicator>> Borrow(ncclComm_t comm, Stream stream,
                                                                  const NcclOptions& options = {});

  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  CommBackend backend() const override { return CommBackend::kNccl; }
  int device() const override { return device_; }

  // Device buffers on device(); see Communicator and the top of this file. Errors:
  // InvalidArgument (negative count, null or non-device buffer, buffer on another device, root
  // out of range), DeadlineExceeded, Unavailable/Internal (NCCL errors), FailedPrecondition
  // (broken communicator).
  absl::Status AllGather(const void* send, void* recv, int64_t count, DType dtype,
                         Stream stream) override;
  absl::Status AllReduce(const void* send, void* recv, int64_t count, DType dtype, ReduceOp op,
                         Stream stream) override;
  absl::Status Broadcast(void* buf, int64_t count, DType dtype, int root, Stream stream) override;
  // An all-reduce of one word, then a bounded wait for `stream` (never skipped, except while the
  // stream is being captured).
  absl::Status Barrier(Stream stream = nullptr) override;
  // ncclCommSplit (non-blocking, bounded). A rank with a negative color takes part as
  // NCCL_SPLIT_NOCOLOR, so the others get their groups, and gets InvalidArgument.
  absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key) override;
  absl::StatusOr<std::unique_ptr<NcclCommunicator>> SplitNccl(int color, int key);

  // Waits, bounded by the deadline, until the work queued so far on `stream` is done, watching
  // for NCCL errors. On a deadline or an error the communicator is aborted (if owned) and broken.
  absl::Status Wait(Stream stream);

  ncclComm_t comm() const { return comm_; }
  Stream stream() const { return stream_; }
  bool owned() const { return owned_; }
  const absl::Status& broken_status() const { return broken_; }
  bool broken() const { return !broken_.ok(); }
  bool wait_for_completion() const { return wait_for_completion_; }
  void set_wait_for_completion(bool wait) { wait_for_completion_ = wait; }

 private:
  NcclCommunicator(ncclComm_t comm, bool owned, int rank, int size, int device, Stream stream,
                   const NcclOptions& options);
  // The per-communicator event and scratch word.
  absl::Status AllocateResources();

  absl::Status CheckUsable(absl::string_view op) const;
  absl::Status CheckBuffer(absl::string_view op, absl::string_view name, const void* ptr,
                           int64_t count) const;
  // Polls ncclCommGetAsyncError until the comm leaves ncclInProgress, bounded by `deadline`.
  absl::Status WaitIdle(absl::string_view op, absl::Time deadline);
  // Polls `stream` (through event_) and the comm's async error until done or `deadline`.
  absl::Status WaitStream(absl::string_view op, cudaStream_t stream, absl::Time deadline);
  // Queues `launch` and, when asked and possible, waits for it.
  absl::Status Run(absl::string_view op, int64_t count, DType dtype, Stream stream, bool wait,
                   absl::FunctionRef<ncclResult_t(cudaStream_t)> launch);
  // Breaks the communicator with `status`; aborts it first when owned. Returns the status (with a
  // note about the abort).
  absl::Status Fail(absl::Status status);
  cudaStream_t ResolveStream(Stream stream) const;

  ncclComm_t comm_;
  bool owned_;
  int rank_;
  int size_;
  int device_;
  Stream stream_;
  bool wait_for_completion_;
  cudaEvent_t event_ = nullptr;
  int32_t* scratch_ = nullptr;  // [1] on device_, for Barrier
  absl::Status broken_;
  bool aborted_ = false;
};

}  // namespace ragged

#endif  // RAGGED_RUNTIME_NCCL_COMMUNICATOR_H_
