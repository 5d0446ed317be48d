// HostBuffer and DeviceBuffer: owning storage for tensors.
//
// HostBuffer owns 64-byte aligned host memory; DeviceBuffer owns memory from cudaMalloc on one
// CUDA device (freed with cudaFree on that device). Both are move-only; view() returns a
// contiguous TensorView that stays valid while the buffer lives. Not thread-safe: one owner.
//
//   RAGGED_ASSIGN_OR_RETURN(DeviceBuffer k, DeviceBuffer::Allocate(DType::kBF16, {B, S, 8, 128},
//   0)); RAGGED_RETURN_IF_ERROR(k.CopyFromHost(host_k.view(), stream));
#ifndef RAGGED_RUNTIME_BUFFER_H_
#define RAGGED_RUNTIME_BUFFER_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/stream.h"
#include "runtime/tensor.h"

namespace ragged {

class HostBuffer {
 public:
  HostBuffer() = default;
  // Zero-filled storage for a contiguous tensor of `shape`.
  static HostBuffer Allocate(DType dtype, absl::Span<const int64_t> shape);
  HostBuffer(HostBuffer&&) noexcept = default;
  HostBuffer& operator=(HostBuffer&&) noexcept = default;

  TensorView view() const;
  void* data() const { return data_.get(); }
  template <typename T>
  T* data_as() const {
    return static_cast<T*>(data());
  }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t num_elements() const { return NumElements(shape_); }
  int64_t nbytes() const { return num_elements() * DTypeSize(dtype_); }

 private:
  struct Free {
    void operator()(void* p) const;
  };
  std::unique_ptr<void, Free> data_;
  DType dtype_ = DType::kF32;
  Shape shape_;
};

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  // Uninitialized device memory for a contiguous tensor of `shape` on CUDA device `device`.
  // FailedPrecondition when the library was built without CUDA or the device is missing.
  static absl::StatusOr<DeviceBuffer> Allocate(DType dtype, absl::Span<const int64_t> shape,
                                               int device);
  // Raw bytes (for workspaces).
  static absl::StatusOr<DeviceBuffer> AllocateBytes(int64_t bytes, int device);
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  ~DeviceBuffer();

  TensorView view() const;
  void* data() const { return data_; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t nbytes() const { return bytes_; }
  int device() const { return device_; }

  // Stream-ordered copies between this buffer and contiguous host memory of the same size.
  absl::Status CopyFromHost(const TensorView& host, Stream stream = nullptr);
  absl::Status CopyToHost(const TensorView& host, Stream stream = nullptr) const;

 private:
  void Reset();
  void* data_ = nullptr;
  int64_t bytes_ = 0;
  int device_ = 0;
  DType dtype_ = DType::kF32;
  Shape shape_;
};

}  // namespace ragged

#endif  // RAGGED_RUNTIME_BUFFER_H_
