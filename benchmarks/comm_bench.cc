// comm_bench: collective bandwidth over the Communicator interface, in the manner of nccl-tests.
//
// Sweeps message sizes for all-gather, all-reduce and broadcast on the MPI backend (host buffers)
// or the NCCL backend (device buffers, one rank per GPU), checks every result in the same run,
// and prints per size: time per call (the slowest rank's average), algbw = size / time and
// busbw = algbw * factor, where size and factor follow nccl-tests (doc/PERFORMANCE.md):
//   all-gather: size = the gathered (receive) bytes, factor (n - 1) / n
//   all-reduce: size = the bytes per rank,            factor 2 (n - 1) / n
//   broadcast:  size = the bytes per rank,            factor 1
// Exit status 1 when any element was wrong or a call failed.
//
//   mpirun -np 4 --oversubscribe build/benchmarks/comm_bench --backend=mpi
//   mpirun -np 8 build/benchmarks/comm_bench --backend=nccl --max_bytes=1G
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "runtime/bootstrap.h"
#include "runtime/buffer.h"
#include "runtime/communicator.h"
#include "runtime/dtype.h"
#include "runtime/status.h"
#include "runtime/stream.h"

#if RAGGED_WITH_CUDA
#include "runtime/nccl_communicator.h"
#endif

ABSL_FLAG(std::string, backend, "mpi", "mpi (host buffers) or nccl (device buffers)");
ABSL_FLAG(std::string, ops, "allgather,allreduce,broadcast", "collectives to run, comma-separated");
ABSL_FLAG(std::string, dtype, "f32", "f32, f16, bf16 or i32");
ABSL_FLAG(std::string, min_bytes, "8", "smallest size (suffixes K, M, G: powers of 1024)");
ABSL_FLAG(std::string, max_bytes, "64M", "largest size");
ABSL_FLAG(int, step_factor, 2, "size multiplier between steps");
ABSL_FLAG(int, warmup, 5, "untimed calls per size");
ABSL_FLAG(int, iters, 20, "timed calls per size");
ABSL_FLAG(bool, check, true, "verify every result");
ABSL_FLAG(double, timeout_s, 60, "deadline of each call, in seconds");

namespace ragged {
namespace {

enum class Op { kAllGather, kAllReduce, kBroadcast };

struct OpInfo {
  Op op;
  const char* name;
};
constexpr OpInfo kOps[] = {
    {Op::kAllGather, "allgather"}, {Op::kAllReduce, "allreduce"}, {Op::kBroadcast, "broadcast"}};

absl::StatusOr<int64_t> ParseBytes(absl::string_view text) {
  int64_t scale = 1;
  if (!text.empty()) {
    switch (text.back()) {
      case 'K':
      case 'k':
        scale = int64_t{1} << 10;
        break;
      case 'M':
      case 'm':
        scale = int64_t{1} << 20;
        break;
      case 'G':
      case 'g':
        scale = int64_t{1} << 30;
        break;
    }
    if (scale != 1) text.remove_suffix(1);
  }
  int64_t value = 0;
  if (!absl::SimpleAtoi(text, &value) || value < 0) {
    return absl::InvalidArgumentError(absl::StrCat("bad size \"", text, "\""));
  }
  return value * scale;
}

// Small integers: exact in every dtype, sums over many ranks included.
float Value(int rank, int64_t i) { return static_cast<float>((rank * 7 + i * 3) % 11 - 5); }

// Send and receive storage for one size, on the host (MPI) or the device (NCCL), with host
// mirrors for filling and checking.
class Buffers {
 public:
  static absl::StatusOr<Buffers> Allocate(DType dtype, int64_t send_count, int64_t recv_count,
                                          int device) {
    Buffers b;
    b.device_ = device;
    b.host_send_ = HostBuffer::Allocate(dtype, {send_count});
    b.host_recv_ = HostBuffer::Allocate(dtype, {recv_count});
    if (device >= 0) {
      RAGGED_ASSIGN_OR_RETURN(b.dev_send_, DeviceBuffer::Allocate(dtype, {send_count}, device));
      RAGGED_ASSIGN_OR_RETURN(b.dev_recv_, DeviceBuffer::Allocate(dtype, {recv_count}, device));
    }
    return b;
  }
  void* send() { return device_ >= 0 ? dev_send_.data() : host_send_.data(); }
  void* recv() { return device_ >= 0 ? dev_recv_.data() : host_recv_.data(); }
  HostBuffer& host_send() { return host_send_; }
  HostBuffer& host_recv() { return host_recv_; }

  // Host mirrors -> working buffers (recv too, so that a stale result cannot pass the check).
  absl::Status Upload() {
    if (device_ < 0) return absl::OkStatus();
    RAGGED_RETURN_IF_ERROR(dev_send_.CopyFromHost(host_send_.view()));
    RAGGED_RETURN_IF_ERROR(dev_recv_.CopyFromHost(host_recv_.view()));
    return SynchronizeStream(nullptr);
  }
  // Working recv -> host mirror.
  absl::Status Download() {
    if (device_ < 0) return absl::OkStatus();
    RAGGED_RETURN_IF_ERROR(dev_recv_.CopyToHost(host_recv_.view()));
    return SynchronizeStream(nullptr);
  }

 private:
  int device_ = -1;
  HostBuffer host_send_, host_recv_;
  DeviceBuffer dev_send_, dev_recv_;
};

struct Shape {
  int64_t send_count = 0;  // elements per rank sent
  int64_t recv_count = 0;  // elements per rank received
  int64_t size_bytes = 0;  // nccl-tests' "size"
  double bus_factor = 1;
};

Shape ShapeFor(Op op, int64_t bytes, int64_t esize, int n) {
  Shape s;
  switch (op) {
    case Op::kAllGather:
      s.send_count = bytes / (esize * n);
      s.recv_count = s.send_count * n;
      s.size_bytes = s.recv_count * esize;
      s.bus_factor = static_cast<double>(n - 1) / n;
      break;
    case Op::kAllReduce:
      s.send_count = s.recv_count = bytes / esize;
      s.size_bytes = s.send_count * esize;
      s.bus_factor = 2.0 * (n - 1) / n;
      break;
    case Op::kBroadcast:
      s.send_count = s.recv_count = bytes / esize;
      s.size_bytes = s.send_count * esize;
      s.bus_factor = 1;
      break;
  }
  return s;
}

constexpr int kRoot = 0;

absl::Status Launch(Communicator& comm, Op op, Buffers& b, const Shape& s, DType dtype) {
  switch (op) {
    case Op::kAllGather:
      return comm.AllGather(b.send(), b.recv(), s.send_count, dtype, nullptr);
    case Op::kAllReduce:
      return comm.AllReduce(b.send(), b.recv(), s.send_count, dtype, ReduceOp::kSum, nullptr);
    case Op::kBroadcast:
      // In place, like nccl-tests' default for the root's buffer: recv holds the root's data.
      return comm.Broadcast(b.recv(), s.recv_count, dtype, kRoot, nullptr);
  }
  return absl::InternalError("unknown op");
}

// Fills the host mirrors for one checked call: send with this rank's values; recv with a marker
// (for broadcast, the root's recv holds its values, as the call is in place).
void Fill(Op op, Buffers& b, const Shape& s, DType dtype, int rank) {
  for (int64_t i = 0; i < s.send_count; ++i) {
    StoreFromFloat(b.host_send().data(), dtype, i, Value(rank, i));
  }
  for (int64_t i = 0; i < s.recv_count; ++i) {
    const bool root_data = op == Op::kBroadcast && rank == kRoot;
    StoreFromFloat(b.host_recv().data(), dtype, i, root_data ? Value(rank, i) : 99.0f);
  }
}

int64_t CountWrong(Op op, Buffers& b, const Shape& s, DType dtype, int n) {
  int64_t wrong = 0;
  for (int64_t i = 0; i < s.recv_count; ++i) {
    float expected = 0;
    switch (op) {
      case Op::kAllGather:
        expected = Value(static_cast<int>(i / s.send_count), i % s.send_count);
        break;
      case Op::kAllReduce:
        for (int q = 0; q < n; ++q) expected += Value(q, i);
        break;
      case Op::kBroadcast:
        expected = Value(kRoot, i);
        break;
    }
    if (LoadAsFloat(b.host_recv().data(), dtype, i) != expected) ++wrong;
  }
  return wrong;
}

// The world over the chosen backend; for NCCL, calls return once queued and the timed loop waits
// once at its end, as nccl-tests does.
absl::StatusOr<std::unique_ptr<Communicator>> MakeComm(Process& process, CommBackend backend,
                                                       absl::Duration timeout) {
  process.world().set_timeout(timeout);
  RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm,
                          process.CreateWorldCommunicator(backend));
  comm->set_timeout(timeout);
  return comm;
}

absl::Status Sync(Communicator& comm) {
#if RAGGED_WITH_CUDA
  if (auto* nccl = dynamic_cast<NcclCommunicator*>(&comm)) return nccl->Wait(nullptr);
#endif
  return absl::OkStatus();
}

void SetQueued(Communicator& comm, bool queued) {
#if RAGGED_WITH_CUDA
  if (auto* nccl = dynamic_cast<NcclCommunicator*>(&comm)) nccl->set_wait_for_completion(!queued);
#endif
}

absl::StatusOr<int64_t> Run(Process& process) {
  RAGGED_ASSIGN_OR_RETURN(CommBackend backend, ParseCommBackend(absl::GetFlag(FLAGS_backend)));
  RAGGED_ASSIGN_OR_RETURN(DType dtype, ParseDType(absl::GetFlag(FLAGS_dtype)));
  RAGGED_ASSIGN_OR_RETURN(int64_t min_bytes, ParseBytes(absl::GetFlag(FLAGS_min_bytes)));
  RAGGED_ASSIGN_OR_RETURN(int64_t max_bytes, ParseBytes(absl::GetFlag(FLAGS_max_bytes)));
  const int step = absl::GetFlag(FLAGS_step_factor);
  const int warmup = absl::GetFlag(FLAGS_warmup);
  const int iters = absl::GetFlag(FLAGS_iters);
  if (step < 2 || iters < 1 || warmup < 0 || min_bytes < 1 || max_bytes < min_bytes) {
    return absl::InvalidArgumentError(
        "need --step_factor >= 2, --iters >= 1, --warmup >= 0, 1 <= min_bytes <= max_bytes");
  }
  std::vector<OpInfo> ops;
  for (absl::string_view name : absl::StrSplit(absl::GetFlag(FLAGS_ops), ',')) {
    auto it = std::find_if(std::begin(kOps), std::end(kOps),
                           [&](const OpInfo& o) { return name == o.name; });
    if (it == std::end(kOps)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown op \"", name, "\""));
    }
    ops.push_back(*it);
  }
  const absl::Duration timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout_s));
  RAGGED_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm, MakeComm(process, backend, timeout));
  const int n = comm->size(), rank = comm->rank();
  const int device = backend == CommBackend::kNccl ? comm->device() : -1;
  const int64_t esize = DTypeSize(dtype);
  const bool check = absl::GetFlag(FLAGS_check);
  MpiCommunicator& host = process.world();  // for the timing reductions

  if (rank == 0) {
    std::printf(
        "# ragged comm_bench: backend %s, %d ranks, dtype %s, %d warmup + %d timed calls "
        "per size\n",
        std::string(CommBackendName(backend)).c_str(), n, std::string(DTypeName(dtype)).c_str(),
        warmup, iters);
    std::printf(
        "# time: the slowest rank's mean per call; algbw = size / time; busbw = algbw * "
        "factor (nccl-tests)\n");
  }
  int64_t total_wrong = 0;
  for (const OpInfo& info : ops) {
    if (rank == 0) {
      std::printf("#\n# %s\n# %12s %12s %6s %12s %12s %12s %8s\n", info.name, "size(B)", "count",
                  "type", "time(us)", "algbw(GB/s)", "busbw(GB/s)", "#wrong");
    }
    for (int64_t bytes = min_bytes; bytes <= max_bytes; bytes *= step) {
      const Shape s = ShapeFor(info.op, bytes, esize, n);
      if (s.send_count == 0) continue;
      RAGGED_ASSIGN_OR_RETURN(Buffers b,
                              Buffers::Allocate(dtype, s.send_count, s.recv_count, device));
      int64_t wrong = 0;
      if (check) {
        Fill(info.op, b, s, dtype, rank);
        RAGGED_RETURN_IF_ERROR(b.Upload());
        SetQueued(*comm, false);
        RAGGED_RETURN_IF_ERROR(Launch(*comm, info.op, b, s, dtype));
        RAGGED_RETURN_IF_ERROR(b.Download());
        wrong = CountWrong(info.op, b, s, dtype, n);
      }
      SetQueued(*comm, true);
      for (int i = 0; i < warmup; ++i) RAGGED_RETURN_IF_ERROR(Launch(*comm, info.op, b, s, dtype));
      RAGGED_RETURN_IF_ERROR(Sync(*comm));
      RAGGED_RETURN_IF_ERROR(comm->Barrier());
      const auto start = std::chrono::steady_clock::now();
      for (int i = 0; i < iters; ++i) RAGGED_RETURN_IF_ERROR(Launch(*comm, info.op, b, s, dtype));
      RAGGED_RETURN_IF_ERROR(Sync(*comm));
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / iters;
      float mine = static_cast<float>(seconds), slowest = 0;
      RAGGED_RETURN_IF_ERROR(
          host.AllReduce(&mine, &slowest, 1, DType::kF32, ReduceOp::kMax, nullptr));
      int32_t wrong32 = static_cast<int32_t>(std::min<int64_t>(wrong, INT32_MAX)), all_wrong = 0;
      RAGGED_RETURN_IF_ERROR(
          host.AllReduce(&wrong32, &all_wrong, 1, DType::kI32, ReduceOp::kSum, nullptr));
      total_wrong += all_wrong;
      if (rank == 0) {
        const double algbw = s.size_bytes / static_cast<double>(slowest) / 1e9;
        std::printf("  %12lld %12lld %6s %12.2f %12.3f %12.3f %8s\n",
                    static_cast<long long>(s.size_bytes), static_cast<long long>(s.send_count),
                    std::string(DTypeName(dtype)).c_str(), slowest * 1e6, algbw,
                    algbw * s.bus_factor, check ? std::to_string(all_wrong).c_str() : "n/a");
        std::fflush(stdout);
      }
    }
  }
  SetQueued(*comm, false);
  return total_wrong;
}

}  // namespace
}  // namespace ragged

int main(int argc, char** argv) {
  absl::StatusOr<std::unique_ptr<ragged::Process>> process = ragged::Process::Init(&argc, &argv);
  if (!process.ok()) {
    std::fprintf(stderr, "comm_bench: %s\n", process.status().ToString().c_str());
    return 1;
  }
  absl::SetProgramUsageMessage(
      "Collective bandwidth over the ragged communicators (run under mpirun)");
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<int64_t> wrong = ragged::Run(**process);
  int code = 0;
  if (!wrong.ok()) {
    std::fprintf(stderr, "comm_bench: rank %d: %s\n", (*process)->rank(),
                 wrong.status().ToString().c_str());
    code = 1;
  } else if (*wrong != 0) {
    if ((*process)->rank() == 0)
      std::fprintf(stderr, "comm_bench: %lld wrong elements\n", static_cast<long long>(*wrong));
    code = 1;
  }
  (*process)->Finalize(code);
  return code;
}
