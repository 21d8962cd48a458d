// Element types by role. An op's arguments may differ in type where precision differs: the compute
// type T (float or double on the CPU; bf16 on the GPU) is what weights, activations and GEMM
// operands use, and stat_t<T> is the type of what stays in fp32 whatever T is — norm statistics,
// softmax log-sum-exps, the selective scan's state and chunk states, A = -exp(A_log) and the skip D,
// the residual stream and the gradients (grad_t).
// On the CPU both are T; a backend whose compute type is narrower specialises `precision`.
#pragma once

namespace sambalm {

template <typename T>
struct precision {
  using stat = T;
};
template <typename T>
using stat_t = typename precision<T>::stat;
// The type of the parameter gradients (and the residual stream's gradient) when computing in T: they
// accumulate over many additions (every position, every micro-batch), so they stay in the statistics
// type — fp32 beside bf16 — as the optimizer that reads them does.
template <typename T>
using grad_t = stat_t<T>;

}  // namespace sambalm
