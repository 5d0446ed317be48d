// RAGGED_HOST_DEVICE marks functions shared by host code and CUDA device code.
#ifndef RAGGED_KERNELS_INTERNAL_HOST_DEVICE_H_
#define RAGGED_KERNELS_INTERNAL_HOST_DEVICE_H_

#if defined(__CUDACC__)
#define RAGGED_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define RAGGED_HOST_DEVICE inline
#endif

#endif  // RAGGED_KERNELS_INTERNAL_HOST_DEVICE_H_
