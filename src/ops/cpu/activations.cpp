// Elementwise activations of the Mamba mixer: SiLU (after the conv), softplus (dt), and the SiLU gate
// (y * silu(z)) before out_proj. Forward overwrites, backward adds (ops.h conventions).
#include <cmath>
#include <cstdint>

#include "ops/cpu/cpu_ops.h"

namespace sambalm::ops::cpu {

namespace {

// Elementwise loops are memory-bound; threads pay off only on large arrays.
constexpr int64_t kParallelMin = 1 << 15;

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// torch.nn.functional.softplus(x, beta=1, threshold=20): the linear branch above the threshold.
constexpr double kSoftplusThreshold = 20.0;

}  // namespace

// silu(x) = x * sigmoid(x)
template <typename T>
void silu_forward(T* out, const T* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * sigmoid(x[i]);
}

// d silu / dx = s + x * s * (1 - s) = s * (1 + x * (1 - s)),  s = sigmoid(x)
template <typename T>
void silu_backward(T* dx, const T* dout, const T* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    T s = sigmoid(x[i]);
    dx[i] += dout[i] * s * (T(1) + x[i] * (T(1) - s));
  }
}

// softplus(x) = log(1 + exp(x)) for x <= 20, x above (as torch, where the two agree to float precision).
template <typename T>
void softplus_forward(T* out, const T* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] > T(kSoftplusThreshold) ? x[i] : std::log1p(std::exp(x[i]));
}

// d softplus / dx = exp(x) / (1 + exp(x)) = sigmoid(x); 1 on the linear branch (torch does the same).
template <typename T>
void softplus_backward(T* dx, const T* dout, const T* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) dx[i] += x[i] > T(kSoftplusThreshold) ? dout[i] : dout[i] * sigmoid(x[i]);
}

// out[r, d] = y[r, d] * silu(z[r, d]);  z rows have stride ld_z (z is a view into in_proj's output).
template <typename T>
void silu_gate_forward(T* out, const T* y, const T* z, int64_t ld_z, int64_t rows, int64_t D) {
#pragma omp parallel for schedule(static) if (rows * D >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* zr = z + r * ld_z;
    for (int64_t d = 0; d < D; ++d) out[r * D + d] = y[r * D + d] * zr[d] * sigmoid(zr[d]);
  }
}

// dy += dout * silu(z);  dz += dout * y * silu'(z).  Either gradient may be nullptr.
template <typename T>
void silu_gate_backward(T* dy, T* dz, int64_t ld_dz, const T* dout, const T* y, const T* z, int64_t ld_z, int64_t rows,
                        int64_t D) {
#pragma omp parallel for schedule(static) if (rows * D >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* zr = z + r * ld_z;
    for (int64_t d = 0; d < D; ++d) {
      T s = sigmoid(zr[d]);
      T g = dout[r * D + d];
      if (dy) dy[r * D + d] += g * zr[d] * s;
      if (dz) dz[r * ld_dz + d] += g * y[r * D + d] * s * (T(1) + zr[d] * (T(1) - s));
    }
  }
}

#define SAMBALM_INSTANTIATE(T)                                                           \
  template void silu_forward<T>(T*, const T*, int64_t);                                  \
  template void silu_backward<T>(T*, const T*, const T*, int64_t);                       \
  template void softplus_forward<T>(T*, const T*, int64_t);                              \
  template void softplus_backward<T>(T*, const T*, const T*, int64_t);                   \
  template void silu_gate_forward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t); \
  template void silu_gate_backward<T>(T*, T*, int64_t, const T*, const T*, const T*, int64_t, int64_t, int64_t);
SAMBALM_INSTANTIATE(float)
SAMBALM_INSTANTIATE(double)
#undef SAMBALM_INSTANTIATE

}  // namespace sambalm::ops::cpu
