// The CUDA bodies of the ops (ops/dispatch.h sends an op call here when its context's device is
// CUDA). Each is an overload for the element types the GPU computes in: float (--precision fp32, the
// same kernels for exact comparison with the CPU) and bf16 beside fp32 statistics (core/bf16.h).
// All pointers are device pointers; every call is queued on ctx's stream and returns at once.
// Host code includes this header without CUDA's.
#pragma once

#include <cstdint>

#include "core/bf16.h"
#include "core/context.h"

namespace sambalm::ops::cuda {

// Every op of ops/*.h, once. Each name also gets a deleted catch-all overload `op(...)`: the worst
// possible match, so a call with the right types finds the real body and one without a body (yet)
// makes the dispatcher's `requires` false instead of failing name lookup. An op added to ops/*.h is
// added here too (the build says so).
#define SAMBALM_CUDA_OPS(X) \
  X(adamw_update) \
  X(add_inplace) \
  X(attention_backward) \
  X(attention_backward_scratch_size) \
  X(attention_cached_forward) \
  X(attention_forward) \
  X(attention_ref_forward) \
  X(causal_conv1d_backward) \
  X(causal_conv1d_forward) \
  X(causal_conv1d_silu_backward) \
  X(causal_conv1d_silu_forward) \
  X(causal_conv1d_state_update) \
  X(convert) \
  X(cross_entropy_forward_backward) \
  X(diff_attention_backward) \
  X(diff_attention_cached_forward) \
  X(diff_attention_forward) \
  X(diff_lambda_backward) \
  X(diff_lambda_forward) \
  X(embedding_backward) \
  X(embedding_forward) \
  X(kv_cache_write) \
  X(kv_cache_write_rows) \
  X(layernorm_backward) \
  X(layernorm_forward) \
  X(matmul_backward) \
  X(matmul_backward_strided) \
  X(matmul_forward) \
  X(matmul_forward_strided) \
  X(neg_exp_backward) \
  X(neg_exp_forward) \
  X(qkv_split_rope_backward) \
  X(qkv_split_rope_forward) \
  X(residual_add) \
  X(rmsnorm_backward) \
  X(rmsnorm_forward) \
  X(rope_at_positions) \
  X(rope_table) \
  X(scale_inplace) \
  X(selective_scan_backward) \
  X(selective_scan_backward_scratch_size) \
  X(selective_scan_chunk_states_size) \
  X(selective_scan_forward) \
  X(selective_scan_ref_forward) \
  X(selective_scan_step) \
  X(silu_backward) \
  X(silu_forward) \
  X(silu_gate_backward) \
  X(silu_gate_forward) \
  X(softplus_backward) \
  X(softplus_forward) \
  X(sum_squares) \
  X(swiglu_backward) \
  X(swiglu_forward) \
  X(take_last_rows) \
  X(last_positions)
#define SAMBALM_CUDA_DELETED_FALLBACK(op) void op(...) = delete;
SAMBALM_CUDA_OPS(SAMBALM_CUDA_DELETED_FALLBACK)
#undef SAMBALM_CUDA_DELETED_FALLBACK

// ---- GEMM (cuBLASLt, fp32 accumulation; the bias rides in the GEMM's epilogue) ----------------
// Conventions as ops/dense_ops.h: out[M, N] = inp[M, K] @ weight[N, K]^T (+ bias[N]);
// backward accumulates: dinp += dout @ weight, dweight += dout^T @ inp, dbias += sum_m dout.
#define SAMBALM_CUDA_MATMUL_DECL(T)                                                                                  \
  void matmul_forward(const Context& ctx, T* out, const T* inp, const T* weight, const T* bias, int64_t M, int64_t K, \
                      int64_t N);                                                                                    \
  void matmul_backward(const Context& ctx, T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,               \
                       const T* weight, int64_t M, int64_t K, int64_t N);                                            \
  void matmul_forward_strided(const Context& ctx, T* out, int64_t ld_out, const T* inp, int64_t ld_inp,              \
                              const T* weight, const T* bias, int64_t M, int64_t K, int64_t N);                      \
  void matmul_backward_strided(const Context& ctx, T* dinp, int64_t ld_dinp, T* dweight, T* dbias, const T* dout,    \
                               int64_t ld_dout, const T* inp, int64_t ld_inp, const T* weight, int64_t M, int64_t K, \
                               int64_t N);
SAMBALM_CUDA_MATMUL_DECL(float)
SAMBALM_CUDA_MATMUL_DECL(bf16)
#undef SAMBALM_CUDA_MATMUL_DECL
// bf16 mixed precision: bf16 operands, the weight and bias gradients accumulated in fp32 (cuBLASLt with
// bf16 A/B and fp32 C/D, beta = 1), d(input) in bf16.
void matmul_backward(const Context& ctx, bf16* dinp, float* dweight, float* dbias, const bf16* dout, const bf16* inp,
                     const bf16* weight, int64_t M, int64_t K, int64_t N);
// bf16 operands, fp32 output and fp32 bias (Mamba's dt_pre with the fp32 dt bias).
void matmul_forward_strided(const Context& ctx, float* out, int64_t ld_out, const bf16* inp, int64_t ld_inp,
                            const bf16* weight, const float* bias, int64_t M, int64_t K, int64_t N);
void matmul_backward_strided(const Context& ctx, bf16* dinp, int64_t ld_dinp, float* dweight, float* dbias,
                             const bf16* dout, int64_t ld_dout, const bf16* inp, int64_t ld_inp, const bf16* weight,
                             int64_t M, int64_t K, int64_t N);

// dbias[N] += sum over M rows (row stride ld) of dout[M, N] (fp32 accumulation).
void bias_grad_accumulate(const Context& ctx, float* dbias, const float* dout, int64_t ld, int64_t M, int64_t N);
void bias_grad_accumulate(const Context& ctx, bf16* dbias, const bf16* dout, int64_t ld, int64_t M, int64_t N);
void bias_grad_accumulate(const Context& ctx, float* dbias, const bf16* dout, int64_t ld, int64_t M, int64_t N);

// ---- Selective scan scratch sizes (elements of float). chunk_states keeps the CPU's layout (the fp32
// state at every chunk boundary, the last entry the final state) with the CUDA kernels' own chunk of
// kCudaScanCheckpoint = 16 steps whatever the caller's `chunk`; the backward's scratch has the GPU
// kernel's own layout (mamba_cuda.h).
int64_t selective_scan_chunk_states_size(const Context& ctx, int64_t B, int64_t L, int64_t D, int64_t N,
                                         int64_t chunk);
int64_t selective_scan_backward_scratch_size(const Context& ctx, int64_t B, int64_t L, int64_t D, int64_t N,
                                             int64_t chunk);

}  // namespace sambalm::ops::cuda

// The bodies of each area, declared beside their kernels.
#include "ops/cuda/attention_cuda.h"
#include "ops/cuda/decode_cuda.h"  // SambaY's KV write from token rows, last-token gather
#include "ops/cuda/dense_cuda.h"  // elementwise, embedding, norms, RoPE, KV cache, cross-entropy, optimizer
#include "ops/cuda/mamba_cuda.h"
