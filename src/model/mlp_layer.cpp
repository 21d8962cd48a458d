// SwiGLU MLP (lit_gpt LLaMAMLP): out = w3(silu(w1 xn) * (w2 xn)), biases per config.
#include "model/layers.h"
#include "ops/ops.h"

namespace sambalm {

template <typename T>
void mlp_alloc(MlpActs<T>& a, int64_t hidden, int64_t B, int64_t Tn) {
  ensure(a.a, B * Tn * hidden);
  ensure(a.b, B * Tn * hidden);
  ensure(a.h, B * Tn * hidden);
}

template <typename T>
void mlp_forward(T* out, MlpActs<T>& a, const T* xn, const T* params, const MlpParams& p, int64_t d, int64_t hidden,
                 int64_t B, int64_t Tn) {
  const int64_t BT = B * Tn;
  mlp_alloc(a, hidden, B, Tn);
  ops::matmul_forward(a.a.data(), xn, p.w1.at(params), p.b1.at(params), BT, d, hidden);
  ops::matmul_forward(a.b.data(), xn, p.w2.at(params), p.b2.at(params), BT, d, hidden);
  ops::swiglu_forward(a.h.data(), a.a.data(), a.b.data(), BT * hidden);
  ops::matmul_forward(out, a.h.data(), p.w3.at(params), p.b3.at(params), BT, hidden, d);
}

template <typename T>
void mlp_backward(T* dxn, T* grads, const T* dout, const MlpActs<T>& a, const T* xn, const T* params,
                  const MlpParams& p, int64_t d, int64_t hidden, int64_t B, int64_t Tn, LayerScratch<T>& s) {
  const int64_t BT = B * Tn;
  T* dh = zeroed(s.d1, BT * hidden);
  T* da = zeroed(s.d2, BT * hidden);
  T* db = zeroed(s.d3, BT * hidden);
  ops::matmul_backward(dh, p.w3.at(grads), p.b3.at(grads), dout, a.h.data(), p.w3.at(params), BT, hidden, d);
  ops::swiglu_backward(da, db, dh, a.a.data(), a.b.data(), BT * hidden);
  ops::matmul_backward(dxn, p.w1.at(grads), p.b1.at(grads), da, xn, p.w1.at(params), BT, d, hidden);
  ops::matmul_backward(dxn, p.w2.at(grads), p.b2.at(grads), db, xn, p.w2.at(params), BT, d, hidden);
}

#define INSTANTIATE(T)                                                                                               \
  template void mlp_alloc<T>(MlpActs<T>&, int64_t, int64_t, int64_t);                                                \
  template void mlp_forward<T>(T*, MlpActs<T>&, const T*, const T*, const MlpParams&, int64_t, int64_t, int64_t,     \
                               int64_t);                                                                             \
  template void mlp_backward<T>(T*, T*, const T*, const MlpActs<T>&, const T*, const T*, const MlpParams&, int64_t, \
                                int64_t, int64_t, int64_t, LayerScratch<T>&);
INSTANTIATE(float)
INSTANTIATE(double)

}  // namespace sambalm
