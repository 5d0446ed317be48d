// MergePartials on CUDA against the host merge (the exact LSE merge of SPEC.md), on a GPU.
#include <cuda_runtime.h>

#include <cmath>
#include <limits>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_test_util.h"
#include "kernels/merge.h"
#include "kernels/test_util.h"

namespace ragged {
namespace {

using testing::Sinks;
using testing::UploadBuffer;

using MergeParam = std::tuple<DType, DType, Sinks>;  // partial dtype, output dtype, sinks

class CudaMergeTest : public ::testing::TestWithParam<MergeParam> {};

TEST_P(CudaMergeTest, MatchesHostMerge) {
  RAGGED_SKIP_WITHOUT_GPU();
  const auto [pdtype, odtype, sinks] = GetParam();
  const int64_t P = 4, B = 3, HQ = 8, HKV = 2, D = 96;
  HostBuffer po = HostBuffer::Allocate(pdtype, {P, B, HQ, D});
  HostBuffer pl = HostBuffer::Allocate(DType::kF32, {P, B, HQ});
  testing::FillRandomNormal(po, 1);
  testing::FillRandomNormal(pl, 2, 3.0);
  // Partials that saw nothing: one part of row 0 everywhere, every part of row 1 head 0.
  for (int64_t h = 0; h < HQ; ++h) pl.data_as<float>()[(2 * B + 0) * HQ + h] = -INFINITY;
  for (int64_t p = 0; p < P; ++p) pl.data_as<float>()[(p * B + 1) * HQ + 0] = -INFINITY;
  HostBuffer aux;
  if (sinks == Sinks::kShared) aux = HostBuffer::Allocate(DType::kF32, {2});
  if (sinks == Sinks::kPerKvHead) aux = HostBuffer::Allocate(DType::kF32, {HKV, 1});
  if (sinks == Sinks::kPerQueryHead) aux = HostBuffer::Allocate(DType::kF32, {HQ, 1});
  if (sinks != Sinks::kNone) testing::FillRandomNormal(aux, 3, 2.0);

  MergePartialsArgs host;
  host.partial_output = po.view();
  host.partial_lse = pl.view();
  host.num_kv_heads = HKV;
  if (sinks != Sinks::kNone) host.softmax_aux = aux.view();
  HostBuffer want_o = HostBuffer::Allocate(DType::kF32, {B, HQ, D});
  HostBuffer want_l = HostBuffer::Allocate(DType::kF32, {B, HQ});
  host.output = want_o.view();
  host.lse = want_l.view();
  RAGGED_ASSERT_OK(MergePartials(host));

  absl::StatusOr<DeviceBuffer> dpo = UploadBuffer(po, nullptr);
  absl::StatusOr<DeviceBuffer> dpl = UploadBuffer(pl, nullptr);
  RAGGED_ASSERT_OK(dpo);
  RAGGED_ASSERT_OK(dpl);
  HostBuffer got_o = HostBuffer::Allocate(odtype, {B, HQ, D});
  HostBuffer got_l = HostBuffer::Allocate(DType::kF32, {B, HQ});
  testing::PoisonWithNaN(got_o);
  testing::PoisonWithNaN(got_l);
  absl::StatusOr<DeviceBuffer> dout = UploadBuffer(got_o, nullptr);
  absl::StatusOr<DeviceBuffer> dlse = UploadBuffer(got_l, nullptr);
  RAGGED_ASSERT_OK(dout);
  RAGGED_ASSERT_OK(dlse);
  MergePartialsArgs dev;
  dev.partial_output = dpo->view();
  dev.partial_lse = dpl->view();
  dev.num_kv_heads = HKV;
  absl::StatusOr<DeviceBuffer> daux;
  if (sinks != Sinks::kNone) {
    daux = UploadBuffer(aux, nullptr);
    RAGGED_ASSERT_OK(daux);
    dev.softmax_aux = daux->view();
  }
  dev.output = dout->view();
  dev.lse = dlse->view();
  RAGGED_ASSERT_OK(MergePartials(dev, nullptr));
  RAGGED_ASSERT_OK(dout->CopyToHost(got_o.view(), nullptr));
  RAGGED_ASSERT_OK(dlse->CopyToHost(got_l.view(), nullptr));
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

  ReferenceResult want;
  for (int64_t i = 0; i < B * HQ * D; ++i) want.output.push_back(want_o.data_as<float>()[i]);
  for (int64_t i = 0; i < B * HQ; ++i) want.lse.push_back(want_l.data_as<float>()[i]);
  TensorView lse = got_l.view();
  const DType tol = pdtype == DType::kF32 && odtype == DType::kF32 ? DType::kF32 : DType::kBF16;
  EXPECT_TRUE(testing::MatchesReference(want, got_o.view(), &lse, tol));
  // Row 1 head 0 saw nothing: zeros, and lse -inf without sinks.
  EXPECT_EQ(LoadAsFloat(got_o.data(), odtype, (1 * HQ + 0) * D), 0.0f);
  if (sinks == Sinks::kNone) EXPECT_EQ(got_l.data_as<float>()[1 * HQ + 0], -INFINITY);
}

INSTANTIATE_TEST_SUITE_P(All, CudaMergeTest,
                         ::testing::Combine(::testing::Values(DType::kF32, DType::kBF16),
                                            ::testing::Values(DType::kF32, DType::kF16),
                                            ::testing::Values(Sinks::kNone, Sinks::kShared,
                                                              Sinks::kPerKvHead,
                                                              Sinks::kPerQueryHead)),
                         [](const ::testing::TestParamInfo<MergeParam>& info) {
                           return absl::StrCat(DTypeName(std::get<0>(info.param)), "_to_",
                                               DTypeName(std::get<1>(info.param)), "_sinks",
                                               static_cast<int>(std::get<2>(info.param)));
                         });

TEST(CudaMergeErrorTest, MixedDevicesAreRejected) {
  RAGGED_SKIP_WITHOUT_GPU();
  HostBuffer po = HostBuffer::Allocate(DType::kF32, {2, 1, 2, 64});
  HostBuffer pl = HostBuffer::Allocate(DType::kF32, {2, 1, 2});
  absl::StatusOr<DeviceBuffer> dpo = UploadBuffer(po, nullptr);
  RAGGED_ASSERT_OK(dpo);
  HostBuffer out = HostBuffer::Allocate(DType::kF32, {1, 2, 64});
  MergePartialsArgs a;
  a.partial_output = dpo->view();
  a.partial_lse = pl.view();  // on the host
  a.output = out.view();
  const absl::Status s = MergePartials(a, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

}  // namespace
}  // namespace ragged
