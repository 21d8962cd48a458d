// Causal sliding-window attention, CPU, FlashAttention-style (no T x T matrix is ever stored).
//
// Shapes: q[B, H, T, hs], k/v[B, G, T, hs], out[B, T, H * hs] (token-major), lse[B, H, T].
// Query head h reads kv head g = h / (H / G). Query t sees keys s in [lo(t), t] with
// lo(t) = max(0, t - window + 1) (window <= 0: lo = 0), so the cost is O(T * window * hs).
//
// Forward, per (b, h, t), keys visited in chunks of kChunk with an online softmax (four queries at a
// time, see attend_tile):
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

#include "ops/cpu/cpu_ops.h"

namespace sambalm::ops::cpu {

namespace {

constexpr int64_t kChunk = 64;  // scores held on the stack per online-softmax step
constexpr int64_t kTile = 4;    // queries per forward tile

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

// Four consecutive queries of one head share almost all of their keys, so the forward takes them as
// a tile: each key and value row is loaded once for four independent dot products / updates. Keys
// of the tile's union range that one query may not see get score -inf, hence weight 0.
template <typename T>
inline void dot4(T out[kTile], const T* const qs[kTile], const T* kr, int64_t hs) {
  const T* q0 = qs[0];
  const T* q1 = qs[1];
  const T* q2 = qs[2];
  const T* q3 = qs[3];
  T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
  for (int64_t i = 0; i < hs; ++i) {
    s0 += q0[i] * kr[i];
    s1 += q1[i] * kr[i];
    s2 += q2[i] * kr[i];
    s3 += q3[i] * kr[i];
  }
  out[0] = s0, out[1] = s1, out[2] = s2, out[3] = s3;
}

template <typename T>
inline void axpy4(T* const acc[kTile], const T p[kTile], const T* vr, int64_t hs) {
  T* a0 = acc[0];
  T* a1 = acc[1];
  T* a2 = acc[2];
  T* a3 = acc[3];
#pragma omp simd
  for (int64_t i = 0; i < hs; ++i) {
    a0[i] += p[0] * vr[i];
    a1[i] += p[1] * vr[i];
    a2[i] += p[2] * vr[i];
    a3[i] += p[3] * vr[i];
  }
}

// One query t against its keys (the tail of a sequence whose length is not a multiple of kTile).
template <typename T>
void attend_one(T* acc, T* lse_t, const T* qt, const T* kb, const T* vb, int64_t t, int64_t window, int64_t hs, T sc) {
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
    for (int64_t j = 0; j < n; ++j) {
      s[j] = std::exp(s[j] - m);
      l += s[j];
    }
    for (int64_t j = 0; j < n; ++j) axpy(acc, s[j], vb + (c0 + j) * hs, hs);
  }
  const T inv = T(1) / l;
  for (int64_t i = 0; i < hs; ++i) acc[i] *= inv;
  *lse_t = m + std::log(l);
}

// Queries t0 .. t0 + kTile - 1 together: the same online softmax, one (m, l, acc) per query, over the
// union of their key ranges; a key that query r may not see gets score -inf, hence weight 0.
template <typename T>
void attend_tile(T* const acc[kTile], T* lse_t0, const T* const qs[kTile], const T* kb, const T* vb, int64_t t0,
                 int64_t window, int64_t hs, T sc) {
  const T neg_inf = -std::numeric_limits<T>::infinity();
  for (int64_t r = 0; r < kTile; ++r)
    for (int64_t i = 0; i < hs; ++i) acc[r][i] = 0;
  T m[kTile], l[kTile], sr[kTile], p[kTile];
  for (int64_t r = 0; r < kTile; ++r) m[r] = neg_inf, l[r] = 0;
  T s[kChunk][kTile];
  const int64_t hi = t0 + kTile - 1;
  for (int64_t c0 = first_key(t0, window); c0 <= hi; c0 += kChunk) {
    const int64_t n = std::min(kChunk, hi + 1 - c0);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t key = c0 + j;
      dot4(sr, qs, kb + key * hs, hs);
      for (int64_t r = 0; r < kTile; ++r) {
        const bool visible = key <= t0 + r && key >= first_key(t0 + r, window);
        s[j][r] = visible ? sc * sr[r] : neg_inf;
      }
    }
    for (int64_t r = 0; r < kTile; ++r) {
      T cmax = neg_inf;
      for (int64_t j = 0; j < n; ++j) cmax = std::max(cmax, s[j][r]);
      if (cmax > m[r]) {
        const T corr = std::exp(m[r] - cmax);  // exp(-inf) = 0 on the first visible chunk
        l[r] *= corr;
        for (int64_t i = 0; i < hs; ++i) acc[r][i] *= corr;
        m[r] = cmax;
      }
      // Until a query has met a visible key, m = -inf: its weights are 0, not exp(-inf + inf) = NaN.
      for (int64_t j = 0; j < n; ++j) {
        s[j][r] = m[r] == neg_inf ? T(0) : std::exp(s[j][r] - m[r]);
        l[r] += s[j][r];
      }
    }
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t r = 0; r < kTile; ++r) p[r] = s[j][r];
      axpy4(acc, p, vb + (c0 + j) * hs, hs);
    }
  }
  for (int64_t r = 0; r < kTile; ++r) {
    const T inv = T(1) / l[r];
    for (int64_t i = 0; i < hs; ++i) acc[r][i] *= inv;
    lse_t0[r] = m[r] + std::log(l[r]);
  }
}

}  // namespace

template <typename T>
void attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, int64_t B, int64_t Tn, int64_t H, int64_t G,
                       int64_t hs, int64_t window, double scale) {
  const int64_t qpk = H / G, tiles = (Tn + kTile - 1) / kTile;
  const T sc = T(scale);
  // Later queries see more keys under full causal attention: dynamic scheduling balances that.
#pragma omp parallel for collapse(3) schedule(dynamic, 2) if (worth_threads(B, H, Tn, hs, window))
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t tile = 0; tile < tiles; ++tile) {
        const int64_t g = h / qpk, t0 = tile * kTile;
        const T* kb = k + (b * G + g) * Tn * hs;
        const T* vb = v + (b * G + g) * Tn * hs;
        auto q_row = [&](int64_t t) { return q + ((b * H + h) * Tn + t) * hs; };
        auto out_row = [&](int64_t t) { return out + (b * Tn + t) * H * hs + h * hs; };
        T* lse_bh = lse + (b * H + h) * Tn;
        if (t0 + kTile <= Tn) {
          const T* qs[kTile];
          T* acc[kTile];
          for (int64_t r = 0; r < kTile; ++r) qs[r] = q_row(t0 + r), acc[r] = out_row(t0 + r);
          attend_tile(acc, lse_bh + t0, qs, kb, vb, t0, window, hs, sc);
        } else {
          for (int64_t t = t0; t < Tn; ++t) attend_one(out_row(t), lse_bh + t, q_row(t), kb, vb, t, window, hs, sc);
        }
      }
    }
  }
}

template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* out, const T* lse, const T* q, const T* k,
                        const T* v, int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t window,
                        double scale, T* /*scratch*/) {
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
                                      int64_t, int64_t, int64_t, int64_t, int64_t, double, T*);
SAMBALM_INSTANTIATE(float)
SAMBALM_INSTANTIATE(double)
#undef SAMBALM_INSTANTIATE

}  // namespace sambalm::ops::cpu
