// The selective scan, written as plainly as possible: the test oracle for the parallel forward, the
// backward and the decode step. One thread, std::exp, the recurrence exactly as in the paper:
//   h_t[d, n] = exp(delta_t[d] A[d, n]) h_{t-1}[d, n] + delta_t[d] Bm_t[n] u_t[d]      (h_{-1} = h0 or 0)
//   y_t[d]    = sum_n Cm_t[n] h_t[d, n] + Dskip[d] u_t[d]
#include <cmath>
#include <cstdint>

#include "ops/cpu/cpu_ops.h"

namespace sambalm::ops::cpu {

template <typename T>
void selective_scan_ref_forward(T* y, T* h_last, const T* u, const T* delta, const T* A, const T* Bm, const T* Cm,
                                int64_t ld_bc, const T* Dskip, const T* h0, int64_t B, int64_t L, int64_t D,
                                int64_t N) {
  constexpr int64_t kGroup = 64;  // states held at once (on the stack: ops do not allocate)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t d = 0; d < D; ++d) {
      for (int64_t n0 = 0; n0 < N; n0 += kGroup) {
        const int64_t nn = N - n0 < kGroup ? N - n0 : kGroup;
        T h[kGroup];
        for (int64_t k = 0; k < nn; ++k) h[k] = h0 ? h0[(b * D + d) * N + n0 + k] : T(0);
        for (int64_t t = 0; t < L; ++t) {
          const int64_t i = (b * L + t) * D + d;
          const T* Bt = Bm + (b * L + t) * ld_bc;
          const T* Ct = Cm + (b * L + t) * ld_bc;
          if (n0 == 0) y[i] = Dskip[d] * u[i];
          for (int64_t k = 0; k < nn; ++k) {
            const int64_t n = n0 + k;
            h[k] = std::exp(delta[i] * A[d * N + n]) * h[k] + delta[i] * Bt[n] * u[i];
            y[i] += Ct[n] * h[k];
          }
        }
        if (h_last)
          for (int64_t k = 0; k < nn; ++k) h_last[(b * D + d) * N + n0 + k] = h[k];
      }
    }
  }
}

#define SAMBALM_INSTANTIATE(T)                                                                                   \
  template void selective_scan_ref_forward<T>(T*, T*, const T*, const T*, const T*, const T*, const T*, int64_t, \
                                              const T*, const T*, int64_t, int64_t, int64_t, int64_t);
SAMBALM_INSTANTIATE(float)
SAMBALM_INSTANTIATE(double)
#undef SAMBALM_INSTANTIATE

}  // namespace sambalm::ops::cpu
