// TensorView: a non-owning view of a strided tensor on the host or on a CUDA device.
//
// A view is a pointer, a dtype, a shape, strides in elements (not bytes) and a device. It never
// owns or frees memory: the caller keeps the storage alive while the view is used. Views are
// cheap values; copying one copies the description, not the data. Thread-safety: a view is
// immutable after construction except through its setters; concurrent reads are safe.
//
//   HostBuffer buf = HostBuffer::Allocate(DType::kBF16, {8, 32, 128});
//   TensorView q = buf.view();               // contiguous [8, 32, 128]
//   TensorView row = q.Slice(0, 2, 1);       // [1, 32, 128], same storage
#ifndef RAGGED_RUNTIME_TENSOR_H_
#define RAGGED_RUNTIME_TENSOR_H_

#include <cstdint>
#include <initializer_list>
#include <string>

#include "absl/container/inlined_vector.h"
#include "absl/types/span.h"
#include "runtime/dtype.h"

namespace ragged {

enum class DeviceType : uint8_t { kCpu = 0, kCuda = 1 };

struct Device {
  DeviceType type = DeviceType::kCpu;
  int index = 0;  // CUDA ordinal; 0 for the CPU.

  static Device Cpu() { return {DeviceType::kCpu, 0}; }
  static Device Cuda(int index) { return {DeviceType::kCuda, index}; }
  bool is_cpu() const { return type == DeviceType::kCpu; }
  bool is_cuda() const { return type == DeviceType::kCuda; }
  std::string ToString() const;  // "cpu" or "cuda:N"
  friend bool operator==(const Device& a, const Device& b) {
    return a.type == b.type && a.index == b.index;
  }
};

using Shape = absl::InlinedVector<int64_t, 6>;

// Row-major strides (in elements) for `shape`.
Shape ContiguousStrides(absl::Span<const int64_t> shape);
// Product of the extents (1 for a scalar).
int64_t NumElements(absl::Span<const int64_t> shape);
// "[8, 32, 128]".
std::string ShapeToString(absl::Span<const int64_t> shape);

class TensorView {
 public:
  TensorView() = default;
  // A contiguous view.
  TensorView(void* data, DType dtype, absl::Span<const int64_t> shape,
             Device device = Device::Cpu());
  // A strided view; `strides` in elements, one per dimension.
  TensorView(void* data, DType dtype, absl::Span<const int64_t> shape,
             absl::Span<const int64_t> strides, Device device = Device::Cpu());

  void* data() const { return data_; }
  template <typename T>
  T* data_as() const {
    return static_cast<T*>(data_);
  }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  Device device() const { return device_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_[i]; }
  int64_t stride(int i) const { return strides_[i]; }
  int64_t num_elements() const { return NumElements(shape_); }
  bool empty() const { return data_ == nullptr && shape_.empty(); }
  // True when the strides are the row-major strides of the shape (extent-1 dims ignored).
  bool is_contiguous() const;
  // Bytes spanned by a contiguous view: num_elements * element size.
  int64_t nbytes() const { return num_elements() * DTypeSize(dtype_); }

  // The sub-view [start, start + length) along `dim`. No bounds check beyond a RAGGED_CHECK.
  TensorView Slice(int dim, int64_t start, int64_t length) const;
  // "bf16[8, 32, 128] on cpu".
  std::string DebugString() const;

 private:
  void* data_ = nullptr;
  DType dtype_ = DType::kF32;
  Shape shape_;
  Shape strides_;
  Device device_;
};

}  // namespace ragged

#endif  // RAGGED_RUNTIME_TENSOR_H_
