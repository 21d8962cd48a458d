// CUDA bodies of the Mamba mixer ops of ops/mamba_ops.h: causal depthwise conv1d and the selective
// scan. Same arguments, layouts and accumulate/overwrite rules as the CPU bodies (src/ops/cpu/
// conv1d.cpp, selective_scan*.cpp), plus the Context first; all pointers (slots included) are device
// pointers. Overloads for float (--precision fp32) and bf16 (activations bf16; A, Dskip, the states and
// their gradients fp32 = stat_t<bf16>). Included by cuda_ops.h; C++17, no CUDA headers.
#pragma once

#include <cstdint>

#include "core/bf16.h"
#include "core/context.h"

namespace sambalm::ops::cuda {

#define SAMBALM_CUDA_MAMBA_DECL(T, S)                                                                                \
  void causal_conv1d_forward(const Context& ctx, T* out, const T* x, int64_t ld_x, const T* w, const T* bias,        \
                             const T* state, int64_t B, int64_t L, int64_t D, int64_t K, const int32_t* slots);      \
  void causal_conv1d_backward(const Context& ctx, T* dx, int64_t ld_dx, T* dw, T* dbias, const T* dout, const T* x,  \
                              int64_t ld_x, const T* w, const T* state, int64_t B, int64_t L, int64_t D, int64_t K); \
  void causal_conv1d_silu_forward(const Context& ctx, T* out, T* act, const T* x, int64_t ld_x, const T* w,          \
                                  const T* bias, const T* state, int64_t B, int64_t L, int64_t D, int64_t K,         \
                                  const int32_t* slots);                                                             \
  void causal_conv1d_silu_backward(const Context& ctx, T* dx, int64_t ld_dx, T* dw, T* dbias, const T* dact,         \
                                   const T* pre, const T* x, int64_t ld_x, const T* w, const T* state, int64_t B,    \
                                   int64_t L, int64_t D, int64_t K);                                                 \
  void causal_conv1d_state_update(const Context& ctx, T* new_state, const T* x, int64_t ld_x, const T* state,        \
                                  int64_t B, int64_t L, int64_t D, int64_t K, const int32_t* slots);                 \
  void selective_scan_ref_forward(const Context& ctx, T* y, S* h_last, const T* u, const T* delta, const S* A,       \
                                  const T* Bm, const T* Cm, int64_t ld_bc, const S* Dskip, const S* h0, int64_t B,   \
                                  int64_t L, int64_t D, int64_t N);                                                  \
  void selective_scan_forward(const Context& ctx, T* y, S* h_last, S* chunk_states, const T* u, const T* delta,      \
                              const S* A, const T* Bm, const T* Cm, int64_t ld_bc, const S* Dskip, const S* h0,      \
                              int64_t B, int64_t L, int64_t D, int64_t N, int64_t chunk, const int32_t* slots);      \
  void selective_scan_backward(const Context& ctx, T* du, T* ddelta, S* dA, T* dBm, T* dCm, S* dDskip, S* dh0,       \
                               const T* dy, const S* chunk_states, const T* u, const T* delta, const S* A,           \
                               const T* Bm, const T* Cm, int64_t ld_bc, const S* Dskip, const S* h0, int64_t B,      \
                               int64_t L, int64_t D, int64_t N, int64_t chunk, S* scratch);                          \
  void selective_scan_step(const Context& ctx, T* y, S* h, const T* u, const T* delta, const S* A, const T* Bm,      \
                           const T* Cm, int64_t ld_bc, const S* Dskip, int64_t B, int64_t D, int64_t N,              \
                           const int32_t* slots);
SAMBALM_CUDA_MAMBA_DECL(float, float)
SAMBALM_CUDA_MAMBA_DECL(bf16, float)
#undef SAMBALM_CUDA_MAMBA_DECL
// bf16 mode: the conv's weight and bias gradients in fp32.
void causal_conv1d_backward(const Context& ctx, bf16* dx, int64_t ld_dx, float* dw, float* dbias, const bf16* dout,
                            const bf16* x, int64_t ld_x, const bf16* w, const bf16* state, int64_t B, int64_t L,
                            int64_t D, int64_t K);
void causal_conv1d_silu_backward(const Context& ctx, bf16* dx, int64_t ld_dx, float* dw, float* dbias, const bf16* dact,
                                 const bf16* pre, const bf16* x, int64_t ld_x, const bf16* w, const bf16* state,
                                 int64_t B, int64_t L, int64_t D, int64_t K);

// Limits of these kernels (checked on the host; beyond them the op throws naming the limit).
inline constexpr int64_t kCudaConvMaxK = 8;    // conv taps held in registers
inline constexpr int64_t kCudaScanMaxN = 256;  // scan states a thread holds (d_state is 16 in practice)

// The CUDA scan's checkpoints (chunk_states, selective_scan_chunk_states_size): whatever `chunk` the
// caller passes, the CUDA forward saves the state every kCudaScanCheckpoint steps, the interval the
// backward's tiles walk: [B, nck + 1, D, N] fp32, nck = ceil(L / 16), entry c = the state before
// step 16 c (entry 0 = h0 or 0) and entry nck = the final state. That is the CPU's layout for
// chunk = 16 (so the last entry is the final state on either device).
inline constexpr int64_t kCudaScanCheckpoint = 16;
inline int64_t cuda_scan_checkpoints(int64_t L) { return (L + kCudaScanCheckpoint - 1) / kCudaScanCheckpoint; }

// The CUDA backward's scratch (elements of float; selective_scan_backward_scratch_size): fp32
// accumulators for dBm | dCm, [B, L, 2N] (summed over channel blocks with atomics), added into the
// caller's (possibly bf16, strided) dBm / dCm at the end. The states h_t live in shared memory.
struct CudaScanBackwardScratch {
  int64_t dbc = 0, total = 0;
  CudaScanBackwardScratch(int64_t B, int64_t L, int64_t /*D*/, int64_t N, int64_t /*chunk*/) {
    total = dbc + B * L * 2 * N;
  }
};

// Throws sambalm::Error "op: what = value, this CUDA kernel supports at most limit" (scan_sizes.cpp:
// .cu files cannot format messages).
[[noreturn]] void raise_unsupported(const char* op, const char* what, int64_t value, int64_t limit);
// Throws sambalm::Error "op: what must be positive, got value".
[[noreturn]] void raise_not_positive(const char* op, const char* what, int64_t value);

}  // namespace sambalm::ops::cuda
