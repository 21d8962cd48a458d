// Causal (sliding-window) attention, CUDA. bf16 calls with head size 64 or 128 go to the tensor-core
// kernels of attention_flash_*.cu (FlashAttention-2 style); everything else (fp32, other head sizes, the
// decode attention over the KV ring) runs the simple warp-per-row kernels below, the correct baseline
// the tests pin down. Math and layouts as cpu/attention.cpp:
//   q[B, H, T, hs], k/v[B, G, T, hs], out[B, T, H*hs] (token-major), lse[B, H, T] (fp32);
//   query head h reads kv head g = h / (H/G); query t sees keys s with t - window < s <= t
//   (window <= 0: all s <= t).
// Forward, one warp per (b, h, t): each lane holds hs/32 values of the query and the accumulator;
// the keys of the band go by one at a time (the dot product summed over the warp), with the online
// softmax  m = running max, l = sum exp(S - m), acc = sum exp(S - m) v  (a larger score rescales l
// and acc by exp(m_old - m_new));  out = acc / l,  lse = m + log l.  All in fp32.
// Backward, recomputing P_s = exp(S_s - lse_t):  D_t = dout_t . out_t,  dS = P (dout_t . v_s - D_t),
//   dq_t += scale sum_s dS k_s   (one warp per query: no atomics),
//   dk_s += scale sum_{h in group, t} dS q_t,  dv_s += sum_{h, t} P dout_t   (one warp per key: no atomics).
// attention_cached_forward (cpu/attention_cache.cpp): the same forward for L new queries at absolute
// positions pos[b] + t, keys s >= pos[b] from k_new/v_new[B, G, L, hs], older ones from the ring of
// slot slots[b] (k_cache/v_cache[S, G, cap, hs], position s at entry s % cap).
#include <cuda_bf16.h>

#include <cmath>
#include <type_traits>

#include "ops/cuda/attention_flash.h"
#include "ops/cuda/check.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/mixer_common.cuh"

namespace sambalm::ops::cuda {

namespace {

constexpr int kWarps = 4;  // warps per block

// Lane's share of a row of hs values: elements lane, lane + 32, ... (PER of them, zero past hs).
template <int PER, typename D>
__device__ __forceinline__ void load_row(float (&r)[PER], const D* p, int64_t hs, int lane) {
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    const int64_t e = lane + 32 * i;
    r[i] = e < hs ? to_f32(p[e]) : 0.f;
  }
}
template <int PER, typename D>
__device__ __forceinline__ float dot_row(const float (&r)[PER], const D* p, int64_t hs, int lane) {
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    const int64_t e = lane + 32 * i;
    if (e < hs) s = fmaf(r[i], to_f32(p[e]), s);
  }
  return warp_sum(s);
}
template <int PER, typename D>
__device__ __forceinline__ void axpy_row(float (&acc)[PER], float alpha, const D* p, int64_t hs, int lane) {
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    const int64_t e = lane + 32 * i;
    if (e < hs) acc[i] = fmaf(alpha, to_f32(p[e]), acc[i]);
  }
}

// Online softmax over keys j = 0 .. n-1 (key(j), value(j) give the rows): acc = sum P v, returns lse.
template <int PER, typename D, typename KeyRow, typename ValueRow>
__device__ float attend(float (&acc)[PER], const float (&q)[PER], int64_t n, int64_t hs, float sc, int lane, KeyRow key,
                        ValueRow value) {
#pragma unroll
  for (int i = 0; i < PER; ++i) acc[i] = 0.f;
  float m = -INFINITY, l = 0.f;
  for (int64_t j = 0; j < n; ++j) {
    const float s = sc * dot_row<PER>(q, key(j), hs, lane);
    if (s > m) {
      const float corr = expf(m - s);  // 0 on the first key
      l *= corr;
#pragma unroll
      for (int i = 0; i < PER; ++i) acc[i] *= corr;
      m = s;
    }
    const float p = expf(s - m);
    l += p;
    axpy_row<PER>(acc, p, value(j), hs, lane);
  }
  const float inv = 1.f / l;
#pragma unroll
  for (int i = 0; i < PER; ++i) acc[i] *= inv;
  return m + logf(l);
}

__device__ __forceinline__ int64_t first_key(int64_t t, int64_t window) {
  return window > 0 ? (t - window + 1 > 0 ? t - window + 1 : 0) : 0;
}

template <int PER, typename D>
__global__ void __launch_bounds__(32 * kWarps)
    attention_forward_kernel(D* out, float* lse, const D* q, const D* k, const D* v, int64_t B, int64_t Tn, int64_t H,
                             int64_t G, int64_t hs, int64_t window, float sc) {
  const int lane = threadIdx.x % 32;
  const int64_t w = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (w >= B * H * Tn) return;
  const int64_t t = w % Tn, h = (w / Tn) % H, b = w / (Tn * H), g = h / (H / G);
  const D* kb = k + (b * G + g) * Tn * hs;
  const D* vb = v + (b * G + g) * Tn * hs;
  float qr[PER], acc[PER];
  load_row<PER>(qr, q + ((b * H + h) * Tn + t) * hs, hs, lane);
  const int64_t lo = first_key(t, window);
  const float l = attend<PER, D>(
      acc, qr, t + 1 - lo, hs, sc, lane, [&](int64_t j) { return kb + (lo + j) * hs; },
      [&](int64_t j) { return vb + (lo + j) * hs; });
  D* o = out + (b * Tn + t) * H * hs + h * hs;
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    const int64_t e = lane + 32 * i;
    if (e < hs) o[e] = from_f32<D>(acc[i]);
  }
  if (lane == 0) lse[(b * H + h) * Tn + t] = l;
}

template <int PER, typename D>
__global__ void __launch_bounds__(32 * kWarps)
    attention_dq_kernel(D* dq, const D* dout, const D* out, const float* lse, const D* q, const D* k, const D* v,
                        int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t window, float sc) {
  const int lane = threadIdx.x % 32;
  const int64_t w = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (w >= B * H * Tn) return;
  const int64_t t = w % Tn, h = (w / Tn) % H, b = w / (Tn * H), g = h / (H / G);
  const D* kb = k + (b * G + g) * Tn * hs;
  const D* vb = v + (b * G + g) * Tn * hs;
  const int64_t orow = (b * Tn + t) * H * hs + h * hs;
  float qr[PER], gr[PER], acc[PER];
  load_row<PER>(qr, q + ((b * H + h) * Tn + t) * hs, hs, lane);
  load_row<PER>(gr, dout + orow, hs, lane);
  const float Dt = dot_row<PER>(gr, out + orow, hs, lane);
  const float lse_t = lse[(b * H + h) * Tn + t];
#pragma unroll
  for (int i = 0; i < PER; ++i) acc[i] = 0.f;
  for (int64_t s = first_key(t, window); s <= t; ++s) {
    const float p = expf(sc * dot_row<PER>(qr, kb + s * hs, hs, lane) - lse_t);
    const float ds = p * (dot_row<PER>(gr, vb + s * hs, hs, lane) - Dt);
    axpy_row<PER>(acc, sc * ds, kb + s * hs, hs, lane);
  }
  D* dqt = dq + ((b * H + h) * Tn + t) * hs;
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    const int64_t e = lane + 32 * i;
    if (e < hs) add_f32(dqt + e, acc[i]);
  }
}

template <int PER, typename D>
__global__ void __launch_bounds__(32 * kWarps)
    attention_dkv_kernel(D* dk, D* dv, const D* dout, const D* out, const float* lse, const D* q, const D* k,
                         const D* v, int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t window,
                         float sc) {
  const int lane = threadIdx.x % 32;
  const int64_t w = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (w >= B * G * Tn) return;
  const int64_t s = w % Tn, g = (w / Tn) % G, b = w / (Tn * G), qpk = H / G;
  const int64_t kvrow = ((b * G + g) * Tn + s) * hs;
  float kr[PER], vr[PER], dk_acc[PER], dv_acc[PER];
  load_row<PER>(kr, k + kvrow, hs, lane);
  load_row<PER>(vr, v + kvrow, hs, lane);
#pragma unroll
  for (int i = 0; i < PER; ++i) dk_acc[i] = 0.f, dv_acc[i] = 0.f;
  // Queries that see key s: s <= t < s + window (window <= 0: every t >= s).
  const int64_t t_end = window > 0 && s + window < Tn ? s + window : Tn;
  for (int64_t h = g * qpk; h < (g + 1) * qpk; ++h) {
    for (int64_t t = s; t < t_end; ++t) {
      const D* qt = q + ((b * H + h) * Tn + t) * hs;
      const int64_t orow = (b * Tn + t) * H * hs + h * hs;
      const float p = expf(sc * dot_row<PER>(kr, qt, hs, lane) - lse[(b * H + h) * Tn + t]);
      float go[PER];
      load_row<PER>(go, dout + orow, hs, lane);
      const float Dt = dot_row<PER>(go, out + orow, hs, lane);
      const float ds = p * (dot_row<PER>(vr, dout + orow, hs, lane) - Dt);
      axpy_row<PER>(dk_acc, sc * ds, qt, hs, lane);
#pragma unroll
      for (int i = 0; i < PER; ++i) dv_acc[i] = fmaf(p, go[i], dv_acc[i]);
    }
  }
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    const int64_t e = lane + 32 * i;
    if (e < hs) {
      if (dk) add_f32(dk + kvrow + e, dk_acc[i]);
      if (dv) add_f32(dv + kvrow + e, dv_acc[i]);
    }
  }
}

template <int PER, typename D>
__global__ void __launch_bounds__(32 * kWarps)
    attention_cached_kernel(D* out, const D* q, const D* k_new, const D* v_new, const D* k_cache, const D* v_cache,
                            const int32_t* slots, const int64_t* pos, int64_t B, int64_t L, int64_t H, int64_t G,
                            int64_t hs, int64_t cap, int64_t window, float sc) {
  const int lane = threadIdx.x % 32;
  const int64_t w = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (w >= B * H * L) return;
  const int64_t t = w % L, h = (w / L) % H, b = w / (L * H), g = h / (H / G);
  const int64_t p0 = pos[b], pt = p0 + t, lo = first_key(pt, window);
  const D* kn = k_new + (b * G + g) * L * hs;
  const D* vn = v_new + (b * G + g) * L * hs;
  const int64_t ring = (int64_t(slots[b]) * G + g) * cap * hs;
  const D* kr = k_cache + ring;
  const D* vr = v_cache + ring;
  float qr[PER], acc[PER];
  load_row<PER>(qr, q + ((b * H + h) * L + t) * hs, hs, lane);
  attend<PER, D>(
      acc, qr, pt + 1 - lo, hs, sc, lane,
      [&](int64_t j) {
        const int64_t s = lo + j;
        return s >= p0 ? kn + (s - p0) * hs : kr + (s % cap) * hs;
      },
      [&](int64_t j) {
        const int64_t s = lo + j;
        return s >= p0 ? vn + (s - p0) * hs : vr + (s % cap) * hs;
      });
  D* o = out + (b * L + t) * H * hs + h * hs;
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    const int64_t e = lane + 32 * i;
    if (e < hs) o[e] = from_f32<D>(acc[i]);
  }
}

// The number of values a lane holds for head size hs (PER of the kernels); throws beyond the limit.
int per_lane(const char* op, int64_t hs) {
  if (hs > kCudaAttentionMaxHs) raise_unsupported(op, "head size", hs, kCudaAttentionMaxHs);
  return hs <= 32 ? 1 : hs <= 64 ? 2 : hs <= 128 ? 4 : 8;
}
// Runs LAUNCH (a macro of PER) with PER = per_lane(op, hs) as a constant.
#define SAMBALM_BY_PER(op, hs, LAUNCH) \
  switch (per_lane(op, hs)) {          \
    case 1:                            \
      LAUNCH(1);                       \
      break;                           \
    case 2:                            \
      LAUNCH(2);                       \
      break;                           \
    case 4:                            \
      LAUNCH(4);                       \
      break;                           \
    default:                           \
      LAUNCH(8);                       \
      break;                           \
  }

template <typename T>
void forward(const Context& ctx, T* out, float* lse, const T* q, const T* k, const T* v, int64_t B, int64_t Tn,
             int64_t H, int64_t G, int64_t hs, int64_t window, double scale) {
  if (B == 0 || Tn == 0 || H == 0 || hs == 0) return;
  if constexpr (std::is_same_v<T, bf16>) {
    const void* ptrs[] = {out, q, k, v};
    if (flash_attention_takes(ctx, B, Tn, H, G, hs, scale, ptrs, 4))
      return flash_attention_forward(ctx, out, lse, q, k, v, B, Tn, H, G, hs, window, scale);
  }
  using D = device_t<T>;
#define LAUNCH(PER)                                                                                   \
  attention_forward_kernel<PER, D><<<blocks_for(B* H* Tn, kWarps), 32 * kWarps, 0, stream_of(ctx)>>>( \
      dev(out), lse, dev(q), dev(k), dev(v), B, Tn, H, G, hs, window, static_cast<float>(scale))
  SAMBALM_BY_PER("attention_forward", hs, LAUNCH)
#undef LAUNCH
  SAMBALM_CUDA_LAUNCH_CHECK();
}

template <typename T>
void backward(const Context& ctx, T* dq, T* dk, T* dv, const T* dout, const T* out, const float* lse, const T* q,
              const T* k, const T* v, int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t window,
              double scale, float* scratch) {
  if (B == 0 || Tn == 0 || H == 0 || hs == 0) return;
  if constexpr (std::is_same_v<T, bf16>) {
    const void* ptrs[] = {dq, dk, dv, dout, out, q, k, v, scratch};
    if (flash_attention_takes(ctx, B, Tn, H, G, hs, scale, ptrs, 9))
      return flash_attention_backward(ctx, dq, dk, dv, dout, out, lse, q, k, v, B, Tn, H, G, hs, window, scale,
                                      scratch);
  }
  using D = device_t<T>;
  const float sc = static_cast<float>(scale);
  if (dq) {
#define LAUNCH(PER)                                                                              \
  attention_dq_kernel<PER, D><<<blocks_for(B* H* Tn, kWarps), 32 * kWarps, 0, stream_of(ctx)>>>( \
      dev(dq), dev(dout), dev(out), lse, dev(q), dev(k), dev(v), B, Tn, H, G, hs, window, sc)
    SAMBALM_BY_PER("attention_backward", hs, LAUNCH)
#undef LAUNCH
    SAMBALM_CUDA_LAUNCH_CHECK();
  }
  if (dk || dv) {
#define LAUNCH(PER)                                                                               \
  attention_dkv_kernel<PER, D><<<blocks_for(B* G* Tn, kWarps), 32 * kWarps, 0, stream_of(ctx)>>>( \
      dev(dk), dev(dv), dev(dout), dev(out), lse, dev(q), dev(k), dev(v), B, Tn, H, G, hs, window, sc)
    SAMBALM_BY_PER("attention_backward", hs, LAUNCH)
#undef LAUNCH
    SAMBALM_CUDA_LAUNCH_CHECK();
  }
}

template <typename T>
void cached_forward(const Context& ctx, T* out, const T* q, const T* k_new, const T* v_new, const T* k_cache,
                    const T* v_cache, const int32_t* slots, const int64_t* pos, int64_t B, int64_t L, int64_t H,
                    int64_t G, int64_t hs, int64_t cap, int64_t window, double scale) {
  if (B == 0 || L == 0 || H == 0 || hs == 0) return;
  using D = device_t<T>;
#define LAUNCH(PER)                                                                                                  \
  attention_cached_kernel<PER, D><<<blocks_for(B* H* L, kWarps), 32 * kWarps, 0, stream_of(ctx)>>>(                  \
      dev(out), dev(q), dev(k_new), dev(v_new), dev(k_cache), dev(v_cache), slots, pos, B, L, H, G, hs, cap, window, \
      static_cast<float>(scale))
  SAMBALM_BY_PER("attention_cached_forward", hs, LAUNCH)
#undef LAUNCH
  SAMBALM_CUDA_LAUNCH_CHECK();
}
#undef SAMBALM_BY_PER

}  // namespace

#define SAMBALM_CUDA_ATTENTION_DEF(T)                                                                                  \
  void attention_forward(const Context& ctx, T* out, float* lse, const T* q, const T* k, const T* v, int64_t B,        \
                         int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t window, double scale) {                 \
    forward(ctx, out, lse, q, k, v, B, Tn, H, G, hs, window, scale);                                                   \
  }                                                                                                                    \
  void attention_backward(const Context& ctx, T* dq, T* dk, T* dv, const T* dout, const T* out, const float* lse,      \
                          const T* q, const T* k, const T* v, int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs, \
                          int64_t window, double scale, float* scratch) {                                              \
    backward(ctx, dq, dk, dv, dout, out, lse, q, k, v, B, Tn, H, G, hs, window, scale, scratch);                       \
  }                                                                                                                    \
  void attention_cached_forward(const Context& ctx, T* out, const T* q, const T* k_new, const T* v_new,                \
                                const T* k_cache, const T* v_cache, const int32_t* slots, const int64_t* pos,          \
                                int64_t B, int64_t L, int64_t H, int64_t G, int64_t hs, int64_t cap, int64_t window,   \
                                double scale) {                                                                        \
    cached_forward(ctx, out, q, k_new, v_new, k_cache, v_cache, slots, pos, B, L, H, G, hs, cap, window, scale);       \
  }
SAMBALM_CUDA_ATTENTION_DEF(float)
SAMBALM_CUDA_ATTENTION_DEF(bf16)
#undef SAMBALM_CUDA_ATTENTION_DEF

// Only the bf16 tensor-core backward needs scratch (its fp32 dQ accumulator and Di); the warp-per-row
// kernels need none. The size does not depend on pointers: a call whose pointers turn out misaligned
// runs the baseline and leaves the scratch unused.
int64_t attention_backward_scratch_size(const Context&, const float*, int64_t, int64_t, int64_t, int64_t, int64_t) {
  return 0;
}
int64_t attention_backward_scratch_size(const Context&, const bf16*, int64_t B, int64_t Tn, int64_t H, int64_t,
                                        int64_t hs) {
  return flash_attention_head_size(hs) ? flash_attention_backward_scratch(B, Tn, H, hs) : 0;
}

}  // namespace sambalm::ops::cuda
