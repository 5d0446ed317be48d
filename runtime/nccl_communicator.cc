#include "runtime/nccl_communicator.h"

#include <atomic>

#include <algorithm>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "runtime/status.h"

// Every error names the call, and this rank and host.
#define RAGGED_COMM_ERROR(status) ::ragged::Annotate((status), __func__, __FILE__, __LINE__)

namespace ragged {
namespace {

// After an abort, how long to wait for the stream to drain so that the call's buffers are no
// longer in use when it returns.
constexpr absl::Duration kDrainAfterAbort = absl::Seconds(2);

// Makes `device` current for the scope, restoring the previous device.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    if (previous_ != device) status_ = RAGGED_CUDA_STATUS(cudaSetDevice(device));
  }
  ~DeviceGuard() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  const absl::Status& status() const { return status_; }

 private:
  int previous_ = -1;
  absl::Status status_;
};

ncclDataType_t NcclType(DType t) {
  switch (t) {
    case DType::kF32:
      return ncclFloat32;
    case DType::kF16:
      return ncclFloat16;
    case DType::kBF16:
      return ncclBfloat16;
    case DType::kI32:
      return ncclInt32;
  }
  return ncclFloat32;
}

ncclConfig_t NonBlockingConfig() {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  return config;
}

// Backs off from a hot poll (latency) to short sleeps (a shared host).
void Backoff(int& polls) {
  ++polls;
  if (polls < 2000) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds(polls < 10000 ? 20 : 200));
  }
}

// The NCCL error of `comm`, with NCCL's own last message.
absl::Status NcclFailure(ncclResult_t result, ncclComm_t comm, absl::string_view call,
                         const char* file, int line) {
  absl::Status s = NcclError(static_cast<int>(result), call, file, line);
  const char* last = comm != nullptr ? ncclGetLastError(comm) : ncclGetLastError(nullptr);
  if (last != nullptr && last[0] != '\0') {
    s = absl::Status(s.code(), absl::StrCat(s.message(), " (NCCL: ", last, ")"));
  }
  return s;
}

absl::Status Deadline(absl::string_view what, absl::Duration timeout, absl::Duration waited,
                      absl::string_view call, const char* file, int line) {
  return Annotate(absl::DeadlineExceededError(absl::StrFormat(
                      "%s did not complete within %s (waited %s): a peer failed or never arrived",
                      what, absl::FormatDuration(timeout), absl::FormatDuration(waited))),
                  call, file, line);
}

// Polls a communicator that is being created (init or split) until it is ready or `deadline`.
// On failure aborts it (it is ours) and returns the error.
absl::Status WaitInit(ncclComm_t comm, absl::string_view what, absl::Time start,
                      absl::Duration timeout) {
  int polls = 0;
  while (true) {
    ncclResult_t state = ncclInProgress;
    ncclResult_t r = ncclCommGetAsyncError(comm, &state);
    if (r != ncclSuccess) state = r;
    if (state == ncclSuccess) return absl::OkStatus();
    if (state != ncclInProgress) {
      absl::Status s = NcclFailure(state, comm, what, __FILE__, __LINE__);
      ncclCommAbort(comm);
      return s;
    }
    const absl::Time now = absl::Now();
    if (now > start + timeout) {
      ncclCommAbort(comm);
      return Deadline(what, timeout, now - start, what, __FILE__, __LINE__);
    }
    Backoff(polls);
  }
}

}  // namespace

NcclCommunicator::NcclCommunicator(ncclComm_t comm, bool owned, int rank, int size, int device,
                                   Stream stream, const NcclOptions& options)
    : comm_(comm),
      owned_(owned),
      rank_(rank),
      size_(size),
      device_(device),
      stream_(stream),
      wait_for_completion_(options.wait_for_completion) {
  timeout_ = options.timeout;
}

absl::Status NcclCommunicator::AllocateResources() {
  DeviceGuard guard(device_);
  RAGGED_RETURN_IF_ERROR(guard.status());
  RAGGED_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
  RAGGED_CUDA_RETURN_IF_ERROR(cudaMalloc(&scratch_, sizeof(int32_t)));
  return absl::OkStatus();
}

NcclCommunicator::~NcclCommunicator() {
  DeviceGuard guard(device_);
  if (owned_ && comm_ != nullptr && !aborted_) {
    bool clean = broken_.ok();
    if (clean) {
      // Finalize flushes queued work; bounded, then destroy. Abort when it does not finish.
      ncclResult_t r = ncclCommFinalize(comm_);
      clean = r == ncclSuccess || r == ncclInProgress;
      const absl::Time deadline = absl::Now() + timeout_;
      int polls = 0;
      while (clean) {
        ncclResult_t state = ncclInProgress;
        if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) state = ncclInternalError;
        if (state == ncclSuccess) break;
        if (state != ncclInProgress || absl::Now() > deadline) clean = false;
        Backoff(polls);
      }
    }
    if (clean) {
      ncclCommDestroy(comm_);
    } else {
      ncclCommAbort(comm_);
    }
  }
  if (event_ != nullptr) cudaEventDestroy(event_);
  if (scratch_ != nullptr) cudaFree(scratch_);
}

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Create(
    Communicator& bootstrap, int device, const NcclOptions& options) {
  if (bootstrap.backend() != CommBackend::kMpi) {
    return RAGGED_COMM_ERROR(absl::InvalidArgumentError(
        absl::StrCat("NcclCommunicator::Create: the bootstrap must be a host (MPI) communicator, "
                     "got ",
                     CommBackendName(bootstrap.backend()))));
  }
  const int visible = CudaDeviceCount();
  // Every rank takes part in the id broadcast even when its own device is bad, so that the
  // others fail with the same error instead of waiting.
  absl::Status local;
  if (device < 0 || device >= visible) {
    local = Annotate(absl::FailedPreconditionError(absl::StrCat(
                         "CUDA device ", device, " is not available (", visible, " visible)")),
                     "NcclCommunicator::Create", __FILE__, __LINE__);
  }
  // The id and one status word per rank travel as int32: [id words..., ok flag].
  constexpr int kIdWords = (sizeof(ncclUniqueId) + 3) / 4;
  int32_t message[kIdWords + 1] = {0};
  if (bootstrap.rank() == 0 && local.ok()) {
    ncclUniqueId id;
    local = RAGGED_NCCL_STATUS(ncclGetUniqueId(&id));
    std::memcpy(message, &id, sizeof(id));
  }
  message[kIdWords] = bootstrap.rank() == 0 && local.ok() ? 1 : 0;
  RAGGED_RETURN_IF_ERROR(bootstrap.Broadcast(message, kIdWords + 1, DType::kI32, 0, nullptr));
  int32_t ok = local.ok() ? 1 : 0, all_ok = 0;
  RAGGED_RETURN_IF_ERROR(
      bootstrap.AllReduce(&ok, &all_ok, 1, DType::kI32, ReduceOp::kSum, nullptr));
  RAGGED_RETURN_IF_ERROR(local);
  if (message[kIdWords] != 1 || all_ok != bootstrap.size()) {
    return RAGGED_COMM_ERROR(absl::FailedPreconditionError(absl::StrCat(
        "NcclCommunicator::Create: ", bootstrap.size() - all_ok,
        " rank(s) could not start (see their errors); rank ", bootstrap.rank(), " gives up")));
  }
  ncclUniqueId id;
  std::memcpy(&id, message, sizeof(id));

  DeviceGuard guard(device);
  RAGGED_RETURN_IF_ERROR(guard.status());
  ncclConfig_t config = NonBlockingConfig();
  ncclComm_t comm = nullptr;
  const absl::Time start = absl::Now();
  ncclResult_t r = ncclCommInitRankConfig(&comm, bootstrap.size(), id, bootstrap.rank(), &config);
  if (r != ncclSuccess && r != ncclInProgress) {
    absl::Status s = NcclFailure(r, comm, "ncclCommInitRankConfig", __FILE__, __LINE__);
    if (comm != nullptr) ncclCommAbort(comm);
    return s;
  }
  RAGGED_RETURN_IF_ERROR(WaitInit(comm, "ncclCommInitRankConfig", start, options.timeout));
  std::unique_ptr<NcclCommunicator> c(new NcclCommunicator(
      comm, /*owned=*/true, bootstrap.rank(), bootstrap.size(), device, nullptr, options));
  RAGGED_RETURN_IF_ERROR(c->AllocateResources());
  return c;
}

absl::StatusOr<std::vector<std::unique_ptr<NcclCommunicator>>> NcclCommunicator::CreateForDevices(
    absl::Span<const int> devices, const NcclOptions& options) {
  if (devices.empty()) {
    return RAGGED_COMM_ERROR(
        absl::InvalidArgumentError("NcclCommunicator::CreateForDevices: no devices"));
  }
  const int visible = CudaDeviceCount();
  std::set<int> seen;
  for (int d : devices) {
    if (d < 0 || d >= visible) {
      return RAGGED_COMM_ERROR(absl::FailedPreconditionError(
          absl::StrCat("NcclCommunicator::CreateForDevices: CUDA device ", d, " is not available (",
                       visible, " visible)")));
    }
    if (!seen.insert(d).second) {
      return RAGGED_COMM_ERROR(absl::InvalidArgumentError(absl::StrCat(
          "NcclCommunicator::CreateForDevices: device ", d,
          " is listed twice; NCCL needs one GPU per rank (it would fail with ncclInvalidUsage)")));
    }
  }
  const int n = static_cast<int>(devices.size());
  ncclUniqueId id;
  RAGGED_NCCL_RETURN_IF_ERROR(ncclGetUniqueId(&id));
  std::vector<ncclComm_t> comms(n, nullptr);
  const absl::Time start = absl::Now();
  {
    DeviceGuard guard(devices[0]);
    RAGGED_NCCL_RETURN_IF_ERROR(ncclGroupStart());
    absl::Status s;
    for (int i = 0; i < n && s.ok(); ++i) {
      s = RAGGED_CUDA_STATUS(cudaSetDevice(devices[i]));
      if (!s.ok()) break;
      ncclConfig_t config = NonBlockingConfig();
      ncclResult_t r = ncclCommInitRankConfig(&comms[i], n, id, i, &config);
      if (r != ncclSuccess && r != ncclInProgress) {
        s = NcclFailure(r, comms[i], "ncclCommInitRankConfig", __FILE__, __LINE__);
      }
    }
    ncclResult_t end = ncclGroupEnd();
    if (s.ok() && end != ncclSuccess && end != ncclInProgress) {
      s = NcclFailure(end, nullptr, "ncclGroupEnd", __FILE__, __LINE__);
    }
    if (!s.ok()) {
      for (ncclComm_t c : comms) {
        if (c != nullptr) ncclCommAbort(c);
      }
      return s;
    }
  }
  absl::Status s;
  for (int i = 0; i < n; ++i) {
    if (s.ok()) {
      s = WaitInit(comms[i], "ncclCommInitRankConfig (grouped)", start, options.timeout);
      if (!s.ok()) comms[i] = nullptr;  // WaitInit aborted it
    } else if (comms[i] != nullptr) {
      ncclCommAbort(comms[i]);
      comms[i] = nullptr;
    }
  }
  if (!s.ok()) {
    for (ncclComm_t& c : comms) {
      if (c != nullptr) ncclCommAbort(c);
    }
    return s;
  }
  std::vector<std::unique_ptr<NcclCommunicator>> result;
  for (int i = 0; i < n; ++i) {
    result.emplace_back(
        new NcclCommunicator(comms[i], /*owned=*/true, i, n, devices[i], nullptr, options));
  }
  for (auto& c : result) RAGGED_RETURN_IF_ERROR(c->AllocateResources());
  return result;
}

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Borrow(
    ncclComm_t comm, Stream stream, const NcclOptions& options) {
  if (comm == nullptr) {
    return RAGGED_COMM_ERROR(absl::InvalidArgumentError("NcclCommunicator::Borrow: comm is null"));
  }
  int rank = 0, size = 0, device = 0;
  RAGGED_NCCL_RETURN_IF_ERROR(ncclCommUserRank(comm, &rank));
  RAGGED_NCCL_RETURN_IF_ERROR(ncclCommCount(comm, &size));
  RAGGED_NCCL_RETURN_IF_ERROR(ncclCommCuDevice(comm, &device));
  std::unique_ptr<NcclCommunicator> c(
      new NcclCommunicator(comm, /*owned=*/false, rank, size, device, stream, options));
  RAGGED_RETURN_IF_ERROR(c->AllocateResources());
  return c;
}

cudaStream_t NcclCommunicator::ResolveStream(Stream stream) const {
  return static_cast<cudaStream_t>(stream != nullptr ? stream : stream_);
}

absl::Status NcclCommunicator::CheckUsable(absl::string_view op) const {
  if (!broken_.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(op, " on a broken NCCL communicator (rank ",
                                                      rank_, " of ", size_,
                                                      "); it broke on: ", broken_.message()));
  }
  return absl::OkStatus();
}

absl::Status NcclCommunicator::CheckBuffer(absl::string_view op, absl::string_view name,
                                           const void* ptr, int64_t count) const {
  if (count < 0) {
    return RAGGED_COMM_ERROR(
        absl::InvalidArgumentError(absl::StrCat(op, ": count must be >= 0, got ", count)));
  }
  if (count == 0) return absl::OkStatus();
  if (ptr == nullptr) {
    return RAGGED_COMM_ERROR(
        absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is null with count ", count)));
  }
  cudaPointerAttributes attributes;
  if (cudaPointerGetAttributes(&attributes, ptr) != cudaSuccess) {
    cudaGetLastError();
    return RAGGED_COMM_ERROR(absl::InvalidArgumentError(
        absl::StrCat(op, ": ", name, " is not a CUDA pointer; NCCL needs device memory")));
  }
  if (attributes.type == cudaMemoryTypeManaged) return absl::OkStatus();
  if (attributes.type != cudaMemoryTypeDevice) {
    return RAGGED_COMM_ERROR(absl::InvalidArgumentError(absl::StrCat(
        op, ": ", name, " is host memory; NCCL needs device memory on device ", device_)));
  }
  if (attributes.device != device_) {
    return RAGGED_COMM_ERROR(
        absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is on device ", attributes.device,
                                                " but the communicator drives device ", device_)));
  }
  return absl::OkStatus();
}

absl::Status NcclCommunicator::Fail(absl::Status status) {
  if (owned_ && comm_ != nullptr && !aborted_) {
    ncclCommAbort(comm_);
    aborted_ = true;
    status = absl::Status(status.code(),
                          absl::StrCat(status.message(), "; the communicator was aborted"));
  } else if (!owned_) {
    status = absl::Status(
        status.code(),
        absl::StrCat(status.message(),
                     "; the communicator is borrowed, so it was not aborted: its owner must "
                     "abort it (ncclCommAbort) before its stream can make progress"));
  }
  if (broken_.ok()) broken_ = status;
  return status;
}

absl::Status NcclCommunicator::WaitIdle(absl::string_view op, absl::Time deadline) {
  const absl::Time start = absl::Now();
  int polls = 0;
  while (true) {
    ncclResult_t state = ncclInProgress;
    ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
    if (r != ncclSuccess) state = r;
    if (state == ncclSuccess) return absl::OkStatus();
    if (state != ncclInProgress) {
      return Fail(NcclFailure(state, comm_, op, __FILE__, __LINE__));
    }
    const absl::Time now = absl::Now();
    if (now > deadline) {
      return Fail(Deadline(absl::StrCat(op, " (queueing)"), timeout_, now - start,
                           absl::StrCat("NcclCommunicator::", op), __FILE__, __LINE__));
    }
    Backoff(polls);
  }
}

absl::Status NcclCommunicator::WaitStream(absl::string_view op, cudaStream_t stream,
                                          absl::Time deadline) {
  const absl::Time start = absl::Now();
  const cudaError_t recorded = cudaEventRecord(event_, stream);
  if (recorded != cudaSuccess) {
    return Fail(CudaError(recorded, "cudaEventRecord", __FILE__, __LINE__));
  }
  int polls = 0;
  while (true) {
    cudaError_t q = cudaEventQuery(event_);
    if (q == cudaSuccess) return absl::OkStatus();
    if (q != cudaErrorNotReady) return Fail(CudaError(q, "cudaEventQuery", __FILE__, __LINE__));
    ncclResult_t state = ncclSuccess;
    ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
    if (r != ncclSuccess) state = r;
    if (state != ncclSuccess && state != ncclInProgress) {
      return Fail(NcclFailure(state, comm_, op, __FILE__, __LINE__));
    }
    const absl::Time now = absl::Now();
    if (now > deadline) {
      absl::Status s = Fail(Deadline(
          absl::StrFormat("%s on an NCCL communicator of %d ranks (this is rank %d, device %d)", op,
                          size_, rank_, device_),
          timeout_, now - start, absl::StrCat("NcclCommunicator::", op), __FILE__, __LINE__));
      if (aborted_) {
        // The abort makes the stuck kernels exit; let the stream drain so that the buffers of
        // this call are no longer in use when it returns.
        const absl::Time drain_end = absl::Now() + kDrainAfterAbort;
        while (cudaEventQuery(event_) == cudaErrorNotReady && absl::Now() < drain_end) {
          std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        cudaGetLastError();
      }
      return s;
    }
    Backoff(polls);
  }
}

absl::Status NcclCommunicator::Run(absl::string_view op, int64_t count, DType dtype, Stream stream,
                                   bool wait,
                                   absl::FunctionRef<ncclResult_t(cudaStream_t)> launch) {
  RAGGED_RETURN_IF_ERROR(CheckUsable(op));
  DeviceGuard guard(device_);
  RAGGED_RETURN_IF_ERROR(guard.status());
  const absl::Time deadline = absl::Now() + timeout_;
  const cudaStream_t s = ResolveStream(stream);
  // The same description for a deadline while queueing (a peer missing from a non-blocking
  // communicator can hold the enqueue itself, as on 2 GPUs) and while waiting for the stream.
  const std::string what = absl::StrFormat("%s of %d x %s", op, count, DTypeName(dtype));
  ncclResult_t r = launch(s);
  if (r == ncclInProgress) {
    RAGGED_RETURN_IF_ERROR(WaitIdle(what, deadline));
  } else if (r != ncclSuccess) {
    // Argument errors leave the communicator usable; anything else breaks it.
    absl::Status status = NcclFailure(r, comm_, absl::StrCat("nccl", op), __FILE__, __LINE__);
    if (r == ncclInvalidArgument || r == ncclInvalidUsage) return status;
    return Fail(status);
  }
  if (!wait) return absl::OkStatus();
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  RAGGED_CUDA_RETURN_IF_ERROR(cudaStreamIsCapturing(s, &capture));
  if (capture != cudaStreamCaptureStatusNone) return absl::OkStatus();
  return WaitStream(what, s, deadline);
}

absl::Status NcclCommunicator::AllGather(const void* send, void* recv, int64_t count, DType dtype,
                                         Stream stream) {
  RAGGED_RETURN_IF_ERROR(CheckBuffer("AllGather", "send", send, count));
  RAGGED_RETURN_IF_ERROR(CheckBuffer("AllGather", "recv", recv, count));
  return Run("AllGather", count, dtype, stream, wait_for_completion_, [&](cudaStream_t s) {
    return ncclAllGather(send, recv, static_cast<size_t>(count), NcclType(dtype), comm_, s);
  });
}

absl::Status NcclCommunicator::AllReduce(const void* send, void* recv, int64_t count, DType dtype,
                                         ReduceOp op, Stream stream) {
  RAGGED_RETURN_IF_ERROR(CheckBuffer("AllReduce", "send", send, count));
  RAGGED_RETURN_IF_ERROR(CheckBuffer("AllReduce", "recv", recv, count));
  if (op != ReduceOp::kSum && op != ReduceOp::kMax) {
    return RAGGED_COMM_ERROR(absl::InvalidArgumentError(
        absl::StrCat("AllReduce: unknown reduce op ", static_cast<int>(op))));
  }
  const ncclRedOp_t nccl_op = op == ReduceOp::kSum ? ncclSum : ncclMax;
  return Run(absl::StrCat("AllReduce(", ReduceOpName(op), ")"), count, dtype, stream,
             wait_for_completion_, [&](cudaStream_t s) {
               return ncclAllReduce(send, recv, static_cast<size_t>(count), NcclType(dtype),
                                    nccl_op, comm_, s);
             });
}

absl::Status NcclCommunicator::Broadcast(void* buf, int64_t count, DType dtype, int root,
                                         Stream stream) {
  RAGGED_RETURN_IF_ERROR(CheckBuffer("Broadcast", "buf", buf, count));
  if (root < 0 || root >= size_) {
    return RAGGED_COMM_ERROR(absl::InvalidArgumentError(absl::StrCat(
        "Broadcast: root ", root, " is not a rank of this communicator of size ", size_)));
  }
  return Run("Broadcast", count, dtype, stream, wait_for_completion_, [&](cudaStream_t s) {
    return ncclBroadcast(buf, buf, static_cast<size_t>(count), NcclType(dtype), root, comm_, s);
  });
}

absl::Status NcclCommunicator::Barrier(Stream stream) {
  return Run("Barrier", 1, DType::kI32, stream, /*wait=*/true, [&](cudaStream_t s) {
    return ncclAllReduce(scratch_, scratch_, 1, ncclInt32, ncclSum, comm_, s);
  });
}

absl::Status NcclCommunicator::Wait(Stream stream) {
  RAGGED_RETURN_IF_ERROR(CheckUsable("Wait"));
  DeviceGuard guard(device_);
  RAGGED_RETURN_IF_ERROR(guard.status());
  return WaitStream("Wait", ResolveStream(stream), absl::Now() + timeout_);
}

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::SplitNccl(int color, int key) {
  RAGGED_RETURN_IF_ERROR(CheckUsable("Split"));
  DeviceGuard guard(device_);
  RAGGED_RETURN_IF_ERROR(guard.status());
  ncclConfig_t config = NonBlockingConfig();
  // NCCL writes the child's handle when the split completes, from its own thread when the parent
  // is non-blocking: the slot lives on the heap and is leaked if we stop waiting first.
  auto slot = std::make_unique<ncclComm_t>(nullptr);
  const absl::Time start = absl::Now();
  ncclResult_t r =
      ncclCommSplit(comm_, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, slot.get(), &config);
  if (r == ncclInProgress) {
    // The split runs as a job of the parent: the parent is busy until it is done. A member that
    // never arrives leaves the parent stuck in it, so a deadline here aborts (and breaks) it.
    absl::Status idle = WaitIdle("Split", start + timeout_);
    if (!idle.ok()) {
      slot.release();  // NOLINT: NCCL may still write it
      return idle;
    }
  } else if (r != ncclSuccess) {
    slot.release();  // NOLINT: as above
    return Fail(NcclFailure(r, comm_, "ncclCommSplit", __FILE__, __LINE__));
  }
  // With a non-blocking parent NCCL may store the child's handle after the parent reports idle
  // (seen on NCCL 2.28): wait for the handle, within the same deadline.
  if (color >= 0) {
    std::atomic_ref<ncclComm_t> handle(*slot);
    while (handle.load() == nullptr && absl::Now() < start + timeout_) {
      absl::SleepFor(absl::Microseconds(20));
    }
  }
  ncclComm_t child = std::atomic_ref<ncclComm_t>(*slot).load();
  if (color < 0) {
    // NCCL stores the (null) handle of a NCCL_SPLIT_NOCOLOR member when it gets to it, which can
    // be after the parent reports idle: the slot is never freed (freeing it crashed a 2-GPU run).
    slot.release();  // NOLINT: NCCL may still write it
    if (child != nullptr) ncclCommAbort(child);
    return Annotate(absl::InvalidArgumentError(absl::StrCat(
                        "Split: color must be >= 0, got ", color,
                        " (this rank took part as NCCL_SPLIT_NOCOLOR and joined no group)")),
                    "NcclCommunicator::Split", __FILE__, __LINE__);
  }
  if (child == nullptr) {
    slot.release();  // NOLINT: NCCL may still write it
    return Annotate(absl::DeadlineExceededError(absl::StrCat(
                        "ncclCommSplit gave no communicator within the deadline of ",
                        absl::FormatDuration(timeout_))),
                    "NcclCommunicator::Split", __FILE__, __LINE__);
  }
  RAGGED_RETURN_IF_ERROR(WaitInit(child, "ncclCommSplit", start, timeout_));
  int rank = 0, size = 0;
  RAGGED_NCCL_RETURN_IF_ERROR(ncclCommUserRank(child, &rank));
  RAGGED_NCCL_RETURN_IF_ERROR(ncclCommCount(child, &size));
  NcclOptions options;
  options.timeout = timeout_;
  options.wait_for_completion = wait_for_completion_;
  std::unique_ptr<NcclCommunicator> c(
      new NcclCommunicator(child, /*owned=*/true, rank, size, device_, stream_, options));
  RAGGED_RETURN_IF_ERROR(c->AllocateResources());
  return c;
}

absl::StatusOr<std::unique_ptr<Communicator>> NcclCommunicator::Split(int color, int key) {
  RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<NcclCommunicator> c, SplitNccl(color, key));
  return std::unique_ptr<Communicator>(std::move(c));
}

}  // namespace ragged
