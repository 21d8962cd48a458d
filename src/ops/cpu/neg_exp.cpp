// Mamba's state matrix from its log parameter:  A = -exp(A_log);  backward  dA_log += dA * A
// (d/dx of -exp(x) is -exp(x) = A itself).
#include <cmath>
#include <cstdint>

#include "ops/cpu/cpu_ops.h"

namespace sambalm::ops::cpu {

template <typename T>
void neg_exp_forward(T* A, const T* A_log, int64_t n) {
  for (int64_t i = 0; i < n; ++i) A[i] = -std::exp(A_log[i]);
}

template <typename T>
void neg_exp_backward(T* dA_log, const T* dA, const T* A, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dA_log[i] += dA[i] * A[i];
}

template void neg_exp_forward<float>(float*, const float*, int64_t);
template void neg_exp_forward<double>(double*, const double*, int64_t);
template void neg_exp_backward<float>(float*, const float*, const float*, int64_t);
template void neg_exp_backward<double>(double*, const double*, const double*, int64_t);

}  // namespace sambalm::ops::cpu
