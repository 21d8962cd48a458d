// Dense ops: GEMM, norms, embedding, RoPE, attention, MLP activation, cross-entropy.
// See ops.h for the conventions every op follows.
#pragma once

#include <cstdint>

#include "core/packed_matrix.h"
#include "core/precision.h"
#include "ops/dispatch.h"

namespace sambalm::ops {

// ---- GEMM (BLAS) --------------------------------------------------------------------------
// out[M, N] = inp[M, K] @ weight[N, K]^T (+ bias[N]); weight in PyTorch Linear layout.
template <typename T>
inline void matmul_forward(const Context& ctx, T* out, const T* inp, const T* weight, const T* bias, int64_t M,
                           int64_t K, int64_t N) {
  SAMBALM_OP_DISPATCH(ctx, matmul_forward, out, inp, weight, bias, M, K, N);
}
// dinp[M, K] += dout @ weight; dweight[N, K] += dout^T @ inp; dbias[N] += sum_m dout.
// The parameter gradients have their own element type G (the GPU's bf16 mode accumulates them in fp32,
// grad_t in core/precision.h); on the CPU G = T.
template <typename T, typename G>
inline void matmul_backward(const Context& ctx, T* dinp, G* dweight, G* dbias, const T* dout, const T* inp,
                            const T* weight, int64_t M, int64_t K, int64_t N) {
  SAMBALM_OP_DISPATCH(ctx, matmul_backward, dinp, dweight, dbias, dout, inp, weight, M, K, N);
}
// Strided variant for views into wider rows: inp row stride ld_inp, out row stride ld_out. The output
// and the bias may be of another type O than the operands (the GPU's bf16 mode computes Mamba's
// dt_pre = dt_low @ W^T + dt_bias in fp32 with the fp32 dt bias); on the CPU O = T.
template <typename O, typename T>
inline void matmul_forward_strided(const Context& ctx, O* out, int64_t ld_out, const T* inp, int64_t ld_inp,
                                   const T* weight, const O* bias, int64_t M, int64_t K, int64_t N) {
  SAMBALM_OP_DISPATCH(ctx, matmul_forward_strided, out, ld_out, inp, ld_inp, weight, bias, M, K, N);
}
template <typename T, typename G>
inline void matmul_backward_strided(const Context& ctx, T* dinp, int64_t ld_dinp, G* dweight, G* dbias, const T* dout,
                                    int64_t ld_dout, const T* inp, int64_t ld_inp, const T* weight, int64_t M,
                                    int64_t K, int64_t N) {
  SAMBALM_OP_DISPATCH(ctx, matmul_backward_strided, dinp, ld_dinp, dweight, dbias, dout, ld_dout, inp, ld_inp, weight,
                      M, K, N);
}

// The same with a weight kept in a packed format (core/packed_matrix.h: f32, bf16, f16, q8), read as
// it is stored: the decoding GEMV converts in registers; a larger M dequantizes panels for the GEMM.
// float32 activations; CPU only (no CUDA body yet).
inline void matmul_forward_packed(const Context& ctx, float* out, int64_t ld_out, const float* inp, int64_t ld_inp,
                                  const PackedMatrix& weight, const float* bias, int64_t M, int64_t K, int64_t N) {
  if (ctx.device != Device::CPU) no_backend(ctx, "matmul_forward_packed");
  cpu::matmul_forward_packed(out, ld_out, inp, ld_inp, weight, bias, M, K, N);
}

// ---- Embedding ---------------------------------------------------------------------------
// out[n, C] = table[ids[n], C]; ids must be < V (checked by the caller).
template <typename T>
inline void embedding_forward(const Context& ctx, T* out, const int32_t* ids, const T* table, int64_t n, int64_t C) {
  SAMBALM_OP_DISPATCH(ctx, embedding_forward, out, ids, table, n, C);
}
// out[n, C] = dequant(table)[ids[n], :] for a packed table.
inline void embedding_forward_packed(const Context& ctx, float* out, const int32_t* ids, const PackedMatrix& table,
                                     int64_t n, int64_t C) {
  if (ctx.device != Device::CPU) no_backend(ctx, "embedding_forward_packed");
  cpu::embedding_forward_packed(out, ids, table, n, C);
}
template <typename T>
inline void embedding_backward(const Context& ctx, T* dtable, const T* dout, const int32_t* ids, int64_t n, int64_t C) {
  SAMBALM_OP_DISPATCH(ctx, embedding_backward, dtable, dout, ids, n, C);
}

// ---- Norms -------------------------------------------------------------------------------
// The input x, the weights and the output may differ in element type where precision differs: on the
// GPU in bf16 the norm reads the fp32 residual and fp32 weights and writes bf16 (its statistics fp32,
// stat_t<T> of the output type T); its backward reads the bf16 d(out) and adds into the fp32 d(x)
// and fp32 weight gradients (G). On the CPU every type is the same.
// RMSNorm: out = x * rsqrt(mean(x^2) + eps) * weight. Saves rstd[n] for backward.
template <typename T, typename X, typename W>
inline void rmsnorm_forward(const Context& ctx, T* out, stat_t<T>* rstd, const X* x, const W* weight, int64_t n,
                            int64_t C, double eps) {
  SAMBALM_OP_DISPATCH(ctx, rmsnorm_forward, out, rstd, x, weight, n, C, eps);
}
// dx += ..., dweight += ... (either may be nullptr).
template <typename X, typename G, typename T, typename W>
inline void rmsnorm_backward(const Context& ctx, X* dx, G* dweight, const T* dout, const X* x, const W* weight,
                             const stat_t<T>* rstd, int64_t n, int64_t C) {
  SAMBALM_OP_DISPATCH(ctx, rmsnorm_backward, dx, dweight, dout, x, weight, rstd, n, C);
}
// LayerNorm: out = (x - mean) * rstd * weight + bias (bias may be nullptr). Saves mean, rstd.
template <typename T, typename X, typename W>
inline void layernorm_forward(const Context& ctx, T* out, stat_t<T>* mean, stat_t<T>* rstd, const X* x, const W* weight,
                              const W* bias, int64_t n, int64_t C, double eps) {
  SAMBALM_OP_DISPATCH(ctx, layernorm_forward, out, mean, rstd, x, weight, bias, n, C, eps);
}
template <typename X, typename G, typename T, typename W>
inline void layernorm_backward(const Context& ctx, X* dx, G* dweight, G* dbias, const T* dout, const X* x,
                               const W* weight, const stat_t<T>* mean, const stat_t<T>* rstd, int64_t n, int64_t C) {
  SAMBALM_OP_DISPATCH(ctx, layernorm_backward, dx, dweight, dbias, dout, x, weight, mean, rstd, n, C);
}

// ---- Elementwise -------------------------------------------------------------------------
// y += x (n elements). Residual adds.
template <typename T>
inline void add_inplace(const Context& ctx, T* y, const T* x, int64_t n) {
  SAMBALM_OP_DISPATCH(ctx, add_inplace, y, x, n);
}
// The residual step out = x + f (n elements; out may be x itself): x and out are the residual stream
// (stat_t<T>: fp32 on the GPU in bf16), f a sublayer's output in the compute type T.
template <typename S, typename T>
inline void residual_add(const Context& ctx, S* out, const S* x, const T* f, int64_t n) {
  SAMBALM_OP_DISPATCH(ctx, residual_add, out, x, f, n);
}
// SwiGLU activation on the two MLP projections: out = silu(a) * b.
template <typename T>
inline void swiglu_forward(const Context& ctx, T* out, const T* a, const T* b, int64_t n) {
  SAMBALM_OP_DISPATCH(ctx, swiglu_forward, out, a, b, n);
}
template <typename T>
inline void swiglu_backward(const Context& ctx, T* da, T* db, const T* dout, const T* a, const T* b, int64_t n) {
  SAMBALM_OP_DISPATCH(ctx, swiglu_backward, da, db, dout, a, b, n);
}

// ---- Attention ---------------------------------------------------------------------------
// RoPE, GPT-NeoX style (rotate halves) over the first rope_dims of each head, base `base`.
// Table: cos/sin[p, rope_dims/2] for absolute positions p = 0..max_pos-1, angle p * base^(-2i/rope_dims).
template <typename T>
inline void rope_table(const Context& ctx, T* cos, T* sin, int64_t max_pos, int64_t rope_dims, double base,
                       double condense_ratio) {
  SAMBALM_OP_DISPATCH(ctx, rope_table, cos, sin, max_pos, rope_dims, base, condense_ratio);
}

// Splits the fused qkv projection (lit_gpt grouped layout: for each of G groups, q_per_kv = H/G
// query heads, then one key head, then one value head, each hs wide) into
//   q[B, H, T, hs], k[B, G, T, hs], v[B, G, T, hs]
// and applies RoPE to q and k at absolute positions pos0 + t (rope_dims == 0: no RoPE).
template <typename T>
inline void qkv_split_rope_forward(const Context& ctx, T* q, T* k, T* v, const T* qkv, const T* cos, const T* sin,
                                   int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t rope_dims,
                                   int64_t pos0, int64_t cs_batch_rows = 0) {
  SAMBALM_OP_DISPATCH(ctx, qkv_split_rope_forward, q, k, v, qkv, cos, sin, B, Tn, H, G, hs, rope_dims, pos0,
                      cs_batch_rows);
}
// Backward: dqkv[B, T, (H+2G)*hs] += the gradients of q, k, v mapped back through RoPE and the split.
template <typename T>
inline void qkv_split_rope_backward(const Context& ctx, T* dqkv, const T* dq, const T* dk, const T* dv, const T* cos,
                                    const T* sin, int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs,
                                    int64_t rope_dims, int64_t pos0, int64_t cs_batch_rows = 0) {
  SAMBALM_OP_DISPATCH(ctx, qkv_split_rope_backward, dqkv, dq, dk, dv, cos, sin, B, Tn, H, G, hs, rope_dims, pos0,
                      cs_batch_rows);
}

// Causal attention with an optional sliding window: query t sees keys s with
// t - window < s <= t (window keys including itself); window <= 0 means full causal.
// Query head h uses kv head h / (H/G). Scale = 1/sqrt(hs) unless given.
//   out[B, T, H*hs] (token-major, ready for the output projection); lse[B, H, T] = log-sum-exp of the
//   scaled scores per query (saved for backward).
template <typename T>
inline void attention_forward(const Context& ctx, T* out, stat_t<T>* lse, const T* q, const T* k, const T* v, int64_t B,
                              int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t window, double scale) {
  SAMBALM_OP_DISPATCH(ctx, attention_forward, out, lse, q, k, v, B, Tn, H, G, hs, window, scale);
}
// Reference attention (the test oracle for attention_forward): fills the masked score matrix of each
// (b, h) into the caller's scratch scores[Tn * Tn], then softmax and P.V in double. Same outputs.
template <typename T>
inline void attention_ref_forward(const Context& ctx, T* out, stat_t<T>* lse, T* scores, const T* q, const T* k,
                                  const T* v, int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t window,
                                  double scale) {
  SAMBALM_OP_DISPATCH(ctx, attention_ref_forward, out, lse, scores, q, k, v, B, Tn, H, G, hs, window, scale);
}
// dq, dk, dv accumulate (each may be nullptr). Recomputes probabilities from q, k and lse
// (FlashAttention-style). `scratch` holds attention_backward_scratch_size elements (nullptr when that
// is 0; the GPU's bf16 backward keeps an fp32 dq accumulator there); its contents do not matter.
template <typename T>
inline void attention_backward(const Context& ctx, T* dq, T* dk, T* dv, const T* dout, const T* out,
                               const stat_t<T>* lse, const T* q, const T* k, const T* v, int64_t B, int64_t Tn,
                               int64_t H, int64_t G, int64_t hs, int64_t window, double scale, stat_t<T>* scratch) {
  SAMBALM_OP_DISPATCH(ctx, attention_backward, dq, dk, dv, dout, out, lse, q, k, v, B, Tn, H, G, hs, window, scale,
                      scratch);
}
template <typename T>
inline int64_t attention_backward_scratch_size(const Context& ctx, int64_t B, int64_t Tn, int64_t H, int64_t G,
                                               int64_t hs) {
  const T* type = nullptr;  // selects the body of the element type
  SAMBALM_OP_DISPATCH(ctx, attention_backward_scratch_size, type, B, Tn, H, G, hs);
}

// ---- Attention over a key/value cache (prefill chunks and decode steps) ----------------------
// RoPE rows for B sequences of L new tokens at absolute positions pos[b] + t: cos/sin[B, L, rope_dims/2],
// the same formula as rope_table (so a token at position p rotates alike however far p is).
template <typename T>
inline void rope_at_positions(const Context& ctx, T* cos, T* sin, const int64_t* pos, int64_t B, int64_t L,
                              int64_t rope_dims, double base, double condense_ratio) {
  SAMBALM_OP_DISPATCH(ctx, rope_at_positions, cos, sin, pos, B, L, rope_dims, base, condense_ratio);
}
// Attention of L new queries per sequence over the cache and themselves: q[B, H, L, hs], the new keys and
// values k_new, v_new[B, G, L, hs] (qkv_split_rope_forward layout), the caches k_cache, v_cache[S, G, cap, hs]
// (a ring per slot: absolute position p in entry p % cap), sequence b in slot slots[b] with its first new
// token at position pos[b]. Query t sees positions p - window < s <= p (window <= 0: all s <= p), the
// cached ones (s < pos[b]) from the ring. out[B, L, H*hs]. The ring must hold every cached position a
// query sees: cap >= window, or cap >= pos[b] for full attention (the callers check).
template <typename T>
inline void attention_cached_forward(const Context& ctx, T* out, const T* q, const T* k_new, const T* v_new,
                                     const T* k_cache, const T* v_cache, const int32_t* slots, const int64_t* pos,
                                     int64_t B, int64_t L, int64_t H, int64_t G, int64_t hs, int64_t cap,
                                     int64_t window, double scale) {
  SAMBALM_OP_DISPATCH(ctx, attention_cached_forward, out, q, k_new, v_new, k_cache, v_cache, slots, pos, B, L, H, G, hs,
                      cap, window, scale);
}
// Stores the new keys/values (k_new, v_new [B, G, L, hs]) of positions pos[b] + t into the rings of slot
// slots[b] (entry p % cap); only the last min(L, cap) survive.
template <typename T>
inline void kv_cache_write(const Context& ctx, T* k_cache, T* v_cache, const T* k_new, const T* v_new,
                           const int32_t* slots, const int64_t* pos, int64_t B, int64_t L, int64_t G, int64_t hs,
                           int64_t cap) {
  SAMBALM_OP_DISPATCH(ctx, kv_cache_write, k_cache, v_cache, k_new, v_new, slots, pos, B, L, G, hs, cap);
}

// ---- Differential attention (SambaY) ------------------------------------------------------------
// lambda[0] = exp(lq1 . lk1) - exp(lq2 . lk2) + lambda_init (the four vectors of hd values).
template <typename T>
inline void diff_lambda_forward(const Context& ctx, stat_t<T>* lambda, const T* lq1, const T* lk1, const T* lq2,
                                const T* lk2, int64_t hd, double lambda_init) {
  SAMBALM_OP_DISPATCH(ctx, diff_lambda_forward, lambda, lq1, lk1, lq2, lk2, hd, lambda_init);
}
// d(lq1, lk1, lq2, lk2) += the gradient of lambda times dlambda[0].
template <typename T, typename G>
inline void diff_lambda_backward(const Context& ctx, G* dlq1, G* dlk1, G* dlq2, G* dlk2, const stat_t<T>* dlambda,
                                 const T* lq1, const T* lk1, const T* lq2, const T* lk2, int64_t hd) {
  SAMBALM_OP_DISPATCH(ctx, diff_lambda_backward, dlq1, dlk1, dlq2, dlk2, dlambda, lq1, lk1, lq2, lk2, hd);
}
// Differential attention before its sub-norm (math in cpu/diff_attention.cpp): heads paired (2m, 2m+1),
// query head 2m reads kv head 2 (m / (H/G)) and 2m+1 the next one; per pair
//   a = softmax(q_2m K_even^T) [V_even | V_odd] - lambda softmax(q_2m+1 K_odd^T) [V_even | V_odd]
// written at out[B, T, H*hd] columns 2m*hd .. 2m*hd + 2hd; causal with the sliding window
// (t - window < s <= t; window <= 0: full causal). q rows ldq apart, k and v rows ldkv apart (views into
// a fused projection). lse[B, T, H] (may be nullptr) for the backward.
template <typename T>
inline void diff_attention_forward(const Context& ctx, T* out, stat_t<T>* lse, const T* q, int64_t ldq, const T* k,
                                   const T* v, int64_t ldkv, const stat_t<T>* lambda, int64_t B, int64_t Tn, int64_t H,
                                   int64_t G, int64_t hd, int64_t window, double scale) {
  SAMBALM_OP_DISPATCH(ctx, diff_attention_forward, out, lse, q, ldq, k, v, ldkv, lambda, B, Tn, H, G, hd, window,
                      scale);
}
// dq (rows ldq apart), dk, dv (rows ldkv apart) and dlambda[0] accumulate. dlambda_parts: scratch of
// B * G/2 values (per-task shares of dlambda, summed in a fixed order).
template <typename T>
inline void diff_attention_backward(const Context& ctx, T* dq, T* dk, T* dv, stat_t<T>* dlambda,
                                    stat_t<T>* dlambda_parts, const T* dout, const stat_t<T>* lse, const T* q,
                                    int64_t ldq, const T* k, const T* v, int64_t ldkv, const stat_t<T>* lambda,
                                    int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hd, int64_t window,
                                    double scale) {
  SAMBALM_OP_DISPATCH(ctx, diff_attention_backward, dq, dk, dv, dlambda, dlambda_parts, dout, lse, q, ldq, k, v, ldkv,
                      lambda, B, Tn, H, G, hd, window, scale);
}

// Differential attention of L new queries per sequence over a key/value cache (SambaY decoding): the
// math of diff_attention_forward (lse not kept), with the keys/values of positions s >= pos[b] from the
// new rows (k_new, v_new rows ldkv apart, row b*L + s - pos[b]: a view into the fused projection, or
// the shared-KV layer's for cross-attention) and those of s < pos[b] from the ring of slot slots[b]
// (k_cache, v_cache [S, G, cap, hd], position s in entry s % cap). q rows ldq apart, out [B, L, H*hd].
// The ring must hold every cached position a query sees (cap >= window; full: cap >= pos[b]).
template <typename T>
inline void diff_attention_cached_forward(const Context& ctx, T* out, const T* q, int64_t ldq, const T* k_new,
                                          const T* v_new, int64_t ldkv, const T* k_cache, const T* v_cache,
                                          const int32_t* slots, const int64_t* pos, const stat_t<T>* lambda, int64_t B,
                                          int64_t L, int64_t H, int64_t G, int64_t hd, int64_t cap, int64_t window,
                                          double scale) {
  SAMBALM_OP_DISPATCH(ctx, diff_attention_cached_forward, out, q, ldq, k_new, v_new, ldkv, k_cache, v_cache, slots, pos,
                      lambda, B, L, H, G, hd, cap, window, scale);
}
// kv_cache_write for keys/values given as token rows ldkv apart (row b*L + t, kv head g at column g*hd).
template <typename T>
inline void kv_cache_write_rows(const Context& ctx, T* k_cache, T* v_cache, const T* k_new, const T* v_new,
                                int64_t ldkv, const int32_t* slots, const int64_t* pos, int64_t B, int64_t L, int64_t G,
                                int64_t hd, int64_t cap) {
  SAMBALM_OP_DISPATCH(ctx, kv_cache_write_rows, k_cache, v_cache, k_new, v_new, ldkv, slots, pos, B, L, G, hd, cap);
}

// SambaY's prefill keeps each sequence's last token for its cross-decoder: x [B*L, width] -> rows
// b*L + L-1 moved to rows b (in place), and last[b] = pos[b] + L - 1 (the position of that token).
template <typename T>
inline void take_last_rows(const Context& ctx, T* x, int64_t width, int64_t B, int64_t L) {
  SAMBALM_OP_DISPATCH(ctx, take_last_rows, x, width, B, L);
}
// (A template over the position type, int64_t, so that the dispatcher's test for a backend body is made
// at instantiation.)
template <typename I>
inline void last_positions(const Context& ctx, I* last, const I* pos, int64_t B, int64_t L) {
  SAMBALM_OP_DISPATCH(ctx, last_positions, last, pos, B, L);
}

// ---- Loss --------------------------------------------------------------------------------
// Mean cross-entropy over n positions and the whole padded vocabulary V: returns the mean loss and
// writes per-position losses to `losses` (may be nullptr). Targets < 0 are ignored (not counted).
// If dlogits is given, writes (not adds) d(mean loss)/d logits * dloss_scale into it; it may alias logits.
template <typename T>
inline double cross_entropy_forward_backward(const Context& ctx, T* dlogits, stat_t<T>* losses, const T* logits,
                                             const int32_t* targets, int64_t n, int64_t V, double dloss_scale) {
  SAMBALM_OP_DISPATCH(ctx, cross_entropy_forward_backward, dlogits, losses, logits, targets, n, V, dloss_scale);
}

}  // namespace sambalm::ops
