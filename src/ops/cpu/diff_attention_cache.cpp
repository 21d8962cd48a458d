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
// when the max grows; a = acc1 / l1 - lambda acc2 / l2. Head sizes up to kOnePassMaxHd do it in one
// pass over the keys (each key and value read once: decoding at long context is bound by reading the
// shared cache); larger ones in two (log-sum-exps first, then the normalised weights into the output
// row), which needs no buffer whatever the head size.
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

}  // namespace

template <typename T>
void diff_attention_cached_forward(T* out, const T* q, int64_t ldq, const T* k_new, const T* v_new, int64_t ldkv,
                                   const T* k_cache, const T* v_cache, const int32_t* slots, const int64_t* pos,
                                   const T* lambda, int64_t B, int64_t L, int64_t H, int64_t G, int64_t hd, int64_t cap,
                                   int64_t window, double scale) {
  const int64_t pairs = H / 2, per_kv = H / G;
  const double lam = double(lambda[0]);
  const T sc = T(scale);
  const int64_t keys = window > 0 ? std::min<int64_t>(window, 1024) : 1024;  // work estimate only
  const int64_t tasks = B * pairs * L;
  const bool parallel = tasks * keys * hd > (1 << 17);
  auto one = [&](int64_t i) {
    const int64_t t = i % L, m = (i / L) % pairs, b = i / (L * pairs);
    const int64_t p0 = pos[b], p = p0 + t, lo = window > 0 ? std::max<int64_t>(0, p - window + 1) : 0;
    const int64_t h1 = 2 * m, h2 = h1 + 1, g1 = 2 * (m / per_kv), g2 = g1 + 1;
    const T* qrow = q + (b * L + t) * ldq;
    const T *q1 = qrow + h1 * hd, *q2 = qrow + h2 * hd;
    const int64_t ring = int64_t(slots[b]) * G * cap * hd;
    // Row of kv head g at position s: new (this call's tokens) or cached (the slot's ring).
    auto row = [&](const T* fresh, const T* cache, int64_t s, int64_t g) {
      return s >= p0 ? fresh + (b * L + s - p0) * ldkv + g * hd : cache + ring + (g * cap + s % cap) * hd;
    };
    T* o = out + (b * L + t) * H * hd + h1 * hd;  // 2 hd values: heads h1 and h2
    if (hd <= kOnePassMaxHd) {
      // One pass: each half's weighted value sum on the stack, rescaled when its running max grows.
      T acc1[2 * kOnePassMaxHd], acc2[2 * kOnePassMaxHd];
      std::fill(acc1, acc1 + 2 * hd, T(0));
      std::fill(acc2, acc2 + 2 * hd, T(0));
      double m1 = -std::numeric_limits<double>::infinity(), m2 = m1, l1 = 0, l2 = 0;
      for (int64_t s = lo; s <= p; ++s) {
        const double s1 = double(sc * dot(q1, row(k_new, k_cache, s, g1), hd));
        const double s2 = double(sc * dot(q2, row(k_new, k_cache, s, g2), hd));
        if (s1 > m1) {
          const double c = std::exp(m1 - s1);  // 0 on the first key
          l1 *= c;
          for (int64_t i = 0; i < 2 * hd; ++i) acc1[i] *= T(c);
          m1 = s1;
        }
        if (s2 > m2) {
          const double c = std::exp(m2 - s2);
          l2 *= c;
          for (int64_t i = 0; i < 2 * hd; ++i) acc2[i] *= T(c);
          m2 = s2;
        }
        const double e1 = std::exp(s1 - m1), e2 = std::exp(s2 - m2);
        l1 += e1;
        l2 += e2;
        const T p1 = T(e1), p2 = T(e2);
        const T* v1 = row(v_new, v_cache, s, g1);
        const T* v2 = row(v_new, v_cache, s, g2);
#pragma omp simd
        for (int64_t c = 0; c < hd; ++c) {
          acc1[c] += p1 * v1[c];
          acc2[c] += p2 * v1[c];
        }
#pragma omp simd
        for (int64_t c = 0; c < hd; ++c) {
          acc1[hd + c] += p1 * v2[c];
          acc2[hd + c] += p2 * v2[c];
        }
      }
      const T w1 = T(1.0 / l1), w2 = T(lam / l2);
      for (int64_t i = 0; i < 2 * hd; ++i) o[i] = w1 * acc1[i] - w2 * acc2[i];
      return;
    }
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
