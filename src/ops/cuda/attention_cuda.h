// CUDA bodies of the attention ops of ops/dense_ops.h (attention_forward / _backward and the decode
// attention over the KV ring, attention_cached_forward). Same arguments, layouts and rules as the CPU
// bodies (cpu/attention.cpp, cpu/attention_cache.cpp) plus the Context first; all pointers (slots and
// pos included) are device pointers. float (--precision fp32) and bf16 (lse in fp32 = stat_t<bf16>).
// bf16 with head size 64 or 128 runs the tensor-core kernels of attention_flash.h, whose backward needs
// attention_backward_scratch_size floats of scratch; the other cases need none.
// Included by cuda_ops.h; C++17, no CUDA headers.
#pragma once

#include <cstdint>

#include "core/bf16.h"
#include "core/context.h"

namespace sambalm::ops::cuda {

#define SAMBALM_CUDA_ATTENTION_DECL(T, S)                                                                              \
  void attention_forward(const Context& ctx, T* out, S* lse, const T* q, const T* k, const T* v, int64_t B,            \
                         int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t window, double scale);                  \
  void attention_backward(const Context& ctx, T* dq, T* dk, T* dv, const T* dout, const T* out, const S* lse,          \
                          const T* q, const T* k, const T* v, int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs, \
                          int64_t window, double scale, S* scratch);                                                   \
  int64_t attention_backward_scratch_size(const Context& ctx, const T* type, int64_t B, int64_t Tn, int64_t H,         \
                                          int64_t G, int64_t hs);                                                      \
  void attention_cached_forward(const Context& ctx, T* out, const T* q, const T* k_new, const T* v_new,                \
                                const T* k_cache, const T* v_cache, const int32_t* slots, const int64_t* pos,          \
                                int64_t B, int64_t L, int64_t H, int64_t G, int64_t hs, int64_t cap, int64_t window,   \
                                double scale);
SAMBALM_CUDA_ATTENTION_DECL(float, float)
SAMBALM_CUDA_ATTENTION_DECL(bf16, float)
#undef SAMBALM_CUDA_ATTENTION_DECL

// Head sizes the warp-per-row kernels take (a warp holds a query row, up to 8 values a lane).
inline constexpr int64_t kCudaAttentionMaxHs = 256;

}  // namespace sambalm::ops::cuda
