// The CPU kernel compiled for AVX-512 F/BW/VL/DQ (this file is built with -mavx512f -mavx512bw
// -mavx512vl -mavx512dq -mfma -mf16c; the backend calls it only where the CPU has them).
#include "kernels/cpu/cpu_kernel.h"
#include "kernels/cpu/cpu_ops_avx512.h"
// Instantiated over the Ops above.
#include "kernels/cpu/cpu_kernel_impl.h"

namespace ragged::internal::cpu {

PieceFn Avx512PieceFn(Elem elem, int64_t head_dim) {
  if (head_dim % Avx512Ops::kW != 0) return nullptr;
  return SelectPiece<Avx512Ops, false>(elem);
}

}  // namespace ragged::internal::cpu
