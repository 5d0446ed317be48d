// Process: the bootstrap of one rank of an MPI job (mpirun, srun, ...).
//
// Process::Init initializes MPI (MPI_Init_thread), or adopts an MPI that the caller already
// initialized, and finds this rank's place: world rank and size, the local rank among the ranks
// on this host (MPI_Comm_split_type with MPI_COMM_TYPE_SHARED), and its CUDA device, which is the
// local rank modulo the number of visible devices (-1, the CPU, when none is visible). It sets
// the rank printed in every error (SetErrorRank) and makes `world()`, an owned duplicate of
// MPI_COMM_WORLD with MPI_ERRORS_RETURN.
//
// Ownership: the Process owns the world communicator and, when Init initialized MPI, MPI itself:
// Finalize (or destruction) frees the world communicator and calls MPI_Finalize, bounded (MPI
// cannot be initialized again in this process afterwards). An adopted MPI is left initialized.
// Communicators that outlive the Process are safe to destroy (they free nothing after MPI_Finalize)
// but not to use. Create one Process per process, at the start of main, and keep it until the end.
// Thread-safety: the accessors are thread-safe; Init and destruction are not.
//
//   int main(int argc, char** argv) {
//     absl::StatusOr<std::unique_ptr<ragged::Process>> process =
//         ragged::Process::Init(&argc, &argv);
//     if (!process.ok()) { /* print process.status(); return 1; */ }
//     ragged::MpiCommunicator& world = (*process)->world();
//   }
#ifndef RAGGED_RUNTIME_BOOTSTRAP_H_
#define RAGGED_RUNTIME_BOOTSTRAP_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/communicator.h"
#include "runtime/mpi_communicator.h"

namespace ragged {

struct ProcessOptions {
  // The thread level asked of MPI_Init_thread. MPI may provide less; see Process::thread_level.
  int thread_level = MPI_THREAD_MULTIPLE;
  // The deadline of the world communicator's collectives.
  absl::Duration timeout = kDefaultCommTimeout;
  // Make device() the current CUDA device of the calling thread (cudaSetDevice) when there is one.
  bool set_device = true;
  // How long Finalize lets MPI_Finalize run; see Process::Finalize.
  absl::Duration finalize_timeout = absl::Seconds(60);
};

class Process {
 public:
  // Initializes MPI (or adopts it) and this rank's place. Collective over MPI_COMM_WORLD.
  // FailedPrecondition when MPI was already finalized; the MPI error otherwise. On failure MPI may
  // be left initialized: report the error and exit.
  static absl::StatusOr<std::unique_ptr<Process>> Init(int* argc, char*** argv,
                                                       const ProcessOptions& options = {});

  // Finalize(1).
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  // Rank and count of the ranks on this host.
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  // This rank's CUDA device, or -1 when no device is visible (CPU).
  int device() const { return device_; }
  // The thread level that MPI provides (MPI_THREAD_SINGLE ... MPI_THREAD_MULTIPLE).
  int thread_level() const { return thread_level_; }
  // True when Init initialized MPI (and destruction finalizes it).
  bool owns_mpi() const { return owns_mpi_; }

  // Frees the world communicator and, when Init initialized MPI, calls MPI_Finalize. That call
  // synchronizes with every rank, and OpenMPI 4 waits forever for a rank that died: when it has
  // not returned within ProcessOptions::finalize_timeout, a watchdog flushes stdout and stderr and
  // ends the process with _exit(exit_code), the only way out. Pass the code the program would
  // return. Later calls do nothing; world() is invalid afterwards.
  void Finalize(int exit_code);

  // The world communicator (MPI backend, host buffers).
  MpiCommunicator& world() const { return *world_; }

  // A new communicator over all ranks, owned by the caller (collective over the world):
  //   kMpi: a duplicate of world() (host buffers).
  //   kNccl: CheckOneRankPerGpu, then an NcclCommunicator on device() bootstrapped over world()
  //     (device buffers). FailedPrecondition when the library was built without CUDA or this rank
  //     has no GPU (on every rank, so that none waits for the others), or when two ranks share a
  //     GPU.
  absl::StatusOr<std::unique_ptr<Communicator>> CreateWorldCommunicator(CommBackend backend) const;

 private:
  Process() = default;

  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  int device_ = -1;
  int thread_level_ = 0;
  bool owns_mpi_ = false;
  bool finalized_ = false;
  absl::Duration finalize_timeout_ = absl::Seconds(60);
  std::unique_ptr<MpiCommunicator> world_;
};

// Checks, before NCCL is initialized, that no two ranks of `world` drive the same GPU (NCCL would
// answer ncclInvalidUsage, or hang in older versions). Collective over `world`, which must be a
// host communicator (MPI backend). `device` is this rank's CUDA device, -1 for a CPU rank (never
// in conflict). Two ranks conflict when they are on the same host and their devices have the
// same UUID (the same ordinal when the UUID cannot be read, e.g. without CUDA).
// FailedPrecondition naming both ranks, the host and the device, and suggesting the MPI backend;
// InvalidArgument when `world` is not a host communicator; the communicator's error otherwise.
absl::Status CheckOneRankPerGpu(Communicator& world, int device);

}  // namespace ragged

#endif  // RAGGED_RUNTIME_BOOTSTRAP_H_
