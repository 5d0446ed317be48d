// ThreadCommunicator: a test-only Communicator whose ranks are threads of one process.
//
// N threads each hold one ThreadCommunicator of a ThreadGroup and call the collectives in the same
// order, as ranks of an MPI or NCCL job would. Host buffers (backend kMpi) are copied with memcpy;
// device buffers (backend kNccl) with cudaMemcpyAsync on the call's stream, after synchronizing it,
// so several "ranks" can share one GPU, which NCCL refuses. Every call blocks the host: this is a
// stand-in for running the sharded runtime's multi-rank data paths on one machine, not a fast or
// graph-capturable communicator. The group owns the shared state; each communicator holds a
// reference to it. A peer that never arrives makes the others wait until the group's timeout and
// then fail with DeadlineExceeded. Thread-safety: one thread per communicator.
#ifndef RAGGED_TESTS_SHARDING_THREAD_COMM_H_
#define RAGGED_TESTS_SHARDING_THREAD_COMM_H_

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/communicator.h"
#include "runtime/dtype.h"
#include "runtime/status.h"

#if RAGGED_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace ragged::testing {

class ThreadGroup {
 public:
  explicit ThreadGroup(int size) : size_(size), slots_(size) {}
  int size() const { return size_; }

  // Blocks until every rank arrived (a generation-counted barrier).
  absl::Status Barrier() {
    std::unique_lock<std::mutex> lock(mu_);
    const int64_t gen = generation_;
    if (++arrived_ == size_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return absl::OkStatus();
    }
    if (!cv_.wait_for(lock, std::chrono::seconds(60), [&] { return generation_ != gen; })) {
      return absl::DeadlineExceededError("ThreadGroup: a peer did not arrive within 60 s");
    }
    return absl::OkStatus();
  }

  struct Slot {
    const void* ptr = nullptr;
    int color = 0, key = 0;
  };
  Slot& slot(int rank) { return slots_[rank]; }

  // The group of `color` in split number `split`, made by the first rank that asks.
  std::shared_ptr<ThreadGroup> SubGroup(int64_t split, int color, int size) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& g = subgroups_[{split, color}];
    if (g == nullptr) g = std::make_shared<ThreadGroup>(size);
    return g;
  }

 private:
  const int size_;
  std::vector<Slot> slots_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  int64_t generation_ = 0;
  std::map<std::pair<int64_t, int>, std::shared_ptr<ThreadGroup>> subgroups_;
};

class ThreadCommunicator : public Communicator {
 public:
  ThreadCommunicator(std::shared_ptr<ThreadGroup> group, int rank, CommBackend backend, int device)
      : group_(std::move(group)), rank_(rank), backend_(backend), device_(device) {}

  int rank() const override { return rank_; }
  int size() const override { return group_->size(); }
  CommBackend backend() const override { return backend_; }
  int device() const override { return backend_ == CommBackend::kNccl ? device_ : -1; }

  absl::Status AllGather(const void* send, void* recv, int64_t count, DType dtype,
                         Stream stream) override {
    const int64_t bytes = count * DTypeSize(dtype);
    RAGGED_RETURN_IF_ERROR(Sync(stream));
    group_->slot(rank_).ptr = send;
    RAGGED_RETURN_IF_ERROR(group_->Barrier());
    for (int r = 0; r < size(); ++r) {
      RAGGED_RETURN_IF_ERROR(
          Copy(static_cast<char*>(recv) + r * bytes, group_->slot(r).ptr, bytes, stream));
    }
    RAGGED_RETURN_IF_ERROR(Sync(stream));
    return group_->Barrier();  // peers may reuse their send buffers only after every read
  }

  // f32 and i32, sum and max; enough for the tests.
  absl::Status AllReduce(const void* send, void* recv, int64_t count, DType dtype, ReduceOp op,
                         Stream stream) override {
    if (dtype != DType::kF32 && dtype != DType::kI32) {
      return absl::UnimplementedError("ThreadCommunicator::AllReduce: f32 and i32 only");
    }
    const int64_t bytes = count * 4;
    std::vector<char> all(bytes * size());
    RAGGED_RETURN_IF_ERROR(AllGatherToHost(send, all.data(), bytes, stream));
    std::vector<char> out(bytes);
    for (int64_t i = 0; i < count; ++i) {
      double acc = 0;
      for (int r = 0; r < size(); ++r) {
        const char* p = all.data() + r * bytes + i * 4;
        double v;
        if (dtype == DType::kF32) {
          float f;
          std::memcpy(&f, p, 4);
          v = f;
        } else {
          int32_t x;
          std::memcpy(&x, p, 4);
          v = x;
        }
        acc = r == 0 ? v : (op == ReduceOp::kSum ? acc + v : std::max(acc, v));
      }
      if (dtype == DType::kF32) {
        const float f = static_cast<float>(acc);
        std::memcpy(out.data() + i * 4, &f, 4);
      } else {
        const int32_t x = static_cast<int32_t>(acc);
        std::memcpy(out.data() + i * 4, &x, 4);
      }
    }
    RAGGED_RETURN_IF_ERROR(Copy(recv, out.data(), bytes, stream, /*from_host=*/true));
    return Sync(stream);
  }

  absl::Status Broadcast(void* buf, int64_t count, DType dtype, int root, Stream stream) override {
    RAGGED_RETURN_IF_ERROR(Sync(stream));
    group_->slot(rank_).ptr = buf;
    RAGGED_RETURN_IF_ERROR(group_->Barrier());
    if (rank_ != root) {
      RAGGED_RETURN_IF_ERROR(Copy(buf, group_->slot(root).ptr, count * DTypeSize(dtype), stream));
      RAGGED_RETURN_IF_ERROR(Sync(stream));
    }
    return group_->Barrier();
  }

  absl::Status Barrier(Stream stream) override {
    RAGGED_RETURN_IF_ERROR(Sync(stream));
    return group_->Barrier();
  }

  absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key) override {
    if (color < 0) return absl::InvalidArgumentError("ThreadCommunicator::Split: negative color");
    const int64_t split = splits_++;
    group_->slot(rank_).color = color;
    group_->slot(rank_).key = key;
    RAGGED_RETURN_IF_ERROR(group_->Barrier());
    int size = 0, new_rank = 0;
    for (int r = 0; r < group_->size(); ++r) {
      const ThreadGroup::Slot& s = group_->slot(r);
      if (s.color != color) continue;
      ++size;
      if (s.key < key || (s.key == key && r < rank_)) ++new_rank;
    }
    std::shared_ptr<ThreadGroup> sub = group_->SubGroup(split, color, size);
    RAGGED_RETURN_IF_ERROR(group_->Barrier());  // slots are read; they may be reused
    return std::unique_ptr<Communicator>(
        new ThreadCommunicator(std::move(sub), new_rank, backend_, device_));
  }

 private:
  absl::Status Sync(Stream stream) {
    if (backend_ != CommBackend::kNccl) return absl::OkStatus();
#if RAGGED_WITH_CUDA
    return RAGGED_CUDA_STATUS(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
#else
    return absl::FailedPreconditionError("ThreadCommunicator: device buffers without CUDA");
#endif
  }
  absl::Status Copy(void* dst, const void* src, int64_t bytes, Stream stream,
                    bool from_host = false) {
    if (backend_ != CommBackend::kNccl) {
      std::memcpy(dst, src, static_cast<size_t>(bytes));
      return absl::OkStatus();
    }
#if RAGGED_WITH_CUDA
    return RAGGED_CUDA_STATUS(
        cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes),
                        from_host ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToDevice,
                        static_cast<cudaStream_t>(stream)));
#else
    return absl::FailedPreconditionError("ThreadCommunicator: device buffers without CUDA");
#endif
  }
  // Every rank's `bytes` from `send` (host or device) into host memory `all`, rank-major.
  absl::Status AllGatherToHost(const void* send, char* all, int64_t bytes, Stream stream) {
    std::vector<char> mine(bytes);
    if (backend_ == CommBackend::kNccl) {
#if RAGGED_WITH_CUDA
      RAGGED_RETURN_IF_ERROR(RAGGED_CUDA_STATUS(cudaMemcpyAsync(
          mine.data(), send, bytes, cudaMemcpyDeviceToHost, static_cast<cudaStream_t>(stream))));
#endif
      RAGGED_RETURN_IF_ERROR(Sync(stream));
    } else {
      std::memcpy(mine.data(), send, bytes);
    }
    group_->slot(rank_).ptr = mine.data();
    RAGGED_RETURN_IF_ERROR(group_->Barrier());
    for (int r = 0; r < size(); ++r) std::memcpy(all + r * bytes, group_->slot(r).ptr, bytes);
    return group_->Barrier();
  }

  std::shared_ptr<ThreadGroup> group_;
  int rank_;
  CommBackend backend_;
  int device_;
  int64_t splits_ = 0;
};

}  // namespace ragged::testing

#endif  // RAGGED_TESTS_SHARDING_THREAD_COMM_H_
