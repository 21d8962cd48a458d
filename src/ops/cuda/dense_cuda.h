// CUDA bodies of the elementwise, embedding, norm, RoPE, KV-cache, cross-entropy and optimizer ops
// (their CPU twins and the exact semantics: ops/dense_ops.h, mamba_ops.h, optim_ops.h). Each is an
// overload for float (--precision fp32) and bf16 (fp32 math inside, fp32 statistics), except where
// noted. All pointers are device pointers; every call is queued on ctx's stream and returns at once,
// except cross_entropy_forward_backward, which returns the mean loss to the host (one synchronisation).
// Included by cuda_ops.h; C++17, no CUDA headers.
#pragma once

#include <cstdint>

#include "core/bf16.h"
#include "core/context.h"

namespace sambalm::ops::cuda {

#define SAMBALM_CUDA_DENSE_DECL(T)                                                                                   \
  void add_inplace(const Context& ctx, T* y, const T* x, int64_t n);                                                 \
  void swiglu_forward(const Context& ctx, T* out, const T* a, const T* b, int64_t n);                                \
  void swiglu_backward(const Context& ctx, T* da, T* db, const T* dout, const T* a, const T* b, int64_t n);          \
  void silu_forward(const Context& ctx, T* out, const T* x, int64_t n);                                              \
  void silu_backward(const Context& ctx, T* dx, const T* dout, const T* x, int64_t n);                               \
  void softplus_forward(const Context& ctx, T* out, const T* x, int64_t n);                                          \
  void softplus_backward(const Context& ctx, T* dx, const T* dout, const T* x, int64_t n);                           \
  void silu_gate_forward(const Context& ctx, T* out, const T* y, const T* z, int64_t ld_z, int64_t rows, int64_t D); \
  void silu_gate_backward(const Context& ctx, T* dy, T* dz, int64_t ld_dz, const T* dout, const T* y, const T* z,    \
                          int64_t ld_z, int64_t rows, int64_t D);                                                    \
  void embedding_forward(const Context& ctx, T* out, const int32_t* ids, const T* table, int64_t n, int64_t C);      \
  void embedding_backward(const Context& ctx, T* dtable, const T* dout, const int32_t* ids, int64_t n, int64_t C);   \
  void rope_table(const Context& ctx, T* cos, T* sin, int64_t max_pos, int64_t rope_dims, double base,               \
                  double condense_ratio);                                                                            \
  void rope_at_positions(const Context& ctx, T* cos, T* sin, const int64_t* pos, int64_t B, int64_t L,               \
                         int64_t rope_dims, double base, double condense_ratio);                                     \
  void qkv_split_rope_forward(const Context& ctx, T* q, T* k, T* v, const T* qkv, const T* cos, const T* sin,        \
                              int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t rope_dims,            \
                              int64_t pos0, int64_t cs_batch_rows);                                                  \
  void qkv_split_rope_backward(const Context& ctx, T* dqkv, const T* dq, const T* dk, const T* dv, const T* cos,     \
                               const T* sin, int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs,                \
                               int64_t rope_dims, int64_t pos0, int64_t cs_batch_rows);                              \
  void kv_cache_write(const Context& ctx, T* k_cache, T* v_cache, const T* k_new, const T* v_new,                    \
                      const int32_t* slots, const int64_t* pos, int64_t B, int64_t L, int64_t G, int64_t hs,         \
                      int64_t cap);                                                                                  \
  double cross_entropy_forward_backward(const Context& ctx, T* dlogits, float* losses, const T* logits,              \
                                        const int32_t* targets, int64_t n, int64_t V, double dloss_scale);           \
  void sum_squares(const Context& ctx, double* out, const T* x, int64_t n);                                          \
  void scale_inplace(const Context& ctx, T* x, int64_t n, double s);
SAMBALM_CUDA_DENSE_DECL(float)
SAMBALM_CUDA_DENSE_DECL(bf16)
#undef SAMBALM_CUDA_DENSE_DECL

// Norms: T the normed output and d(output), X the input and d(input), W the weights, G the weight
// gradients. All one type, or the bf16 mode's block norm: the fp32 residual and fp32 weights (from the
// master copy) in, bf16 out; d(output) bf16, d(residual) and the weight gradients fp32.
#define SAMBALM_CUDA_NORMS_DECL(T, X, W, G)                                                                            \
  void rmsnorm_forward(const Context& ctx, T* out, float* rstd, const X* x, const W* weight, int64_t n, int64_t C,     \
                       double eps);                                                                                    \
  void rmsnorm_backward(const Context& ctx, X* dx, G* dweight, const T* dout, const X* x, const W* weight,             \
                        const float* rstd, int64_t n, int64_t C);                                                      \
  void layernorm_forward(const Context& ctx, T* out, float* mean, float* rstd, const X* x, const W* weight,            \
                         const W* bias, int64_t n, int64_t C, double eps);                                             \
  void layernorm_backward(const Context& ctx, X* dx, G* dweight, G* dbias, const T* dout, const X* x, const W* weight, \
                          const float* mean, const float* rstd, int64_t n, int64_t C);
SAMBALM_CUDA_NORMS_DECL(float, float, float, float)
SAMBALM_CUDA_NORMS_DECL(bf16, bf16, bf16, bf16)
SAMBALM_CUDA_NORMS_DECL(bf16, float, float, float)
#undef SAMBALM_CUDA_NORMS_DECL

// The residual step out = x + f (out may be x): fp32 residual beside an fp32 or bf16 sublayer output.
void residual_add(const Context& ctx, float* out, const float* x, const float* f, int64_t n);
void residual_add(const Context& ctx, float* out, const float* x, const bf16* f, int64_t n);
// bf16 mode: softplus of the fp32 dt_pre into the bf16 dt, and its backward (dx, dout bf16).
void softplus_forward(const Context& ctx, bf16* out, const float* x, int64_t n);
void softplus_backward(const Context& ctx, bf16* dx, const bf16* dout, const float* x, int64_t n);
// The bf16 working copy of the fp32 master parameters (round to nearest even).
void convert(const Context& ctx, bf16* out, const float* in, int64_t n);

// fp32 only, by design: A_log and A = -exp(A_log) are fp32 masters in every precision (their
// statistics type, core/precision.h), and the optimizer's parameters and moments are fp32.
void neg_exp_forward(const Context& ctx, float* A, const float* A_log, int64_t n);
void neg_exp_backward(const Context& ctx, float* dA_log, const float* dA, const float* A, int64_t n);
void adamw_update(const Context& ctx, float* params, const float* grads, float* m, float* v, int64_t n, double lr,
                  double beta1, double beta2, double eps, double weight_decay, int64_t t);

}  // namespace sambalm::ops::cuda
