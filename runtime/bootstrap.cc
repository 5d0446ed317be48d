#include "runtime/bootstrap.h"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "runtime/status.h"
#include "runtime/stream.h"

#if RAGGED_WITH_CUDA
#include <cuda_runtime_api.h>

#include "runtime/nccl_communicator.h"
#endif

// Every error names the call, and this rank and host.
#define RAGGED_COMM_ERROR(status) ::ragged::Annotate((status), __func__, __FILE__, __LINE__)

namespace ragged {

absl::StatusOr<std::unique_ptr<Process>> Process::Init(int* argc, char*** argv,
                                                       const ProcessOptions& options) {
  int initialized = 0, finalized = 0;
  RAGGED_MPI_RETURN_IF_ERROR(MPI_Initialized(&initialized));
  RAGGED_MPI_RETURN_IF_ERROR(MPI_Finalized(&finalized));
  if (finalized) {
    return RAGGED_COMM_ERROR(absl::FailedPreconditionError(
        "Process::Init: MPI was already finalized in this process and cannot be initialized "
        "again; keep one Process for the whole program"));
  }
  std::unique_ptr<Process> p(new Process());
  p->finalize_timeout_ = options.finalize_timeout;
  if (!initialized) {
    RAGGED_MPI_RETURN_IF_ERROR(
        MPI_Init_thread(argc, argv, options.thread_level, &p->thread_level_));
    p->owns_mpi_ = true;
  } else {
    RAGGED_MPI_RETURN_IF_ERROR(MPI_Query_thread(&p->thread_level_));
  }
  RAGGED_MPI_RETURN_IF_ERROR(MPI_Comm_rank(MPI_COMM_WORLD, &p->rank_));
  RAGGED_MPI_RETURN_IF_ERROR(MPI_Comm_size(MPI_COMM_WORLD, &p->size_));
  SetErrorRank(p->rank_);

  MPI_Comm local = MPI_COMM_NULL;
  RAGGED_MPI_RETURN_IF_ERROR(
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, p->rank_, MPI_INFO_NULL, &local));
  absl::Status s = RAGGED_MPI_STATUS(MPI_Comm_rank(local, &p->local_rank_));
  if (s.ok()) s = RAGGED_MPI_STATUS(MPI_Comm_size(local, &p->local_size_));
  MPI_Comm_free(&local);
  RAGGED_RETURN_IF_ERROR(s);

  const int devices = CudaDeviceCount();
  p->device_ = devices > 0 ? p->local_rank_ % devices : -1;
#if RAGGED_WITH_CUDA
  if (p->device_ >= 0 && options.set_device) {
    RAGGED_CUDA_RETURN_IF_ERROR(cudaSetDevice(p->device_));
  }
#endif

  RAGGED_ASSIGN_OR_RETURN(p->world_, MpiCommunicator::Create(MPI_COMM_WORLD, options.timeout));
  return p;
}

Process::~Process() { Finalize(1); }

void Process::Finalize(int exit_code) {
  if (finalized_) return;
  finalized_ = true;
  world_.reset();
  if (!owns_mpi_) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  absl::Notification done;
  std::thread watchdog([&done, exit_code, timeout = finalize_timeout_, rank = rank_] {
    if (done.WaitForNotificationWithTimeout(timeout)) return;
    std::fprintf(stderr,
                 "ragged: rank %d: MPI_Finalize did not return within %s (a rank died?); "
                 "exiting with status %d without it\n",
                 rank, absl::FormatDuration(timeout).c_str(), exit_code);
    std::fflush(stdout);
    std::fflush(stderr);
    _exit(exit_code);
  });
  MPI_Finalize();
  done.Notify();
  watchdog.join();
}

absl::StatusOr<std::unique_ptr<Communicator>> Process::CreateWorldCommunicator(
    CommBackend backend) const {
  if (backend == CommBackend::kMpi) {
    RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<MpiCommunicator> c, world_->SplitMpi(0, rank_));
    return std::unique_ptr<Communicator>(std::move(c));
  }
  // NCCL: every rank must be able to take part, or none does.
  const int32_t ready = BuiltWithCuda() && device_ >= 0 ? 1 : 0;
  int32_t all_ready = 0;
  RAGGED_RETURN_IF_ERROR(
      world_->AllReduce(&ready, &all_ready, 1, DType::kI32, ReduceOp::kSum, nullptr));
  if (all_ready != size_) {
    return Annotate(absl::FailedPreconditionError(absl::StrCat(
                        "the NCCL backend needs a GPU on every rank, but ", size_ - all_ready,
                        " of ", size_, " rank(s) have none (this rank: ",
                        !BuiltWithCuda() ? "ragged was built without CUDA"
                                         : (device_ < 0 ? "no visible CUDA device" : "has a GPU"),
                        "); use the MPI backend")),
                    "Process::CreateWorldCommunicator", __FILE__, __LINE__);
  }
  RAGGED_RETURN_IF_ERROR(CheckOneRankPerGpu(*world_, device_));
#if RAGGED_WITH_CUDA
  NcclOptions options;
  options.timeout = world_->timeout();
  RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<NcclCommunicator> c,
                          NcclCommunicator::Create(*world_, device_, options));
  return std::unique_ptr<Communicator>(std::move(c));
#else
  return absl::InternalError("unreachable: NCCL without CUDA");
#endif
}

namespace {

// What one rank tells the others about its GPU: 24 int32 words, so it travels as DType::kI32.
struct DeviceRecord {
  char host[64];       // host name, truncated, NUL-terminated
  uint32_t host_hash;  // FNV-1a of the full host name (truncated names may collide)
  int32_t device;      // CUDA ordinal, -1 for the CPU
  int32_t has_uuid;    // 1 when uuid is valid
  uint8_t uuid[16];    // cudaDeviceProp::uuid
  int32_t pad;
};
static_assert(sizeof(DeviceRecord) % 4 == 0, "DeviceRecord travels as int32 words");
constexpr int64_t kRecordWords = sizeof(DeviceRecord) / 4;

uint32_t Fnv1a(const std::string& s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) h = (h ^ c) * 16777619u;
  return h;
}

std::string UuidString(const uint8_t* u) {
  return absl::StrFormat("GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                         u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11],
                         u[12], u[13], u[14], u[15]);
}

}  // namespace

absl::Status CheckOneRankPerGpu(Communicator& world, int device) {
  if (world.backend() != CommBackend::kMpi) {
    return RAGGED_COMM_ERROR(absl::InvalidArgumentError(
        absl::StrCat("CheckOneRankPerGpu needs a host (MPI) communicator, got ",
                     CommBackendName(world.backend()))));
  }
  DeviceRecord mine;
  std::memset(&mine, 0, sizeof(mine));
  const std::string& host = HostName();
  std::memcpy(mine.host, host.data(), std::min<size_t>(host.size(), sizeof(mine.host) - 1));
  mine.host_hash = Fnv1a(host);
  mine.device = device < 0 ? -1 : device;
#if RAGGED_WITH_CUDA
  if (device >= 0 && device < CudaDeviceCount()) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, device) == cudaSuccess) {
      std::memcpy(mine.uuid, &prop.uuid, sizeof(mine.uuid));
      mine.has_uuid = 1;
    } else {
      cudaGetLastError();
    }
  }
#endif
  std::vector<DeviceRecord> all(static_cast<size_t>(world.size()));
  RAGGED_RETURN_IF_ERROR(world.AllGather(&mine, all.data(), kRecordWords, DType::kI32, nullptr));

  for (int a = 0; a < world.size(); ++a) {
    for (int b = a + 1; b < world.size(); ++b) {
      const DeviceRecord& x = all[a];
      const DeviceRecord& y = all[b];
      if (x.device < 0 || y.device < 0) continue;
      if (x.host_hash != y.host_hash || std::strncmp(x.host, y.host, sizeof(x.host)) != 0) {
        continue;
      }
      const bool same = (x.has_uuid && y.has_uuid)
                            ? std::memcmp(x.uuid, y.uuid, sizeof(x.uuid)) == 0
                            : x.device == y.device;
      if (!same) continue;
      std::string what =
          x.has_uuid && y.has_uuid
              ? absl::StrCat("the same GPU ", UuidString(x.uuid), " (device ", x.device,
                             " on rank ", a, ", device ", y.device, " on rank ", b, ")")
              : absl::StrCat("CUDA device ", x.device);
      return Annotate(
          absl::FailedPreconditionError(absl::StrCat(
              "ranks ", a, " and ", b, " both use ", what, " on host ", x.host,
              ": NCCL needs one GPU per rank (it would fail with ncclInvalidUsage). Start at "
              "most one rank per visible GPU on each host, or use the MPI backend (CPU)")),
          "CheckOneRankPerGpu", __FILE__, __LINE__);
    }
  }
  return absl::OkStatus();
}

}  // namespace ragged
