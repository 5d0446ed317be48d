// The CUDA kernels of examples/tp_engine's GPU path: the engine's own small operations (norms,
// projections, activations, the KV-cache append and the prompt fill) around ragged's attention.
//
// They are deliberately simple (one thread per output element), as an engine's stand-ins: the
// point of the example is the embedding (its own NCCL communicator and stream handed to ragged,
// the step captured once in a CUDA graph), not fast matrix products. Every launcher queues its
// kernel on `stream` and returns the launch's cudaError_t as an int (0: success), so that this
// header needs no CUDA include. Tensors are device pointers, row-major. Thread-safety: as CUDA's.
#ifndef RAGGED_EXAMPLES_TP_ENGINE_KERNELS_H_
#define RAGGED_EXAMPLES_TP_ENGINE_KERNELS_H_

#include <cstdint>

#include "kernels/internal/host_device.h"

namespace ragged::examples {

// The values the engine draws, in [-1, 1), from (seed, stream, index): the same function on the
// host and on the device, so that every rank, TP size and platform builds the same model.
RAGGED_HOST_DEVICE float EngineHash(uint64_t seed, uint64_t stream, uint64_t i) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull ^ (stream << 32) ^ i;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  x ^= x >> 31;
  return static_cast<float>(static_cast<double>(x >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

}  // namespace ragged::examples

namespace ragged::examples::gpu {

// Element types of the KV cache and the query (ragged's DType values: 0 f32, 1 f16, 2 bf16).
using ElementType = int;

// y[b, :] = x[b, :] / rms(x[b, :]); x, y: [B, H].
int RmsNorm(const float* x, float* y, int B, int H, void* stream);
// y = x @ w; x: [B, K], w: [K, N], y: [B, N].
int MatMul(const float* x, const float* w, float* y, int B, int K, int N, void* stream);
// x = gelu(x) (sigmoid form), n elements.
int Gelu(float* x, int64_t n, void* stream);
// x += y, n elements.
int Add(float* x, const float* y, int64_t n, void* stream);
// x = tanh(x), n elements.
int Tanh(float* x, int64_t n, void* stream);
// out = x rounded to `type`, n elements (out: f32, f16 or bf16 storage).
int Convert(const float* x, void* out, ElementType type, int64_t n, void* stream);
// The KV-cache append of one step: for every slot b with end[b] > 0, position end[b] - 1 of
// cache_k/cache_v [B, S, HKV, D] (of `type`) gets k/v [B, HKV * D] (f32). end: [B] on the device.
int AppendKv(const float* k, const float* v, void* cache_k, void* cache_v, ElementType type,
             const int32_t* end, int B, int S, int hkv_d, void* stream);
// The emulated prefill of slot b: positions [0, prompt) of both caches get the values the CPU
// engine gives them: EngineHash(seed, 100 + layer (key) or 200 + layer (value), index) with
// index = ((request * S + t) * num_kv_heads + first_kv_head + g) * D + d.
int FillPrompt(void* cache_k, void* cache_v, ElementType type, int slot, int prompt, int request,
               int layer, uint64_t seed, int S, int hkv, int num_kv_heads, int first_kv_head, int D,
               void* stream);

}  // namespace ragged::examples::gpu

#endif  // RAGGED_EXAMPLES_TP_ENGINE_KERNELS_H_
