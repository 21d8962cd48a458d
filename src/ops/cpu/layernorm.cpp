// LayerNorm over the last dimension (C), as torch.nn.LayerNorm (biased variance), per row x:
//   mu = mean_j x_j,  r = 1 / sqrt(mean_j (x_j - mu)^2 + eps)     (saved as mean, rstd)
//   xhat_i = (x_i - mu) r,  y_i = xhat_i w_i + b_i
// Backward, with g_i = dy_i w_i:
//   dx_i  = r (g_i - mean_j g_j - xhat_i mean_j g_j xhat_j)
//   dw_i += sum_rows dy_i xhat_i,  db_i += sum_rows dy_i
// Statistics accumulate in double; the weight/bias reductions split the columns across threads.
#include <cmath>
#include <cstdint>

#include "ops/cpu/column_slices.h"
#include "ops/cpu/cpu_ops.h"

namespace sambalm::ops::cpu {

template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* x, const T* weight, const T* bias, int64_t n, int64_t C,
                       double eps) {
#pragma omp parallel for schedule(static) if (n * C > (1 << 15))
  for (int64_t i = 0; i < n; ++i) {
    const T* xi = x + i * C;
    T* oi = out + i * C;
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < C; ++j) sum += double(xi[j]);
    const double mu = sum / double(C);
    double var = 0;
#pragma omp simd reduction(+ : var)
    for (int64_t j = 0; j < C; ++j) var += (double(xi[j]) - mu) * (double(xi[j]) - mu);
    const double r = 1.0 / std::sqrt(var / double(C) + eps);
    const T m = T(mu), rr = T(r);
    if (bias) {
      for (int64_t j = 0; j < C; ++j) oi[j] = (xi[j] - m) * rr * weight[j] + bias[j];
    } else {
      for (int64_t j = 0; j < C; ++j) oi[j] = (xi[j] - m) * rr * weight[j];
    }
    if (mean) mean[i] = m;
    if (rstd) rstd[i] = rr;
  }
}

template <typename T>
void layernorm_backward(T* dx, T* dweight, T* dbias, const T* dout, const T* x, const T* weight, const T* mean,
                        const T* rstd, int64_t n, int64_t C) {
  if (dx) {
#pragma omp parallel for schedule(static) if (n * C > (1 << 15))
    for (int64_t i = 0; i < n; ++i) {
      const T* xi = x + i * C;
      const T* gi = dout + i * C;
      T* dxi = dx + i * C;
      const T m = mean[i], r = rstd[i];
      double sg = 0, sgx = 0;  // sum_j g_j, sum_j g_j xhat_j
#pragma omp simd reduction(+ : sg, sgx)
      for (int64_t j = 0; j < C; ++j) {
        const double g = double(gi[j]) * double(weight[j]);
        sg += g;
        sgx += g * double((xi[j] - m) * r);
      }
      const T mg = T(sg / double(C)), mgx = T(sgx / double(C));
      for (int64_t j = 0; j < C; ++j) dxi[j] += r * (gi[j] * weight[j] - mg - (xi[j] - m) * r * mgx);
    }
  }
  if (dweight || dbias) {
    for_column_slices(n, C, [&](int64_t c0, int64_t c1) {
      for (int64_t i = 0; i < n; ++i) {
        const T* xi = x + i * C;
        const T* gi = dout + i * C;
        const T m = mean[i], r = rstd[i];
        if (dweight)
          for (int64_t j = c0; j < c1; ++j) dweight[j] += gi[j] * (xi[j] - m) * r;
        if (dbias)
          for (int64_t j = c0; j < c1; ++j) dbias[j] += gi[j];
      }
    });
  }
}

template void layernorm_forward<float>(float*, float*, float*, const float*, const float*, const float*, int64_t,
                                       int64_t, double);
template void layernorm_forward<double>(double*, double*, double*, const double*, const double*, const double*, int64_t,
                                        int64_t, double);
template void layernorm_backward<float>(float*, float*, float*, const float*, const float*, const float*, const float*,
                                        const float*, int64_t, int64_t);
template void layernorm_backward<double>(double*, double*, double*, const double*, const double*, const double*,
                                         const double*, const double*, int64_t, int64_t);

}  // namespace sambalm::ops::cpu
