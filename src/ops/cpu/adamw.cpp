// AdamW (torch.optim.AdamW, single-tensor path) on a contiguous range, and the pieces of global
// gradient-norm clipping. One step t = 1, 2, ... for every parameter p with gradient g:
//   p  <- p * (1 - lr * wd)                       decoupled weight decay, applied first
//   m  <- b1 * m + (1 - b1) * g
//   v  <- b2 * v + (1 - b2) * g^2
//   p  <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// (eps after the bias correction of sqrt(v), as torch computes the denominator.)
// sum_squares: sum of g^2 accumulated in double;  scale: x <- s * x.
#include <cmath>
#include <cstdint>

#include "ops/cpu/cpu_ops.h"

namespace sambalm::ops::cpu {

template <typename T>
void adamw_update(T* params, const T* grads, T* m, T* v, int64_t n, double lr, double beta1, double beta2, double eps,
                  double weight_decay, int64_t t) {
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(t));
  const T step_size = static_cast<T>(lr / bc1);
  const T bc2_sqrt = static_cast<T>(std::sqrt(bc2));
  const T e = static_cast<T>(eps);
  const T b1 = static_cast<T>(beta1), b2 = static_cast<T>(beta2);
  const T c1 = static_cast<T>(1.0 - beta1), c2 = static_cast<T>(1.0 - beta2);
  const T decay = static_cast<T>(1.0 - lr * weight_decay);
#pragma omp parallel for schedule(static) if (n > (1 << 14))
  for (int64_t i = 0; i < n; ++i) {
    const T g = grads[i];
    T p = params[i] * decay;
    m[i] = b1 * m[i] + c1 * g;
    v[i] = b2 * v[i] + c2 * g * g;
    const T denom = std::sqrt(v[i]) / bc2_sqrt + e;
    p -= step_size * m[i] / denom;
    params[i] = p;
  }
}

template <typename T>
void sum_squares(double* out, const T* x, int64_t n) {
  double s = 0.0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (n > (1 << 14))
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  *out = s;
}

template <typename T>
void scale_inplace(T* x, int64_t n, double s) {
  const T c = static_cast<T>(s);
#pragma omp parallel for schedule(static) if (n > (1 << 14))
  for (int64_t i = 0; i < n; ++i) x[i] *= c;
}

template void adamw_update<float>(float*, const float*, float*, float*, int64_t, double, double, double, double, double,
                                  int64_t);
template void sum_squares<float>(double*, const float*, int64_t);
template void sum_squares<double>(double*, const double*, int64_t);
template void scale_inplace<float>(float*, int64_t, double);
template void scale_inplace<double>(double*, int64_t, double);

}  // namespace sambalm::ops::cpu
