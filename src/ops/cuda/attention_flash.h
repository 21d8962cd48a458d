// The bf16 tensor-core (FlashAttention-2 style) bodies behind attention_forward / attention_backward
// for head sizes 64 and 128 (attention_flash_forward.cu, attention_flash_backward.cu). attention.cu
// sends a bf16 call here when flash_attention_takes() says so and keeps its warp-per-row kernels for
// the rest (fp32, other head sizes). Layouts and math as ops/dense_ops.h. C++17, no CUDA headers
// (attention_host.cpp includes it).
#pragma once

#include <cstdint>

#include "core/bf16.h"
#include "core/context.h"

namespace sambalm::ops::cuda {

// Head sizes with a tensor-core body.
inline constexpr bool flash_attention_head_size(int64_t hs) { return hs == 64 || hs == 128; }

// Whether the tensor-core bodies take this call: a head size above, shapes within the grid's limits
// and the 32-bit indices of the kernels, a positive scale (the online softmax keeps the running max
// of the raw scores), 16-byte aligned rows (cp.async, vector loads; `ptrs` are the call's device
// pointers, nullptr passes) and a device whose blocks may use the kernels' shared memory (up to
// 155 KiB: sm_80 and sm_90, not the sm_86/89 parts).
bool flash_attention_takes(const Context& ctx, int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs, double scale,
                           const void* const* ptrs, int nptrs);

// Floats of scratch the tensor-core backward needs: the fp32 dQ accumulator [B, H, T, hs] and
// Di = dout . out [B, H, T].
inline constexpr int64_t flash_attention_backward_scratch(int64_t B, int64_t Tn, int64_t H, int64_t hs) {
  return B * H * Tn * (hs + 1);
}

// out[B, T, H*hs], lse[B, H, T] (overwritten). window <= 0: full causal.
void flash_attention_forward(const Context& ctx, bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                             int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t window, double scale);
// dq, dk, dv accumulate (+=); any may be nullptr. scratch: flash_attention_backward_scratch floats
// (16-byte aligned; its contents on entry do not matter).
void flash_attention_backward(const Context& ctx, bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* out,
                              const float* lse, const bf16* q, const bf16* k, const bf16* v, int64_t B, int64_t Tn,
                              int64_t H, int64_t G, int64_t hs, int64_t window, double scale, float* scratch);

// Throws sambalm::Error: the bf16 backward was called without its scratch (attention_host.cpp: .cu
// files cannot format messages).
[[noreturn]] void raise_attention_no_scratch(int64_t needed);

}  // namespace sambalm::ops::cuda
