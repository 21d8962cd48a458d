// One decoding step of the selective scan (L = 1) for a batch of sequences, state updated in place:
//   h[b, d, n] = exp(delta[b, d] A[d, n]) h[b, d, n] + delta[b, d] Bm[b, n] u[b, d]
//   y[b, d]    = sum_n Cm[b, n] h[b, d, n] + Dskip[d] u[b, d]
// The same kernel as the forward (scan_y with one step), so decoding a prompt token by token
// reproduces the forward's arithmetic.
#include <algorithm>
#include <cstdint>

#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/scan_internal.h"

namespace sambalm::ops::cpu {

template <typename T>
void selective_scan_step(T* y, T* h, const T* u, const T* delta, const T* A, const T* Bm, const T* Cm, int64_t ld_bc,
                         const T* Dskip, int64_t B, int64_t D, int64_t N, const int32_t* slots) {
  const scan::Kernels<T>& K = scan::kernels<T>();
  const int64_t nblk = (D + scan::kBlock - 1) / scan::kBlock;
  // A step is ~B*D*N exps: worth threads only for a large batch or a wide model.
#pragma omp parallel for collapse(2) schedule(static) if (B * D * N >= (1 << 15))
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t blk = 0; blk < nblk; ++blk) {
      const int64_t d0 = blk * scan::kBlock, nd = std::min(scan::kBlock, D - d0);
      K.scan_y(h + ((slots ? slots[b] : b) * D + d0) * N, y + b * D + d0, u + b * D + d0, delta + b * D + d0,
               A + d0 * N, Bm + b * ld_bc, Cm + b * ld_bc, ld_bc, Dskip + d0, 1, nd, D, N);
    }
  }
}

#define SAMBALM_INSTANTIATE(T)                                                                                      \
  template void selective_scan_step<T>(T*, T*, const T*, const T*, const T*, const T*, const T*, int64_t, const T*, \
                                       int64_t, int64_t, int64_t, const int32_t*);
SAMBALM_INSTANTIATE(float)
SAMBALM_INSTANTIATE(double)
#undef SAMBALM_INSTANTIATE

}  // namespace sambalm::ops::cpu
