// The per-instruction-set compute kernels of the CPU backend, and the one piece of work they do.
//
// A piece is one batch row's query heads against a contiguous run of that row's valid positions,
// for all its KV heads (or a run of them). A kernel reads each key and value row of the piece once
// for all the query heads of its GQA group and leaves the unnormalized softmax state (running max
// m, sum l of exp(x - m), and acc = sum exp(x - m) * v) in f32; the backend merges pieces and
// applies sinks.
//
// Each instruction set lives in its own translation unit compiled with its own flags
// (cpu_kernel_avx512.cc is built with -mavx512f ...), so this header is deliberately free of
// inline code and of other project headers: nothing compiled for a wide instruction set may be
// shared with (and picked by the linker for) code that runs on a narrower machine. The backend
// calls a kernel only after checking the CPU at run time.
//
// Ownership: PieceArgs borrows every pointer. Thread-safety: a kernel writes only its outputs and
// its scratch, so concurrent calls on distinct outputs and scratch are safe.
#ifndef RAGGED_KERNELS_CPU_CPU_KERNEL_H_
#define RAGGED_KERNELS_CPU_CPU_KERNEL_H_

#include <cstdint>

namespace ragged::internal::cpu {

// Instruction sets, narrowest first. kScalar is portable C++ and runs anywhere.
enum class Isa : uint8_t {
  kScalar = 0,
  kAvx2 = 1,        // AVX2 + FMA + F16C
  kAvx512 = 2,      // AVX-512 F/BW/VL/DQ
  kAvx512Bf16 = 3,  // kAvx512 + AVX512_BF16 (bf16 dot products in hardware)
};

// Element type of query, key and value.
enum class Elem : uint8_t { kF32 = 0, kF16 = 1, kBF16 = 2 };

struct PieceArgs {
  // Query head h = g * group + j (KV head g) is row h of query and of the outputs.
  const void* query = nullptr;  // [num_kv_heads * group, head_dim], row h at h * q_stride_h
  int64_t q_stride_h = 0;
  // Position t of KV head g at t * k_stride + g * k_stride_h elements (t = 0: the piece's first).
  const void* key = nullptr;  // [num_tokens, num_kv_heads, head_dim]
  int64_t k_stride = 0, k_stride_h = 0;
  const void* value = nullptr;  // [num_tokens, num_kv_heads, head_dim]
  int64_t v_stride = 0, v_stride_h = 0;
  int64_t num_tokens = 0;    // >= 1
  int64_t num_kv_heads = 0;  // >= 1
  int64_t group = 0;         // query heads per KV head, >= 1
  int64_t head_dim = 0;      // a multiple of the kernel's vector width
  float scale = 1.0f;        // softmax scale
  float soft_cap = 0.0f;     // 0: none
  // Outputs, overwritten: for each query head h, m[h] = max logit, l[h] = sum exp(x - m[h]) and
  // acc[h * head_dim + d] = sum exp(x - m[h]) * value[t, g, d].
  float* m = nullptr;        // [num_kv_heads * group]
  float* l = nullptr;        // [num_kv_heads * group]
  float* acc = nullptr;      // [num_kv_heads * group, head_dim]
  float* scratch = nullptr;  // ScratchFloats(group, num_kv_heads, head_dim) floats, 64-byte aligned
};

using PieceFn = void (*)(const PieceArgs& args);

// Floats of scratch one call needs (the same bound for every instruction set).
int64_t ScratchFloats(int64_t group, int64_t num_kv_heads, int64_t head_dim);

// The kernel of an instruction set for `elem`, or nullptr when it cannot run this head_dim (which
// must be a multiple of its vector width: 16 for AVX-512, 8 for AVX2, anything for scalar).
// Calling a non-scalar kernel on a CPU without its instruction set is undefined.
PieceFn ScalarPieceFn(Elem elem, int64_t head_dim);
PieceFn Avx2PieceFn(Elem elem, int64_t head_dim);
PieceFn Avx512PieceFn(Elem elem, int64_t head_dim);
PieceFn Avx512Bf16PieceFn(Elem elem, int64_t head_dim);

}  // namespace ragged::internal::cpu

#endif  // RAGGED_KERNELS_CPU_CPU_KERNEL_H_
