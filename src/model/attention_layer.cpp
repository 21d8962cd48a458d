// Causal self-attention with an optional sliding window (lit_gpt CausalSelfAttention semantics):
//   qkv = xn @ Wqkv^T (+b)         grouped layout: per kv group, q_per_kv queries, one key, one value
//   q, k = RoPE(q), RoPE(k)         GPT-NeoX halves, first rope_dims of each head, absolute positions
//   att  = softmax(q k^T / sqrt(hs), causal, t - window < s <= t) v
//   out  = att @ Wproj^T (+b)
// With a state, the keys s < the chunk's first position come from the sequence's key/value cache
// (a ring of `cap` entries), and the chunk's own keys join the cache afterwards.
#include <cmath>

#include "model/layers.h"
#include "model/linear.h"
#include "ops/ops.h"
#include "ops/profiler.h"

namespace sambalm {

template <typename T>
void plan_attention_acts(const Context& ctx, Arena& ar, AttentionActs<T>& a, const AttentionDims& m, int64_t B,
                         int64_t L, bool with_lse) {
  const int64_t BL = B * L;
  a.qkv = ar.take<T>(BL * m.qkv());
  a.q = ar.take<T>(BL * m.H * m.hs);
  a.k = ar.take<T>(BL * m.G * m.hs);
  a.v = ar.take<T>(BL * m.G * m.hs);
  a.att = ar.take<T>(BL * m.H * m.hs);
  a.lse = with_lse ? ar.take<stat_t<T>>(BL * m.H) : nullptr;
}

template <typename T>
void plan_attention_grads(const Context& ctx, Arena& ar, AttentionGrads<T>& g, const AttentionDims& m, int64_t B,
                          int64_t L) {
  const int64_t BL = B * L;
  g.datt = ar.take<T>(BL * m.H * m.hs);
  g.dq = ar.take<T>(BL * m.H * m.hs);
  g.dk = ar.take<T>(BL * m.G * m.hs);
  g.dv = ar.take<T>(BL * m.G * m.hs);
  g.dqkv = ar.take<T>(BL * m.qkv());
  const int64_t scratch = ops::attention_backward_scratch_size<T>(ctx, B, L, m.H, m.G, m.hs);
  g.scratch = scratch > 0 ? ar.take<stat_t<T>>(scratch) : nullptr;
}

template <typename T>
void attention_forward_layer(const Context& ctx, T* out, const AttentionActs<T>& a, const T* xn, const T* params,
                             const AttentionParams& p, const AttentionDims& m, const T* cos, const T* sin,
                             int64_t cs_batch_rows, int64_t B, int64_t L, const LayerState<T>* st) {
  const int64_t BL = B * L;
  const double scale = 1.0 / std::sqrt(double(m.hs));
  linear_forward(ctx, a.qkv, xn, params, p.qkv_w, p.qkv_b.at(params), BL, m.d, m.qkv());
  profile_mark("fwd attn qkv");
  ops::qkv_split_rope_forward(ctx, a.q, a.k, a.v, a.qkv, cos, sin, B, L, m.H, m.G, m.hs, m.rope_dims, int64_t(0),
                              cs_batch_rows);
  profile_mark("fwd attn rope");
  if (st) {
    ops::attention_cached_forward(ctx, a.att, a.q, a.k, a.v, st->keys, st->values, st->slots, st->pos, B, L, m.H, m.G,
                                  m.hs, st->cap, m.window, scale);
    ops::kv_cache_write(ctx, st->keys, st->values, a.k, a.v, st->slots, st->pos, B, L, m.G, m.hs, st->cap);
  } else {
    ops::attention_forward(ctx, a.att, a.lse, a.q, a.k, a.v, B, L, m.H, m.G, m.hs, m.window, scale);
  }
  profile_mark("fwd attn kernel");
  linear_forward(ctx, out, a.att, params, p.proj_w, p.proj_b.at(params), BL, m.H * m.hs, m.d);
  profile_mark("fwd attn out_proj");
}

template <typename T>
void attention_backward_layer(const Context& ctx, T* dxn, grad_t<T>* grads, const T* dout, const AttentionActs<T>& a,
                              const T* xn, const T* params, const AttentionParams& p, const AttentionDims& m,
                              const T* cos, const T* sin, int64_t B, int64_t L, const AttentionGrads<T>& g) {
  const int64_t BL = B * L;
  auto zero = [&](auto* x, int64_t n) { ops::fill_zero(ctx, x, n); };
  zero(g.datt, BL * m.H * m.hs);
  zero(g.dq, BL * m.H * m.hs);
  zero(g.dk, BL * m.G * m.hs);
  zero(g.dv, BL * m.G * m.hs);
  zero(g.dqkv, BL * m.qkv());
  profile_mark("bwd attn zero grads");
  ops::matmul_backward(ctx, g.datt, p.proj_w.at(grads), p.proj_b.at(grads), dout, a.att, p.proj_w.at(params), BL,
                       m.H * m.hs, m.d);
  profile_mark("bwd attn out_proj");
  ops::attention_backward(ctx, g.dq, g.dk, g.dv, g.datt, a.att, a.lse, a.q, a.k, a.v, B, L, m.H, m.G, m.hs, m.window,
                          1.0 / std::sqrt(double(m.hs)), g.scratch);
  profile_mark("bwd attn kernel");
  ops::qkv_split_rope_backward(ctx, g.dqkv, g.dq, g.dk, g.dv, cos, sin, B, L, m.H, m.G, m.hs, m.rope_dims, int64_t(0));
  profile_mark("bwd attn rope");
  ops::matmul_backward(ctx, dxn, p.qkv_w.at(grads), p.qkv_b.at(grads), g.dqkv, xn, p.qkv_w.at(params), BL, m.d,
                       m.qkv());
  profile_mark("bwd attn qkv");
}

#define INSTANTIATE(T)                                                                                                \
  template void plan_attention_acts<T>(const Context&, Arena&, AttentionActs<T>&, const AttentionDims&, int64_t,      \
                                       int64_t, bool);                                                                \
  template void plan_attention_grads<T>(const Context&, Arena&, AttentionGrads<T>&, const AttentionDims&, int64_t,    \
                                        int64_t);                                                                     \
  template void attention_forward_layer<T>(const Context&, T*, const AttentionActs<T>&, const T*, const T*,           \
                                           const AttentionParams&, const AttentionDims&, const T*, const T*, int64_t, \
                                           int64_t, int64_t, const LayerState<T>*);                                   \
  template void attention_backward_layer<T>(const Context&, T*, grad_t<T>*, const T*, const AttentionActs<T>&,        \
                                            const T*, const T*, const AttentionParams&, const AttentionDims&,         \
                                            const T*, const T*, int64_t, int64_t, const AttentionGrads<T>&);
INSTANTIATE(float)
INSTANTIATE(double)
#if SAMBALM_HAVE_CUDA
INSTANTIATE(bf16)
#endif

}  // namespace sambalm
