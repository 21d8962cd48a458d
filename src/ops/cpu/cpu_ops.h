// The CPU backend: one body per op of ops.h, same arguments less the backend context (the CPU needs
// no stream or handle; scratch comes as explicit buffers). ops.h documents each op; these are the
// functions a backend provides (docs/ARCHITECTURE.md, "Adding a backend").
#pragma once

#include <cstdint>

#include "core/packed_matrix.h"

namespace sambalm::ops::cpu {

template <typename T>
void matmul_forward(T* out, const T* inp, const T* weight, const T* bias, int64_t M, int64_t K, int64_t N);
template <typename T>
void matmul_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, int64_t M, int64_t K,
                     int64_t N);
template <typename T>
void matmul_forward_strided(T* out, int64_t ld_out, const T* inp, int64_t ld_inp, const T* weight, const T* bias,
                            int64_t M, int64_t K, int64_t N);
template <typename T>
void matmul_backward_strided(T* dinp, int64_t ld_dinp, T* dweight, T* dbias, const T* dout, int64_t ld_dout,
                             const T* inp, int64_t ld_inp, const T* weight, int64_t M, int64_t K, int64_t N);
// Packed weights (core/packed_matrix.h), float32 compute only (matmul_packed.cpp).
void matmul_forward_packed(float* out, int64_t ld_out, const float* inp, int64_t ld_inp, const PackedMatrix& W,
                           const float* bias, int64_t M, int64_t K, int64_t N);
void embedding_forward_packed(float* out, const int32_t* ids, const PackedMatrix& table, int64_t n, int64_t C);
template <typename T>
void embedding_forward(T* out, const int32_t* ids, const T* table, int64_t n, int64_t C);
template <typename T>
void embedding_backward(T* dtable, const T* dout, const int32_t* ids, int64_t n, int64_t C);
template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* x, const T* weight, int64_t n, int64_t C, double eps);
template <typename T>
void rmsnorm_backward(T* dx, T* dweight, const T* dout, const T* x, const T* weight, const T* rstd, int64_t n,
                      int64_t C);
template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* x, const T* weight, const T* bias, int64_t n, int64_t C,
                       double eps);
template <typename T>
void layernorm_backward(T* dx, T* dweight, T* dbias, const T* dout, const T* x, const T* weight, const T* mean,
                        const T* rstd, int64_t n, int64_t C);
template <typename T>
void add_inplace(T* y, const T* x, int64_t n);
template <typename T>
void residual_add(T* out, const T* x, const T* f, int64_t n);
template <typename To, typename From>
void convert(To* out, const From* in, int64_t n);
template <typename T>
void swiglu_forward(T* out, const T* a, const T* b, int64_t n);
template <typename T>
void swiglu_backward(T* da, T* db, const T* dout, const T* a, const T* b, int64_t n);
void rope_table(float* cos, float* sin, int64_t max_pos, int64_t rope_dims, double base, double condense_ratio);
void rope_table(double* cos, double* sin, int64_t max_pos, int64_t rope_dims, double base, double condense_ratio);
template <typename T>
void qkv_split_rope_forward(T* q, T* k, T* v, const T* qkv, const T* cos, const T* sin, int64_t B, int64_t Tn,
                            int64_t H, int64_t G, int64_t hs, int64_t rope_dims, int64_t pos0,
                            int64_t cs_batch_rows = 0);
template <typename T>
void qkv_split_rope_backward(T* dqkv, const T* dq, const T* dk, const T* dv, const T* cos, const T* sin, int64_t B,
                             int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t rope_dims, int64_t pos0,
                             int64_t cs_batch_rows = 0);
template <typename T>
void attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, int64_t B, int64_t Tn, int64_t H, int64_t G,
                       int64_t hs, int64_t window, double scale);
template <typename T>
void attention_ref_forward(T* out, T* lse, T* scores, const T* q, const T* k, const T* v, int64_t B, int64_t Tn,
                           int64_t H, int64_t G, int64_t hs, int64_t window, double scale);
// scratch: unused (the CPU backward needs none: attention_backward_scratch_size is 0).
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* out, const T* lse, const T* q, const T* k,
                        const T* v, int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t window,
                        double scale, T* scratch = nullptr);
template <typename T>
inline int64_t attention_backward_scratch_size(const T* /*type*/, int64_t, int64_t, int64_t, int64_t, int64_t) {
  return 0;
}
template <typename T>
void diff_lambda_forward(T* lambda, const T* lq1, const T* lk1, const T* lq2, const T* lk2, int64_t hd,
                         double lambda_init);
template <typename T>
void diff_lambda_backward(T* dlq1, T* dlk1, T* dlq2, T* dlk2, const T* dlambda, const T* lq1, const T* lk1,
                          const T* lq2, const T* lk2, int64_t hd);
template <typename T>
void diff_attention_forward(T* out, T* lse, const T* q, int64_t ldq, const T* k, const T* v, int64_t ldkv,
                            const T* lambda, int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hd, int64_t window,
                            double scale);
template <typename T>
void diff_attention_backward(T* dq, T* dk, T* dv, T* dlambda, T* dlambda_parts, const T* dout, const T* lse, const T* q,
                             int64_t ldq, const T* k, const T* v, int64_t ldkv, const T* lambda, int64_t B, int64_t Tn,
                             int64_t H, int64_t G, int64_t hd, int64_t window, double scale);
template <typename T>
void diff_attention_cached_forward(T* out, const T* q, int64_t ldq, const T* k_new, const T* v_new, int64_t ldkv,
                                   const T* k_cache, const T* v_cache, const int32_t* slots, const int64_t* pos,
                                   const T* lambda, int64_t B, int64_t L, int64_t H, int64_t G, int64_t hd, int64_t cap,
                                   int64_t window, double scale);
template <typename T>
void kv_cache_write_rows(T* k_cache, T* v_cache, const T* k_new, const T* v_new, int64_t ldkv, const int32_t* slots,
                         const int64_t* pos, int64_t B, int64_t L, int64_t G, int64_t hd, int64_t cap);
template <typename T>
void take_last_rows(T* x, int64_t width, int64_t B, int64_t L);
void last_positions(int64_t* last, const int64_t* pos, int64_t B, int64_t L);
template <typename T>
double cross_entropy_forward_backward(T* dlogits, T* losses, const T* logits, const int32_t* targets, int64_t n,
                                      int64_t V, double dloss_scale);
template <typename T>
void causal_conv1d_forward(T* out, const T* x, int64_t ld_x, const T* w, const T* bias, const T* state, int64_t B,
                           int64_t L, int64_t D, int64_t K, const int32_t* slots = nullptr);
template <typename T>
void causal_conv1d_backward(T* dx, int64_t ld_dx, T* dw, T* dbias, const T* dout, const T* x, int64_t ld_x, const T* w,
                            const T* state, int64_t B, int64_t L, int64_t D, int64_t K);
template <typename T>
void causal_conv1d_silu_forward(T* out, T* act, const T* x, int64_t ld_x, const T* w, const T* bias, const T* state,
                                int64_t B, int64_t L, int64_t D, int64_t K, const int32_t* slots = nullptr);
template <typename T>
void causal_conv1d_silu_backward(T* dx, int64_t ld_dx, T* dw, T* dbias, const T* dact, const T* pre, const T* x,
                                 int64_t ld_x, const T* w, const T* state, int64_t B, int64_t L, int64_t D, int64_t K);
template <typename T>
void causal_conv1d_state_update(T* new_state, const T* x, int64_t ld_x, const T* state, int64_t B, int64_t L, int64_t D,
                                int64_t K, const int32_t* slots = nullptr);
template <typename T>
void silu_forward(T* out, const T* x, int64_t n);
template <typename T>
void silu_backward(T* dx, const T* dout, const T* x, int64_t n);
template <typename T>
void softplus_forward(T* out, const T* x, int64_t n);
template <typename T>
void softplus_backward(T* dx, const T* dout, const T* x, int64_t n);
template <typename T>
void silu_gate_forward(T* out, const T* y, const T* z, int64_t ld_z, int64_t rows, int64_t D);
template <typename T>
void silu_gate_backward(T* dy, T* dz, int64_t ld_dz, const T* dout, const T* y, const T* z, int64_t ld_z, int64_t rows,
                        int64_t D);
template <typename T>
void selective_scan_ref_forward(T* y, T* h_last, const T* u, const T* delta, const T* A, const T* Bm, const T* Cm,
                                int64_t ld_bc, const T* Dskip, const T* h0, int64_t B, int64_t L, int64_t D, int64_t N);
template <typename T>
void selective_scan_forward(T* y, T* h_last, T* chunk_states, const T* u, const T* delta, const T* A, const T* Bm,
                            const T* Cm, int64_t ld_bc, const T* Dskip, const T* h0, int64_t B, int64_t L, int64_t D,
                            int64_t N, int64_t chunk, const int32_t* slots = nullptr);
int64_t selective_scan_chunk_states_size(int64_t B, int64_t L, int64_t D, int64_t N, int64_t chunk);
template <typename T>
void selective_scan_backward(T* du, T* ddelta, T* dA, T* dBm, T* dCm, T* dDskip, T* dh0, const T* dy,
                             const T* chunk_states, const T* u, const T* delta, const T* A, const T* Bm, const T* Cm,
                             int64_t ld_bc, const T* Dskip, const T* h0, int64_t B, int64_t L, int64_t D, int64_t N,
                             int64_t chunk, T* scratch);
int64_t selective_scan_backward_scratch_size(int64_t B, int64_t L, int64_t D, int64_t N, int64_t chunk);
template <typename T>
void selective_scan_step(T* y, T* h, const T* u, const T* delta, const T* A, const T* Bm, const T* Cm, int64_t ld_bc,
                         const T* Dskip, int64_t B, int64_t D, int64_t N, const int32_t* slots = nullptr);

template <typename T>
void rope_at_positions(T* cos, T* sin, const int64_t* pos, int64_t B, int64_t L, int64_t rope_dims, double base,
                       double condense_ratio);
template <typename T>
void attention_cached_forward(T* out, const T* q, const T* k_new, const T* v_new, const T* k_cache, const T* v_cache,
                              const int32_t* slots, const int64_t* pos, int64_t B, int64_t L, int64_t H, int64_t G,
                              int64_t hs, int64_t cap, int64_t window, double scale);
template <typename T>
void kv_cache_write(T* k_cache, T* v_cache, const T* k_new, const T* v_new, const int32_t* slots, const int64_t* pos,
                    int64_t B, int64_t L, int64_t G, int64_t hs, int64_t cap);
template <typename T>
void neg_exp_forward(T* A, const T* A_log, int64_t n);
template <typename T>
void neg_exp_backward(T* dA_log, const T* dA, const T* A, int64_t n);
template <typename T>
void adamw_update(T* params, const T* grads, T* m, T* v, int64_t n, double lr, double beta1, double beta2, double eps,
                  double weight_decay, int64_t t);
template <typename T>
void sum_squares(double* out, const T* x, int64_t n);
template <typename T>
void scale_inplace(T* x, int64_t n, double s);

}  // namespace sambalm::ops::cpu
