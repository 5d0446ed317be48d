#include "runtime/status.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

#if RAGGED_WITH_CUDA
#include <cuda_runtime_api.h>
#include <nccl.h>
#endif
#if RAGGED_WITH_MPI
#include <mpi.h>
#endif

namespace ragged {
namespace {
std::atomic<int> g_error_rank{-1};
}  // namespace

void SetErrorRank(int rank) { g_error_rank.store(rank); }
int ErrorRank() { return g_error_rank.load(); }

const std::string& HostName() {
  static const std::string* name = [] {
    char buf[256] = {0};
    if (gethostname(buf, sizeof(buf) - 1) != 0) return new std::string("unknown-host");
    return new std::string(buf);
  }();
  return *name;
}

absl::Status Annotate(absl::Status status, absl::string_view call, const char* file, int line) {
  if (status.ok()) return status;
  return absl::Status(status.code(),
                      absl::StrFormat("%s [%s at %s:%d, rank %d, host %s]", status.message(), call,
                                      file, line, ErrorRank(), HostName()));
}

absl::Status CudaError(int code, absl::string_view call, const char* file, int line) {
  if (code == 0) return absl::OkStatus();
#if RAGGED_WITH_CUDA
  auto err = static_cast<cudaError_t>(code);
  std::string msg = absl::StrCat("CUDA error ", code, " (", cudaGetErrorName(err),
                                 "): ", cudaGetErrorString(err));
  absl::StatusCode sc = absl::StatusCode::kInternal;
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver) {
    sc = absl::StatusCode::kFailedPrecondition;
  } else if (err == cudaErrorMemoryAllocation) {
    sc = absl::StatusCode::kResourceExhausted;
  } else if (err == cudaErrorInvalidValue || err == cudaErrorInvalidConfiguration) {
    sc = absl::StatusCode::kInvalidArgument;
  }
#else
  std::string msg = absl::StrCat("CUDA error ", code);
  absl::StatusCode sc = absl::StatusCode::kInternal;
#endif
  return Annotate(absl::Status(sc, msg), call, file, line);
}

absl::Status NcclError(int code, absl::string_view call, const char* file, int line) {
  if (code == 0) return absl::OkStatus();
#if RAGGED_WITH_CUDA
  auto res = static_cast<ncclResult_t>(code);
  std::string msg = absl::StrCat("NCCL error ", code, ": ", ncclGetErrorString(res));
  absl::StatusCode sc = absl::StatusCode::kInternal;
  if (res == ncclInvalidArgument || res == ncclInvalidUsage)
    sc = absl::StatusCode::kInvalidArgument;
  if (res == ncclRemoteError) sc = absl::StatusCode::kUnavailable;
  if (res == ncclInProgress) sc = absl::StatusCode::kUnavailable;
#else
  std::string msg = absl::StrCat("NCCL error ", code);
  absl::StatusCode sc = absl::StatusCode::kInternal;
#endif
  return Annotate(absl::Status(sc, msg), call, file, line);
}

absl::Status MpiError(int code, absl::string_view call, const char* file, int line) {
  if (code == 0) return absl::OkStatus();
#if RAGGED_WITH_MPI
  // MPI_Error_string aborts the process before MPI_Init (or after MPI_Finalize).
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  std::string msg = absl::StrCat("MPI error ", code);
  if (initialized && !finalized) {
    char text[MPI_MAX_ERROR_STRING] = {0};
    int len = 0;
    if (MPI_Error_string(code, text, &len) == MPI_SUCCESS) {
      absl::StrAppend(&msg, ": ", absl::string_view(text, len));
    }
  }
#else
  std::string msg = absl::StrCat("MPI error ", code);
#endif
  return Annotate(absl::Status(absl::StatusCode::kInternal, msg), call, file, line);
}

namespace internal {
void CheckFailed(const char* cond, const char* file, int line) {
  std::fprintf(stderr, "ragged: check failed: %s at %s:%d (rank %d, host %s)\n", cond, file, line,
               ErrorRank(), HostName().c_str());
  std::abort();
}
}  // namespace internal

}  // namespace ragged
