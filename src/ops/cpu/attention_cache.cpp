// Attention of new queries over a key/value cache at absolute positions, and the cache write.
//
// Per sequence b, new token t sits at absolute position p = pos[b] + t and attends to the positions
//   s in [lo, p],  lo = window > 0 ? max(0, p - window + 1) : 0
// with key/value of s taken from the new tokens when s >= pos[b] (k_new[b, g, s - pos[b]]) and from
// the ring of slot slots[b] otherwise (entry s % cap; the ring holds the cap positions before pos[b]).
// For one query, online softmax over chunks of kChunk scores:
//   S_s = scale * q . k_s;  m = running max;  l = sum exp(S_s - m);  acc = sum exp(S_s - m) v_s
//   (a larger chunk max m' rescales l and acc by exp(m - m'));  out = acc / l
// kv_cache_write stores the last min(L, cap) new keys/values at their ring entries, p % cap.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "ops/cpu/cpu_ops.h"

namespace sambalm::ops::cpu {

namespace {

constexpr int64_t kChunk = 64;

template <typename T>
inline T dot(const T* a, const T* b, int64_t n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// acc[hs] = softmax-weighted sum of values over keys j = 0 .. n-1 (key(j), value(j) give the rows).
template <typename T, typename KeyRow, typename ValueRow>
void attend_one(T* acc, const T* q, int64_t n, int64_t hs, T scale, KeyRow key, ValueRow value) {
  std::fill(acc, acc + hs, T(0));
  T m = -std::numeric_limits<T>::infinity(), l = 0;
  T s[kChunk];
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t cn = std::min(kChunk, n - c0);
    T cmax = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < cn; ++j) {
      s[j] = scale * dot(q, key(c0 + j), hs);
      cmax = std::max(cmax, s[j]);
    }
    if (cmax > m) {
      const T corr = std::exp(m - cmax);  // 0 on the first chunk
      l *= corr;
      for (int64_t i = 0; i < hs; ++i) acc[i] *= corr;
      m = cmax;
    }
    for (int64_t j = 0; j < cn; ++j) {
      const T p = std::exp(s[j] - m);
      l += p;
      const T* vr = value(c0 + j);
#pragma omp simd
      for (int64_t i = 0; i < hs; ++i) acc[i] += p * vr[i];
    }
  }
  const T inv = T(1) / l;
  for (int64_t i = 0; i < hs; ++i) acc[i] *= inv;
}

}  // namespace

template <typename T>
void attention_cached_forward(T* out, const T* q, const T* k_new, const T* v_new, const T* k_cache, const T* v_cache,
                              const int32_t* slots, const int64_t* pos, int64_t B, int64_t L, int64_t H, int64_t G,
                              int64_t hs, int64_t cap, int64_t window, double scale) {
  const int64_t qpk = H / G;
  const T sc = T(scale);
  const int64_t keys = window > 0 ? std::min<int64_t>(window, 1024) : 1024;  // work estimate only
  const int64_t tasks = B * H * L;
  const bool parallel = tasks * keys * hs > (1 << 17);
  // Query t of sequence b, head h: one online-softmax pass over the keys it sees.
  auto one = [&](int64_t i) {
    const int64_t t = i % L, h = (i / L) % H, b = i / (L * H);
    const int64_t p0 = pos[b], p = p0 + t, lo = window > 0 ? std::max<int64_t>(0, p - window + 1) : 0;
    const int64_t g = h / qpk;
    const T* kn = k_new + (b * G + g) * L * hs;
    const T* vn = v_new + (b * G + g) * L * hs;
    const int64_t ring = (int64_t(slots[b]) * G + g) * cap * hs;
    const T* kr = k_cache + ring;
    const T* vr = v_cache + ring;
    attend_one(
        out + (b * L + t) * H * hs + h * hs, q + ((b * H + h) * L + t) * hs, p + 1 - lo, hs, sc,
        [&](int64_t j) {
          const int64_t s = lo + j;
          return s >= p0 ? kn + (s - p0) * hs : kr + (s % cap) * hs;
        },
        [&](int64_t j) {
          const int64_t s = lo + j;
          return s >= p0 ? vn + (s - p0) * hs : vr + (s % cap) * hs;
        });
  };
  // A decode step has few (sequence, head) tasks of equal cost: split them evenly. A prefill chunk has
  // many, whose cost grows along the chunk until the window is full: hand them out in small pieces.
  if (tasks <= 256) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t i = 0; i < tasks; ++i) one(i);
  } else {
#pragma omp parallel for schedule(dynamic, 4) if (parallel)
    for (int64_t i = 0; i < tasks; ++i) one(i);
  }
}

template <typename T>
void kv_cache_write(T* k_cache, T* v_cache, const T* k_new, const T* v_new, const int32_t* slots, const int64_t* pos,
                    int64_t B, int64_t L, int64_t G, int64_t hs, int64_t cap) {
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t g = 0; g < G; ++g) {
      const int64_t ring = (int64_t(slots[b]) * G + g) * cap * hs;
      for (int64_t t = std::max<int64_t>(0, L - cap); t < L; ++t) {
        const int64_t e = (pos[b] + t) % cap;
        std::copy_n(k_new + ((b * G + g) * L + t) * hs, hs, k_cache + ring + e * hs);
        std::copy_n(v_new + ((b * G + g) * L + t) * hs, hs, v_cache + ring + e * hs);
      }
    }
  }
}

#define SAMBALM_INSTANTIATE(T)                                                                                    \
  template void attention_cached_forward<T>(T*, const T*, const T*, const T*, const T*, const T*, const int32_t*, \
                                            const int64_t*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                            int64_t, double);                                                     \
  template void kv_cache_write<T>(T*, T*, const T*, const T*, const int32_t*, const int64_t*, int64_t, int64_t,   \
                                  int64_t, int64_t, int64_t);
SAMBALM_INSTANTIATE(float)
SAMBALM_INSTANTIATE(double)
#undef SAMBALM_INSTANTIATE

}  // namespace sambalm::ops::cpu
