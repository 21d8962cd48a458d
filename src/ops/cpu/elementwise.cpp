// Elementwise ops: the residual add and the SwiGLU gate.
//   silu(a)      = a * sigmoid(a)
//   out          = silu(a) * b
//   d silu / da  = sigmoid(a) * (1 + a * (1 - sigmoid(a)))
//   da          += dout * b * d silu / da
//   db          += dout * silu(a)
#include <cmath>
#include <cstdint>

#include "ops/cpu/cpu_ops.h"

namespace sambalm::ops::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 16;  // below this, threads cost more than they save
}

template <typename T>
void add_inplace(T* y, const T* x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

template <typename T>
void residual_add(T* out, const T* x, const T* f, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] + f[i];
}

template <typename To, typename From>
void convert(To* out, const From* in, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<To>(in[i]);
}

template <typename T>
void swiglu_forward(T* out, const T* a, const T* b, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T s = T(1) / (T(1) + std::exp(-a[i]));
    out[i] = a[i] * s * b[i];
  }
}

template <typename T>
void swiglu_backward(T* da, T* db, const T* dout, const T* a, const T* b, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T s = T(1) / (T(1) + std::exp(-a[i]));
    if (da) da[i] += dout[i] * b[i] * s * (T(1) + a[i] * (T(1) - s));
    if (db) db[i] += dout[i] * a[i] * s;
  }
}

template void add_inplace<float>(float*, const float*, int64_t);
template void add_inplace<double>(double*, const double*, int64_t);
template void residual_add<float>(float*, const float*, const float*, int64_t);
template void residual_add<double>(double*, const double*, const double*, int64_t);
template void convert<float, float>(float*, const float*, int64_t);
template void convert<double, double>(double*, const double*, int64_t);
template void convert<float, double>(float*, const double*, int64_t);
template void convert<double, float>(double*, const float*, int64_t);
template void swiglu_forward<float>(float*, const float*, const float*, int64_t);
template void swiglu_forward<double>(double*, const double*, const double*, int64_t);
template void swiglu_backward<float>(float*, float*, const float*, const float*, const float*, int64_t);
template void swiglu_backward<double>(double*, double*, const double*, const double*, const double*, int64_t);

}  // namespace sambalm::ops::cpu
