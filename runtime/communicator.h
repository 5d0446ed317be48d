// Communicator: the collectives that the sharded runtime needs, over NCCL or MPI.
//
// A communicator is a group of `size()` ranks; this process is `rank()`. Collectives are called
// by every rank of the group in the same order with the same counts (SPMD). Buffers:
//   - NCCL (Backend::kNccl): device pointers on the communicator's CUDA device; the call is
//     stream-ordered on `stream` (nullptr: the communicator's own stream, see NcclCommunicator)
//     and, by default, waits until that work is done or the deadline passed; see
//     NcclCommunicator for the mode that returns once the work is queued (CUDA graphs).
//   - MPI (Backend::kMpi): host pointers; `stream` is ignored and the call returns when done.
// Every call either completes, or returns an error (DeadlineExceeded, Aborted, Unavailable, ...)
// within the communicator's deadline; it never hangs. Errors carry rank and host. A deadline or a
// library error *breaks* the communicator: every later call fails at once with
// FailedPrecondition quoting the first error. Make a new communicator to go on (the usual answer
// to a fault in an SPMD job is to report it and exit). Algorithms (sharding/) depend on this
// interface only; mpi_communicator.h and nccl_communicator.h are its two implementations, and
// bootstrap.h starts a process and its world communicator.
//
// Ownership: a communicator made by Create/Split owns its library handle and frees it. A
// borrowed one (wrapping an engine's ncclComm_t or MPI_Comm) never destroys or aborts it.
// Thread-safety: a communicator is used by one thread at a time.
//
//   RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> tp, world->Split(color, key));
//   RAGGED_RETURN_IF_ERROR(tp->AllGather(send, recv, count, DType::kF32, stream));
#ifndef RAGGED_RUNTIME_COMMUNICATOR_H_
#define RAGGED_RUNTIME_COMMUNICATOR_H_

#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "runtime/dtype.h"
#include "runtime/stream.h"

namespace ragged {

enum class ReduceOp : uint8_t { kSum = 0, kMax = 1 };
enum class CommBackend : uint8_t { kMpi = 0, kNccl = 1 };
// "mpi", "nccl".
absl::string_view CommBackendName(CommBackend b);
// Parses the names above; InvalidArgument otherwise.
absl::StatusOr<CommBackend> ParseCommBackend(absl::string_view name);
// "sum", "max".
absl::string_view ReduceOpName(ReduceOp op);

// The default deadline of one collective.
inline constexpr absl::Duration kDefaultCommTimeout = absl::Seconds(60);

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual CommBackend backend() const = 0;
  // The CUDA device of an NCCL communicator; -1 for MPI.
  virtual int device() const { return -1; }

  // recv[r * count + i] = send of rank r, element i (rank-major). recv holds size() * count.
  virtual absl::Status AllGather(const void* send, void* recv, int64_t count, DType dtype,
                                 Stream stream) = 0;
  // recv = op over ranks of send, elementwise. send == recv is allowed (in place).
  virtual absl::Status AllReduce(const void* send, void* recv, int64_t count, DType dtype,
                                 ReduceOp op, Stream stream) = 0;
  // Every rank's buf gets root's.
  virtual absl::Status Broadcast(void* buf, int64_t count, DType dtype, int root,
                                 Stream stream) = 0;
  // Returns when every rank has entered (NCCL: when queued work on `stream` is done everywhere).
  virtual absl::Status Barrier(Stream stream = nullptr) = 0;
  // Collective: ranks with the same `color` (>= 0) form a new communicator, ordered by `key`
  // then by rank. The result is owned by the caller and independent of this one's lifetime; it
  // inherits this one's timeout. A negative color is InvalidArgument.
  virtual absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key) = 0;

  // The deadline of each later call (default kDefaultCommTimeout).
  void set_timeout(absl::Duration timeout) { timeout_ = timeout; }
  absl::Duration timeout() const { return timeout_; }

 protected:
  absl::Duration timeout_ = kDefaultCommTimeout;
};

}  // namespace ragged

#endif  // RAGGED_RUNTIME_COMMUNICATOR_H_
