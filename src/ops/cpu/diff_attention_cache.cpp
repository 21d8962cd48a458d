// Differential attention of new queries over a key/value cache at absolute positions (SambaY decoding),
// and the cache write from a fused projection.
//
// The pairing and the math are diff_attention_forward's (diff_attention.cpp): per query pair m of token
// t of sequence b, at absolute position p = pos[b] + t,
//   P1_s = softmax_s(scale q_2m . k_g1(s)),  P2_s = softmax_s(scale q_2m+1 . k_g2(s))
//   a    = sum_s (P1_s - lambda P2_s) [v_g1(s) | v_g2(s)]
// over s in [lo, p], lo = window > 0 ? max(0, p - window + 1) : 0. The key/value of s comes from the
// new tokens when s >= pos[b] (row b*L + s - pos[b] of k_new/v_new, rows ldkv apart: a view into the
// fused projection, or the shared-KV layer's one for cross-attention) and from the ring of slot
// slots[b] otherwise (entry s % cap of [S, G, cap, hd]).
// Online softmax per half: running max m, sum l and weighted value sum acc, rescaled by exp(m - m')
// when the max grows; a = acc1 / l1 - lambda acc2 / l2. One task per (token, kv pair): the H/G query
// pairs that read a kv pair walk its keys together. Head sizes up to kOnePassMaxHd do it in one pass
// (each key and value row read once per group of kGroup query pairs: decoding at long context is
// bound by reading the shared cache); larger ones in two per query pair (log-sum-exps first, then the
// normalised weights into the output row), which needs no buffer whatever the head size.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "ops/cpu/cpu_ops.h"

namespace sambalm::ops::cpu {

namespace {

template <typename T>
inline T dot(const T* a, const T* b, int64_t n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Head sizes up to this take the one-pass path (two 2*hd accumulators on the stack); larger ones the
// two-pass path, which needs none.
constexpr int64_t kOnePassMaxHd = 256;
// Query pairs sharing one walk over a kv pair's keys (their accumulators: kGroup x 2 x 2 hd values).
constexpr int64_t kGroup = 4;
// Keys scored at a time (the exponentials of a chunk are taken together, after its max is known).
constexpr int64_t kKeyChunk = 64;

}  // namespace

template <typename T>
void diff_attention_cached_forward(T* out, const T* q, int64_t ldq, const T* k_new, const T* v_new, int64_t ldkv,
                                   const T* k_cache, const T* v_cache, const int32_t* slots, const int64_t* pos,
                                   const T* lambda, int64_t B, int64_t L, int64_t H, int64_t G, int64_t hd, int64_t cap,
                                   int64_t window, double scale) {
  const int64_t kv_pairs = G / 2, per_kv = H / G;
  const double lam = double(lambda[0]);
  const T sc = T(scale);
  const int64_t keys = window > 0 ? std::min<int64_t>(window, 1024) : 1024;  // work estimate only
  const int64_t tasks = B * kv_pairs * L;
  const bool parallel = tasks * per_kv * keys * hd > (1 << 17);
  // Token t of sequence b, kv pair j (heads g1 = 2j, g2 = 2j + 1): the query pairs m with
  // m / per_kv == j are the ones that read those heads, so they share one walk over the keys.
  auto one = [&](int64_t i) {
    const int64_t t = i % L, j = (i / L) % kv_pairs, b = i / (L * kv_pairs);
    const int64_t p0 = pos[b], p = p0 + t, lo = window > 0 ? std::max<int64_t>(0, p - window + 1) : 0;
    const int64_t g1 = 2 * j, g2 = g1 + 1, m_end = (j + 1) * per_kv;
    const T* qrow = q + (b * L + t) * ldq;
    const int64_t ring = int64_t(slots[b]) * G * cap * hd;
    // Row of kv head g at position s: new (this call's tokens) or cached (the slot's ring).
    auto row = [&](const T* fresh, const T* cache, int64_t s, int64_t g) {
      return s >= p0 ? fresh + (b * L + s - p0) * ldkv + g * hd : cache + ring + (g * cap + s % cap) * hd;
    };
    auto out_of = [&](int64_t m) { return out + (b * L + t) * H * hd + 2 * m * hd; };  // heads 2m, 2m+1
    if (hd <= kOnePassMaxHd) {
      // One pass per group of up to kGroup query pairs, kKeyChunk keys at a time: per pair and half,
      // the weighted value sum on the stack, rescaled when that half's running max grows.
      for (int64_t m0 = j * per_kv; m0 < m_end; m0 += kGroup) {
        const int64_t n = std::min(kGroup, m_end - m0);
        T acc[kGroup][2][2 * kOnePassMaxHd];
        T mx[kGroup][2], l[kGroup][2];
        T w[kGroup][2][kKeyChunk];  // a chunk's scores, then their exponentials
        for (int64_t u = 0; u < n; ++u)
          for (int c = 0; c < 2; ++c) {
            std::fill(acc[u][c], acc[u][c] + 2 * hd, T(0));
            mx[u][c] = -std::numeric_limits<T>::infinity();
            l[u][c] = 0;
          }
        for (int64_t s0 = lo; s0 <= p; s0 += kKeyChunk) {
          const int64_t cn = std::min(kKeyChunk, p + 1 - s0);
          for (int64_t jj = 0; jj < cn; ++jj) {
            const T* k1 = row(k_new, k_cache, s0 + jj, g1);
            const T* k2 = row(k_new, k_cache, s0 + jj, g2);
            for (int64_t u = 0; u < n; ++u) {
              const T* qa = qrow + 2 * (m0 + u) * hd;
              w[u][0][jj] = sc * dot(qa, k1, hd);
              w[u][1][jj] = sc * dot(qa + hd, k2, hd);
            }
          }
          // A larger chunk max rescales what was summed so far (by 0 on the first chunk).
          for (int64_t u = 0; u < n; ++u)
            for (int c = 0; c < 2; ++c) {
              T* e = w[u][c];
              T cmax = mx[u][c];
              for (int64_t jj = 0; jj < cn; ++jj) cmax = std::max(cmax, e[jj]);
              if (cmax > mx[u][c]) {
                const T corr = std::exp(mx[u][c] - cmax);
                l[u][c] *= corr;
                for (int64_t x = 0; x < 2 * hd; ++x) acc[u][c][x] *= corr;
                mx[u][c] = cmax;
              }
              T sum = 0;
              for (int64_t jj = 0; jj < cn; ++jj) {
                e[jj] = std::exp(e[jj] - cmax);
                sum += e[jj];
              }
              l[u][c] += sum;
            }
          for (int64_t jj = 0; jj < cn; ++jj) {
            const T* v1 = row(v_new, v_cache, s0 + jj, g1);
            const T* v2 = row(v_new, v_cache, s0 + jj, g2);
            for (int64_t u = 0; u < n; ++u)
              for (int c = 0; c < 2; ++c) {
                T* a = acc[u][c];
                const T wt = w[u][c][jj];
#pragma omp simd
                for (int64_t x = 0; x < hd; ++x) a[x] += wt * v1[x];
#pragma omp simd
                for (int64_t x = 0; x < hd; ++x) a[hd + x] += wt * v2[x];
              }
          }
        }
        for (int64_t u = 0; u < n; ++u) {
          T* o = out_of(m0 + u);
          const T w1 = T(1.0 / double(l[u][0])), w2 = T(lam / double(l[u][1]));
          for (int64_t x = 0; x < 2 * hd; ++x) o[x] = w1 * acc[u][0][x] - w2 * acc[u][1][x];
        }
      }
      return;
    }
    for (int64_t m = j * per_kv; m < m_end; ++m) {
      const T *q1 = qrow + 2 * m * hd, *q2 = q1 + hd;
      double m1 = -std::numeric_limits<double>::infinity(), m2 = m1, l1 = 0, l2 = 0;
      for (int64_t s = lo; s <= p; ++s) {
        const double s1 = double(sc * dot(q1, row(k_new, k_cache, s, g1), hd));
        const double s2 = double(sc * dot(q2, row(k_new, k_cache, s, g2), hd));
        if (s1 > m1) {
          l1 *= std::exp(m1 - s1);
          m1 = s1;
        }
        if (s2 > m2) {
          l2 *= std::exp(m2 - s2);
          m2 = s2;
        }
        l1 += std::exp(s1 - m1);
        l2 += std::exp(s2 - m2);
      }
      const double lse1 = m1 + std::log(l1), lse2 = m2 + std::log(l2);
      T* o = out_of(m);
      std::fill(o, o + 2 * hd, T(0));
      for (int64_t s = lo; s <= p; ++s) {
        const double p1 = std::exp(double(sc * dot(q1, row(k_new, k_cache, s, g1), hd)) - lse1);
        const double p2 = std::exp(double(sc * dot(q2, row(k_new, k_cache, s, g2), hd)) - lse2);
        const T w = T(p1 - lam * p2);
        const T* v1 = row(v_new, v_cache, s, g1);
        const T* v2 = row(v_new, v_cache, s, g2);
#pragma omp simd
        for (int64_t c = 0; c < hd; ++c) o[c] += w * v1[c];
#pragma omp simd
        for (int64_t c = 0; c < hd; ++c) o[hd + c] += w * v2[c];
      }
    }
  };
  if (tasks <= 256) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t i = 0; i < tasks; ++i) one(i);
  } else {
#pragma omp parallel for schedule(dynamic, 4) if (parallel)
    for (int64_t i = 0; i < tasks; ++i) one(i);
  }
}

template <typename T>
void kv_cache_write_rows(T* k_cache, T* v_cache, const T* k_new, const T* v_new, int64_t ldkv, const int32_t* slots,
                         const int64_t* pos, int64_t B, int64_t L, int64_t G, int64_t hd, int64_t cap) {
  for (int64_t b = 0; b < B; ++b) {
    const int64_t ring = int64_t(slots[b]) * G * cap * hd;
    for (int64_t t = std::max<int64_t>(0, L - cap); t < L; ++t) {
      const int64_t e = (pos[b] + t) % cap;
      for (int64_t g = 0; g < G; ++g) {
        std::copy_n(k_new + (b * L + t) * ldkv + g * hd, hd, k_cache + ring + (g * cap + e) * hd);
        std::copy_n(v_new + (b * L + t) * ldkv + g * hd, hd, v_cache + ring + (g * cap + e) * hd);
      }
    }
  }
}

#define SAMBALM_INSTANTIATE(T)                                                                                         \
  template void diff_attention_cached_forward<T>(T*, const T*, int64_t, const T*, const T*, int64_t, const T*,         \
                                                 const T*, const int32_t*, const int64_t*, const T*, int64_t, int64_t, \
                                                 int64_t, int64_t, int64_t, int64_t, int64_t, double);                 \
  template void kv_cache_write_rows<T>(T*, T*, const T*, const T*, int64_t, const int32_t*, const int64_t*, int64_t,   \
                                       int64_t, int64_t, int64_t, int64_t);
SAMBALM_INSTANTIATE(float)
SAMBALM_INSTANTIATE(double)
#undef SAMBALM_INSTANTIATE

}  // namespace sambalm::ops::cpu
