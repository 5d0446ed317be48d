// Device helpers of gpu_bench: random normal fills and the bandwidth ceilings.
//
// All functions queue work on `stream` and return the CUDA error of the launch. Buffers are device
// pointers owned by the caller. Thread-safe (no state).
#ifndef RAGGED_BENCHMARKS_GPU_BENCH_KERNELS_H_
#define RAGGED_BENCHMARKS_GPU_BENCH_KERNELS_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "runtime/dtype.h"

namespace ragged::bench {

// Fills `n` elements of `dtype` at `data` with normal(0, stddev) values from a counter-based hash
// of (seed, index): the same seed gives the same values on any GPU.
cudaError_t FillNormal(void* data, DType dtype, int64_t n, uint64_t seed, float stddev,
                       cudaStream_t stream);

// Reads `bytes` (a multiple of 16) at `data` with 16-byte loads and folds them into `sink`
// (one uint32 per CTA, grid-stride): the read-only ceiling. `sink` holds at least 4096 values.
cudaError_t ReadOnly(const void* data, int64_t bytes, uint32_t* sink, cudaStream_t stream);

// Busy-waits about `ns` nanoseconds on the GPU: queued before a timed loop so that the host gets
// ahead of the device and launch overhead stays out of the measurement.
cudaError_t Spin(int64_t ns, cudaStream_t stream);

}  // namespace ragged::bench

#endif  // RAGGED_BENCHMARKS_GPU_BENCH_KERNELS_H_
