// The q8 and q4 GEMVs through integer dot products (gemv_packed.h: Q8Dot), three builds of
// gemv_packed_q8dot_tiles.h and gemv_packed_q4dot_tiles.h: AVX2 (vpmaddubsw), AVX512-VNNI and AVX-VNNI (vpdpbusd on
// 256-bit vectors). The activations are quantized once per call, before the threads split the rows.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "ops/cpu/gemv_packed.h"
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

namespace sambalm::ops::cpu {

namespace {

// The activations of one GEMV in q8: q[b, k] int8 in [-127, 127], scale[b, blk] = max|x| / 127 of the
// block (x ~ scale * q), corr[b, blk] = -16 * sum_k q[b, k] of the block (vpdpbusd's offset, spread
// over 8 lanes: see gemv_packed_q8dot_tiles.h).
struct QuantizedRows {
  const int8_t* q;
  const float* scale;
  const int32_t* corr;
};

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace maddubs {
#define SAMBALM_Q8DOT 1
#include "ops/cpu/gemv_packed_q8dot_tiles.h"  // NOLINT(build/include): compiled into this namespace
// (after the q8 tiles, whose helpers it uses)
#include "ops/cpu/gemv_packed_q4dot_tiles.h"  // NOLINT(build/include)
#undef SAMBALM_Q8DOT

// Row b of X (K a multiple of 32) into q / scale / corr, a block of 32 floats at a time: round to
// nearest even (vcvtps2dq), then narrow 32 -> 16 -> 8 bits with saturation (never reached: |q| <= 127)
// and undo the lane interleaving of the two packs.
void quantize_rows(int8_t* q, float* scale, int32_t* corr, const float* X, int64_t ld_x, int64_t M, int64_t K) {
  const int64_t nb = K / kQ8Block;
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t b = 0; b < M; ++b)
    for (int64_t blk = 0; blk < nb; ++blk) {
      const float* x = X + b * ld_x + blk * kQ8Block;
      __m256 v[4];
      __m256 amax = _mm256_setzero_ps();
      for (int i = 0; i < 4; ++i) {
        v[i] = _mm256_loadu_ps(x + 8 * i);
        amax = _mm256_max_ps(amax, _mm256_and_ps(v[i], abs_mask));
      }
      __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
      m = _mm_max_ps(m, _mm_movehl_ps(m, m));
      m = _mm_max_ss(m, _mm_movehdup_ps(m));
      const float d = _mm_cvtss_f32(m) / 127.0f;
      const __m256 inv = _mm256_set1_ps(d > 0 ? 1.0f / d : 0.0f);
      __m256i qi[4];
      for (int i = 0; i < 4; ++i) qi[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], inv));
      const __m256i s = _mm256_add_epi32(_mm256_add_epi32(qi[0], qi[1]), _mm256_add_epi32(qi[2], qi[3]));
      __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
      const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + b * K + blk * kQ8Block),
                          _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
      scale[b * nb + blk] = d;
      corr[b * nb + blk] = -16 * _mm_cvtsi128_si32(s4);
    }
}
}  // namespace maddubs
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512vnni,avx512vl,avx512f,avx512bw,avx2,fma")
namespace vnni512 {
#define SAMBALM_Q8DOT 2
#include "ops/cpu/gemv_packed_q8dot_tiles.h"  // NOLINT(build/include)
// (after the q8 tiles)
#include "ops/cpu/gemv_packed_q4dot_tiles.h"  // NOLINT(build/include)
#undef SAMBALM_Q8DOT
}  // namespace vnni512
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avxvnni,avx2,fma")
namespace avxvnni {
#define SAMBALM_Q8DOT 3
#include "ops/cpu/gemv_packed_q8dot_tiles.h"  // NOLINT(build/include)
// (after the q8 tiles)
#include "ops/cpu/gemv_packed_q4dot_tiles.h"  // NOLINT(build/include)
#undef SAMBALM_Q8DOT
}  // namespace avxvnni
#pragma GCC pop_options
#endif

constexpr int64_t kRowsPerTask = 64;

}  // namespace

bool q8dot_supported(Q8Dot dot) {
#if defined(__x86_64__) && defined(__GNUC__)
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  switch (dot) {
    case Q8Dot::Float:
      return true;
    case Q8Dot::Avx2:
      return avx2;
    case Q8Dot::Avx512Vnni:
      return avx2 && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512bw");
    case Q8Dot::AvxVnni:
      return avx2 && __builtin_cpu_supports("avxvnni");
  }
  return false;
#else
  return dot == Q8Dot::Float;
#endif
}

Q8Dot q8dot() {
  static const Q8Dot dot = [] {
    // SAMBALM_Q8_DOT=float or =avx2 caps the choice (to compare the paths); SAMBALM_CPU_ISA=baseline
    // means no x86 extension at all.
    const char* force = std::getenv("SAMBALM_Q8_DOT");
    if ((force && std::strcmp(force, "float") == 0) || packed_isa() == PackedIsa::Baseline) return Q8Dot::Float;
    const bool avx2_only = force && std::strcmp(force, "avx2") == 0;
    for (Q8Dot d : {Q8Dot::Avx512Vnni, Q8Dot::AvxVnni, Q8Dot::Avx2})
      if (q8dot_supported(d) && (!avx2_only || d == Q8Dot::Avx2)) return d;
    return Q8Dot::Float;
  }();
  return dot;
}

const char* q8dot_name(Q8Dot dot) {
  switch (dot) {
    case Q8Dot::Float:
      return "float";
    case Q8Dot::Avx2:
      return "avx2-maddubs";
    case Q8Dot::Avx512Vnni:
      return "avx512-vnni";
    case Q8Dot::AvxVnni:
      return "avx-vnni";
  }
  return "?";
}

void gemv_packed_auto(float* out, int64_t ld_out, const float* in, int64_t ld_in, const PackedMatrix& W,
                      const float* bias, int64_t M) {
  if (is_block_format(W.format) && q8dot() != Q8Dot::Float)
    return gemv_q8dot(q8dot(), out, ld_out, in, ld_in, W, bias, M);
  gemv_packed(packed_isa(), out, ld_out, in, ld_in, W, bias, M);
}

void gemv_q8dot(Q8Dot dot, float* out, int64_t ld_out, const float* in, int64_t ld_in, const PackedMatrix& W,
                const float* bias, int64_t M) {
  SAMBALM_CHECK(is_block_format(W.format) && W.cols % kQ8Block == 0, "gemv_q8dot: a q8 or q4 matrix, got {} [{}, {}]",
                matrix_format_name(W.format), W.rows, W.cols);
  const int64_t N = W.rows, K = W.cols;
  if (M <= 0 || N <= 0) return;
  if (dot == Q8Dot::Float) return gemv_packed(packed_isa(), out, ld_out, in, ld_in, W, bias, M);
  SAMBALM_CHECK(q8dot_supported(dot), "gemv_q8dot: this processor cannot run the {} path", q8dot_name(dot));
#if defined(__x86_64__) && defined(__GNUC__)
  // Per calling thread, grown once to the largest GEMV it has run (decoding calls this ~100 times a step).
  thread_local std::vector<int8_t> q;
  thread_local std::vector<float> scale;
  thread_local std::vector<int32_t> corr;
  const int64_t nb = K / kQ8Block;
  if (int64_t(q.size()) < M * K) q.resize(M * K);
  if (int64_t(scale.size()) < M * nb) scale.resize(M * nb), corr.resize(M * nb);
  maddubs::quantize_rows(q.data(), scale.data(), corr.data(), in, ld_in, M, K);
  const QuantizedRows X{q.data(), scale.data(), corr.data()};
  const bool q4 = W.format == MatrixFormat::Q4;
  auto rows = q4 ? maddubs::q4dot_rows : maddubs::q8dot_rows;
  if (dot == Q8Dot::Avx512Vnni) rows = q4 ? vnni512::q4dot_rows : vnni512::q8dot_rows;
  if (dot == Q8Dot::AvxVnni) rows = q4 ? avxvnni::q4dot_rows : avxvnni::q8dot_rows;
  const int64_t tasks = (N + kRowsPerTask - 1) / kRowsPerTask;
#pragma omp parallel for schedule(static) if (N * K > (1 << 16))
  for (int64_t i = 0; i < tasks; ++i) rows(out, ld_out, X, M, W, i * kRowsPerTask, std::min(N, (i + 1) * kRowsPerTask));
  if (bias)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) out[m * ld_out + n] += bias[n];
#else
  fail("gemv_q8dot: {} is not built for this processor", q8dot_name(dot));
#endif
}

}  // namespace sambalm::ops::cpu
