// CUDA bodies of the small ops of the prefill / decode path that only SambaY's stack calls (ops/dense_ops.h):
// the KV-cache write from token rows, and keeping each sequence's last token. Same arguments and rules
// as the CPU bodies (cpu/diff_attention_cache.cpp, cpu/last_rows.cpp) plus the Context first; all
// pointers (slots and pos included) are device pointers. float and bf16 (plain copies: exact in both).
// Included by cuda_ops.h; C++17, no CUDA headers.
#pragma once

#include <cstdint>

#include "core/bf16.h"
#include "core/context.h"

namespace sambalm::ops::cuda {

#define SAMBALM_CUDA_DECODE_DECL(T)                                                                                  \
  void kv_cache_write_rows(const Context& ctx, T* k_cache, T* v_cache, const T* k_new, const T* v_new, int64_t ldkv, \
                           const int32_t* slots, const int64_t* pos, int64_t B, int64_t L, int64_t G, int64_t hd,    \
                           int64_t cap);                                                                             \
  void take_last_rows(const Context& ctx, T* x, int64_t width, int64_t B, int64_t L);
SAMBALM_CUDA_DECODE_DECL(float)
SAMBALM_CUDA_DECODE_DECL(bf16)
#undef SAMBALM_CUDA_DECODE_DECL
// Positions only (int64).
void last_positions(const Context& ctx, int64_t* last, const int64_t* pos, int64_t B, int64_t L);

}  // namespace sambalm::ops::cuda
