// Causal sliding-window attention, CPU, FlashAttention-style (no T x T matrix is ever stored).
//
// Shapes: q[B, H, T, hs], k/v[B, G, T, hs], out[B, T, H * hs] (token-major), lse[B, H, T].
// Query head h reads kv head g = h / (H / G). Query t sees keys s in [lo(t), t] with
// lo(t) = max(0, t - window + 1) (window <= 0: lo = 0), so the cost is O(T * window * hs).
//
// Forward, per (b, h, t), keys visited in chunks of kChunk with an online softmax:
//   S_s   = scale * q_t . k_s
//   m     = running max of S,  l = running sum of exp(S_s - m),  acc = sum exp(S_s - m) v_s
//   (a new chunk max m' rescales l and acc by exp(m - m'))
//   out_t = acc / l,  lse_t = m + log(l)
// Backward, recomputing P_s = exp(S_s - lse_t) instead of storing it:
//   D_t    = dout_t . out_t                       (= sum_s P_s dP_s)
//   dP_s   = dout_t . v_s
//   dS_s   = P_s (dP_s - D_t)
//   dq_t  += scale * sum_s dS_s k_s
//   dk_s  += scale * sum_t dS_s q_t               (summed over the query heads of the group too)
//   dv_s  += sum_t P_s dout_t
// The backward runs one (b, g) per task, so the dk/dv accumulation over queries and over the heads
// of a GQA group never races.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "ops/dense_ops.h"

namespace sambalm::ops {

namespace {

constexpr int64_t kChunk = 64;  // scores held on the stack per online-softmax step

template <typename T>
inline T dot(const T* a, const T* b, int64_t n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// y += alpha * x
template <typename T>
inline void axpy(T* y, T alpha, const T* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

inline int64_t first_key(int64_t t, int64_t window) { return window > 0 ? std::max<int64_t>(0, t - window + 1) : 0; }

// Rough multiply-add count of one pass; small problems stay on one thread, where a parallel region
// would cost more than it saves.
inline bool worth_threads(int64_t B, int64_t H, int64_t Tn, int64_t hs, int64_t window) {
  const int64_t keys = window > 0 && window < Tn ? window : Tn;
  return B * H * Tn * keys * hs > (int64_t(1) << 16);
}

}  // namespace

template <typename T>
void attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, int64_t B, int64_t Tn, int64_t H, int64_t G,
                       int64_t hs, int64_t window, double scale) {
  const int64_t qpk = H / G;
  const T sc = T(scale);
  // Later queries see more keys under full causal attention: dynamic scheduling balances that.
#pragma omp parallel for collapse(3) schedule(dynamic, 8) if (worth_threads(B, H, Tn, hs, window))
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t t = 0; t < Tn; ++t) {
        const int64_t g = h / qpk;
        const T* qt = q + ((b * H + h) * Tn + t) * hs;
        const T* kb = k + (b * G + g) * Tn * hs;
        const T* vb = v + (b * G + g) * Tn * hs;
        T* acc = out + (b * Tn + t) * H * hs + h * hs;
        for (int64_t i = 0; i < hs; ++i) acc[i] = 0;
        T m = -std::numeric_limits<T>::infinity(), l = 0;
        T s[kChunk];
        for (int64_t c0 = first_key(t, window); c0 <= t; c0 += kChunk) {
          const int64_t n = std::min(kChunk, t + 1 - c0);
          T cmax = -std::numeric_limits<T>::infinity();
          for (int64_t j = 0; j < n; ++j) {
            s[j] = sc * dot(qt, kb + (c0 + j) * hs, hs);
            cmax = std::max(cmax, s[j]);
          }
          if (cmax > m) {
            const T corr = std::exp(m - cmax);  // exp(-inf) = 0 on the first chunk
            l *= corr;
            for (int64_t i = 0; i < hs; ++i) acc[i] *= corr;
            m = cmax;
          }
          // Exponentials first, then the value sums: keeps exp's latency off the axpy chain.
          for (int64_t j = 0; j < n; ++j) {
            s[j] = std::exp(s[j] - m);
            l += s[j];
          }
          for (int64_t j = 0; j < n; ++j) axpy(acc, s[j], vb + (c0 + j) * hs, hs);
        }
        const T inv = T(1) / l;
        for (int64_t i = 0; i < hs; ++i) acc[i] *= inv;
        lse[(b * H + h) * Tn + t] = m + std::log(l);
      }
    }
  }
}

template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* out, const T* lse, const T* q, const T* k,
                        const T* v, int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t window,
                        double scale) {
  const int64_t qpk = H / G;
  const T sc = T(scale);
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if (worth_threads(B, H, Tn, hs, window))
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t g = 0; g < G; ++g) {
      const T* kb = k + (b * G + g) * Tn * hs;
      const T* vb = v + (b * G + g) * Tn * hs;
      T* dkb = dk ? dk + (b * G + g) * Tn * hs : nullptr;
      T* dvb = dv ? dv + (b * G + g) * Tn * hs : nullptr;
      for (int64_t h = g * qpk; h < (g + 1) * qpk; ++h) {
        for (int64_t t = 0; t < Tn; ++t) {
          const T* qt = q + ((b * H + h) * Tn + t) * hs;
          const T* dout_t = dout + (b * Tn + t) * H * hs + h * hs;
          const T* ot = out + (b * Tn + t) * H * hs + h * hs;
          T* dqt = dq ? dq + ((b * H + h) * Tn + t) * hs : nullptr;
          const T lse_t = lse[(b * H + h) * Tn + t];
          const T D = dot(dout_t, ot, hs);
          T p[kChunk], ds[kChunk];
          for (int64_t c0 = first_key(t, window); c0 <= t; c0 += kChunk) {
            const int64_t n = std::min(kChunk, t + 1 - c0);
            const T* kc = kb + c0 * hs;
            const T* vc = vb + c0 * hs;
            for (int64_t j = 0; j < n; ++j) {
              p[j] = sc * dot(qt, kc + j * hs, hs) - lse_t;
              ds[j] = dot(dout_t, vc + j * hs, hs) - D;
            }
            for (int64_t j = 0; j < n; ++j) {
              p[j] = std::exp(p[j]);
              ds[j] *= p[j];
            }
            if (dqt)
              for (int64_t j = 0; j < n; ++j) axpy(dqt, sc * ds[j], kc + j * hs, hs);
            if (dkb)
              for (int64_t j = 0; j < n; ++j) axpy(dkb + (c0 + j) * hs, sc * ds[j], qt, hs);
            if (dvb)
              for (int64_t j = 0; j < n; ++j) axpy(dvb + (c0 + j) * hs, p[j], dout_t, hs);
          }
        }
      }
    }
  }
}

#define SAMBALM_INSTANTIATE(T)                                                                                         \
  template void attention_forward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t,         \
                                     int64_t, int64_t, double);                                                        \
  template void attention_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, const T*, int64_t, \
                                      int64_t, int64_t, int64_t, int64_t, int64_t, double);
SAMBALM_INSTANTIATE(float)
SAMBALM_INSTANTIATE(double)
#undef SAMBALM_INSTANTIATE

}  // namespace sambalm::ops
