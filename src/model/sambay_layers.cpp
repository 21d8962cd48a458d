// SambaY's mixers (microsoft/ArchScale lit_gpt/diff_attn.py, gated_memory_unit.py), training forward
// and backward; fixtures README "sambay_tiny" states the semantics.
//
// Differential attention, self or cross (no position encoding):
//   [q | k | v] = xn Wq^T (+bq) | xn Wk^T | xn Wv^T (+bv)   self; cross: q only, k/v of the shared layer
//   lambda      = exp(lq1 . lk1) - exp(lq2 . lk2) + lambda_init,  lambda_init = 0.8 - 0.6 exp(-0.3 i)
//   a           = diff_attention(q, k, v, lambda)              (paired heads, ops/dense_ops.h)
//   an          = (1 - lambda_init) * RMSNorm(a) * subln       per pair of heads (2 hd values, eps 1e-5)
//   out         = an Wproj^T (+bproj)
// GMU:
//   out = out_proj(silu(in_proj(xn)) * memory)                 memory: y of the memory Mamba layer
#include <algorithm>
#include <cmath>

#include "model/layers.h"
#include "model/linear.h"
#include "ops/ops.h"

namespace sambalm {

namespace {
constexpr double kSublnEps = 1e-5;  // ArchScale's RMSNorm default for `subln`
}

template <typename T>
void plan_diff_attention_acts(const Context& ctx, Arena& ar, DiffAttentionActs<T>& a, const DiffAttentionDims& m,
                              int64_t B, int64_t L) {
  const int64_t BL = B * L;
  a.qkv = ar.take<T>(BL * m.width());
  a.a = ar.take<T>(BL * m.H * m.hd);
  a.an = ar.take<T>(BL * m.H * m.hd);
  a.lse = ar.take<stat_t<T>>(BL * m.H);
  a.rstd = ar.take<stat_t<T>>(BL * m.H / 2);
  a.lambda = ar.take<stat_t<T>>(1);
}

template <typename T>
void plan_diff_attention_grads(const Context& ctx, Arena& ar, DiffAttentionGrads<T>& g, const DiffAttentionDims& m,
                               int64_t B, int64_t L) {
  const int64_t BL = B * L;
  g.dan = ar.take<T>(BL * m.H * m.hd);
  g.da = ar.take<T>(BL * m.H * m.hd);
  g.dqkv = ar.take<T>(BL * m.shared_width());  // large enough for self and cross
  g.dlambda = ar.take<stat_t<T>>(1);
  g.dlambda_parts = ar.take<stat_t<T>>(B * m.G / 2);
}

template <typename T>
void plan_gmu_acts(const Context& ctx, Arena& ar, GmuActs<T>& a, int64_t di, int64_t B, int64_t L) {
  a.gate = ar.take<T>(B * L * di);
  a.hidden = ar.take<T>(B * L * di);
}

template <typename T>
void plan_gmu_grads(const Context& ctx, Arena& ar, GmuGrads<T>& g, int64_t di, int64_t B, int64_t L) {
  g.dhidden = ar.take<T>(B * L * di);
  g.dgate = ar.take<T>(B * L * di);
}

template <typename T>
void diff_attention_forward_layer(const Context& ctx, T* out, const DiffAttentionActs<T>& a, const T* xn,
                                  const T* params, const DiffAttentionParams& p, const DiffAttentionDims& m, int64_t B,
                                  int64_t L, const T* shared_qkv, const LayerState<T>* st) {
  const int64_t BL = B * L, W = m.width(), q = m.H * m.hd, kv = m.G * m.hd;
  linear_forward(ctx, a.qkv, W, xn, m.d, params, p.q_w, p.q_b.at(params), BL, m.d, q);
  if (!m.cross) {
    linear_forward(ctx, a.qkv + q, W, xn, m.d, params, p.k_w, static_cast<const T*>(nullptr), BL, m.d, kv);
    linear_forward(ctx, a.qkv + q + kv, W, xn, m.d, params, p.v_w, p.v_b.at(params), BL, m.d, kv);
  }
  const T* kvsrc = m.cross ? shared_qkv : a.qkv;
  const int64_t ldkv = m.cross ? m.shared_width() : W;
  ops::diff_lambda_forward(ctx, a.lambda, p.lq1.at(params), p.lk1.at(params), p.lq2.at(params), p.lk2.at(params), m.hd,
                           m.lambda_init);
  const double scale = 1.0 / std::sqrt(double(m.hd));
  if (st) {
    // Decoding: earlier positions from the cache. Self layers append their new keys/values after
    // attending; cross layers read the shared-KV layer's cache, which that layer already extended.
    ops::diff_attention_cached_forward(ctx, a.a, a.qkv, W, kvsrc + q, kvsrc + q + kv, ldkv, st->keys, st->values,
                                       st->slots, st->pos, a.lambda, B, L, m.H, m.G, m.hd, st->cap, m.window, scale);
    if (!m.cross)
      ops::kv_cache_write_rows(ctx, st->keys, st->values, a.qkv + q, a.qkv + q + kv, W, st->slots, st->pos, B, L, m.G,
                               m.hd, st->cap);
  } else {
    ops::diff_attention_forward(ctx, a.a, a.lse, a.qkv, W, kvsrc + q, kvsrc + q + kv, ldkv, a.lambda, B, L, m.H, m.G,
                                m.hd, m.window, scale);
  }
  ops::rmsnorm_forward(ctx, a.an, a.rstd, a.a, p.subln.at(params), BL * m.H / 2, 2 * m.hd, kSublnEps);
  ops::scale_inplace(ctx, a.an, BL * q, 1.0 - m.lambda_init);
  linear_forward(ctx, out, a.an, params, p.proj_w, p.proj_b.at(params), BL, q, m.d);
}

template <typename T>
void diff_attention_backward_layer(const Context& ctx, T* dxn, grad_t<T>* grads, const T* dout,
                                   const DiffAttentionActs<T>& a, const T* xn, const T* params,
                                   const DiffAttentionParams& p, const DiffAttentionDims& m, int64_t B, int64_t L,
                                   const DiffAttentionGrads<T>& g, const T* shared_qkv, T* dshared_qkv) {
  const int64_t BL = B * L, W = m.width(), q = m.H * m.hd, kv = m.G * m.hd;
  ops::fill_zero(ctx, g.dan, BL * q);
  ops::fill_zero(ctx, g.da, BL * q);
  ops::fill_zero(ctx, g.dqkv, BL * W);
  ops::fill_zero(ctx, g.dlambda, 1);  // device memory on a GPU
  ops::matmul_backward(ctx, g.dan, p.proj_w.at(grads), p.proj_b.at(grads), dout, a.an, p.proj_w.at(params), BL, q, m.d);
  ops::scale_inplace(ctx, g.dan, BL * q, 1.0 - m.lambda_init);
  ops::rmsnorm_backward(ctx, g.da, p.subln.at(grads), g.dan, a.a, p.subln.at(params), a.rstd, BL * m.H / 2, 2 * m.hd);
  // Cross: the keys/values belong to the shared layer, which receives their gradient.
  const T* kvsrc = m.cross ? shared_qkv : a.qkv;
  T* dkv = m.cross ? dshared_qkv : g.dqkv;
  const int64_t ldkv = m.cross ? m.shared_width() : W;
  ops::diff_attention_backward(ctx, g.dqkv, dkv + q, dkv + q + kv, g.dlambda, g.dlambda_parts, g.da, a.lse, a.qkv, W,
                               kvsrc + q, kvsrc + q + kv, ldkv, a.lambda, B, L, m.H, m.G, m.hd, m.window,
                               1.0 / std::sqrt(double(m.hd)));
  ops::diff_lambda_backward(ctx, p.lq1.at(grads), p.lk1.at(grads), p.lq2.at(grads), p.lk2.at(grads), g.dlambda,
                            p.lq1.at(params), p.lk1.at(params), p.lq2.at(params), p.lk2.at(params), m.hd);
  if (!m.cross && dshared_qkv) ops::add_inplace(ctx, g.dqkv, dshared_qkv, BL * W);
  ops::matmul_backward_strided(ctx, dxn, m.d, p.q_w.at(grads), p.q_b.at(grads), g.dqkv, W, xn, m.d, p.q_w.at(params),
                               BL, m.d, q);
  if (!m.cross) {
    ops::matmul_backward_strided(ctx, dxn, m.d, p.k_w.at(grads), static_cast<grad_t<T>*>(nullptr), g.dqkv + q, W, xn,
                                 m.d, p.k_w.at(params), BL, m.d, kv);
    ops::matmul_backward_strided(ctx, dxn, m.d, p.v_w.at(grads), p.v_b.at(grads), g.dqkv + q + kv, W, xn, m.d,
                                 p.v_w.at(params), BL, m.d, kv);
  }
}

template <typename T>
void gmu_forward(const Context& ctx, T* out, const GmuActs<T>& a, const T* xn, const T* params, const GmuParams& p,
                 const T* memory, int64_t d, int64_t di, int64_t B, int64_t L) {
  const int64_t BL = B * L;
  linear_forward(ctx, a.gate, xn, params, p.in_w, static_cast<const T*>(nullptr), BL, d, di);
  ops::swiglu_forward(ctx, a.hidden, a.gate, memory, BL * di);
  linear_forward(ctx, out, a.hidden, params, p.out_w, static_cast<const T*>(nullptr), BL, di, d);
}

template <typename T>
void gmu_backward(const Context& ctx, T* dxn, grad_t<T>* grads, T* dmemory, const T* dout, const GmuActs<T>& a,
                  const T* xn, const T* params, const GmuParams& p, const T* memory, int64_t d, int64_t di, int64_t B,
                  int64_t L, const GmuGrads<T>& g) {
  const int64_t BL = B * L;
  ops::fill_zero(ctx, g.dhidden, BL * di);
  ops::fill_zero(ctx, g.dgate, BL * di);
  ops::matmul_backward(ctx, g.dhidden, p.out_w.at(grads), static_cast<grad_t<T>*>(nullptr), dout, a.hidden,
                       p.out_w.at(params), BL, di, d);
  ops::swiglu_backward(ctx, g.dgate, dmemory, g.dhidden, a.gate, memory, BL * di);
  ops::matmul_backward(ctx, dxn, p.in_w.at(grads), static_cast<grad_t<T>*>(nullptr), g.dgate, xn, p.in_w.at(params), BL,
                       d, di);
}

#define INSTANTIATE(T)                                                                                                 \
  template void plan_diff_attention_acts<T>(const Context&, Arena&, DiffAttentionActs<T>&, const DiffAttentionDims&,   \
                                            int64_t, int64_t);                                                         \
  template void plan_diff_attention_grads<T>(const Context&, Arena&, DiffAttentionGrads<T>&, const DiffAttentionDims&, \
                                             int64_t, int64_t);                                                        \
  template void plan_gmu_acts<T>(const Context&, Arena&, GmuActs<T>&, int64_t, int64_t, int64_t);                      \
  template void plan_gmu_grads<T>(const Context&, Arena&, GmuGrads<T>&, int64_t, int64_t, int64_t);                    \
  template void diff_attention_forward_layer<T>(const Context&, T*, const DiffAttentionActs<T>&, const T*, const T*,   \
                                                const DiffAttentionParams&, const DiffAttentionDims&, int64_t,         \
                                                int64_t, const T*, const LayerState<T>*);                              \
  template void diff_attention_backward_layer<T>(const Context&, T*, grad_t<T>*, const T*,                             \
                                                 const DiffAttentionActs<T>&, const T*, const T*,                      \
                                                 const DiffAttentionParams&, const DiffAttentionDims&, int64_t,        \
                                                 int64_t, const DiffAttentionGrads<T>&, const T*, T*);                 \
  template void gmu_forward<T>(const Context&, T*, const GmuActs<T>&, const T*, const T*, const GmuParams&, const T*,  \
                               int64_t, int64_t, int64_t, int64_t);                                                    \
  template void gmu_backward<T>(const Context&, T*, grad_t<T>*, T*, const T*, const GmuActs<T>&, const T*, const T*,   \
                                const GmuParams&, const T*, int64_t, int64_t, int64_t, int64_t, const GmuGrads<T>&);
INSTANTIATE(float)
INSTANTIATE(double)
#if SAMBALM_HAVE_CUDA
INSTANTIATE(bf16)
#endif

}  // namespace sambalm
