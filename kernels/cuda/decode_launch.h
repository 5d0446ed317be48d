// Handles of the instantiated CUDA kernels, for the host code that launches them.
//
// Each decode instantiation lives in one .cu file per dtype (decode_f16.cu, decode_bf16.cu,
// decode_f32.cu) so that a 2-core build compiles them in parallel. A handle is the kernel's
// address, usable with cudaLaunchKernel, cudaFuncSetAttribute and the occupancy API; nullptr
// means "not instantiated". Thread-safe (pure functions). C++17.
#ifndef RAGGED_KERNELS_CUDA_DECODE_LAUNCH_H_
#define RAGGED_KERNELS_CUDA_DECODE_LAUNCH_H_

namespace ragged::internal {

// The tensor-core decode kernels (f16, bf16 inputs) and the SIMT one (f32), by head dim
// (64, 80, 96, 128, 256), by scratch layout (`wide_scratch`: SmemLayout::scratch_swizzle of the
// launch's config; only head dims with swizzled rows have it) and by compute path (`wgmma`: the
// warpgroup-MMA variant, 16-bit types, head_dim 128, wide scratch only; its code exists only in
// an sm_90a build, see WgmmaCompiled). Each takes one `const DecodeParams` by value.
const void* DecodeKernelF16(int head_dim, bool wide_scratch, bool wgmma);
const void* DecodeKernelBF16(int head_dim, bool wide_scratch, bool wgmma);
const void* DecodeKernelF32(int head_dim, bool wide_scratch, bool wgmma);
// True when the library was built with sm_90a code (CMAKE_CUDA_ARCHITECTURES lists 90a), so that
// the wgmma variants run on compute capability 9.0 devices.
bool WgmmaCompiled();
// The combine of the decode kernel's partials for pairs of many pieces (one CTA of 128 threads
// per (row, query head)).
const void* CombineKernelHandle();
// The combine for pairs of few pieces (one warp per (row, query head), 4 per CTA of 128 threads);
// `prefetch`: the variant that loads the first pieces' partials early (more registers).
const void* CombineWarpKernelHandle(bool prefetch);
// The combine for batches of many more pairs than persistent CTAs (grid and block: see
// CombineSplitKernel in merge_cuda.cu).
const void* CombineSplitKernelHandle();
// The generic merge of MergePartials (one CTA of 128 threads per (row, head)); takes MergeParams.
const void* MergeKernelHandle();

}  // namespace ragged::internal

#endif  // RAGGED_KERNELS_CUDA_DECODE_LAUNCH_H_
