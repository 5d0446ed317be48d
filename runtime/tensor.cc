#include "runtime/tensor.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/status.h"

namespace ragged {

std::string Device::ToString() const {
  return is_cpu() ? std::string("cpu") : absl::StrCat("cuda:", index);
}

Shape ContiguousStrides(absl::Span<const int64_t> shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

int64_t NumElements(absl::Span<const int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ShapeToString(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

TensorView::TensorView(void* data, DType dtype, absl::Span<const int64_t> shape, Device device)
    : data_(data),
      dtype_(dtype),
      shape_(shape.begin(), shape.end()),
      strides_(ContiguousStrides(shape)),
      device_(device) {}

TensorView::TensorView(void* data, DType dtype, absl::Span<const int64_t> shape,
                       absl::Span<const int64_t> strides, Device device)
    : data_(data),
      dtype_(dtype),
      shape_(shape.begin(), shape.end()),
      strides_(strides.begin(), strides.end()),
      device_(device) {
  RAGGED_CHECK(shape.size() == strides.size());
}

bool TensorView::is_contiguous() const {
  Shape expected = ContiguousStrides(shape_);
  for (int i = 0; i < rank(); ++i) {
    if (shape_[i] != 1 && strides_[i] != expected[i]) return false;
  }
  return true;
}

TensorView TensorView::Slice(int dim, int64_t start, int64_t length) const {
  RAGGED_CHECK(dim >= 0 && dim < rank());
  RAGGED_CHECK(start >= 0 && length >= 0 && start + length <= shape_[dim]);
  TensorView v = *this;
  v.shape_[dim] = length;
  v.data_ = static_cast<char*>(data_) + start * strides_[dim] * DTypeSize(dtype_);
  return v;
}

std::string TensorView::DebugString() const {
  return absl::StrCat(DTypeName(dtype_), ShapeToString(shape_), " on ", device_.ToString());
}

}  // namespace ragged
