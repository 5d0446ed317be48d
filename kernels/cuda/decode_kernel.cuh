// The split-KV flash-decoding kernels (device code, templates). Included by the .cu files that
// instantiate them (decode_f16.cu, decode_bf16.cu, decode_f32.cu); nothing else includes it.
//
// One kernel, two compute paths:
// - MMA (f16, bf16): a CTA takes `heads_per_block` query heads of one GQA group (a multiple of 16,
//   padded with zero rows) and streams the group's K/V tiles through a cp.async pipeline of
//   `stages` buffers. Warp (mi, ni) owns head rows [16 mi, 16 mi + 16) and positions
//   [16 ni, 16 ni + 16) of every tile: S = Q K^T and O += P V run on mma.sync.m16n8k16 with f32
//   accumulators, each warp keeping its own online-softmax state; the warps of one row block are
//   merged in a fixed order at the end of a segment (deterministic).
//   Its wgmma variant (kWg, sm_90a; 64 heads per CTA in one warpgroup, 64-position tiles, head_dim
//   128: MQA-sized groups) runs both products on warpgroup MMA with K and V read by the tensor
//   cores from 128-byte-swizzle planes (MmaPath::WgTile).
// - SIMT (f32): tiles of 32 positions; lane t scores position t for up to 4 heads per warp, then
//   thread (head, d-chunk) accumulates P V with float4 shared-memory reads. Exact f32 arithmetic.
//
// Schedule (see decode_params.h): a persistent grid; each CTA takes an equal contiguous share of
// the flat sequence of tiles of all (row, KV head) pairs, computed on the device from start/end,
// so the grid depends on shapes only and ragged work is spread evenly. A CTA's share crosses pair
// boundaries; the load pipeline runs across them (a Q buffer per stage), and each finished segment
// is written as the final output (whole pair) or as a partial for the combine kernel.
#ifndef RAGGED_KERNELS_CUDA_DECODE_KERNEL_CUH_
#define RAGGED_KERNELS_CUDA_DECODE_KERNEL_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/cta_trace.cuh"
#include "kernels/cuda/decode_params.h"
#include "kernels/cuda/from_float.cuh"
#include "kernels/cuda/smem_layout.h"
#include "kernels/problem.h"

namespace ragged::internal::cuda {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// ---------------------------------------------------------------------------------------------
// Small device helpers.

// Programmatic dependent launch (Hopper; nothing before sm_90): waits until the stream's previous
// grid has completed and its writes are visible, then lets the stream's next kernel be scheduled.
// That kernel (launched as a programmatic dependent in turn) waits for this grid's completion
// before it reads anything this grid writes.
__device__ __forceinline__ void WaitForPreviousGridThenReleaseNext() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ uint32_t SmemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte asynchronous copy global -> shared; zero-fills the destination when !valid.
__device__ __forceinline__ void CpAsync16(uint32_t dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
// The same for data read once (K/V tiles), with an L2 evict-first policy (EvictFirstPolicy): the
// streamed bytes do not push out of L2 what a call reads again (start/end, the partials that the
// combine reads, Q).
__device__ __forceinline__ uint64_t EvictFirstPolicy() {
  uint64_t policy;
  asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
  return policy;
}
__device__ __forceinline__ void CpAsync16Once(uint32_t dst, const void* src, bool valid,
                                              uint64_t policy) {
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2, %3;\n" ::"r"(dst),
               "l"(src), "r"(n), "l"(policy));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
// Waits until at most `n` groups are pending (n in [0, 3]; larger n waits for n = 3).
__device__ __forceinline__ void CpAsyncWaitDyn(int n) {
  switch (n) {
    case 0:
      CpAsyncWait<0>();
      break;
    case 1:
      CpAsyncWait<1>();
      break;
    case 2:
      CpAsyncWait<2>();
      break;
    default:
      CpAsyncWait<3>();
      break;
  }
}

__device__ __forceinline__ void Ldmatrix4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                          uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
__device__ __forceinline__ void Ldmatrix4Trans(uint32_t addr, uint32_t& r0, uint32_t& r1,
                                               uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}

template <typename T>
struct MmaOp;

template <>
struct MmaOp<__nv_bfloat16> {
  // d += a * b, m16n8k16, bf16 inputs, f32 accumulators.
  __device__ __forceinline__ static void Run(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                             uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  __device__ __forceinline__ static uint32_t Pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
};

template <>
struct MmaOp<__half> {
  __device__ __forceinline__ static void Run(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                             uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  __device__ __forceinline__ static uint32_t Pack(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
};

// ---------------------------------------------------------------------------------------------
// Warpgroup MMA (sm_90a). The instructions exist only in the sm_90a pass of the compiler
// (__CUDA_ARCH_FEAT_SM90_ALL); other passes compile a kernel variant that traps, which the host
// never launches (WgmmaCompiled() and compute capability 9.0, see cuda_backend.cu).
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define RAGGED_SM90A 1
#else
#define RAGGED_SM90A 0
#endif

// A shared-memory matrix descriptor with the 128-byte swizzle: start address, leading and stride
// byte offsets (each >> 4), swizzle mode 1 in bits 62-63. Layouts and offsets were checked on an
// H100 by kernels/cuda/experiments/wgmma_probe.cu.
__device__ __forceinline__ uint64_t WgmmaDesc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return static_cast<uint64_t>((addr >> 4) & 0x3FFFu) |
         (static_cast<uint64_t>((lbo >> 4) & 0x3FFFu) << 16) |
         (static_cast<uint64_t>((sbo >> 4) & 0x3FFFu) << 32) | (uint64_t{1} << 62);
}
__device__ __forceinline__ void WgmmaFence() {
#if RAGGED_SM90A
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void WgmmaCommit() {
#if RAGGED_SM90A
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void WgmmaWait0() {
#if RAGGED_SM90A
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
#endif
}
// Keeps the compiler from moving accesses of accumulator registers across the asynchronous
// wgmma (its asm statements name the registers, but the fence and the wait do not).
template <int N>
__device__ __forceinline__ void PinRegs(float* x) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(x[i])::"memory");
}

template <typename T>
struct WgmmaOp;

#define RAGGED_WGMMA_N64(TY, NAME)                                                                               \
  template <>                                                                                                    \
  struct WgmmaOp<TY> {                                                                                           \
    /* S[64x64] (+)= A[64x16] (registers, mma.m16n8k16 A fragments per warp) * B[16x64], B */                    \
    /* K-major from a descriptor. scale_d == 0: S = A * B. */                                                    \
    __device__ __forceinline__ static void N64(float* d, const uint32_t (&a)[4], uint64_t desc,                  \
                                               int scale_d){WGMMA_N64_BODY(                                      \
        NAME)} /* O[64x128] += A[64x16] (registers) * B[16x128], B N-major (transposed) from a */ /* descriptor. \
                                                                                                   */            \
    __device__ __forceinline__                                                                                   \
        static void N128T(float* d, const uint32_t (&a)[4], uint64_t desc) {                                     \
      WGMMA_N128T_BODY(NAME)                                                                                     \
    }                                                                                                            \
  };

#if RAGGED_SM90A
#define WGMMA_N64_BODY(NAME)                                                                       \
  asm volatile(                                                                                    \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                                                 \
      "wgmma.mma_async.sync.aligned.m64n64k16.f32." NAME "." NAME                                  \
      " "                                                                                          \
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, "     \
      "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "                         \
      "{%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n"                                                \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),        \
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),    \
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), \
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), \
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])                                         \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(scale_d)                        \
      : "memory");
#define WGMMA_N128T_BODY(NAME)                                                                     \
  asm volatile(                                                                                    \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                                                 \
      "wgmma.mma_async.sync.aligned.m64n128k16.f32." NAME "." NAME                                 \
      " "                                                                                          \
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, "     \
      "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, "      \
      "%36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, "      \
      "%53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "                                   \
      "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"                                                \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),        \
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),    \
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), \
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), \
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), \
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), \
        "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), \
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), \
        "+f"(d[63])                                                                                \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1)                              \
      : "memory");
#else
#define WGMMA_N64_BODY(NAME) __trap();
#define WGMMA_N128T_BODY(NAME) __trap();
#endif

RAGGED_WGMMA_N64(__nv_bfloat16, "bf16")
RAGGED_WGMMA_N64(__half, "f16")
#undef WGMMA_N64_BODY
#undef WGMMA_N128T_BODY
#undef RAGGED_WGMMA_N64

__device__ __forceinline__ float LoadElem(const void* base, int64_t i, int32_t code) {
  switch (code) {
    case kElemF16:
      return __half2float(static_cast<const __half*>(base)[i]);
    case kElemBF16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[i]);
    default:
      return static_cast<const float*>(base)[i];
  }
}

__device__ __forceinline__ void StoreElem(void* base, int64_t i, float v, int32_t code) {
  switch (code) {
    case kElemF16:
      static_cast<__half*>(base)[i] = __float2half_rn(v);
      break;
    case kElemBF16:
      static_cast<__nv_bfloat16*>(base)[i] = __float2bfloat16_rn(v);
      break;
    default:
      static_cast<float*>(base)[i] = v;
      break;
  }
}

// Elements i .. i + 3 of a T array (any alignment: the output's strides need not be multiples of
// 4).
template <typename T>
__device__ __forceinline__ void Store4(void* base, int64_t i, float4 v) {
  T* o = static_cast<T*>(base) + i;
  o[0] = FromFloat<T>(v.x);
  o[1] = FromFloat<T>(v.y);
  o[2] = FromFloat<T>(v.z);
  o[3] = FromFloat<T>(v.w);
}

// The same, of the type `code` names.
__device__ __forceinline__ void StoreElem4(void* base, int64_t i, float4 v, int32_t code) {
  switch (code) {
    case kElemF16:
      Store4<__half>(base, i, v);
      break;
    case kElemBF16:
      Store4<__nv_bfloat16>(base, i, v);
      break;
    default:
      Store4<float>(base, i, v);
      break;
  }
}

// acc += w * v, per component (the weighted float4 accumulations of the SIMT path and the
// combines).
__device__ __forceinline__ void Fma4(float w, float4 v, float4& acc) {
  acc.x = fmaf(w, v.x, acc.x);
  acc.y = fmaf(w, v.y, acc.y);
  acc.z = fmaf(w, v.z, acc.z);
  acc.w = fmaf(w, v.w, acc.w);
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Logit of a raw dot product, in log2 units (SPEC steps 4-5).
// With a cap c: c * tanh(scale * dot / c), tanh(y) = 1 - 2 / (exp(2y) + 1): one ex2 and one fast
// division (absolute error ~1e-7 of tanh; +-inf of exp give exactly +-1).
__device__ __forceinline__ float Logit(const DecodeParams& p, float dot) {
  if (p.soft_cap > 0.0f) {
    const float e = exp2f(dot * p.cap_inner);
    return p.cap_outer * (1.0f - __fdividef(2.0f, e + 1.0f));
  }
  return dot * p.scale_log2;
}

// 2^x with the hardware's approximation (ex2.approx.ftz: ~2 ulp, subnormal results flushed to 0,
// 2^-inf = 0, NaN stays NaN). exp2f without fast math adds a range check and a fix-up to every
// call.
__device__ __forceinline__ float FastExp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Turns an accumulator fragment of raw dot products (columns nt * 8 + 2 tig + (e & 1)) into
// logits in log2 units (SPEC steps 4-5), masks the columns >= valid with -inf and folds each
// row's maximum into mx. The soft-cap choice and the mask are decided once per fragment: per
// element (Logit), each cost a branch with a reconvergence point and constant-bank reads, about
// 1,000 instructions per 64-position tile of the wgmma variant (SASS, H100 build).
template <int kNt>
__device__ __forceinline__ void LogitsAndMask(const DecodeParams& p, float (&s)[kNt][4], int valid,
                                              int tig, float (&mx)[2]) {
  if (p.soft_cap > 0.0f) {
    const float inner = p.cap_inner, outer = p.cap_outer;
#pragma unroll
    for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nt][e] = outer * (1.0f - __fdividef(2.0f, FastExp2(s[nt][e] * inner) + 1.0f));
      }
    }
  } else {
    const float k = p.scale_log2;
#pragma unroll
    for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nt][e] *= k;
    }
  }
  if (valid < kNt * 8) {
#pragma unroll
    for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (nt * 8 + tig * 2 + (e & 1) >= valid) s[nt][e] = -INFINITY;
      }
    }
  }
#pragma unroll
  for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) mx[e >> 1] = fmaxf(mx[e >> 1], s[nt][e]);
  }
}

// The CTA (of `active` CTAs sharing `total` tiles) whose share holds flat tile t.
__device__ __forceinline__ int64_t CtaOfTile(int64_t t, int64_t total, int64_t active) {
  return ((t + 1) * active - 1) / total;
}

// ---------------------------------------------------------------------------------------------
// Schedule: rows, cursors and the CTA's share.

struct RowInfo {
  int32_t begin;  // first local KV row
  int32_t len;    // valid positions
};

__device__ __forceinline__ RowInfo LoadRowInfo(const DecodeParams& p, int64_t b) {
  const KvRange r =
      ComputeKvRange(p.seq_start[b * p.start_stride], p.seq_end[b * p.end_stride], p.capacity,
                     p.kv_offset, p.total_capacity, p.window_left, p.window_right);
  RowInfo info;
  info.begin = static_cast<int32_t>(r.begin);
  info.len = static_cast<int32_t>(r.end - r.begin);
  return info;
}

// Position in the flat tile sequence.
struct Cursor {
  int32_t b, g, tile;         // row, KV head, tile within the pair
  int32_t begin, len, tiles;  // of row b
  int32_t seg;                // ordinal of the segment within this CTA
};

struct Schedule {
  int64_t t0, t1;  // this CTA's share [t0, t1) of the flat tiles
  Cursor start;
};

// Block-wide helpers over int64 (blockDim.x a multiple of 32, at most 1024).

// The block's sum of v; *all gets whether `pred` held in every thread (the second barrier is a
// __syncthreads_and).
__device__ __forceinline__ int64_t BlockSumAnd(int64_t v, bool pred, int64_t* scratch, bool* all) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  *all = __syncthreads_and(pred ? 1 : 0) != 0;
  int64_t total = 0;
  for (int w = 0; w < nwarps; ++w) total += scratch[w];
  return total;
}

// Exclusive scan; *total gets the sum. Ends with the block synchronized.
__device__ __forceinline__ int64_t BlockExclusiveScan(int64_t v, int64_t* scratch, int64_t* total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  int64_t inc = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int64_t n = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc += n;
  }
  __syncthreads();
  if (lane == 31) scratch[warp] = inc;
  __syncthreads();
  int64_t before = 0, sum = 0;
  for (int w = 0; w < nwarps; ++w) {
    if (w < warp) before += scratch[w];
    sum += scratch[w];
  }
  *total = sum;
  return before + inc - v;
}

// The CTAs that get a share of `total` tiles: at least min_tiles_per_cta tiles each. Where every
// row has the same number of tiles (`row_tiles` > 0: full or equal-length rows, so every (row, KV
// head) pair has row_tiles tiles) and the host left the CTA count to the library (align_shares),
// fewer CTAs may take part so that shares align with pairs: each CTA holds whole pairs, or each
// pair is cut into the same number of pieces. Then no pair straddles two shares: fewer pieces to
// combine, or none, and one segment per CTA (H100: L_full 95.6 -> 97.6%, L_window 74.1 -> 78.5%).
// Only where at least 7/8 of the CTAs keep a share.
__device__ __forceinline__ int64_t ActiveCtas(const DecodeParams& p, int64_t total,
                                              int64_t row_tiles) {
  if (total <= 0) return 0;
  const int64_t want = (total + p.min_tiles_per_cta - 1) / p.min_tiles_per_cta;
  int64_t active = want < p.num_ctas ? want : p.num_ctas;
  if (active < 1) active = 1;
  if (p.align_shares && row_tiles > 0) {
    const int64_t pairs = total / row_tiles;
    int64_t aligned;
    if (pairs <= active) {
      aligned = active / pairs * pairs;
    } else {
      const int64_t per = (pairs + active - 1) / active;  // pairs per CTA
      aligned = (pairs + per - 1) / per;
    }
    if (aligned * 8 >= active * 7) active = aligned;
  }
  return active;
}

// Computes T, this CTA's share and its first cursor; caches the info of the share's first rows in
// `rows`. CTA 0 of slice 0 also writes the row prefix (for CombineSplitKernel's empty rows);
// with `record` (slice 0), every CTA writes its cta_split entry. Must be called by the whole
// block.
__device__ inline Schedule ComputeSchedule(const DecodeParams& p, int cta, bool writer, bool record,
                                           int32_t* rows, int64_t* scan, TraceScope& trace) {
  const int nt = blockDim.x;
  const int64_t hkv = p.num_kv_heads;
  // Pass 1: total tiles. The first chunk of rows stays in registers for pass 2 (often the only
  // chunk), which saves a round trip to memory.
  // Also whether every row has the same tile count (each row against the next: the next lane's,
  // or a load of its own for the warp's last lane).
  int64_t acc = 0;
  bool same = true;
  RowInfo first{0, 0};
  const int lane = threadIdx.x & 31;
  for (int64_t base = 0; base < p.batch; base += nt) {
    const int64_t b = base + threadIdx.x;
    const RowInfo r = b < p.batch ? LoadRowInfo(p, b) : RowInfo{0, 0};
    if (base == 0) first = r;
    const int64_t t = (r.len + p.block_n - 1) / p.block_n;
    int64_t next = __shfl_down_sync(0xffffffffu, t, 1);
    if (lane == 31 && b + 1 < p.batch) {
      const RowInfo rn = LoadRowInfo(p, b + 1);
      next = (rn.len + p.block_n - 1) / p.block_n;
    }
    if (b < p.batch) {
      acc += t * hkv;
      same = same && (b + 1 >= p.batch || next == t);
    }
  }
  bool uniform;
  const int64_t total = BlockSumAnd(acc, same, scan, &uniform);
  trace.Mark(8);
  const int64_t active = ActiveCtas(p, total, uniform ? total / (p.batch * hkv) : 0);
  Schedule s;
  s.t0 = s.t1 = 0;
  if (cta < active) {
    s.t0 = cta * total / active;
    s.t1 = (cta + 1) * total / active;
  }
  if (s.t0 >= s.t1) {
    if (record && threadIdx.x == 0) p.cta_split[cta] = make_int2(-1, -1);
    if (!writer) return s;
  }

  // Pass 2: exclusive scan over rows to find the row holding t0 and cache the rows after it.
  int64_t* s_b0 = scan + 33;
  int64_t* s_pre0 = scan + 34;
  if (threadIdx.x == 0) {
    *s_b0 = INT64_MAX;
    *s_pre0 = 0;
  }
  int64_t running = 0;
  for (int64_t base = 0; base < p.batch; base += nt) {
    const int64_t b = base + threadIdx.x;
    RowInfo r{0, 0};
    int64_t v = 0;
    if (b < p.batch) {
      r = base == 0 ? first : LoadRowInfo(p, b);
      v = (r.len + p.block_n - 1) / p.block_n * hkv;
    }
    int64_t chunk_total;
    const int64_t pre = running + BlockExclusiveScan(v, scan, &chunk_total);
    if (b < p.batch) {
      if (writer) p.row_prefix[b] = pre;
      if (v > 0 && pre <= s.t0 && s.t0 < pre + v) {
        *s_b0 = b;
        *s_pre0 = pre;
      }
    }
    __syncthreads();
    const int64_t b0 = *s_b0;
    if (b < p.batch && b >= b0 && b < b0 + kRowCache) {
      rows[2 * (b - b0)] = r.begin;
      rows[2 * (b - b0) + 1] = r.len;
    }
    running += chunk_total;
    if (!writer && b0 != INT64_MAX && base + nt >= b0 + kRowCache) break;
  }
  trace.Mark(9);
  if (writer && threadIdx.x == 0) {
    p.row_prefix[p.batch] = total;
  }
  __syncthreads();
  if (s.t0 < s.t1) {
    const int64_t b0 = *s_b0;
    const int64_t off = s.t0 - *s_pre0;
    Cursor& c = s.start;
    c.b = static_cast<int32_t>(b0);
    c.begin = rows[0];
    c.len = rows[1];
    c.tiles = (c.len + p.block_n - 1) / p.block_n;
    c.g = static_cast<int32_t>(off / c.tiles);
    c.tile = static_cast<int32_t>(off % c.tiles);
    c.seg = 0;
    if (record && threadIdx.x == 0) {
      // For the combine: the pair this share starts inside of and the CTA with its last tile.
      int2 split = make_int2(-1, -1);
      if (c.tile != 0) {
        split.x = c.b * p.num_kv_heads + c.g;
        split.y = static_cast<int>(CtaOfTile(s.t0 - c.tile + c.tiles - 1, total, active));
      }
      p.cta_split[cta] = split;
    }
  }
  return s;
}

// Moves the cursor to the next flat tile. Only called when one exists.
__device__ __forceinline__ void Advance(const DecodeParams& p, Cursor& c, int32_t b0,
                                        const int32_t* rows) {
  if (++c.tile < c.tiles) return;
  c.tile = 0;
  ++c.seg;
  if (++c.g < p.num_kv_heads) return;
  c.g = 0;
  do {
    ++c.b;
    const int32_t i = c.b - b0;
    if (i < kRowCache) {
      c.begin = rows[2 * i];
      c.len = rows[2 * i + 1];
    } else {
      const RowInfo r = LoadRowInfo(p, c.b);
      c.begin = r.begin;
      c.len = r.len;
    }
    c.tiles = (c.len + p.block_n - 1) / p.block_n;
  } while (c.tiles == 0);
}

// The 16-bit types run on the tensor-core path (f32 on the SIMT path).
template <typename T>
constexpr bool kMmaType = sizeof(T) == 2;

// Byte offsets, within a K/V/Q row in shared memory, of 16-byte chunk 2 kk + bit for one lane's
// ldmatrix row (whose index is lane & 7 modulo 8): with the swizzle, chunk c of row r is stored at
// c ^ (r & 7). As (2 kk + bit) ^ key = 2 kk ^ (bit ^ key) and kk = 4 q + r, the offset is
// 128 q + ((32 r) ^ (16 (bit ^ key))): four per-lane values, indexed by compile-time kk.
struct ChunkOffsets {
  uint32_t o[4];
  __device__ __forceinline__ ChunkOffsets(int bit, int key) {
    const uint32_t y = static_cast<uint32_t>((bit ^ key) << 4);
#pragma unroll
    for (int r = 0; r < 4; ++r) o[r] = (32u * r) ^ y;
  }
  __device__ __forceinline__ uint32_t At(int kk) const { return 128u * (kk >> 2) + o[kk & 3]; }
};

// Issues the cp.async loads of the cursor's K/V tile (and of Q at a segment start). kWg: K and V
// rows in the layout of the warpgroup MMA (wgmma) path: the two 128-byte halves of a 256-byte row
// are stored as separate [block_n][128 bytes] planes (chunk c of row r at c ^ (r & 7) within its
// plane), the K-major and N-major 128-byte-swizzle layouts that wgmma descriptors address.
template <typename T, int kD, bool kWg>
__device__ __forceinline__ void IssueTile(const DecodeParams& p, const SmemLayout& L,
                                          unsigned char* smem, const Cursor& c, int buf,
                                          bool load_q, int slice) {
  constexpr int kChunks = kD * static_cast<int>(sizeof(T)) / 16;
  constexpr int kElemsPerChunk = 16 / static_cast<int>(sizeof(T));
  const int block_n = p.block_n;
  const int pos0 = c.begin + c.tile * block_n;
  const int rem = c.len - c.tile * block_n;
  const int valid = rem < block_n ? rem : block_n;
  const T* kbase = static_cast<const T*>(p.k) + c.b * p.k_stride_b +
                   static_cast<int64_t>(pos0) * p.k_stride_s + c.g * p.k_stride_h;
  const T* vbase = static_cast<const T*>(p.v) + c.b * p.v_stride_b +
                   static_cast<int64_t>(pos0) * p.v_stride_s + c.g * p.v_stride_h;
  const uint32_t kdst = SmemAddr(smem + L.kv_off + buf * L.kv_stage_bytes);
  const uint32_t vdst = kdst + block_n * L.row_bytes;
  // Thread t copies chunk t % kChunks of rows t / kChunks, t / kChunks + rpp, ...: its global
  // and shared addresses advance by constant steps.
  constexpr bool kSwz = UsesSwizzle(static_cast<int>(sizeof(T)), kD, kMmaType<T>);
  const int rpp = static_cast<int>(blockDim.x) / kChunks;
  const int r0 = static_cast<int>(threadIdx.x) / kChunks,
            ch = static_cast<int>(threadIdx.x) % kChunks;
  if (r0 < rpp) {
    const T* ks = kbase + r0 * p.k_stride_s + ch * kElemsPerChunk;
    const T* vs = vbase + r0 * p.v_stride_s + ch * kElemsPerChunk;
    const int64_t kstep = rpp * p.k_stride_s, vstep = rpp * p.v_stride_s;
    const uint32_t row_step = kWg ? 128u : static_cast<uint32_t>(L.row_bytes);
    uint32_t so = r0 * row_step + (kWg ? (ch >> 3) * block_n * 128u : 0u);
    const uint32_t sstep = rpp * row_step;
    const int chl = kWg ? (ch & 7) : ch;
    const uint64_t once = EvictFirstPolicy();
    for (int r = r0; r < block_n; r += rpp) {
      const bool ok = r < valid;
      const uint32_t at = so + ((kSwz ? chl ^ (r & 7) : chl) << 4);
      CpAsync16Once(kdst + at, ok ? ks : kbase, ok, once);
      CpAsync16Once(vdst + at, ok ? vs : vbase, ok, once);
      ks += kstep;
      vs += vstep;
      so += sstep;
    }
  }
  if (load_q) {
    const int hpb = p.heads_per_block;
    const int first = slice * hpb;  // first head of the slice within the group
    const T* qbase = static_cast<const T*>(p.q) + c.b * p.q_stride_b +
                     static_cast<int64_t>(c.g * p.group_size + first) * p.q_stride_h;
    const uint32_t qdst = SmemAddr(smem + L.q_off + (c.seg % p.stages) * hpb * L.row_bytes);
    for (int idx = threadIdx.x; idx < hpb * kChunks; idx += blockDim.x) {
      const int r = idx / kChunks, ch = idx % kChunks;
      const bool ok = first + r < p.group_size;
      const int64_t qo = ok ? r * p.q_stride_h + ch * kElemsPerChunk : 0;
      CpAsync16(qdst + r * L.row_bytes + ((kSwz ? ch ^ (r & 7) : ch) << 4), qbase + qo, ok);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Compute paths. Each keeps the online-softmax state of its segment and, at the end of a segment,
// leaves in shared memory the un-normalized O (scratch), the row max (row_m, log2 units) and the
// row sum (row_l) for the common epilogue.

// The f32 scratch of a finished segment: its own buffer, or (SmemLayout::scratch_in_tile) the
// K/V buffer of the segment's last tile, which nobody reads once every warp is past that tile.
__device__ __forceinline__ float* ScratchOf(const SmemLayout& L, unsigned char* smem, int buf) {
  if (L.scratch_in_tile) return reinterpret_cast<float*>(smem + L.kv_off + buf * L.kv_stage_bytes);
  return reinterpret_cast<float*>(smem + L.scratch_off);
}

// Index of element (row, col) of the scratch (col even keeps col + 1 next to it). kWide: the
// unpadded, swizzled scratch (SmemLayout::scratch_swizzle), a separate kernel instantiation.
// The row stride is a compile-time constant (SmemLayout::scratch_ld is kD or kD + 8): read from
// the layout at run time, the ragged shapes measured 4-5 points slower on an H100.
template <int kD, bool kWide>
__device__ __forceinline__ int ScratchAt(int row, int col) {
  return kWide ? row * kD + (col ^ ((row & 7) << 3)) : row * (kD + 8) + col;
}

template <typename T, int kD, bool kWide, bool kWg>
struct MmaPath {
  static constexpr int kNTiles = kD / 8;  // n8 tiles of O
  // Q's A fragments stay in registers for a segment when they fit (head_dim <= 128); larger
  // head dims reload them from shared memory for each chunk.
  static constexpr bool kQInRegs = kD <= 128;
  static constexpr bool kSwz = UsesSwizzle(static_cast<int>(sizeof(T)), kD, true);
  float o[kNTiles][4];
  float m[2], l[2];  // rows lane/4 and lane/4 + 8 of the warp's 16
  uint32_t qf[kQInRegs ? kD / 16 : 1][4];
  // This warp's row block and position slice, and positions per slice: computed once (run-time
  // divisions cost ~20 instructions each, and every instruction counts in the per-tile loop).
  int mi, ni, per_warp;

  __device__ __forceinline__ void Init(const DecodeParams& p, int nsplit) {
    const int warp = threadIdx.x >> 5;
    mi = warp / nsplit;
    ni = warp - mi * nsplit;
    per_warp = p.block_n / nsplit;  // a multiple of 16
  }

  __device__ __forceinline__ void Reset() {
#pragma unroll
    for (int i = 0; i < kNTiles; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    m[0] = m[1] = -INFINITY;
    l[0] = l[1] = 0.0f;
  }

  __device__ __forceinline__ void Tile(const DecodeParams& p, const SmemLayout& L,
                                       unsigned char* smem, int buf, int qslot, int valid,
                                       bool seg_first, int nsplit) {
    const int lane = threadIdx.x & 31;
    const int rb = L.row_bytes;
    // Row addresses of this lane's ldmatrix rows; the chunk offsets add the column (swizzled).
    const int key = kSwz ? (lane & 7) : 0;
    const ChunkOffsets qo(lane >> 4, key), ko((lane >> 3) & 1, key);
    const uint32_t qrow = SmemAddr(smem + L.q_off + qslot * p.heads_per_block * rb) +
                          (mi * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * rb;
    const uint32_t kbuf = SmemAddr(smem + L.kv_off + buf * L.kv_stage_bytes);
    const uint32_t vbuf = kbuf + p.block_n * rb;
    if (kQInRegs && seg_first) {
#pragma unroll
      for (int kk = 0; kk < (kQInRegs ? kD / 16 : 1); ++kk) {
        Ldmatrix4(qrow + qo.At(kk), qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3]);
      }
    }
    if constexpr (kWg) {
      WgTile(p, kbuf, vbuf, valid);
      return;
    }
    const int end = (ni + 1) * per_warp < valid ? (ni + 1) * per_warp : valid;
    int c0 = ni * per_warp;
    // 32 positions per softmax step where the warp's slice allows it, else 16.
    for (; c0 + 16 < end && c0 + 32 <= (ni + 1) * per_warp; c0 += 32) {
      Chunk<2>(p, qrow, kbuf + (c0 + (lane & 7) + (lane >> 4) * 8) * rb,
               vbuf + (c0 + (lane & 7) + ((lane >> 3) & 1) * 8) * rb, valid - c0, rb, qo, ko);
    }
    for (; c0 < end; c0 += 16) {
      Chunk<1>(p, qrow, kbuf + (c0 + (lane & 7) + (lane >> 4) * 8) * rb,
               vbuf + (c0 + (lane & 7) + ((lane >> 3) & 1) * 8) * rb, valid - c0, rb, qo, ko);
    }
  }

  // The online-softmax step of a fragment of raw dot products (rows lane/4 and lane/4 + 8,
  // columns >= valid masked): S becomes P (un-normalized probabilities), the row max m and sum l
  // move, and O is rescaled when the max moved in any row of the warp (rarely after the first
  // tiles).
  template <int kNt>
  __device__ __forceinline__ void Softmax(const DecodeParams& p, float (&s)[kNt][4], int valid,
                                          int tig) {
    float mx[2] = {-INFINITY, -INFINITY};
    LogitsAndMask(p, s, valid, tig, mx);
    float alpha[2], mu[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      const float m_new = fmaxf(m[r], mx[r]);
      mu[r] = m_new == -INFINITY ? 0.0f : m_new;
      alpha[r] = FastExp2(m[r] - mu[r]);
      m[r] = m_new;
      l[r] *= alpha[r];
    }
#pragma unroll
    for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float pr = FastExp2(s[nt][e] - mu[e >> 1]);
        s[nt][e] = pr;
        l[e >> 1] += pr;
      }
    }
    if (__any_sync(0xffffffffu, alpha[0] != 1.0f || alpha[1] != 1.0f)) {
#pragma unroll
      for (int i = 0; i < kNTiles; ++i) {
        o[i][0] *= alpha[0];
        o[i][1] *= alpha[0];
        o[i][2] *= alpha[1];
        o[i][3] *= alpha[1];
      }
    }
  }

  // The warpgroup-MMA tile (kWg: 4 warps x 16 heads = 64 heads, 64 positions, head_dim 128, one
  // warp per row block): S = Q K^T on wgmma m64n64k16 (Q fragments from registers, K through a
  // K-major descriptor), the online softmax on S's registers as in Chunk (the accumulator layout
  // of a warp is that of mma.m16n8k16), then O += P V on wgmma m64n128k16 (P from registers, V
  // through an N-major descriptor). K and V are in IssueTile's kWg layout; the tensor cores read
  // each tile from shared memory once per CTA instead of once per warp.
  __device__ __forceinline__ void WgTile(const DecodeParams& p, uint32_t kbuf, uint32_t vbuf,
                                         int valid) {
    static_assert(!kWg || (kD == 128 && kQInRegs), "the wgmma path is for head_dim 128");
    const int lane = threadIdx.x & 31;
    constexpr int kN = 64;                 // positions per tile (block_n)
    constexpr uint32_t kPlane = kN * 128;  // bytes of one 128-byte-column plane of K or V
    float s[kN / 8][4];
    float* sf = &s[0][0];
    WgmmaFence();  // Q fragments and O were written by ordinary instructions
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk) {
      const uint64_t desc = WgmmaDesc(kbuf + (kk >> 2) * kPlane + (kk & 3) * 32, 16, 1024);
      WgmmaOp<T>::N64(sf, qf[kk], desc, kk > 0 ? 1 : 0);
    }
    WgmmaCommit();
    WgmmaWait0();
    PinRegs<kN / 2>(sf);
    Softmax(p, s, valid, lane & 3);
    uint32_t pa[kN / 16][4];
#pragma unroll
    for (int kk = 0; kk < kN / 16; ++kk) {
      pa[kk][0] = MmaOp<T>::Pack(s[2 * kk][0], s[2 * kk][1]);
      pa[kk][1] = MmaOp<T>::Pack(s[2 * kk][2], s[2 * kk][3]);
      pa[kk][2] = MmaOp<T>::Pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[kk][3] = MmaOp<T>::Pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    }
    float* of = &o[0][0];
    PinRegs<kNTiles * 4>(of);
    WgmmaFence();  // P and the rescaled O come from ordinary instructions
#pragma unroll
    for (int kk = 0; kk < kN / 16; ++kk) {
      WgmmaOp<T>::N128T(of, pa[kk], WgmmaDesc(vbuf + kk * 16 * 128, kPlane, 1024));
    }
    WgmmaCommit();
    WgmmaWait0();
    PinRegs<kNTiles * 4>(of);
  }

  // Online-softmax update with 16 * kG positions whose K/V ldmatrix row addresses (this lane's
  // row of the first 16) are krow/vrow; rows are `rb` bytes apart; positions >= valid are masked.
  // Q and V take their chunk offsets from qo, K from ko.
  template <int kG>
  __device__ __forceinline__ void Chunk(const DecodeParams& p, uint32_t qrow, uint32_t krow,
                                        uint32_t vrow, int valid, int rb, const ChunkOffsets& qo,
                                        const ChunkOffsets& ko) {
    const int lane = threadIdx.x & 31;
    float s[2 * kG][4];
#pragma unroll
    for (int i = 0; i < 2 * kG; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk) {
      uint32_t a[4];
      if constexpr (kQInRegs) {
        a[0] = qf[kk][0];
        a[1] = qf[kk][1];
        a[2] = qf[kk][2];
        a[3] = qf[kk][3];
      } else {
        Ldmatrix4(qrow + qo.At(kk), a[0], a[1], a[2], a[3]);
      }
#pragma unroll
      for (int gi = 0; gi < kG; ++gi) {
        uint32_t b[4];
        Ldmatrix4(krow + gi * 16 * rb + ko.At(kk), b[0], b[1], b[2], b[3]);
        MmaOp<T>::Run(s[2 * gi], a, b[0], b[1]);
        MmaOp<T>::Run(s[2 * gi + 1], a, b[2], b[3]);
      }
    }
    Softmax(p, s, valid, lane & 3);
#pragma unroll
    for (int gi = 0; gi < kG; ++gi) {
      uint32_t a[4];
      a[0] = MmaOp<T>::Pack(s[2 * gi][0], s[2 * gi][1]);
      a[1] = MmaOp<T>::Pack(s[2 * gi][2], s[2 * gi][3]);
      a[2] = MmaOp<T>::Pack(s[2 * gi + 1][0], s[2 * gi + 1][1]);
      a[3] = MmaOp<T>::Pack(s[2 * gi + 1][2], s[2 * gi + 1][3]);
#pragma unroll
      for (int dd = 0; dd < kD / 16; ++dd) {
        uint32_t b[4];
        Ldmatrix4Trans(vrow + gi * 16 * rb + qo.At(dd), b[0], b[1], b[2], b[3]);
        MmaOp<T>::Run(o[2 * dd], a, b[0], b[1]);
        MmaOp<T>::Run(o[2 * dd + 1], a, b[2], b[3]);
      }
    }
  }

  // Merges the warps of each row block in a fixed order into scratch/row_m/row_l.
  __device__ __forceinline__ void Finish(const DecodeParams& p, const SmemLayout& L,
                                         unsigned char* smem, int buf, int nsplit) {
    const int lane = threadIdx.x & 31;
    const int hpb = p.heads_per_block;
    float* red_m = reinterpret_cast<float*>(smem + L.red_m_off);
    float* red_l = reinterpret_cast<float*>(smem + L.red_l_off);
    float* row_m = reinterpret_cast<float*>(smem + L.row_m_off);
    float* row_l = reinterpret_cast<float*>(smem + L.row_l_off);
    float* scratch = ScratchOf(L, smem, buf);
    const int tig = lane & 3;
    const int row[2] = {mi * 16 + (lane >> 2), mi * 16 + (lane >> 2) + 8};
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
    if (tig == 0) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        red_m[ni * hpb + row[r]] = m[r];
        red_l[ni * hpb + row[r]] = l[r];
      }
    }
    __syncthreads();
    float scale[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mm = -INFINITY;
      for (int k = 0; k < nsplit; ++k) mm = fmaxf(mm, red_m[k * hpb + row[r]]);
      const float mu = mm == -INFINITY ? 0.0f : mm;
      scale[r] = exp2f(m[r] - mu);
      if (ni == 0 && tig == 0) {
        float ll = 0.0f;
        for (int k = 0; k < nsplit; ++k) {
          ll += red_l[k * hpb + row[r]] * exp2f(red_m[k * hpb + row[r]] - mu);
        }
        row_m[row[r]] = mm;
        row_l[row[r]] = ll;
      }
    }
    for (int round = 0; round < nsplit; ++round) {
      if (ni == round) {
#pragma unroll
        for (int i = 0; i < kNTiles; ++i) {
          const int col = i * 8 + tig * 2;
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            float2* dst = reinterpret_cast<float2*>(scratch + ScratchAt<kD, kWide>(row[r], col));
            float2 v = make_float2(o[i][2 * r] * scale[r], o[i][2 * r + 1] * scale[r]);
            if (round > 0) {
              const float2 old = *dst;
              v.x += old.x;
              v.y += old.y;
            }
            *dst = v;
          }
        }
      }
      __syncthreads();
    }
  }
};

template <int kD>
struct SimtPath {
  static constexpr int kC4 = kD / 4;                // float4 chunks per row
  static constexpr int kPerThread = (kC4 + 7) / 8;  // chunks per thread (8 threads per head)
  static constexpr int kBlockN = 32;
  float4 o[kPerThread];

  __device__ __forceinline__ void Init(const DecodeParams&, int) {}

  __device__ __forceinline__ void Reset() {
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) o[j] = make_float4(0.f, 0.f, 0.f, 0.f);
  }

  __device__ __forceinline__ void Tile(const DecodeParams& p, const SmemLayout& L,
                                       unsigned char* smem, int buf, int qslot, int valid,
                                       bool seg_first, int /*nsplit*/) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int hpb = p.heads_per_block;
    const int ld4 = L.row_bytes / 16;  // row stride in float4
    const float4* k4 = reinterpret_cast<const float4*>(smem + L.kv_off + buf * L.kv_stage_bytes);
    const float4* v4 = k4 + kBlockN * ld4;
    const float4* q4 = reinterpret_cast<const float4*>(smem + L.q_off + qslot * hpb * L.row_bytes);
    float* row_m = reinterpret_cast<float*>(smem + L.row_m_off);
    float* row_l = reinterpret_cast<float*>(smem + L.row_l_off);
    float* s_alpha = reinterpret_cast<float*>(smem + L.alpha_off);
    float* s_p = reinterpret_cast<float*>(smem + L.p_off);
    // Phase 1: lane = position, heads warp + 4 j.
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    const float4* krow = k4 + lane * ld4;
#pragma unroll 4
    for (int c = 0; c < kC4; ++c) {
      const float4 kv = krow[c];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int h = warp + 4 * j;
        if (h < hpb) {
          const float4 qv = q4[h * ld4 + c];
          acc[j] = fmaf(qv.x, kv.x, acc[j]);
          acc[j] = fmaf(qv.y, kv.y, acc[j]);
          acc[j] = fmaf(qv.z, kv.z, acc[j]);
          acc[j] = fmaf(qv.w, kv.w, acc[j]);
        }
      }
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int h = warp + 4 * j;
      if (h >= hpb) break;
      const float x = lane < valid ? Logit(p, acc[j]) : -INFINITY;
      const float m_old = seg_first ? -INFINITY : row_m[h];
      const float l_old = seg_first ? 0.0f : row_l[h];
      const float m_new = fmaxf(m_old, WarpMax(x));
      const float mu = m_new == -INFINITY ? 0.0f : m_new;
      const float pr = exp2f(x - mu);
      const float sum = WarpSum(pr);
      const float alpha = exp2f(m_old - mu);
      s_p[h * kBlockN + lane] = pr;
      __syncwarp();
      if (lane == 0) {
        row_m[h] = m_new;
        row_l[h] = l_old * alpha + sum;
        s_alpha[h] = alpha;
      }
    }
    __syncthreads();
    // Phase 2: thread (head h, chunk lane c) accumulates P V.
    const int h = threadIdx.x >> 3, c = threadIdx.x & 7;
    if (h < hpb) {
      const float alpha = s_alpha[h];
#pragma unroll
      for (int j = 0; j < kPerThread; ++j) {
        o[j].x *= alpha;
        o[j].y *= alpha;
        o[j].z *= alpha;
        o[j].w *= alpha;
      }
      const int tmax = valid;
      for (int t = 0; t < tmax; ++t) {
        const float pt = s_p[h * kBlockN + t];
        const float4* vrow = v4 + t * ld4;
#pragma unroll
        for (int j = 0; j < kPerThread; ++j) {
          const int idx = c + 8 * j;
          if (idx < kC4) {
            Fma4(pt, vrow[idx], o[j]);
          }
        }
      }
    }
  }

  __device__ __forceinline__ void Finish(const DecodeParams& p, const SmemLayout& L,
                                         unsigned char* smem, int buf, int /*nsplit*/) {
    float* scratch = ScratchOf(L, smem, buf);
    __syncthreads();  // the scratch may alias this tile's K/V, which other warps may still read
    const int h = threadIdx.x >> 3, c = threadIdx.x & 7;
    if (h < p.heads_per_block) {
#pragma unroll
      for (int j = 0; j < kPerThread; ++j) {
        const int idx = c + 8 * j;
        if (idx < kC4) *reinterpret_cast<float4*>(scratch + h * L.scratch_ld + 4 * idx) = o[j];
      }
    }
    __syncthreads();
  }
};

// Writes a finished segment: the final output (with sinks, when `whole`) or a partial.
// kVec: the tensor-core kernels' vectorized loop.
template <int kD, bool kWide, bool kVec>
__device__ __forceinline__ void Epilogue(const DecodeParams& p, const SmemLayout& L,
                                         unsigned char* smem, int buf, int b, int g, int slice,
                                         bool whole, int64_t slot) {
  const int hpb = p.heads_per_block;
  const int first = slice * hpb;
  const int rows = p.group_size - first < hpb ? p.group_size - first : hpb;
  float* row_m = reinterpret_cast<float*>(smem + L.row_m_off);
  float* row_l = reinterpret_cast<float*>(smem + L.row_l_off);
  float* factor = reinterpret_cast<float*>(smem + L.factor_off);
  const float* scratch = ScratchOf(L, smem, buf);
  const int G = p.group_size;
  if (static_cast<int>(threadIdx.x) < rows) {
    const int r = first + threadIdx.x;  // head within the group
    const int64_t h = static_cast<int64_t>(g) * G + r;
    const float m2 = row_m[threadIdx.x], l = row_l[threadIdx.x];
    if (whole) {
      float top = m2;
      int64_t arow = 0;
      if (p.sink_layout == kSinkPerKvHead) arow = g;
      if (p.sink_layout == kSinkPerQHead) arow = h;
      for (int j = 0; j < p.num_sinks; ++j) {
        top = fmaxf(
            top,
            LoadElem(p.aux, arow * p.aux_stride_row + j * p.aux_stride_sink, p.aux_elem) * kLog2e);
      }
      const float tu = top == -INFINITY ? 0.0f : top;
      const float sc = exp2f(m2 - tu);
      float denom = l * sc;
      for (int j = 0; j < p.num_sinks; ++j) {
        denom += exp2f(
            LoadElem(p.aux, arow * p.aux_stride_row + j * p.aux_stride_sink, p.aux_elem) * kLog2e -
            tu);
      }
      factor[threadIdx.x] = sc / denom;
      if (p.lse != nullptr) {
        p.lse[b * p.lse_stride_b + h * p.lse_stride_h] = (tu + log2f(denom)) * kLn2;
      }
    } else {
      factor[threadIdx.x] = l > 0.0f ? 1.0f / l : 0.0f;
      p.part_lse[slot * G + r] = (m2 + log2f(l)) * kLn2;
    }
  }
  __syncthreads();
  if constexpr (kVec) {
    // Four consecutive dims per thread and step: both scratch layouts keep them contiguous and
    // 16-byte aligned, and the partial O takes them as one 16-byte store. One element per step
    // made the epilogue of MQA's 64 heads a chain of 64 dependent shared-memory loads per thread.
    constexpr int kD4 = kD / 4;
    for (int idx = threadIdx.x; idx < rows * kD4; idx += blockDim.x) {
      const int r = idx / kD4, d = (idx - r * kD4) * 4;
      const float f = factor[r];
      float4 v = *reinterpret_cast<const float4*>(scratch + ScratchAt<kD, kWide>(r, d));
      v.x *= f;
      v.y *= f;
      v.z *= f;
      v.w *= f;
      if (whole) {
        const int64_t h = static_cast<int64_t>(g) * G + first + r;
        StoreElem4(p.out, b * p.o_stride_b + h * p.o_stride_h + d, v, p.out_elem);
      } else {
        *reinterpret_cast<float4*>(p.part_o + (slot * G + first + r) * kD + d) = v;
      }
    }
  } else {
    // The SIMT path (f32), one element per step: the loop above costs it spills.
    for (int idx = threadIdx.x; idx < rows * kD; idx += blockDim.x) {
      const int r = idx / kD, d = idx % kD;
      const float val = scratch[ScratchAt<kD, kWide>(r, d)] * factor[r];
      if (whole) {
        const int64_t h = static_cast<int64_t>(g) * G + first + r;
        StoreElem(p.out, b * p.o_stride_b + h * p.o_stride_h + d, val, p.out_elem);
      } else {
        p.part_o[(slot * G + first + r) * kD + d] = val;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The decode kernel.

template <typename T, int kD, bool kMma, bool kWide, bool kWg>
__global__ void __launch_bounds__(kMaxDecodeThreads)
    DecodeKernel(const __grid_constant__ DecodeParams p) {
  extern __shared__ __align__(128) unsigned char smem[];
  TraceScope trace(kTraceDecode, blockIdx.x);
  // This grid's CTAs may start before the stream's previous kernel is complete: nothing is read
  // before it is. The combine kernel may then be scheduled at once (it reads only inputs before it
  // waits for this grid's completion, final since the wait), which hides its launch latency.
  WaitForPreviousGridThenReleaseNext();
  const int nsplit = kMma ? static_cast<int>(blockDim.x >> 5) / (p.heads_per_block / 16) : 1;
  const SmemLayout L = ComputeSmemLayout(static_cast<int>(sizeof(T)), kD, p.heads_per_block,
                                         p.block_n, p.stages, nsplit, kMma);
  if (L.scratch_swizzle != (kWide ? 1 : 0)) __trap();  // the host launched the wrong variant
  if constexpr (kWg) {
    // The wgmma variant: one warpgroup, 64 heads, 64-position tiles, 128-byte swizzle atoms
    // aligned to 1024 bytes (the swizzle is a function of the address).
    if (blockDim.x != 128 || p.heads_per_block != 64 || p.block_n != 64 ||
        (SmemAddr(smem) & 1023u) != 0 || (L.kv_stage_bytes & 1023) != 0) {
      __trap();
    }
  }
  const int cta = static_cast<int>(blockIdx.x) / p.head_slices;
  const int slice = static_cast<int>(blockIdx.x) % p.head_slices;
  int32_t* rows = reinterpret_cast<int32_t*>(smem + L.rows_off);
  int64_t* scan = reinterpret_cast<int64_t*>(smem + L.scan_off);
  const Schedule sched =
      ComputeSchedule(p, cta, cta == 0 && slice == 0, slice == 0, rows, scan, trace);
  const int64_t n = sched.t1 - sched.t0;
  trace.Mark(2);
  trace.Set(5, n > 0 ? n : 0);
  if (n <= 0) return;
  const int32_t b0 = sched.start.b;
  const int stages = p.stages;

  Cursor prod = sched.start;
  Cursor cons = sched.start;
  // Tiles issued, and the buffers of the next issue and of the consumer, kept as rotating
  // counters: a 64-bit remainder by a run-time divisor is a ~70-instruction routine.
  int64_t issued = 0;
  int prod_buf = 0, cons_buf = 0;
  auto issue_next = [&]() {
    if (issued < n) {
      IssueTile<T, kD, kWg>(p, L, smem, prod, prod_buf, prod.tile == 0 || issued == 0, slice);
      prod_buf = prod_buf + 1 == stages ? 0 : prod_buf + 1;
      ++issued;
      if (issued < n) Advance(p, prod, b0, rows);
    }
    CpAsyncCommit();
  };
  for (int s = 0; s < stages - 1; ++s) issue_next();

  typename std::conditional<kMma, MmaPath<T, kD, kWide, kWg>, SimtPath<kD>>::type path;
  path.Init(p, nsplit);
  bool seg_whole_start = false;
  int qslot = 0;  // Q buffer of the consumer's segment
  for (int64_t i = 0; i < n; ++i) {
    CpAsyncWaitDyn(stages - 2);
#if RAGGED_SM90A
    if constexpr (kWg) {
      // This thread's copies become visible to the tensor cores' (async proxy) reads.
      asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    }
#endif
    __syncthreads();
    if (i == 0) trace.Mark(3);
    if (i == n - 1) trace.Mark(7);
    issue_next();
    const bool seg_first = cons.tile == 0 || i == 0;
    const bool seg_last = cons.tile == cons.tiles - 1 || i == n - 1;
    if (seg_first) {
      path.Reset();
      seg_whole_start = cons.tile == 0;
      qslot = cons.seg % stages;
    }
    const int rem = cons.len - cons.tile * p.block_n;
    const int valid = rem < p.block_n ? rem : p.block_n;
    path.Tile(p, L, smem, cons_buf, qslot, valid, seg_first, nsplit);
    if (seg_last) {
      path.Finish(p, L, smem, cons_buf, nsplit);
      const bool whole = seg_whole_start && cons.tile == cons.tiles - 1;
      const int64_t pair = static_cast<int64_t>(cons.b) * p.num_kv_heads + cons.g;
      Epilogue<kD, kWide, kMma>(p, L, smem, cons_buf, cons.b, cons.g, slice, whole, pair + cta);
      trace.Set(6, cons.seg + 1);
    }
    cons_buf = cons_buf + 1 == stages ? 0 : cons_buf + 1;
    if (i + 1 < n) Advance(p, cons, b0, rows);
  }
  CpAsyncWait<0>();
}

}  // namespace ragged::internal::cuda

#endif  // RAGGED_KERNELS_CUDA_DECODE_KERNEL_CUH_
