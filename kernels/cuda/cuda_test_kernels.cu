#include <cstdint>

#include "kernels/cuda/cuda_test_kernels.h"

namespace ragged::testing {
namespace {

__global__ void LateCopyKernel(const CopyJobs jobs, int64_t delay_ns) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
  uint64_t t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (static_cast<int64_t>(t - t0) < delay_ns);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int j = 0; j < jobs.count; ++j) {
    const int64_t words = static_cast<int64_t>(jobs.job[j].bytes / 4);
    const uint32_t* src = static_cast<const uint32_t*>(jobs.job[j].src);
    uint32_t* dst = static_cast<uint32_t*>(jobs.job[j].dst);
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < words;
         i += stride) {
      dst[i] = src[i];
    }
  }
}

__global__ void EarlyReadKernel(const uint32_t* src, uint32_t* out) {
  if (threadIdx.x == 0) *out = *reinterpret_cast<const volatile uint32_t*>(src);
}

}  // namespace

cudaError_t LaunchEarlyRead(const uint32_t* src, uint32_t* out, cudaStream_t stream) {
  cudaLaunchAttribute pdl;
  pdl.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  pdl.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t lc = {};
  lc.gridDim = dim3(1);
  lc.blockDim = dim3(32);
  lc.stream = stream;
  lc.attrs = &pdl;
  lc.numAttrs = 1;
  void* args[] = {&src, &out};
  const cudaError_t e =
      cudaLaunchKernelExC(&lc, reinterpret_cast<const void*>(&EarlyReadKernel), args);
  return e != cudaSuccess ? e : cudaGetLastError();
}

cudaError_t LaunchLateCopy(const CopyJobs& jobs, int delay_us, cudaStream_t stream) {
  if (jobs.count < 0 || jobs.count > kMaxCopyJobs) return cudaErrorInvalidValue;
  for (int j = 0; j < jobs.count; ++j) {
    if (jobs.job[j].bytes % 4 != 0) return cudaErrorInvalidValue;
  }
  LateCopyKernel<<<64, 256, 0, stream>>>(jobs, static_cast<int64_t>(delay_us) * 1000);
  return cudaGetLastError();
}

}  // namespace ragged::testing
