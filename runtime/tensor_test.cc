#include "runtime/tensor.h"

#include "gtest/gtest.h"
#include "runtime/buffer.h"

namespace ragged {
namespace {

TEST(TensorTest, ContiguousStridesAndSlices) {
  HostBuffer buf = HostBuffer::Allocate(DType::kBF16, {4, 8, 2, 16});
  TensorView v = buf.view();
  EXPECT_EQ(v.strides(), (Shape{256, 32, 16, 1}));
  EXPECT_TRUE(v.is_contiguous());
  EXPECT_EQ(v.nbytes(), 4 * 8 * 2 * 16 * 2);
  TensorView s = v.Slice(1, 2, 4);
  EXPECT_EQ(s.shape(), (Shape{4, 4, 2, 16}));
  EXPECT_EQ(static_cast<char*>(s.data()) - static_cast<char*>(v.data()), 2 * 32 * 2);
  EXPECT_FALSE(s.is_contiguous());
  EXPECT_EQ(s.DebugString(), "bf16[4, 4, 2, 16] on cpu");
}

TEST(TensorTest, HostBufferIsZeroedAndAligned) {
  HostBuffer buf = HostBuffer::Allocate(DType::kF32, {3, 5});
  EXPECT_EQ(reinterpret_cast<uintptr_t>(buf.data()) % 64, 0u);
  for (int i = 0; i < 15; ++i) EXPECT_EQ(buf.data_as<float>()[i], 0.0f);
}

TEST(TensorTest, DeviceBufferWithoutGpuIsAnError) {
  if (CudaDeviceCount() > 0) GTEST_SKIP() << "a GPU is visible; this test covers the no-GPU case";
  auto b = DeviceBuffer::Allocate(DType::kF32, {4}, 0);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace ragged

namespace ragged {
namespace {

TEST(StreamTest, DefaultStreamSyncWithoutGpuIsOk) {
  if (CudaDeviceCount() > 0) GTEST_SKIP() << "a GPU is visible; this test covers the no-GPU case";
  EXPECT_TRUE(SynchronizeStream(nullptr).ok());
}

}  // namespace
}  // namespace ragged
