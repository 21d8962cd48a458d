// The KV-cache write from token rows and the last-token gather of SambaY's prefill (CUDA); semantics in
// decode_cuda.h and the CPU bodies (cpu/diff_attention_cache.cpp, cpu/last_rows.cpp):
//   kv_cache_write_rows: ring(slots[b])[g, (pos[b] + t) % cap, :] = new[b*L + t, g*hd : (g+1)*hd]
//                        for the last min(L, cap) tokens t (earlier ones would be overwritten)
//   take_last_rows:      x[b] = x[b*L + L-1] in increasing b (in place)
//   last_positions:      last[b] = pos[b] + L - 1
#include "ops/cuda/check.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/dense_common.cuh"

namespace sambalm::ops::cuda {

namespace {

using namespace dense_detail;

// One thread per element of the tokens that survive: each cache element has a single writer.
template <typename S>
__global__ void kv_cache_write_rows_kernel(S* k_cache, S* v_cache, const S* k_new, const S* v_new, int64_t ldkv,
                                           const int32_t* slots, const int64_t* pos, int64_t B, int64_t L, int64_t G,
                                           int64_t hd, int64_t cap) {
  const int64_t keep = L < cap ? L : cap, first = L - keep, total = B * keep * G * hd;
  for (int64_t idx = global_index(); idx < total; idx += grid_stride()) {
    int64_t rest = idx;
    const int64_t e = rest % hd;
    rest /= hd;
    const int64_t g = rest % G;
    rest /= G;
    const int64_t t = first + rest % keep, b = rest / keep;
    const int64_t entry = (pos[b] + t) % cap;
    const int64_t dst = ((static_cast<int64_t>(slots[b]) * G + g) * cap + entry) * hd + e;
    const int64_t src = (b * L + t) * ldkv + g * hd + e;
    k_cache[dst] = k_new[src];
    v_cache[dst] = v_new[src];
  }
}

// One block walks b in increasing order, as the CPU does: row b*L + L-1 of a later b may be the row an
// earlier b writes, so the rows move one after another (a barrier between them). B is a batch size.
template <typename S>
__global__ void take_last_rows_kernel(S* x, int64_t width, int64_t B, int64_t L) {
  for (int64_t b = 0; b < B; ++b) {
    const int64_t src = b * L + L - 1;
    if (src != b)
      for (int64_t i = threadIdx.x; i < width; i += blockDim.x) x[b * width + i] = x[src * width + i];
    __syncthreads();
  }
}

__global__ void last_positions_kernel(int64_t* last, const int64_t* pos, int64_t B, int64_t L) {
  for (int64_t b = global_index(); b < B; b += grid_stride()) last[b] = pos[b] + L - 1;
}

template <typename S>
void kv_cache_write_rows_impl(const Context& ctx, S* k_cache, S* v_cache, const S* k_new, const S* v_new, int64_t ldkv,
                              const int32_t* slots, const int64_t* pos, int64_t B, int64_t L, int64_t G, int64_t hd,
                              int64_t cap) {
  if (cap <= 0) return;
  const int64_t total = B * (L < cap ? L : cap) * G * hd;
  if (total <= 0) return;
  kv_cache_write_rows_kernel<<<blocks_for(total), kThreads, 0, stream_of(ctx)>>>(k_cache, v_cache, k_new, v_new, ldkv,
                                                                                 slots, pos, B, L, G, hd, cap);
  SAMBALM_CUDA_LAUNCH_CHECK();
}

template <typename S>
void take_last_rows_impl(const Context& ctx, S* x, int64_t width, int64_t B, int64_t L) {
  if (B <= 0 || L <= 1 || width <= 0) return;  // L == 1: every row is already in place
  take_last_rows_kernel<<<1, kThreads, 0, stream_of(ctx)>>>(x, width, B, L);
  SAMBALM_CUDA_LAUNCH_CHECK();
}

}  // namespace

#define SAMBALM_CUDA_DECODE_DEF(T)                                                                                   \
  void kv_cache_write_rows(const Context& ctx, T* k_cache, T* v_cache, const T* k_new, const T* v_new, int64_t ldkv, \
                           const int32_t* slots, const int64_t* pos, int64_t B, int64_t L, int64_t G, int64_t hd,    \
                           int64_t cap) {                                                                            \
    kv_cache_write_rows_impl(ctx, dev(k_cache), dev(v_cache), dev(k_new), dev(v_new), ldkv, slots, pos, B, L, G, hd, \
                             cap);                                                                                   \
  }                                                                                                                  \
  void take_last_rows(const Context& ctx, T* x, int64_t width, int64_t B, int64_t L) {                               \
    take_last_rows_impl(ctx, dev(x), width, B, L);                                                                   \
  }
SAMBALM_CUDA_DECODE_DEF(float)
SAMBALM_CUDA_DECODE_DEF(bf16)
#undef SAMBALM_CUDA_DECODE_DEF

void last_positions(const Context& ctx, int64_t* last, const int64_t* pos, int64_t B, int64_t L) {
  if (B <= 0) return;
  last_positions_kernel<<<blocks_for(B), kThreads, 0, stream_of(ctx)>>>(last, pos, B, L);
  SAMBALM_CUDA_LAUNCH_CHECK();
}

}  // namespace sambalm::ops::cuda
