// Decode-time kernels. The math:
//
// linear:     out[m, n] = bias[n] + sum_k in[m, k] W[n, k]
//             M <= 64: our OpenMP GEMV (gemv_tiles.h), each weight row read from memory once for all M
//             rows: decoding is bound by reading the weights, and OpenBLAS's packing GEMM is slower
//             than this below about 64 rows (measured, mamba-130m on 2 cores); larger M: one sgemm.
//
// rope_rows:  angle(p, i) = (p / condense_ratio) * base^(-2i / rope_dims), computed in double as in
//             ops::rope_table, then rounded to float: cos[p - pos0, i], sin[p - pos0, i].
//
// attention (one query q, keys s in a range, online softmax in chunks of kChunk scores):
//             S_s = scale * q . k_s
//             m = running max, l = sum exp(S_s - m), acc = sum exp(S_s - m) v_s
//             (a new chunk max m' rescales l and acc by exp(m - m'));   out = acc / l
#include "infer/decode_kernels.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace sambalm::infer {

namespace {

// gemv_rows (gemv_tiles.h) compiled for AVX2 + FMA and for the baseline; picked once at run time
// (the build is not -march=native).
// (Its 32-byte vector helpers are always inlined, so the baseline build's note that passing them
// would change the ABI does not apply.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
namespace generic {
#include "infer/gemv_tiles.h"  // NOLINT(build/include): compiled into this namespace
}
#pragma GCC diagnostic pop
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "infer/gemv_tiles.h"  // NOLINT(build/include)
}
#pragma GCC pop_options
#endif

using GemvRows = void (*)(float*, int64_t, const float*, int64_t, int64_t, const float*, int64_t, int64_t, int64_t);
GemvRows pick_gemv_rows() {
#if defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return avx2::gemv_rows;
#endif
  return generic::gemv_rows;
}
const GemvRows gemv_rows = pick_gemv_rows();

constexpr int64_t kGemvMaxRows = 64;  // up to this many rows our GEMV; beyond, sgemm (see the top)
constexpr int64_t kGemvBlock = 64;    // output rows per task

}  // namespace

void linear(float* out, int64_t ld_out, const float* in, int64_t ld_in, const float* W, const float* bias, int64_t M,
            int64_t K, int64_t N) {
  if (M <= 0 || N <= 0) return;
  if (M <= kGemvMaxRows) {
    const int64_t blocks = (N + kGemvBlock - 1) / kGemvBlock;
#pragma omp parallel for schedule(static) if (N * K > (1 << 16))
    for (int64_t i = 0; i < blocks; ++i)
      gemv_rows(out, ld_out, in, ld_in, M, W, i * kGemvBlock, std::min(N, (i + 1) * kGemvBlock), K);
    if (bias)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) out[m * ld_out + n] += bias[n];
    return;
  }
  float beta = 0.0f;
  if (bias) {
    for (int64_t m = 0; m < M; ++m) std::copy(bias, bias + N, out + m * ld_out);
    beta = 1.0f;
  } else if (K == 0) {
    for (int64_t m = 0; m < M; ++m) std::fill(out + m * ld_out, out + m * ld_out + N, 0.0f);
  }
  if (K == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(N), int(K), 1.0f, in, int(ld_in), W, int(K), beta,
              out, int(ld_out));
}

void rope_rows(float* cos, float* sin, int64_t pos0, int64_t n, int64_t rope_dims, double base, double condense_ratio) {
  const int64_t half = rope_dims / 2;
  for (int64_t t = 0; t < n; ++t) {
    const double pos = double(pos0 + t) / condense_ratio;
    for (int64_t i = 0; i < half; ++i) {
      const double angle = pos * std::pow(base, -2.0 * double(i) / double(rope_dims));
      cos[t * half + i] = float(std::cos(angle));
      sin[t * half + i] = float(std::sin(angle));
    }
  }
}

namespace {

constexpr int64_t kChunk = 64;

inline float dot(const float* a, const float* b, int64_t n) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// acc[hs] = softmax-weighted sum of values over keys j = 0 .. n-1, key(j)/value(j) giving rows.
template <typename KeyRow, typename ValueRow>
void attend_one(float* acc, const float* q, int64_t n, int64_t hs, float scale, KeyRow key, ValueRow value) {
  std::fill(acc, acc + hs, 0.0f);
  float m = -std::numeric_limits<float>::infinity(), l = 0;
  float s[kChunk];
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t cn = std::min(kChunk, n - c0);
    float cmax = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < cn; ++j) {
      s[j] = scale * dot(q, key(c0 + j), hs);
      cmax = std::max(cmax, s[j]);
    }
    if (cmax > m) {
      const float corr = std::exp(m - cmax);  // 0 on the first chunk
      l *= corr;
      for (int64_t i = 0; i < hs; ++i) acc[i] *= corr;
      m = cmax;
    }
    for (int64_t j = 0; j < cn; ++j) {
      const float p = std::exp(s[j] - m);
      l += p;
      const float* vr = value(c0 + j);
#pragma omp simd
      for (int64_t i = 0; i < hs; ++i) acc[i] += p * vr[i];
    }
  }
  const float inv = 1.0f / l;
  for (int64_t i = 0; i < hs; ++i) acc[i] *= inv;
}

}  // namespace

void attend_chunk(float* out, const float* q, const float* k, const float* v, int64_t C, int64_t S, int64_t H,
                  int64_t G, int64_t hs, int64_t window, double scale) {
  const int64_t L = S - C, qpk = H / G;
  const float sc = float(scale);
#pragma omp parallel for collapse(2) schedule(dynamic, 4) if (C * H * hs * std::min <int64_t>(S, 64) > (1 << 16))
  for (int64_t h = 0; h < H; ++h) {
    for (int64_t i = 0; i < C; ++i) {
      const int64_t t = L + i, lo = window > 0 ? std::max<int64_t>(0, t - window + 1) : 0;
      const float* kb = k + (h / qpk) * S * hs;
      const float* vb = v + (h / qpk) * S * hs;
      attend_one(
          out + i * H * hs + h * hs, q + (h * C + i) * hs, t + 1 - lo, hs, sc,
          [&](int64_t j) { return kb + (lo + j) * hs; }, [&](int64_t j) { return vb + (lo + j) * hs; });
    }
  }
}

void attend_ring(float* out, const float* q, const float* k, const float* v, int64_t cap, int64_t lo, int64_t hi,
                 int64_t H, int64_t G, int64_t hs, double scale) {
  const int64_t qpk = H / G, n = hi - lo + 1;
  const float sc = float(scale);
#pragma omp parallel for schedule(static) if (H * n * hs > (1 << 16))
  for (int64_t h = 0; h < H; ++h) {
    const float* kb = k + (h / qpk) * cap * hs;
    const float* vb = v + (h / qpk) * cap * hs;
    attend_one(
        out + h * hs, q + h * hs, n, hs, sc, [&](int64_t j) { return kb + ((lo + j) % cap) * hs; },
        [&](int64_t j) { return vb + ((lo + j) % cap) * hs; });
  }
}

}  // namespace sambalm::infer
