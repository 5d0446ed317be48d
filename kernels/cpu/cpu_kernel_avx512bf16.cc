// The bf16 CPU kernel with hardware bf16 dot products (this file is built with the AVX-512 flags
// and -mavx512bf16; the backend calls it only where the CPU has AVX512_BF16). Other element types
// use cpu_kernel_avx512.cc.
#include "kernels/cpu/cpu_kernel.h"
#include "kernels/cpu/cpu_ops_avx512.h"
// Instantiated over the Ops above.
#include "kernels/cpu/cpu_kernel_impl.h"

namespace ragged::internal::cpu {

PieceFn Avx512Bf16PieceFn(Elem elem, int64_t head_dim) {
  if (elem != Elem::kBF16 || head_dim % Avx512Bf16Ops::kW != 0) return nullptr;
  return &Piece<Avx512Bf16Ops, Bf16Elem, true>;
}

}  // namespace ragged::internal::cpu
