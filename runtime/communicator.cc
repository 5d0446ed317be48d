#include "runtime/communicator.h"

#include "absl/strings/str_cat.h"

namespace ragged {

absl::string_view CommBackendName(CommBackend b) {
  switch (b) {
    case CommBackend::kMpi:
      return "mpi";
    case CommBackend::kNccl:
      return "nccl";
  }
  return "unknown";
}

absl::StatusOr<CommBackend> ParseCommBackend(absl::string_view name) {
  if (name == "mpi") return CommBackend::kMpi;
  if (name == "nccl") return CommBackend::kNccl;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown communicator backend \"", name, "\"; expected \"mpi\" or \"nccl\""));
}

absl::string_view ReduceOpName(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return "sum";
    case ReduceOp::kMax:
      return "max";
  }
  return "unknown";
}

}  // namespace ragged
