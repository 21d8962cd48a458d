// Mamba mixer ops: causal depthwise convolution and the selective scan. See ops.h for conventions.
// Shapes: B batch, L sequence length, D = d_inner channels, N = d_state, K = d_conv.
#pragma once

#include <cstdint>

#include "core/precision.h"
#include "ops/dispatch.h"

namespace sambalm::ops {

// ---- Causal depthwise conv1d (+ bias), no activation ---------------------------------------
//   out[b, t, d] = bias[d] + sum_{j=0}^{K-1} w[d, j] * xx[b, t - (K-1) + j, d]
// where xx is x preceded by the K-1 rows of `state` ([B, K-1, D], nullptr = zeros).
// x and out are [B, L, D] with row stride ld_x / D (x may be a view into in_proj's output).
template <typename T>
inline void causal_conv1d_forward(const Context& ctx, T* out, const T* x, int64_t ld_x, const T* w, const T* bias,
                                  const T* state, int64_t B, int64_t L, int64_t D, int64_t K,
                                  const int32_t* slots = nullptr) {
  SAMBALM_OP_DISPATCH(ctx, causal_conv1d_forward, out, x, ld_x, w, bias, state, B, L, D, K, slots);
}
// dx (row stride ld_dx) += ..., dw[D, K] += ..., dbias[D] += ... (state treated as constant). The
// parameter gradients dw, dbias have their own element type G (fp32 on the GPU in bf16; G = T on the CPU).
template <typename T, typename G>
inline void causal_conv1d_backward(const Context& ctx, T* dx, int64_t ld_dx, G* dw, G* dbias, const T* dout, const T* x,
                                   int64_t ld_x, const T* w, const T* state, int64_t B, int64_t L, int64_t D,
                                   int64_t K) {
  SAMBALM_OP_DISPATCH(ctx, causal_conv1d_backward, dx, ld_dx, dw, dbias, dout, x, ld_x, w, state, B, L, D, K);
}
// causal_conv1d_forward that also writes act = silu(out) ([B, L, D], dense) in the same pass: the
// Mamba layer keeps both (out is what the backward differentiates the SiLU at).
template <typename T>
inline void causal_conv1d_silu_forward(const Context& ctx, T* out, T* act, const T* x, int64_t ld_x, const T* w,
                                       const T* bias, const T* state, int64_t B, int64_t L, int64_t D, int64_t K,
                                       const int32_t* slots = nullptr) {
  SAMBALM_OP_DISPATCH(ctx, causal_conv1d_silu_forward, out, act, x, ld_x, w, bias, state, B, L, D, K, slots);
}
// The backward of act = silu(pre), pre = conv1d(x) + bias, from d(act) and the saved pre ([B, L, D],
// dense): causal_conv1d_backward with dout = dact * silu'(pre), in one pass (that gradient is never
// stored). dx, dw, dbias accumulate (+=) as there; the GPU in bf16 rounds dout to bf16 on the way, as
// a stored bf16 gradient would be.
template <typename T, typename G>
inline void causal_conv1d_silu_backward(const Context& ctx, T* dx, int64_t ld_dx, G* dw, G* dbias, const T* dact,
                                        const T* pre, const T* x, int64_t ld_x, const T* w, const T* state, int64_t B,
                                        int64_t L, int64_t D, int64_t K) {
  SAMBALM_OP_DISPATCH(ctx, causal_conv1d_silu_backward, dx, ld_dx, dw, dbias, dact, pre, x, ld_x, w, state, B, L, D, K);
}
// Writes the last K-1 rows of (state ++ x) into new_state[B, K-1, D] (for decoding after a prefill).
template <typename T>
inline void causal_conv1d_state_update(const Context& ctx, T* new_state, const T* x, int64_t ld_x, const T* state,
                                       int64_t B, int64_t L, int64_t D, int64_t K, const int32_t* slots = nullptr) {
  SAMBALM_OP_DISPATCH(ctx, causal_conv1d_state_update, new_state, x, ld_x, state, B, L, D, K, slots);
}

// ---- SiLU, softplus ----------------------------------------------------------------------
template <typename T>
inline void silu_forward(const Context& ctx, T* out, const T* x, int64_t n) {
  SAMBALM_OP_DISPATCH(ctx, silu_forward, out, x, n);
}
template <typename T>
inline void silu_backward(const Context& ctx, T* dx, const T* dout, const T* x, int64_t n) {
  SAMBALM_OP_DISPATCH(ctx, silu_backward, dx, dout, x, n);
}
// out = softplus(x) = log(1 + exp(x)) (x > 20: x, as torch). Strided rows not needed: dt is dense.
// x may be of another type X than out (the GPU's bf16 mode keeps dt_pre, the input, in fp32).
template <typename T, typename X>
inline void softplus_forward(const Context& ctx, T* out, const X* x, int64_t n) {
  SAMBALM_OP_DISPATCH(ctx, softplus_forward, out, x, n);
}
template <typename T, typename X>
inline void softplus_backward(const Context& ctx, T* dx, const T* dout, const X* x, int64_t n) {
  SAMBALM_OP_DISPATCH(ctx, softplus_backward, dx, dout, x, n);
}
// Gate: out = y * silu(z), z a view with row stride ld_z over rows of D.
template <typename T>
inline void silu_gate_forward(const Context& ctx, T* out, const T* y, const T* z, int64_t ld_z, int64_t rows,
                              int64_t D) {
  SAMBALM_OP_DISPATCH(ctx, silu_gate_forward, out, y, z, ld_z, rows, D);
}
template <typename T>
inline void silu_gate_backward(const Context& ctx, T* dy, T* dz, int64_t ld_dz, const T* dout, const T* y, const T* z,
                               int64_t ld_z, int64_t rows, int64_t D) {
  SAMBALM_OP_DISPATCH(ctx, silu_gate_backward, dy, dz, ld_dz, dout, y, z, ld_z, rows, D);
}

// ---- State matrix --------------------------------------------------------------------------
// A = -exp(A_log) (A_log [D, N], the parameter); backward: dA_log += dA * A. All in the statistics
// type (precision.h): A_log, A and their gradients stay fp32 whatever the compute type.
template <typename T>
inline void neg_exp_forward(const Context& ctx, T* A, const T* A_log, int64_t n) {
  SAMBALM_OP_DISPATCH(ctx, neg_exp_forward, A, A_log, n);
}
template <typename T>
inline void neg_exp_backward(const Context& ctx, T* dA_log, const T* dA, const T* A, int64_t n) {
  SAMBALM_OP_DISPATCH(ctx, neg_exp_backward, dA_log, dA, A, n);
}

// ---- Selective scan -----------------------------------------------------------------------
// Per batch b, channel d, state n, time t:
//   h_t[n] = exp(delta_t[d] * A[d, n]) * h_{t-1}[n] + delta_t[d] * Bm_t[n] * u_t[d]
//   y_t[d] = sum_n Cm_t[n] * h_t[n] + Dskip[d] * u_t[d]
// u, delta, y: [B, L, D]. Bm, Cm: [B, L, N] rows with stride ld_bc (they are views into x_proj's
// output). A: [D, N] (already -exp(A_log)). h0: initial state [B, D, N] or nullptr (zeros).
// h_last: final state [B, D, N] or nullptr.
template <typename T>
inline void selective_scan_ref_forward(const Context& ctx, T* y, stat_t<T>* h_last, const T* u, const T* delta,
                                       const stat_t<T>* A, const T* Bm, const T* Cm, int64_t ld_bc,
                                       const stat_t<T>* Dskip, const stat_t<T>* h0, int64_t B, int64_t L, int64_t D,
                                       int64_t N) {
  SAMBALM_OP_DISPATCH(ctx, selective_scan_ref_forward, y, h_last, u, delta, A, Bm, Cm, ld_bc, Dskip, h0, B, L, D, N);
}

// Parallel scan (default): the sequence is cut into chunks of `chunk` steps scanned concurrently
// from a zero state, then chunk-boundary states are carried across chunks and each chunk's outputs
// corrected. `chunk_states` is scratch [B, ceil(L/chunk) + 1, D, N] that the backward reuses.
template <typename T>
inline void selective_scan_forward(const Context& ctx, T* y, stat_t<T>* h_last, stat_t<T>* chunk_states, const T* u,
                                   const T* delta, const stat_t<T>* A, const T* Bm, const T* Cm, int64_t ld_bc,
                                   const stat_t<T>* Dskip, const stat_t<T>* h0, int64_t B, int64_t L, int64_t D,
                                   int64_t N, int64_t chunk, const int32_t* slots = nullptr) {
  SAMBALM_OP_DISPATCH(ctx, selective_scan_forward, y, h_last, chunk_states, u, delta, A, Bm, Cm, ld_bc, Dskip, h0, B, L,
                      D, N, chunk, slots);
}
// Chunk length to pass when there is no reason to choose: in the CPU backward, shorter chunks mean
// more synchronisation and longer ones more scratch; 64 measured best of 16/64/256 (docs/BENCHMARKS.md).
inline constexpr int64_t kSelectiveScanDefaultChunk = 64;
// Size of the chunk_states scratch in elements (of stat_t<T>; the backend decides the layout).
template <typename T>
inline int64_t selective_scan_chunk_states_size(const Context& ctx, int64_t B, int64_t L, int64_t D, int64_t N,
                                                int64_t chunk) {
  SAMBALM_OP_DISPATCH(ctx, selective_scan_chunk_states_size, B, L, D, N, chunk);
}

// Backward of selective_scan_forward (uses the chunk_states it saved; recomputes the rest).
// du, ddelta [B, L, D]; dA [D, N]; dBm, dCm [B, L, N] with row stride ld_bc; dDskip [D]; dh0 [B, D, N]
// (nullable). All accumulate. `scratch` holds selective_scan_backward_scratch_size elements.
template <typename T>
inline void selective_scan_backward(const Context& ctx, T* du, T* ddelta, stat_t<T>* dA, T* dBm, T* dCm,
                                    stat_t<T>* dDskip, stat_t<T>* dh0, const T* dy, const stat_t<T>* chunk_states,
                                    const T* u, const T* delta, const stat_t<T>* A, const T* Bm, const T* Cm,
                                    int64_t ld_bc, const stat_t<T>* Dskip, const stat_t<T>* h0, int64_t B, int64_t L,
                                    int64_t D, int64_t N, int64_t chunk, stat_t<T>* scratch) {
  SAMBALM_OP_DISPATCH(ctx, selective_scan_backward, du, ddelta, dA, dBm, dCm, dDskip, dh0, dy, chunk_states, u, delta,
                      A, Bm, Cm, ld_bc, Dskip, h0, B, L, D, N, chunk, scratch);
}
template <typename T>
inline int64_t selective_scan_backward_scratch_size(const Context& ctx, int64_t B, int64_t L, int64_t D, int64_t N,
                                                    int64_t chunk) {
  SAMBALM_OP_DISPATCH(ctx, selective_scan_backward_scratch_size, B, L, D, N, chunk);
}

// One decoding step for a batch of sequences (L = 1), updating h in place: h [B, D, N].
template <typename T>
inline void selective_scan_step(const Context& ctx, T* y, stat_t<T>* h, const T* u, const T* delta, const stat_t<T>* A,
                                const T* Bm, const T* Cm, int64_t ld_bc, const stat_t<T>* Dskip, int64_t B, int64_t D,
                                int64_t N, const int32_t* slots = nullptr) {
  SAMBALM_OP_DISPATCH(ctx, selective_scan_step, y, h, u, delta, A, Bm, Cm, ld_bc, Dskip, B, D, N, slots);
}

}  // namespace sambalm::ops
