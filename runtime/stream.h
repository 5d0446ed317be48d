// Stream and device helpers shared by the CPU-only and the CUDA builds.
//
// `Stream` is a cudaStream_t passed as an opaque pointer so that headers need no CUDA include;
// nullptr is the legacy default stream (and means nothing on the CPU). Functions here are
// thread-safe.
#ifndef RAGGED_RUNTIME_STREAM_H_
#define RAGGED_RUNTIME_STREAM_H_

#include "absl/status/statusor.h"

namespace ragged {

using Stream = void*;  // cudaStream_t

// True when the library was built with CUDA.
bool BuiltWithCuda();
// Number of visible CUDA devices; 0 when built without CUDA or when no device/driver is present
// (never an error: "no GPU" is a normal state).
int CudaDeviceCount();
// Blocks until all work queued on `stream` is done. OK with nullptr where no GPU is visible
// (CPU-only build or machine): there is nothing to wait for.
absl::Status SynchronizeStream(Stream stream);

}  // namespace ragged

#endif  // RAGGED_RUNTIME_STREAM_H_
