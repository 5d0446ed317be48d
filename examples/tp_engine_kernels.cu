#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "examples/tp_engine_kernels.h"

namespace ragged::examples::gpu {
namespace {

constexpr int kThreads = 256;

int Blocks(int64_t n) { return static_cast<int>((n + kThreads - 1) / kThreads); }
cudaStream_t AsStream(void* s) { return static_cast<cudaStream_t>(s); }
int LastError() { return static_cast<int>(cudaGetLastError()); }

__device__ void Store(void* out, ElementType type, int64_t i, float v) {
  if (type == 0) {
    static_cast<float*>(out)[i] = v;
  } else if (type == 1) {
    static_cast<__half*>(out)[i] = __float2half_rn(v);
  } else {
    static_cast<__nv_bfloat16*>(out)[i] = __float2bfloat16_rn(v);
  }
}

__global__ void RmsNormKernel(const float* x, float* y, int B, int H) {
  const int b = blockIdx.x;
  __shared__ float partial[kThreads];
  float ss = 0.0f;
  for (int i = threadIdx.x; i < H; i += blockDim.x) ss += x[b * H + i] * x[b * H + i];
  partial[threadIdx.x] = ss;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  const float inv = rsqrtf(partial[0] / H + 1e-6f);
  for (int i = threadIdx.x; i < H; i += blockDim.x) y[b * H + i] = x[b * H + i] * inv;
}

__global__ void MatMulKernel(const float* x, const float* w, float* y, int B, int K, int N) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= static_cast<int64_t>(B) * N) return;
  const int b = static_cast<int>(i / N), n = static_cast<int>(i % N);
  float acc = 0.0f;
  for (int k = 0; k < K; ++k) acc += x[b * K + k] * w[static_cast<int64_t>(k) * N + n];
  y[i] = acc;
}

__global__ void GeluKernel(float* x, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) x[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

__global__ void AddKernel(float* x, const float* y, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) x[i] += y[i];
}

__global__ void TanhKernel(float* x, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) x[i] = tanhf(x[i]);
}

__global__ void ConvertKernel(const float* x, void* out, ElementType type, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) Store(out, type, i, x[i]);
}

__global__ void AppendKvKernel(const float* k, const float* v, void* ck, void* cv, ElementType type,
                               const int32_t* end, int B, int S, int hkv_d) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= static_cast<int64_t>(B) * hkv_d) return;
  const int b = static_cast<int>(i / hkv_d), j = static_cast<int>(i % hkv_d);
  const int e = end[b];
  if (e <= 0 || e > S) return;  // an empty slot
  const int64_t at = (static_cast<int64_t>(b) * S + e - 1) * hkv_d + j;
  Store(ck, type, at, k[i]);
  Store(cv, type, at, v[i]);
}

__global__ void FillPromptKernel(void* ck, void* cv, ElementType type, int slot, int prompt,
                                 int request, int layer, uint64_t seed, int S, int hkv,
                                 int num_kv_heads, int first_kv_head, int D) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= static_cast<int64_t>(prompt) * hkv * D) return;
  const int d = static_cast<int>(i % D);
  const int g = static_cast<int>((i / D) % hkv);
  const int t = static_cast<int>(i / (static_cast<int64_t>(D) * hkv));
  const uint64_t index =
      ((static_cast<uint64_t>(request) * S + t) * num_kv_heads + first_kv_head + g) * D + d;
  const int64_t at = ((static_cast<int64_t>(slot) * S + t) * hkv + g) * D + d;
  Store(ck, type, at, EngineHash(seed, 100 + layer, index));
  Store(cv, type, at, EngineHash(seed, 200 + layer, index));
}

}  // namespace

int RmsNorm(const float* x, float* y, int B, int H, void* stream) {
  RmsNormKernel<<<B, kThreads, 0, AsStream(stream)>>>(x, y, B, H);
  return LastError();
}

int MatMul(const float* x, const float* w, float* y, int B, int K, int N, void* stream) {
  MatMulKernel<<<Blocks(static_cast<int64_t>(B) * N), kThreads, 0, AsStream(stream)>>>(x, w, y, B,
                                                                                       K, N);
  return LastError();
}

int Gelu(float* x, int64_t n, void* stream) {
  GeluKernel<<<Blocks(n), kThreads, 0, AsStream(stream)>>>(x, n);
  return LastError();
}

int Add(float* x, const float* y, int64_t n, void* stream) {
  AddKernel<<<Blocks(n), kThreads, 0, AsStream(stream)>>>(x, y, n);
  return LastError();
}

int Tanh(float* x, int64_t n, void* stream) {
  TanhKernel<<<Blocks(n), kThreads, 0, AsStream(stream)>>>(x, n);
  return LastError();
}

int Convert(const float* x, void* out, ElementType type, int64_t n, void* stream) {
  ConvertKernel<<<Blocks(n), kThreads, 0, AsStream(stream)>>>(x, out, type, n);
  return LastError();
}

int AppendKv(const float* k, const float* v, void* cache_k, void* cache_v, ElementType type,
             const int32_t* end, int B, int S, int hkv_d, void* stream) {
  AppendKvKernel<<<Blocks(static_cast<int64_t>(B) * hkv_d), kThreads, 0, AsStream(stream)>>>(
      k, v, cache_k, cache_v, type, end, B, S, hkv_d);
  return LastError();
}

int FillPrompt(void* cache_k, void* cache_v, ElementType type, int slot, int prompt, int request,
               int layer, uint64_t seed, int S, int hkv, int num_kv_heads, int first_kv_head, int D,
               void* stream) {
  const int64_t n = static_cast<int64_t>(prompt) * hkv * D;
  if (n == 0) return 0;
  FillPromptKernel<<<Blocks(n), kThreads, 0, AsStream(stream)>>>(
      cache_k, cache_v, type, slot, prompt, request, layer, seed, S, hkv, num_kv_heads,
      first_kv_head, D);
  return LastError();
}

}  // namespace ragged::examples::gpu
