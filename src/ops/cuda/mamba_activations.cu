// The Mamba mixer's SiLU ops on CUDA: silu_forward / silu_backward (after the conv) and the gate
// silu_gate_forward / silu_gate_backward (y * silu(z) before out_proj). Kernels and their math:
// silu_kernels.cuh (16 bytes a thread, fp32 math, the CPU's formulas; forward overwrites, backward
// adds, null gradient outputs skipped).
#include <initializer_list>

#include "ops/cuda/check.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/mixer_common.cuh"
#include "ops/cuda/silu_kernels.cuh"

namespace sambalm::ops::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 8192;  // grid-stride loops cover the rest

// Items of rows x D values, 16 bytes each; `vec` when every row of every array (row strides given,
// 0 for the dense ones) starts on a 16-byte boundary.
template <typename S>
silu_k::Items items(int64_t rows, int64_t D, std::initializer_list<const void*> ptrs,
                    std::initializer_list<int64_t> strides) {
  constexpr int64_t V = vec16::Row16<S>::V;
  silu_k::Items it{rows, D, (D + V - 1) / V, rows == 1 || D % V == 0};
  for (const void* p : ptrs) it.vec = it.vec && vec16::aligned16(p);
  for (int64_t ld : strides) it.vec = it.vec && (rows == 1 || ld % V == 0);
  return it;
}

unsigned grid(const silu_k::Items& it) {
  const int64_t b = (it.rows * it.nvr + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < kMaxBlocks ? b : kMaxBlocks);
}

}  // namespace

#define SAMBALM_CUDA_SILU_DEF(T)                                                                                      \
  void silu_forward(const Context& ctx, T* out, const T* x, int64_t n) {                                              \
    using S = device_t<T>;                                                                                            \
    if (n <= 0) return;                                                                                               \
    const auto it = items<S>(1, n, {out, x}, {});                                                                     \
    silu_k::silu_forward<S><<<grid(it), kThreads, 0, stream_of(ctx)>>>(dev(out), dev(x), it);                         \
    SAMBALM_CUDA_LAUNCH_CHECK();                                                                                      \
  }                                                                                                                   \
  void silu_backward(const Context& ctx, T* dx, const T* dout, const T* x, int64_t n) {                               \
    using S = device_t<T>;                                                                                            \
    if (n <= 0) return;                                                                                               \
    const auto it = items<S>(1, n, {dx, dout, x}, {});                                                                \
    silu_k::silu_backward<S><<<grid(it), kThreads, 0, stream_of(ctx)>>>(dev(dx), dev(dout), dev(x), it);              \
    SAMBALM_CUDA_LAUNCH_CHECK();                                                                                      \
  }                                                                                                                   \
  void silu_gate_forward(const Context& ctx, T* out, const T* y, const T* z, int64_t ld_z, int64_t rows, int64_t D) { \
    using S = device_t<T>;                                                                                            \
    if (rows <= 0 || D <= 0) return;                                                                                  \
    const auto it = items<S>(rows, D, {out, y, z}, {ld_z});                                                           \
    silu_k::gate_forward<S><<<grid(it), kThreads, 0, stream_of(ctx)>>>(dev(out), dev(y), dev(z), ld_z, it);           \
    SAMBALM_CUDA_LAUNCH_CHECK();                                                                                      \
  }                                                                                                                   \
  void silu_gate_backward(const Context& ctx, T* dy, T* dz, int64_t ld_dz, const T* dout, const T* y, const T* z,     \
                          int64_t ld_z, int64_t rows, int64_t D) {                                                    \
    using S = device_t<T>;                                                                                            \
    if ((!dy && !dz) || rows <= 0 || D <= 0) return;                                                                  \
    const auto it = items<S>(rows, D, {dy, dz, dout, y, z}, {ld_dz, ld_z});                                           \
    silu_k::gate_backward<S>                                                                                          \
        <<<grid(it), kThreads, 0, stream_of(ctx)>>>(dev(dy), dev(dz), ld_dz, dev(dout), dev(y), dev(z), ld_z, it);    \
    SAMBALM_CUDA_LAUNCH_CHECK();                                                                                      \
  }
SAMBALM_CUDA_SILU_DEF(float)
SAMBALM_CUDA_SILU_DEF(bf16)
#undef SAMBALM_CUDA_SILU_DEF

}  // namespace sambalm::ops::cuda
