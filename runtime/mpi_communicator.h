// MpiCommunicator: the Communicator over an MPI communicator, for host buffers (the CPU backend).
//
// Every collective is a nonblocking MPI collective (MPI_Iallgather, MPI_Iallreduce, MPI_Ibcast,
// MPI_Ibarrier) polled with MPI_Test until it completes or the communicator's deadline
// (`timeout()`) passes, so that a peer that fails or never arrives gives DeadlineExceeded instead
// of a hang. MPI cannot cancel a collective: after a deadline (or any MPI error) the communicator
// is *broken*, its pending requests are abandoned, and every later call fails at once with
// FailedPrecondition quoting the first error. A late peer may still complete an abandoned request,
// so the buffers of the call that failed must stay alive, or the process must end; the usual
// answer to a fault in an SPMD job is to report it and exit, which is always safe.
//
// Counts are int64_t: a call with more than `max_count_per_call()` elements (INT_MAX by default,
// the limit of MPI's int counts, and at most 1 GiB) is split into several MPI calls (chunks of an
// all-gather are placed with a resized datatype), at most a few in flight at a time.
// set_check_arguments(true) makes ranks that disagree about a call fail together, before any data
// moves, instead of corrupting data or timing out.
// f16 and bf16 move as 16-bit words; their sum and max are user-defined MPI ops that compute in
// f32 and round once per pairwise step.
//
// Ownership: Create() duplicates the given MPI_Comm (MPI_Comm_idup, bounded by the deadline) and
// frees the duplicate on destruction; the duplicate has MPI_ERRORS_RETURN, so MPI errors become
// absl::Status. Borrow() wraps the caller's MPI_Comm as is (its error handler untouched: with the
// default MPI_ERRORS_ARE_FATAL an MPI error ends the job, deadlines still apply) and never frees
// it. Split() always makes an owned communicator. A broken communicator's MPI_Comm is not freed
// (freeing one with abandoned requests is unsafe); a communicator destroyed after MPI_Finalize
// frees nothing. Thread-safety: one thread at a time per communicator; several communicators may
// be used from several threads when MPI was initialized with MPI_THREAD_MULTIPLE.
//
//   RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<MpiCommunicator> world,
//                           MpiCommunicator::Create(MPI_COMM_WORLD));
//   world->set_timeout(absl::Seconds(5));
//   RAGGED_RETURN_IF_ERROR(world->AllReduce(x.data(), x.data(), n, DType::kF32, ReduceOp::kSum,
//                                           nullptr));
#ifndef RAGGED_RUNTIME_MPI_COMMUNICATOR_H_
#define RAGGED_RUNTIME_MPI_COMMUNICATOR_H_

#include <mpi.h>

#include <climits>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "runtime/communicator.h"
#include "runtime/dtype.h"
#include "runtime/stream.h"

namespace ragged {

class MpiCommunicator final : public Communicator {
 public:
  // Duplicates `comm` (collective over `comm`; every member must call). The duplicate is owned,
  // has MPI_ERRORS_RETURN and the deadline `timeout`, which also bounds the duplication itself.
  // InvalidArgument for MPI_COMM_NULL; FailedPrecondition when MPI is not initialized or already
  // finalized; DeadlineExceeded when a member does not arrive within `timeout`.
  static absl::StatusOr<std::unique_ptr<MpiCommunicator>> Create(
      MPI_Comm comm, absl::Duration timeout = kDefaultCommTimeout);
  // Wraps `comm` without owning it (not collective). The caller keeps `comm` valid while the
  // result lives; it is never freed, and its error handler is left as it is.
  static absl::StatusOr<std::unique_ptr<MpiCommunicator>> Borrow(MPI_Comm comm);

  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  CommBackend backend() const override { return CommBackend::kMpi; }

  // Host buffers; `stream` is ignored. See Communicator for the contracts. Errors:
  // InvalidArgument (negative count, null buffer with count > 0, root out of range),
  // DeadlineExceeded (the deadline passed; the communicator is now broken), Internal (an MPI
  // error; broken too), FailedPrecondition (called on a broken communicator).
  absl::Status AllGather(const void* send, void* recv, int64_t count, DType dtype,
                         Stream stream) override;
  absl::Status AllReduce(const void* send, void* recv, int64_t count, DType dtype, ReduceOp op,
                         Stream stream) override;
  absl::Status Broadcast(void* buf, int64_t count, DType dtype, int root, Stream stream) override;
  absl::Status Barrier(Stream stream = nullptr) override;
  // Exchanges (color, key) with a bounded all-gather first, so a missing member gives
  // DeadlineExceeded, then MPI_Comm_split. A negative color on any rank gives every rank
  // InvalidArgument naming that rank (and leaves this communicator usable). The child is owned,
  // has MPI_ERRORS_RETURN, and inherits the deadline and the chunk size.
  absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key) override;
  // Split(), typed.
  absl::StatusOr<std::unique_ptr<MpiCommunicator>> SplitMpi(int color, int key);

  // The MPI communicator (owned or borrowed). Still owned by this object.
  MPI_Comm comm() const { return comm_; }
  bool owned() const { return owned_; }
  // OK while usable; otherwise the first error that broke the communicator.
  const absl::Status& broken_status() const { return broken_; }
  bool broken() const { return !broken_.ok(); }

  // The most elements one MPI call moves (INT_MAX by default; never more than 1 GiB, as MPI
  // implementations have overflowed on larger messages). Lower values are for tests that exercise
  // chunking without gigabytes of memory. Values < 1 are treated as 1.
  int64_t max_count_per_call() const { return max_count_per_call_; }
  void set_max_count_per_call(int64_t n) { max_count_per_call_ = n < 1 ? 1 : n; }

  // When on, every collective first compares (kind, count, dtype, root) across the ranks with a
  // small bounded all-gather, and when they differ returns InvalidArgument on every rank, naming
  // each rank's call, before any data moves (MPI itself may answer a mismatch with a truncation
  // error, a hang or silently wrong data). Costs one extra small collective per call. Off by
  // default; Split passes it on.
  bool check_arguments() const { return check_arguments_; }
  void set_check_arguments(bool check) { check_arguments_ = check; }

 private:
  MpiCommunicator(MPI_Comm comm, bool owned, int rank, int size);

  // Starts the MPI call for elements [offset, offset + length) and fills *request, and *datatype
  // when it made a derived datatype that must live until the request completes.
  using StartChunk = absl::FunctionRef<int(int64_t offset, int length, MPI_Request* request,
                                           MPI_Datatype* datatype)>;
  // Runs `count` elements as chunks of at most max_count_per_call() (one call of length 0 when
  // count is 0), a few in flight, polled until done or the deadline. `op` names the call in errors.
  absl::Status RunChunked(absl::string_view op, int64_t count, DType dtype, StartChunk start);
  absl::Status CheckUsable(absl::string_view op) const;
  // With check_arguments(): InvalidArgument on every rank when the ranks' calls differ.
  absl::Status CheckSameCall(int32_t kind, int64_t count, DType dtype, int root);
  // Records `status` as the reason this communicator is broken and returns it.
  absl::Status Break(absl::Status status);

  MPI_Comm comm_;
  bool owned_;
  int rank_;
  int size_;
  int64_t max_count_per_call_ = INT_MAX;
  bool check_arguments_ = false;
  absl::Status broken_;
  // Requests and datatypes left pending by a deadline or an error: never freed (see the top).
  std::vector<MPI_Request> abandoned_requests_;
  std::vector<MPI_Datatype> abandoned_types_;
};

}  // namespace ragged

#endif  // RAGGED_RUNTIME_MPI_COMMUNICATOR_H_
