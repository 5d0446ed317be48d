// Diagnostic build only (CMake option RAGGED_CTA_TRACE, off by default): each CTA of the decode
// and combine kernels records its SM and global-timer stamps of the last call, and gpu_bench
// prints them (where the time of a call goes: start, schedule, first tile, finish per SM).
// Nothing here is compiled into the library otherwise.
#ifndef RAGGED_KERNELS_CUDA_CTA_TRACE_CUH_
#define RAGGED_KERNELS_CUDA_CTA_TRACE_CUH_

#ifdef RAGGED_CTA_TRACE
#include <cuda_runtime.h>

#include <cstdint>

namespace ragged::internal::cuda {

// Entries per kernel and fields per entry. Decode: 0 SM + 1, 1 start, 2 schedule known, 3 first
// tile in shared memory, 4 end, 5 tiles, 6 segments, 7 last tile in shared memory, 8 schedule
// pass 1 done, 9 pass 2 done. Combine: 0 SM + 1,
// 1 start, 2 after griddepcontrol.wait, 4 end.
constexpr int kTraceMax = 16384;
constexpr int kTraceFields = 12;

__device__ __forceinline__ unsigned long long TraceNow() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ unsigned long long TraceSm() {
  unsigned s;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(s));
  return s + 1ull;
}

// One table per kernel kind and translation unit (internal linkage); ReadCtaTrace reads the
// tables of the unit it is called from.
static __device__ unsigned long long g_cta_trace[2][kTraceMax * kTraceFields];
enum TraceKind { kTraceDecode = 0, kTraceCombine = 1 };

// Copies a table to `out` (kTraceMax * kTraceFields values) and clears it.
static inline cudaError_t ReadCtaTrace(TraceKind kind, unsigned long long* out) {
  void* addr = nullptr;
  cudaError_t e = cudaGetSymbolAddress(&addr, g_cta_trace);
  if (e != cudaSuccess) return e;
  const size_t bytes = sizeof(unsigned long long) * kTraceMax * kTraceFields;
  addr = static_cast<char*>(addr) + kind * bytes;
  e = cudaMemcpy(out, addr, bytes, cudaMemcpyDeviceToHost);
  if (e != cudaSuccess) return e;
  return cudaMemset(addr, 0, bytes);
}

// Writes the end stamp when the kernel returns, from whichever return it takes.
struct TraceScope {
  unsigned long long* row;
  __device__ TraceScope(TraceKind kind, int64_t index)
      : row(threadIdx.x == 0 && index < kTraceMax ? g_cta_trace[kind] + index * kTraceFields
                                                  : nullptr) {
    if (row) {
      row[0] = TraceSm();
      row[1] = TraceNow();
    }
  }
  __device__ void Mark(int field) {
    if (row) row[field] = TraceNow();
  }
  __device__ void Set(int field, unsigned long long v) {
    if (row) row[field] = v;
  }
  __device__ ~TraceScope() {
    if (row) row[4] = TraceNow();
  }
};

}  // namespace ragged::internal::cuda

#else  // !RAGGED_CTA_TRACE: the same calls, compiled to nothing.

namespace ragged::internal::cuda {
enum TraceKind { kTraceDecode = 0, kTraceCombine = 1 };
struct TraceScope {
  __device__ TraceScope(TraceKind, int64_t) {}
  __device__ void Mark(int) {}
  __device__ void Set(int, unsigned long long) {}
};
}  // namespace ragged::internal::cuda

#endif  // RAGGED_CTA_TRACE
#endif  // RAGGED_KERNELS_CUDA_CTA_TRACE_CUH_
