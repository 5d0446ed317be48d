// Kernels that GPU tests launch around the library's calls.
//
// LaunchLateCopy: a producer that lets the stream's next kernel launch at once and writes its
// output late. It calls griddepcontrol.launch_dependents first (on compute capability 9.0+), so a
// kernel launched after it with programmatic stream serialization may start right away, then
// spins for `delay_us` and only then copies each job's bytes. A consumer that reads before its
// griddepcontrol.wait sees the old contents. Thread-safe (stream-ordered).
#ifndef RAGGED_KERNELS_CUDA_CUDA_TEST_KERNELS_H_
#define RAGGED_KERNELS_CUDA_CUDA_TEST_KERNELS_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace ragged::testing {

struct CopyJob {
  void* dst = nullptr;
  const void* src = nullptr;
  size_t bytes = 0;  // a multiple of 4
};

constexpr int kMaxCopyJobs = 8;

struct CopyJobs {
  CopyJob job[kMaxCopyJobs];
  int count = 0;
};

cudaError_t LaunchLateCopy(const CopyJobs& jobs, int delay_us, cudaStream_t stream);

// The consumer that a test of the above must be able to catch: launched with programmatic stream
// serialization (compute capability 9.0+), it copies the word at `src` to `out` without
// griddepcontrol.wait, so behind LaunchLateCopy it reads the old contents.
cudaError_t LaunchEarlyRead(const uint32_t* src, uint32_t* out, cudaStream_t stream);

}  // namespace ragged::testing

#endif  // RAGGED_KERNELS_CUDA_CUDA_TEST_KERNELS_H_
