#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "benchmarks/gpu_bench_kernels.h"
#include "kernels/cuda/from_float.cuh"

namespace ragged::bench {
namespace {

__device__ __forceinline__ uint64_t globaltimer() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__device__ __forceinline__ uint64_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

template <typename T>
__global__ void FillNormalKernel(T* data, int64_t n, uint64_t seed, float stddev) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride) {
    const uint64_t h = Mix(seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(i));
    // Box-Muller on two 24-bit uniforms in (0, 1].
    const float u1 = (static_cast<float>((h >> 40) & 0xffffff) + 1.0f) / 16777216.0f;
    const float u2 = static_cast<float>((h >> 8) & 0xffffff) / 16777216.0f;
    const float z = sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
    data[i] = internal::cuda::FromFloat<T>(z * stddev);
  }
}

__global__ void ReadOnlyKernel(const uint4* data, int64_t n, uint32_t* sink) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  uint32_t acc = 0;
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  // Four independent loads in flight per thread.
  for (; i + 3 * stride < n; i += 4 * stride) {
    const uint4 a = __ldcs(data + i);
    const uint4 b = __ldcs(data + i + stride);
    const uint4 c = __ldcs(data + i + 2 * stride);
    const uint4 d = __ldcs(data + i + 3 * stride);
    acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^
           d.w;
  }
  for (; i < n; i += stride) {
    const uint4 a = __ldcs(data + i);
    acc ^= a.x ^ a.y ^ a.z ^ a.w;
  }
  for (int o = 16; o > 0; o >>= 1) acc ^= __shfl_xor_sync(0xffffffffu, acc, o);
  if ((threadIdx.x & 31) == 0) atomicXor(sink + blockIdx.x, acc);
}

__global__ void SpinKernel(int64_t ns) {
  const uint64_t start = globaltimer();
  while (globaltimer() - start < static_cast<uint64_t>(ns)) {
  }
}

}  // namespace

cudaError_t Spin(int64_t ns, cudaStream_t stream) {
  SpinKernel<<<1, 1, 0, stream>>>(ns);
  return cudaGetLastError();
}

cudaError_t FillNormal(void* data, DType dtype, int64_t n, uint64_t seed, float stddev,
                       cudaStream_t stream) {
  const int threads = 256, blocks = 4096;
  switch (dtype) {
    case DType::kF32:
      FillNormalKernel<float>
          <<<blocks, threads, 0, stream>>>(static_cast<float*>(data), n, seed, stddev);
      break;
    case DType::kF16:
      FillNormalKernel<__half>
          <<<blocks, threads, 0, stream>>>(static_cast<__half*>(data), n, seed, stddev);
      break;
    case DType::kBF16:
      FillNormalKernel<__nv_bfloat16>
          <<<blocks, threads, 0, stream>>>(static_cast<__nv_bfloat16*>(data), n, seed, stddev);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t ReadOnly(const void* data, int64_t bytes, uint32_t* sink, cudaStream_t stream) {
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  const int blocks = sms * 8 < 4096 ? sms * 8 : 4096;
  ReadOnlyKernel<<<blocks, 512, 0, stream>>>(static_cast<const uint4*>(data), bytes / 16, sink);
  return cudaGetLastError();
}

}  // namespace ragged::bench
