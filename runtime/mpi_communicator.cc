#include "runtime/mpi_communicator.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "runtime/status.h"

// Every error names the call, and this rank and host.
#define RAGGED_COMM_ERROR(status) ::ragged::Annotate((status), __func__, __FILE__, __LINE__)

namespace ragged {
namespace {

// Chunks of one call in flight at a time: enough to overlap, few enough to bound the requests.
constexpr int kChunksInFlight = 4;
// MPI implementations have overflowed on messages of 2 GiB and more; no call moves more than this.
constexpr int64_t kMaxBytesPerCall = int64_t{1} << 30;

// What a rank is about to do, for set_check_arguments: compared across ranks before the call.
enum class CallKind : int32_t {
  kAllGather = 1,
  kAllReduceSum,
  kAllReduceMax,
  kBroadcast,
  kBarrier
};

const char* CallKindName(int32_t kind) {
  switch (static_cast<CallKind>(kind)) {
    case CallKind::kAllGather:
      return "AllGather";
    case CallKind::kAllReduceSum:
      return "AllReduce(sum)";
    case CallKind::kAllReduceMax:
      return "AllReduce(max)";
    case CallKind::kBroadcast:
      return "Broadcast";
    case CallKind::kBarrier:
      return "Barrier";
  }
  return "unknown";
}

absl::Status MpiUnavailable(absl::string_view what) {
  return RAGGED_COMM_ERROR(absl::FailedPreconditionError(
      absl::StrCat(what, ": MPI is not initialized or already finalized")));
}

bool MpiActive() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

// f16 and bf16 reductions: MPI has no 16-bit float types, so they move as uint16 words and reduce
// with user-defined ops computing in f32. Max propagates NaN, like the f32 path of the kernels.
template <float (*kLoad)(uint16_t), uint16_t (*kStore)(float), bool kMax>
void Reduce16(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) {
    float x = kLoad(a[i]);
    float y = kLoad(b[i]);
    float r;
    if constexpr (kMax) {
      r = (std::isnan(x) || std::isnan(y)) ? NAN : std::max(x, y);
    } else {
      r = x + y;
    }
    b[i] = kStore(r);
  }
}

struct HalfOps {
  MPI_Op f16_sum = MPI_OP_NULL, f16_max = MPI_OP_NULL;
  MPI_Op bf16_sum = MPI_OP_NULL, bf16_max = MPI_OP_NULL;
};

// Created once, after MPI_Init (every caller holds a communicator, so MPI is initialized).
// Never freed: MPI releases them at MPI_Finalize.
const HalfOps& GetHalfOps() {
  static HalfOps ops;
  static std::once_flag once;
  std::call_once(once, [] {
    MPI_Op_create(&Reduce16<HalfToFloat, FloatToHalf, false>, 1, &ops.f16_sum);
    MPI_Op_create(&Reduce16<HalfToFloat, FloatToHalf, true>, 1, &ops.f16_max);
    MPI_Op_create(&Reduce16<BFloat16ToFloat, FloatToBFloat16, false>, 1, &ops.bf16_sum);
    MPI_Op_create(&Reduce16<BFloat16ToFloat, FloatToBFloat16, true>, 1, &ops.bf16_max);
  });
  return ops;
}

MPI_Datatype MpiType(DType t) {
  switch (t) {
    case DType::kF32:
      return MPI_FLOAT;
    case DType::kF16:
    case DType::kBF16:
      return MPI_UINT16_T;
    case DType::kI32:
      return MPI_INT32_T;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op MpiReduceOp(DType t, ReduceOp op) {
  bool max = op == ReduceOp::kMax;
  switch (t) {
    case DType::kF16:
      return max ? GetHalfOps().f16_max : GetHalfOps().f16_sum;
    case DType::kBF16:
      return max ? GetHalfOps().bf16_max : GetHalfOps().bf16_sum;
    case DType::kF32:
    case DType::kI32:
      return max ? MPI_MAX : MPI_SUM;
  }
  return MPI_OP_NULL;
}

absl::Status CheckCount(absl::string_view op, int64_t count, const void* a, const void* b) {
  if (count < 0) {
    return RAGGED_COMM_ERROR(
        absl::InvalidArgumentError(absl::StrCat(op, ": count must be >= 0, got ", count)));
  }
  if (count > 0 && (a == nullptr || b == nullptr)) {
    return RAGGED_COMM_ERROR(absl::InvalidArgumentError(
        absl::StrCat(op, ": null buffer with count ", count, " (send ",
                     a == nullptr ? "null" : "ok", ", recv ", b == nullptr ? "null" : "ok", ")")));
  }
  return absl::OkStatus();
}

// Waits for a single request (used where there is no communicator yet: Create).
absl::Status WaitOne(MPI_Request* request, absl::Time deadline, absl::string_view what) {
  int spins = 0;
  while (true) {
    int done = 0;
    int rc = MPI_Test(request, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return MpiError(rc, what, __FILE__, __LINE__);
    if (done) return absl::OkStatus();
    if (absl::Now() > deadline) {
      return Annotate(absl::DeadlineExceededError(
                          absl::StrCat(what,
                                       " did not complete before its deadline: a member of the "
                                       "communicator failed or never arrived")),
                      what, __FILE__, __LINE__);
    }
    if (++spins < 1000) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
}

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm, bool owned, int rank, int size)
    : comm_(comm), owned_(owned), rank_(rank), size_(size) {}

MpiCommunicator::~MpiCommunicator() {
  if (!owned_ || comm_ == MPI_COMM_NULL || !broken_.ok() || !MpiActive()) return;
  MPI_Comm_free(&comm_);
}

absl::StatusOr<std::unique_ptr<MpiCommunicator>> MpiCommunicator::Create(MPI_Comm comm,
                                                                         absl::Duration timeout) {
  if (!MpiActive()) return MpiUnavailable("MpiCommunicator::Create");
  if (comm == MPI_COMM_NULL) {
    return RAGGED_COMM_ERROR(
        absl::InvalidArgumentError("MpiCommunicator::Create: comm is MPI_COMM_NULL"));
  }
  MPI_Comm dup = MPI_COMM_NULL;
  MPI_Request request = MPI_REQUEST_NULL;
  RAGGED_MPI_RETURN_IF_ERROR(MPI_Comm_idup(comm, &dup, &request));
  // On a deadline the duplicate is leaked: it completes (or not) in MPI's hands.
  RAGGED_RETURN_IF_ERROR(WaitOne(&request, absl::Now() + timeout, "MPI_Comm_idup"));
  absl::Status s = RAGGED_MPI_STATUS(MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN));
  int rank = 0, size = 0;
  if (s.ok()) s = RAGGED_MPI_STATUS(MPI_Comm_rank(dup, &rank));
  if (s.ok()) s = RAGGED_MPI_STATUS(MPI_Comm_size(dup, &size));
  if (!s.ok()) {
    MPI_Comm_free(&dup);
    return s;
  }
  std::unique_ptr<MpiCommunicator> c(new MpiCommunicator(dup, /*owned=*/true, rank, size));
  c->set_timeout(timeout);
  return c;
}

absl::StatusOr<std::unique_ptr<MpiCommunicator>> MpiCommunicator::Borrow(MPI_Comm comm) {
  if (!MpiActive()) return MpiUnavailable("MpiCommunicator::Borrow");
  if (comm == MPI_COMM_NULL) {
    return RAGGED_COMM_ERROR(
        absl::InvalidArgumentError("MpiCommunicator::Borrow: comm is MPI_COMM_NULL"));
  }
  int rank = 0, size = 0;
  RAGGED_MPI_RETURN_IF_ERROR(MPI_Comm_rank(comm, &rank));
  RAGGED_MPI_RETURN_IF_ERROR(MPI_Comm_size(comm, &size));
  return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(comm, /*owned=*/false, rank, size));
}

absl::Status MpiCommunicator::CheckUsable(absl::string_view op) const {
  if (!broken_.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(op, " on a broken MPI communicator (rank ",
                                                      rank_, " of ", size_,
                                                      "); it broke on: ", broken_.message()));
  }
  if (!MpiActive()) return MpiUnavailable(op);
  return absl::OkStatus();
}

absl::Status MpiCommunicator::Break(absl::Status status) {
  if (broken_.ok()) broken_ = status;
  return status;
}

absl::Status MpiCommunicator::RunChunked(absl::string_view op, int64_t count, DType dtype,
                                         StartChunk start) {
  RAGGED_RETURN_IF_ERROR(CheckUsable(op));
  const absl::Time begin = absl::Now();
  const absl::Time deadline = begin + timeout_;
  const int64_t chunk = std::max<int64_t>(
      1, std::min({max_count_per_call_, int64_t{INT_MAX}, kMaxBytesPerCall / DTypeSize(dtype)}));
  const int64_t num_chunks = count == 0 ? 1 : (count + chunk - 1) / chunk;

  struct Pending {
    MPI_Request request;
    MPI_Datatype type;
  };
  std::deque<Pending> pending;
  auto abandon = [&](absl::Status status) {
    for (Pending& p : pending) {
      abandoned_requests_.push_back(p.request);
      if (p.type != MPI_DATATYPE_NULL) abandoned_types_.push_back(p.type);
    }
    return Break(std::move(status));
  };

  int64_t next = 0;
  int idle_polls = 0;
  while (next < num_chunks || !pending.empty()) {
    while (next < num_chunks && pending.size() < kChunksInFlight) {
      const int64_t offset = next * chunk;
      const int length = static_cast<int>(std::min(chunk, count - offset));
      Pending p{MPI_REQUEST_NULL, MPI_DATATYPE_NULL};
      int rc = start(offset, length, &p.request, &p.type);
      if (rc != MPI_SUCCESS) {
        if (p.type != MPI_DATATYPE_NULL) MPI_Type_free(&p.type);
        return abandon(MpiError(rc, absl::StrCat("MPI_I", op), __FILE__, __LINE__));
      }
      pending.push_back(p);
      ++next;
    }
    int done = 0;
    int rc = MPI_Test(&pending.front().request, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      return abandon(MpiError(rc, absl::StrCat("MPI_Test(", op, ")"), __FILE__, __LINE__));
    }
    if (done) {
      if (pending.front().type != MPI_DATATYPE_NULL) MPI_Type_free(&pending.front().type);
      pending.pop_front();
      idle_polls = 0;
      continue;
    }
    const absl::Time now = absl::Now();
    if (now > deadline) {
      return abandon(Annotate(
          absl::DeadlineExceededError(absl::StrFormat(
              "%s of %d x %s on an MPI communicator of %d ranks (this is rank %d) did not "
              "complete within %s (waited %s): a peer failed or never arrived; the communicator "
              "is now broken",
              op, count, DTypeName(dtype), size_, rank_, absl::FormatDuration(timeout_),
              absl::FormatDuration(now - begin))),
          absl::StrCat("MpiCommunicator::", op), __FILE__, __LINE__));
    }
    // Poll hot at first (latency), then back off so that oversubscribed ranks get the cores.
    ++idle_polls;
    if (idle_polls < 2000) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(idle_polls < 10000 ? 20 : 200));
    }
  }
  return absl::OkStatus();
}

absl::Status MpiCommunicator::CheckSameCall(int32_t kind, int64_t count, DType dtype, int root) {
  if (!check_arguments_) return absl::OkStatus();
  // [kind, dtype, root, count high, count low, marker]
  constexpr int kWords = 6;
  const int32_t mine[kWords] = {kind,
                                static_cast<int32_t>(dtype),
                                root,
                                static_cast<int32_t>(count >> 31),
                                static_cast<int32_t>(count & INT32_MAX),
                                0x5A17};
  std::vector<int32_t> all(static_cast<size_t>(kWords) * size_);
  RAGGED_RETURN_IF_ERROR(RunChunked("Allgather(argument check)", kWords, DType::kI32,
                                    [&](int64_t, int, MPI_Request* request, MPI_Datatype*) {
                                      return MPI_Iallgather(mine, kWords, MPI_INT32_T, all.data(),
                                                            kWords, MPI_INT32_T, comm_, request);
                                    }));
  auto describe = [&](int q) {
    const int32_t* w = &all[static_cast<size_t>(kWords) * q];
    std::string d = absl::StrCat("rank ", q, ": ", CallKindName(w[0]));
    if (w[0] != static_cast<int32_t>(CallKind::kBarrier)) {
      absl::StrAppend(&d, " of ", (int64_t{w[3]} << 31) | w[4], " x ",
                      DTypeName(static_cast<DType>(w[1])));
    }
    if (w[0] == static_cast<int32_t>(CallKind::kBroadcast))
      absl::StrAppend(&d, " from root ", w[2]);
    return d;
  };
  std::vector<std::string> differ;
  for (int q = 1; q < size_; ++q) {
    if (!std::equal(all.begin() + kWords * q, all.begin() + kWords * (q + 1), all.begin())) {
      differ.push_back(describe(q));
    }
  }
  if (differ.empty()) return absl::OkStatus();
  return Annotate(absl::InvalidArgumentError(
                      absl::StrCat("ranks disagree about the collective (", describe(0), "; ",
                                   absl::StrJoin(differ, "; "), "); nothing was sent")),
                  absl::StrCat("MpiCommunicator::", CallKindName(kind)), __FILE__, __LINE__);
}

absl::Status MpiCommunicator::AllGather(const void* send, void* recv, int64_t count, DType dtype,
                                        Stream) {
  RAGGED_RETURN_IF_ERROR(CheckCount("AllGather", count, send, recv));
  RAGGED_RETURN_IF_ERROR(
      CheckSameCall(static_cast<int32_t>(CallKind::kAllGather), count, dtype, 0));
  const MPI_Datatype type = MpiType(dtype);
  const int64_t esize = DTypeSize(dtype);
  const char* s = static_cast<const char*>(send);
  char* r = static_cast<char*>(recv);
  // send at this rank's block of recv is the in-place form.
  const bool in_place = count > 0 && s == r + rank_ * count * esize;
  return RunChunked(
      "Allgather", count, dtype,
      [&](int64_t offset, int length, MPI_Request* request, MPI_Datatype* dt) {
        const void* sbuf = in_place ? MPI_IN_PLACE : s + offset * esize;
        if (length == count) {
          return MPI_Iallgather(sbuf, length, type, r, length, type, comm_, request);
        }
        // A chunk: rank q's `length` elements land at q * count + offset, i.e. a
        // block of `length` elements whose extent is a whole rank's block.
        MPI_Datatype block = MPI_DATATYPE_NULL;
        int rc = MPI_Type_contiguous(length, type, &block);
        if (rc != MPI_SUCCESS) return rc;
        rc = MPI_Type_create_resized(block, 0, static_cast<MPI_Aint>(count * esize), dt);
        MPI_Type_free(&block);
        if (rc != MPI_SUCCESS) return rc;
        rc = MPI_Type_commit(dt);
        if (rc != MPI_SUCCESS) return rc;
        return MPI_Iallgather(sbuf, length, type, r + offset * esize, 1, *dt, comm_, request);
      });
}

absl::Status MpiCommunicator::AllReduce(const void* send, void* recv, int64_t count, DType dtype,
                                        ReduceOp op, Stream) {
  RAGGED_RETURN_IF_ERROR(CheckCount("AllReduce", count, send, recv));
  if (op != ReduceOp::kSum && op != ReduceOp::kMax) {
    return RAGGED_COMM_ERROR(absl::InvalidArgumentError(
        absl::StrCat("AllReduce: unknown reduce op ", static_cast<int>(op))));
  }
  RAGGED_RETURN_IF_ERROR(
      CheckSameCall(static_cast<int32_t>(op == ReduceOp::kSum ? CallKind::kAllReduceSum
                                                              : CallKind::kAllReduceMax),
                    count, dtype, 0));
  const MPI_Datatype type = MpiType(dtype);
  const MPI_Op mpi_op = MpiReduceOp(dtype, op);
  const int64_t esize = DTypeSize(dtype);
  const char* s = static_cast<const char*>(send);
  char* r = static_cast<char*>(recv);
  const bool in_place = s == r;
  return RunChunked(op == ReduceOp::kSum ? "Allreduce(sum)" : "Allreduce(max)", count, dtype,
                    [&](int64_t offset, int length, MPI_Request* request, MPI_Datatype*) {
                      const void* sbuf = in_place ? MPI_IN_PLACE : s + offset * esize;
                      return MPI_Iallreduce(sbuf, r + offset * esize, length, type, mpi_op, comm_,
                                            request);
                    });
}

absl::Status MpiCommunicator::Broadcast(void* buf, int64_t count, DType dtype, int root, Stream) {
  RAGGED_RETURN_IF_ERROR(CheckCount("Broadcast", count, buf, buf));
  if (root < 0 || root >= size_) {
    return RAGGED_COMM_ERROR(absl::InvalidArgumentError(absl::StrCat(
        "Broadcast: root ", root, " is not a rank of this communicator of size ", size_)));
  }
  RAGGED_RETURN_IF_ERROR(
      CheckSameCall(static_cast<int32_t>(CallKind::kBroadcast), count, dtype, root));
  const MPI_Datatype type = MpiType(dtype);
  const int64_t esize = DTypeSize(dtype);
  char* b = static_cast<char*>(buf);
  return RunChunked("Bcast", count, dtype,
                    [&](int64_t offset, int length, MPI_Request* request, MPI_Datatype*) {
                      return MPI_Ibcast(b + offset * esize, length, type, root, comm_, request);
                    });
}

absl::Status MpiCommunicator::Barrier(Stream) {
  RAGGED_RETURN_IF_ERROR(
      CheckSameCall(static_cast<int32_t>(CallKind::kBarrier), 0, DType::kI32, 0));
  return RunChunked("Barrier", 0, DType::kI32,
                    [&](int64_t, int, MPI_Request* request, MPI_Datatype*) {
                      return MPI_Ibarrier(comm_, request);
                    });
}

absl::StatusOr<std::unique_ptr<MpiCommunicator>> MpiCommunicator::SplitMpi(int color, int key) {
  RAGGED_RETURN_IF_ERROR(CheckUsable("Split"));
  // A bounded exchange first: every member has arrived once it completes, so MPI_Comm_split,
  // which cannot be bounded, only waits for ranks that are already in it.
  const int32_t mine[2] = {color, key};
  std::vector<int32_t> all(2 * static_cast<size_t>(size_));
  absl::Status exchanged = AllGather(mine, all.data(), 2, DType::kI32, nullptr);
  if (!exchanged.ok()) {
    return absl::Status(exchanged.code(),
                        absl::StrCat("Split, exchanging colors and keys: ", exchanged.message()));
  }
  std::vector<std::string> bad;
  for (int q = 0; q < size_; ++q) {
    if (all[2 * q] < 0) bad.push_back(absl::StrCat("rank ", q, " gave ", all[2 * q]));
  }
  if (!bad.empty()) {
    return Annotate(absl::InvalidArgumentError(absl::StrCat("Split: every color must be >= 0; ",
                                                            absl::StrJoin(bad, ", "))),
                    "MpiCommunicator::Split", __FILE__, __LINE__);
  }
  MPI_Comm child = MPI_COMM_NULL;
  int rc = MPI_Comm_split(comm_, color, key, &child);
  if (rc != MPI_SUCCESS) return Break(MpiError(rc, "MPI_Comm_split", __FILE__, __LINE__));
  absl::Status s = RAGGED_MPI_STATUS(MPI_Comm_set_errhandler(child, MPI_ERRORS_RETURN));
  int rank = 0, size = 0;
  if (s.ok()) s = RAGGED_MPI_STATUS(MPI_Comm_rank(child, &rank));
  if (s.ok()) s = RAGGED_MPI_STATUS(MPI_Comm_size(child, &size));
  if (!s.ok()) {
    MPI_Comm_free(&child);
    return s;
  }
  std::unique_ptr<MpiCommunicator> c(new MpiCommunicator(child, /*owned=*/true, rank, size));
  c->set_timeout(timeout_);
  c->set_max_count_per_call(max_count_per_call_);
  c->set_check_arguments(check_arguments_);
  return c;
}

absl::StatusOr<std::unique_ptr<Communicator>> MpiCommunicator::Split(int color, int key) {
  RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<MpiCommunicator> c, SplitMpi(color, key));
  return std::unique_ptr<Communicator>(std::move(c));
}

}  // namespace ragged
