// Optimizer ops: AdamW on a contiguous range of the parameter buffer and the pieces of global-norm
// gradient clipping. See ops.h for the conventions; the math is in src/ops/cpu/adamw.cpp.
#pragma once

#include <cstdint>

#include "ops/dispatch.h"

namespace sambalm::ops {

// One AdamW step t (1, 2, ...) of n parameters (torch.optim.AdamW): decoupled decay p *= 1 - lr * wd,
// moments m, v updated from grads, p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
template <typename T>
inline void adamw_update(const Context& ctx, T* params, const T* grads, T* m, T* v, int64_t n, double lr, double beta1,
                         double beta2, double eps, double weight_decay, int64_t t) {
  SAMBALM_OP_DISPATCH(ctx, adamw_update, params, grads, m, v, n, lr, beta1, beta2, eps, weight_decay, t);
}
// *out = sum of x^2 over n values, accumulated in double (out lives where the context's memory does).
template <typename T>
inline void sum_squares(const Context& ctx, double* out, const T* x, int64_t n) {
  SAMBALM_OP_DISPATCH(ctx, sum_squares, out, x, n);
}
// out[i] = To(in[i]) for n values, rounded to nearest even: the GPU's bf16 working copy of the fp32
// master parameters after each update.
template <typename To, typename From>
inline void convert(const Context& ctx, To* out, const From* in, int64_t n) {
  SAMBALM_OP_DISPATCH(ctx, convert, out, in, n);
}
// x *= s.
template <typename T>
inline void scale_inplace(const Context& ctx, T* x, int64_t n, double s) {
  SAMBALM_OP_DISPATCH(ctx, scale_inplace, x, n, s);
}

}  // namespace sambalm::ops
