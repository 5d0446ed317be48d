// Status helpers: the one place where CUDA, NCCL and MPI return codes become absl::Status.
//
// Every error that leaves the library is an absl::Status. Errors from the CUDA runtime, NCCL and
// MPI carry the failing call, file:line, the rank of this process (set once by the bootstrap, -1
// until then) and the host name, so that a failure on one of many ranks can be traced:
//
//   RAGGED_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, n, kind, stream));
//   RAGGED_RETURN_IF_ERROR(DoSomething());
//   RAGGED_ASSIGN_OR_RETURN(auto mesh, Mesh::Parse("dp=2,tp=2"));
//
// The Abseil in Debian 12 (20220623) has neither these macros nor absl/log, hence this header.
// Thread-safety: all functions are thread-safe; SetErrorRank is meant to be called once at start.
#ifndef RAGGED_RUNTIME_STATUS_H_
#define RAGGED_RUNTIME_STATUS_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ragged {

// The rank printed in error messages (-1: unknown). Set by the bootstrap.
void SetErrorRank(int rank);
int ErrorRank();
// This machine's host name, cached.
const std::string& HostName();

// Appends " [call at file:line, rank R, host H]" to `status`'s message; OK stays OK.
absl::Status Annotate(absl::Status status, absl::string_view call, const char* file, int line);

// Conversions of library codes. `code` is the library's own error type, passed as int so that this
// header needs none of the libraries' headers. Success (0) gives OK.
absl::Status CudaError(int code, absl::string_view call, const char* file, int line);
absl::Status NcclError(int code, absl::string_view call, const char* file, int line);
absl::Status MpiError(int code, absl::string_view call, const char* file, int line);

namespace internal {
inline absl::Status AsStatus(absl::Status s) { return s; }
template <typename T>
absl::Status AsStatus(const absl::StatusOr<T>& s) {
  return s.status();
}
}  // namespace internal

}  // namespace ragged

#define RAGGED_INTERNAL_CONCAT_(a, b) a##b
#define RAGGED_INTERNAL_CONCAT(a, b) RAGGED_INTERNAL_CONCAT_(a, b)

// Returns from the enclosing function if `expr` (a Status or StatusOr) is not OK.
#define RAGGED_RETURN_IF_ERROR(expr)                                    \
  do {                                                                  \
    ::absl::Status ragged_status_ = ::ragged::internal::AsStatus(expr); \
    if (!ragged_status_.ok()) return ragged_status_;                    \
  } while (0)

// `lhs = value of expr`, or returns its Status from the enclosing function. Expands to several
// statements (it may declare `lhs`): inside an `if`, use braces.
#define RAGGED_ASSIGN_OR_RETURN(lhs, expr) \
  RAGGED_INTERNAL_ASSIGN_OR_RETURN(RAGGED_INTERNAL_CONCAT(ragged_statusor_, __LINE__), lhs, expr)
#define RAGGED_INTERNAL_ASSIGN_OR_RETURN(tmp, lhs, expr) \
  auto tmp = (expr);                                     \
  if (!tmp.ok()) return tmp.status();                    \
  lhs = std::move(tmp).value()

#define RAGGED_CUDA_STATUS(call) \
  ::ragged::CudaError(static_cast<int>(call), #call, __FILE__, __LINE__)
#define RAGGED_NCCL_STATUS(call) \
  ::ragged::NcclError(static_cast<int>(call), #call, __FILE__, __LINE__)
#define RAGGED_MPI_STATUS(call) \
  ::ragged::MpiError(static_cast<int>(call), #call, __FILE__, __LINE__)

#define RAGGED_CUDA_RETURN_IF_ERROR(call) RAGGED_RETURN_IF_ERROR(RAGGED_CUDA_STATUS(call))
#define RAGGED_NCCL_RETURN_IF_ERROR(call) RAGGED_RETURN_IF_ERROR(RAGGED_NCCL_STATUS(call))
#define RAGGED_MPI_RETURN_IF_ERROR(call) RAGGED_RETURN_IF_ERROR(RAGGED_MPI_STATUS(call))

// Invariant check: aborts with a message. Only where continuing would be worse than terminating.
#define RAGGED_CHECK(cond)                                                   \
  do {                                                                       \
    if (!(cond)) ::ragged::internal::CheckFailed(#cond, __FILE__, __LINE__); \
  } while (0)

namespace ragged::internal {
[[noreturn]] void CheckFailed(const char* cond, const char* file, int line);
}  // namespace ragged::internal

#endif  // RAGGED_RUNTIME_STATUS_H_
