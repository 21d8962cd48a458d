// Causal self-attention with an optional sliding window (lit_gpt CausalSelfAttention semantics):
//   qkv = xn @ Wqkv^T (+b)         grouped layout: per kv group, q_per_kv queries, one key, one value
//   q, k = RoPE(q), RoPE(k)         GPT-NeoX halves, first rope_dims of each head
//   att  = softmax(q k^T / sqrt(hs), causal, t - window < s <= t) v
//   out  = att @ Wproj^T (+b)
#include <cmath>

#include "model/layers.h"
#include "ops/ops.h"

namespace sambalm {

template <typename T>
void attention_alloc(AttentionActs<T>& a, const AttentionDims& m, int64_t B, int64_t Tn) {
  const int64_t BT = B * Tn;
  ensure(a.qkv, BT * m.qkv());
  ensure(a.q, BT * m.H * m.hs);
  ensure(a.k, BT * m.G * m.hs);
  ensure(a.v, BT * m.G * m.hs);
  ensure(a.att, BT * m.H * m.hs);
  ensure(a.lse, BT * m.H);
}

template <typename T>
void attention_forward_layer(T* out, AttentionActs<T>& a, const T* xn, const T* params, const AttentionParams& p,
                             const AttentionDims& m, const T* cos, const T* sin, int64_t B, int64_t Tn) {
  const int64_t BT = B * Tn;
  attention_alloc(a, m, B, Tn);
  ops::matmul_forward(a.qkv.data(), xn, p.qkv_w.at(params), p.qkv_b.at(params), BT, m.d, m.qkv());
  ops::qkv_split_rope_forward(a.q.data(), a.k.data(), a.v.data(), a.qkv.data(), cos, sin, B, Tn, m.H, m.G, m.hs,
                              m.rope_dims, int64_t(0));
  ops::attention_forward(a.att.data(), a.lse.data(), a.q.data(), a.k.data(), a.v.data(), B, Tn, m.H, m.G, m.hs,
                         m.window, 1.0 / std::sqrt(double(m.hs)));
  ops::matmul_forward(out, a.att.data(), p.proj_w.at(params), p.proj_b.at(params), BT, m.H * m.hs, m.d);
}

template <typename T>
void attention_backward_layer(T* dxn, T* grads, const T* dout, const AttentionActs<T>& a, const T* xn,
                              const T* params, const AttentionParams& p, const AttentionDims& m, const T* cos,
                              const T* sin, int64_t B, int64_t Tn, LayerScratch<T>& s) {
  const int64_t BT = B * Tn;
  T* datt = zeroed(s.d1, BT * m.H * m.hs);
  T* dq = zeroed(s.d2, BT * m.H * m.hs);
  T* dk = zeroed(s.d3, BT * m.G * m.hs);
  T* dv = zeroed(s.d4, BT * m.G * m.hs);
  T* dqkv = zeroed(s.d5, BT * m.qkv());
  ops::matmul_backward(datt, p.proj_w.at(grads), p.proj_b.at(grads), dout, a.att.data(), p.proj_w.at(params), BT,
                       m.H * m.hs, m.d);
  ops::attention_backward(dq, dk, dv, datt, a.att.data(), a.lse.data(), a.q.data(), a.k.data(), a.v.data(), B, Tn,
                          m.H, m.G, m.hs, m.window, 1.0 / std::sqrt(double(m.hs)));
  ops::qkv_split_rope_backward(dqkv, dq, dk, dv, cos, sin, B, Tn, m.H, m.G, m.hs, m.rope_dims, int64_t(0));
  ops::matmul_backward(dxn, p.qkv_w.at(grads), p.qkv_b.at(grads), dqkv, xn, p.qkv_w.at(params), BT, m.d, m.qkv());
}

#define INSTANTIATE(T)                                                                                             \
  template void attention_alloc<T>(AttentionActs<T>&, const AttentionDims&, int64_t, int64_t);                    \
  template void attention_forward_layer<T>(T*, AttentionActs<T>&, const T*, const T*, const AttentionParams&,     \
                                           const AttentionDims&, const T*, const T*, int64_t, int64_t);          \
  template void attention_backward_layer<T>(T*, T*, const T*, const AttentionActs<T>&, const T*, const T*,        \
                                            const AttentionParams&, const AttentionDims&, const T*, const T*,     \
                                            int64_t, int64_t, LayerScratch<T>&);
INSTANTIATE(float)
INSTANTIATE(double)

}  // namespace sambalm
