// Dense ops: GEMM, norms, embedding, RoPE, attention, MLP activation, cross-entropy.
// See ops.h for the conventions every op follows.
#pragma once

#include <cstdint>

namespace sambalm::ops {

// ---- GEMM (BLAS) --------------------------------------------------------------------------
// out[M, N] = inp[M, K] @ weight[N, K]^T (+ bias[N]); weight in PyTorch Linear layout.
template <typename T>
void matmul_forward(T* out, const T* inp, const T* weight, const T* bias, int64_t M, int64_t K, int64_t N);
// dinp[M, K] += dout @ weight; dweight[N, K] += dout^T @ inp; dbias[N] += sum_m dout.
template <typename T>
void matmul_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, int64_t M,
                     int64_t K, int64_t N);
// Strided variant for views into wider rows: inp row stride ld_inp, out row stride ld_out.
template <typename T>
void matmul_forward_strided(T* out, int64_t ld_out, const T* inp, int64_t ld_inp, const T* weight, const T* bias,
                            int64_t M, int64_t K, int64_t N);
template <typename T>
void matmul_backward_strided(T* dinp, int64_t ld_dinp, T* dweight, T* dbias, const T* dout, int64_t ld_dout,
                             const T* inp, int64_t ld_inp, const T* weight, int64_t M, int64_t K, int64_t N);

// ---- Embedding ---------------------------------------------------------------------------
// out[n, C] = table[ids[n], C]; ids must be < V (checked by the caller).
template <typename T>
void embedding_forward(T* out, const int32_t* ids, const T* table, int64_t n, int64_t C);
template <typename T>
void embedding_backward(T* dtable, const T* dout, const int32_t* ids, int64_t n, int64_t C);

// ---- Norms -------------------------------------------------------------------------------
// RMSNorm: out = x * rsqrt(mean(x^2) + eps) * weight. Saves rstd[n] for backward.
template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* x, const T* weight, int64_t n, int64_t C, double eps);
template <typename T>
void rmsnorm_backward(T* dx, T* dweight, const T* dout, const T* x, const T* weight, const T* rstd, int64_t n,
                      int64_t C);
// LayerNorm: out = (x - mean) * rstd * weight + bias (bias may be nullptr). Saves mean, rstd.
template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* x, const T* weight, const T* bias, int64_t n, int64_t C,
                       double eps);
template <typename T>
void layernorm_backward(T* dx, T* dweight, T* dbias, const T* dout, const T* x, const T* weight, const T* mean,
                        const T* rstd, int64_t n, int64_t C);

// ---- Elementwise -------------------------------------------------------------------------
// y += x (n elements). Residual adds.
template <typename T>
void add_inplace(T* y, const T* x, int64_t n);
// SwiGLU activation on the two MLP projections: out = silu(a) * b.
template <typename T>
void swiglu_forward(T* out, const T* a, const T* b, int64_t n);
template <typename T>
void swiglu_backward(T* da, T* db, const T* dout, const T* a, const T* b, int64_t n);

// ---- Attention ---------------------------------------------------------------------------
// RoPE, GPT-NeoX style (rotate halves) over the first rope_dims of each head, base `base`.
// Table: cos/sin[p, rope_dims/2] for absolute positions p = 0..max_pos-1, angle p * base^(-2i/rope_dims).
void rope_table(float* cos, float* sin, int64_t max_pos, int64_t rope_dims, double base, double condense_ratio);
void rope_table(double* cos, double* sin, int64_t max_pos, int64_t rope_dims, double base, double condense_ratio);

// Splits the fused qkv projection (lit_gpt grouped layout: for each of G groups, q_per_kv = H/G
// query heads, then one key head, then one value head, each hs wide) into
//   q[B, H, T, hs], k[B, G, T, hs], v[B, G, T, hs]
// and applies RoPE to q and k at absolute positions pos0 + t (rope_dims == 0: no RoPE).
template <typename T>
void qkv_split_rope_forward(T* q, T* k, T* v, const T* qkv, const T* cos, const T* sin, int64_t B, int64_t Tn,
                            int64_t H, int64_t G, int64_t hs, int64_t rope_dims, int64_t pos0);
// Backward: dqkv[B, T, (H+2G)*hs] += the gradients of q, k, v mapped back through RoPE and the split.
template <typename T>
void qkv_split_rope_backward(T* dqkv, const T* dq, const T* dk, const T* dv, const T* cos, const T* sin, int64_t B,
                             int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t rope_dims, int64_t pos0);

// Causal attention with an optional sliding window: query t sees keys s with
// t - window < s <= t (window keys including itself); window <= 0 means full causal.
// Query head h uses kv head h / (H/G). Scale = 1/sqrt(hs) unless given.
//   out[B, T, H*hs] (token-major, ready for the output projection); lse[B, H, T] = log-sum-exp of the
//   scaled scores per query (saved for backward).
template <typename T>
void attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, int64_t B, int64_t Tn, int64_t H,
                       int64_t G, int64_t hs, int64_t window, double scale);
// Reference attention (the test oracle for attention_forward): fills the masked score matrix of each
// (b, h) into the caller's scratch scores[Tn * Tn], then softmax and P.V in double. Same outputs.
template <typename T>
void attention_ref_forward(T* out, T* lse, T* scores, const T* q, const T* k, const T* v, int64_t B, int64_t Tn,
                           int64_t H, int64_t G, int64_t hs, int64_t window, double scale);
// dq, dk, dv accumulate. Recomputes probabilities from q, k and lse (FlashAttention-style).
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* out, const T* lse, const T* q, const T* k,
                        const T* v, int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t window,
                        double scale);

// ---- Loss --------------------------------------------------------------------------------
// Mean cross-entropy over n positions and the whole padded vocabulary V: returns the mean loss and
// writes per-position losses to `losses` (may be nullptr). Targets < 0 are ignored (not counted).
// If dlogits is given, writes (not adds) d(mean loss)/d logits * dloss_scale into it; it may alias logits.
template <typename T>
double cross_entropy_forward_backward(T* dlogits, T* losses, const T* logits, const int32_t* targets, int64_t n,
                                      int64_t V, double dloss_scale);

}  // namespace sambalm::ops
