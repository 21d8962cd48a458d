// SwiGLU MLP (lit_gpt LLaMAMLP): out = w3(silu(w1 xn) * (w2 xn)), biases per config.
#include <algorithm>

#include "model/layers.h"
#include "model/linear.h"
#include "ops/ops.h"
#include "ops/profiler.h"

namespace sambalm {

template <typename T>
void plan_mlp_acts(const Context& ctx, Arena& ar, MlpActs<T>& a, int64_t hidden, int64_t B, int64_t L) {
  a.gate = ar.take<T>(B * L * hidden);
  a.up = ar.take<T>(B * L * hidden);
  a.hidden = ar.take<T>(B * L * hidden);
}

template <typename T>
void plan_mlp_grads(const Context& ctx, Arena& ar, MlpGrads<T>& g, int64_t hidden, int64_t B, int64_t L) {
  g.dhidden = ar.take<T>(B * L * hidden);
  g.dgate = ar.take<T>(B * L * hidden);
  g.dup = ar.take<T>(B * L * hidden);
}

template <typename T>
void mlp_forward(const Context& ctx, T* out, const MlpActs<T>& a, const T* xn, const T* params, const MlpParams& p,
                 int64_t d, int64_t hidden, int64_t B, int64_t L) {
  const int64_t BL = B * L;
  linear_forward(ctx, a.gate, xn, params, p.w1, p.b1.at(params), BL, d, hidden);
  linear_forward(ctx, a.up, xn, params, p.w2, p.b2.at(params), BL, d, hidden);
  profile_mark("fwd mlp gemms");
  ops::swiglu_forward(ctx, a.hidden, a.gate, a.up, BL * hidden);
  profile_mark("fwd mlp swiglu");
  linear_forward(ctx, out, a.hidden, params, p.w3, p.b3.at(params), BL, hidden, d);
  profile_mark("fwd mlp gemms");
}

template <typename T>
void mlp_backward(const Context& ctx, T* dxn, grad_t<T>* grads, const T* dout, const MlpActs<T>& a, const T* xn,
                  const T* params, const MlpParams& p, int64_t d, int64_t hidden, int64_t B, int64_t L,
                  const MlpGrads<T>& g) {
  const int64_t BL = B * L;
  ops::fill_zero(ctx, g.dhidden, BL * hidden);
  ops::fill_zero(ctx, g.dgate, BL * hidden);
  ops::fill_zero(ctx, g.dup, BL * hidden);
  profile_mark("bwd mlp zero grads");
  ops::matmul_backward(ctx, g.dhidden, p.w3.at(grads), p.b3.at(grads), dout, a.hidden, p.w3.at(params), BL, hidden, d);
  profile_mark("bwd mlp gemms");
  ops::swiglu_backward(ctx, g.dgate, g.dup, g.dhidden, a.gate, a.up, BL * hidden);
  profile_mark("bwd mlp swiglu");
  ops::matmul_backward(ctx, dxn, p.w1.at(grads), p.b1.at(grads), g.dgate, xn, p.w1.at(params), BL, d, hidden);
  ops::matmul_backward(ctx, dxn, p.w2.at(grads), p.b2.at(grads), g.dup, xn, p.w2.at(params), BL, d, hidden);
  profile_mark("bwd mlp gemms");
}

#define INSTANTIATE(T)                                                                                               \
  template void plan_mlp_acts<T>(const Context&, Arena&, MlpActs<T>&, int64_t, int64_t, int64_t);                    \
  template void plan_mlp_grads<T>(const Context&, Arena&, MlpGrads<T>&, int64_t, int64_t, int64_t);                  \
  template void mlp_forward<T>(const Context&, T*, const MlpActs<T>&, const T*, const T*, const MlpParams&, int64_t, \
                               int64_t, int64_t, int64_t);                                                           \
  template void mlp_backward<T>(const Context&, T*, grad_t<T>*, const T*, const MlpActs<T>&, const T*, const T*,     \
                                const MlpParams&, int64_t, int64_t, int64_t, int64_t, const MlpGrads<T>&);
INSTANTIATE(float)
INSTANTIATE(double)
#if SAMBALM_HAVE_CUDA
INSTANTIATE(bf16)
#endif

}  // namespace sambalm
