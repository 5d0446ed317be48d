#include "runtime/buffer.h"

#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/status.h"

#if RAGGED_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace ragged {

void HostBuffer::Free::operator()(void* p) const { std::free(p); }

HostBuffer HostBuffer::Allocate(DType dtype, absl::Span<const int64_t> shape) {
  HostBuffer b;
  b.dtype_ = dtype;
  b.shape_.assign(shape.begin(), shape.end());
  int64_t bytes = std::max<int64_t>(b.nbytes(), 1);
  bytes = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, static_cast<size_t>(bytes));
  RAGGED_CHECK(p != nullptr);
  std::memset(p, 0, static_cast<size_t>(bytes));
  b.data_.reset(p);
  return b;
}

TensorView HostBuffer::view() const { return TensorView(data(), dtype_, shape_, Device::Cpu()); }

#if RAGGED_WITH_CUDA
bool BuiltWithCuda() { return true; }
#else
bool BuiltWithCuda() { return false; }
#endif

#if RAGGED_WITH_CUDA

int CudaDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return 0;
  }
  return n;
}

absl::Status SynchronizeStream(Stream stream) {
  // The default stream of a machine without a GPU has nothing queued (CPU-only work).
  if (stream == nullptr && CudaDeviceCount() == 0) return absl::OkStatus();
  return RAGGED_CUDA_STATUS(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
}

absl::StatusOr<DeviceBuffer> DeviceBuffer::AllocateBytes(int64_t bytes, int device) {
  int count = CudaDeviceCount();
  if (device < 0 || device >= count) {
    return absl::FailedPreconditionError(
        absl::StrCat("CUDA device ", device, " is not available (", count, " visible)"));
  }
  DeviceBuffer b;
  b.device_ = device;
  b.bytes_ = bytes;
  b.dtype_ = DType::kF32;
  int prev = 0;
  RAGGED_CUDA_RETURN_IF_ERROR(cudaGetDevice(&prev));
  RAGGED_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  absl::Status s = RAGGED_CUDA_STATUS(cudaMalloc(&b.data_, std::max<int64_t>(bytes, 1)));
  cudaSetDevice(prev);
  if (!s.ok()) {
    b.data_ = nullptr;
    return s;
  }
  return b;
}

absl::StatusOr<DeviceBuffer> DeviceBuffer::Allocate(DType dtype, absl::Span<const int64_t> shape,
                                                    int device) {
  RAGGED_ASSIGN_OR_RETURN(DeviceBuffer b,
                          AllocateBytes(NumElements(shape) * DTypeSize(dtype), device));
  b.dtype_ = dtype;
  b.shape_.assign(shape.begin(), shape.end());
  return b;
}

void DeviceBuffer::Reset() {
  if (data_ != nullptr) {
    int prev = 0;
    cudaGetDevice(&prev);
    cudaSetDevice(device_);
    cudaFree(data_);
    cudaSetDevice(prev);
  }
  data_ = nullptr;
  bytes_ = 0;
}

absl::Status DeviceBuffer::CopyFromHost(const TensorView& host, Stream stream) {
  if (host.nbytes() != bytes_ || !host.is_contiguous()) {
    return absl::InvalidArgumentError(absl::StrCat("CopyFromHost: host tensor ", host.DebugString(),
                                                   " does not match ", bytes_, " device bytes"));
  }
  return RAGGED_CUDA_STATUS(cudaMemcpyAsync(data_, host.data(), bytes_, cudaMemcpyHostToDevice,
                                            static_cast<cudaStream_t>(stream)));
}

absl::Status DeviceBuffer::CopyToHost(const TensorView& host, Stream stream) const {
  if (host.nbytes() != bytes_ || !host.is_contiguous()) {
    return absl::InvalidArgumentError(absl::StrCat("CopyToHost: host tensor ", host.DebugString(),
                                                   " does not match ", bytes_, " device bytes"));
  }
  return RAGGED_CUDA_STATUS(cudaMemcpyAsync(host.data(), data_, bytes_, cudaMemcpyDeviceToHost,
                                            static_cast<cudaStream_t>(stream)));
}

#else  // !RAGGED_WITH_CUDA

int CudaDeviceCount() { return 0; }
absl::Status SynchronizeStream(Stream stream) {
  if (stream == nullptr) return absl::OkStatus();
  return absl::FailedPreconditionError("ragged was built without CUDA: no streams");
}

absl::StatusOr<DeviceBuffer> DeviceBuffer::AllocateBytes(int64_t, int) {
  return absl::FailedPreconditionError("ragged was built without CUDA: no device memory");
}
absl::StatusOr<DeviceBuffer> DeviceBuffer::Allocate(DType, absl::Span<const int64_t>, int) {
  return absl::FailedPreconditionError("ragged was built without CUDA: no device memory");
}
void DeviceBuffer::Reset() { data_ = nullptr; }
absl::Status DeviceBuffer::CopyFromHost(const TensorView&, Stream) {
  return absl::FailedPreconditionError("ragged was built without CUDA");
}
absl::Status DeviceBuffer::CopyToHost(const TensorView&, Stream) const {
  return absl::FailedPreconditionError("ragged was built without CUDA");
}

#endif  // RAGGED_WITH_CUDA

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept { *this = std::move(other); }

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    Reset();
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    device_ = other.device_;
    dtype_ = other.dtype_;
    shape_ = std::move(other.shape_);
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() { Reset(); }

TensorView DeviceBuffer::view() const {
  return TensorView(data_, dtype_, shape_, Device::Cuda(device_));
}

}  // namespace ragged
