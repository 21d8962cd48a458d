// RMSNorm over the last dimension (C), per row x:
//   r = 1 / sqrt(mean_j x_j^2 + eps)            (saved as rstd)
//   y_i = x_i * r * w_i
// Backward, with g_i = dy_i * w_i:
//   dr/dx_i = -r^3 x_i / C
//   dx_i    = r g_i - (r^3 / C) x_i sum_j g_j x_j
//   dw_i   += sum_rows dy_i x_i r
// The row sums accumulate in double: C is up to a few thousand and the cost is nothing next to the
// GEMMs around this op.
#include <cmath>
#include <cstdint>

#include "ops/cpu/column_slices.h"
#include "ops/cpu/cpu_ops.h"

namespace sambalm::ops::cpu {

template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* x, const T* weight, int64_t n, int64_t C, double eps) {
#pragma omp parallel for schedule(static) if (n * C > (1 << 15))
  for (int64_t i = 0; i < n; ++i) {
    const T* xi = x + i * C;
    T* oi = out + i * C;
    double ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int64_t j = 0; j < C; ++j) ss += double(xi[j]) * double(xi[j]);
    const T r = T(1.0 / std::sqrt(ss / double(C) + eps));
    for (int64_t j = 0; j < C; ++j) oi[j] = xi[j] * r * weight[j];
    if (rstd) rstd[i] = r;
  }
}

template <typename T>
void rmsnorm_backward(T* dx, T* dweight, const T* dout, const T* x, const T* weight, const T* rstd, int64_t n,
                      int64_t C) {
  if (dx) {
#pragma omp parallel for schedule(static) if (n * C > (1 << 15))
    for (int64_t i = 0; i < n; ++i) {
      const T* xi = x + i * C;
      const T* gi = dout + i * C;
      T* dxi = dx + i * C;
      const double r = double(rstd[i]);
      double dot = 0;  // sum_j dy_j w_j x_j
#pragma omp simd reduction(+ : dot)
      for (int64_t j = 0; j < C; ++j) dot += double(gi[j]) * double(weight[j]) * double(xi[j]);
      const T a = T(r);
      const T b = T(r * r * r * dot / double(C));
      for (int64_t j = 0; j < C; ++j) dxi[j] += a * gi[j] * weight[j] - b * xi[j];
    }
  }
  if (dweight) {
    for_column_slices(n, C, [&](int64_t c0, int64_t c1) {
      for (int64_t i = 0; i < n; ++i) {
        const T* xi = x + i * C;
        const T* gi = dout + i * C;
        const T r = rstd[i];
        for (int64_t j = c0; j < c1; ++j) dweight[j] += gi[j] * xi[j] * r;
      }
    });
  }
}

template void rmsnorm_forward<float>(float*, float*, const float*, const float*, int64_t, int64_t, double);
template void rmsnorm_forward<double>(double*, double*, const double*, const double*, int64_t, int64_t, double);
template void rmsnorm_backward<float>(float*, float*, const float*, const float*, const float*, const float*, int64_t,
                                      int64_t);
template void rmsnorm_backward<double>(double*, double*, const double*, const double*, const double*, const double*,
                                       int64_t, int64_t);

}  // namespace sambalm::ops::cpu
