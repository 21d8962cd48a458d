// The AVX512-BF16 GEMM (matmul_bf16.h has the math and the layout) and the AMX availability check.
#include "ops/cpu/matmul_bf16.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "core/error.h"
#include "ops/cpu/gemv_packed.h"
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#endif
#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace sambalm::ops::cpu {

bool bf16_gemm_supported() {
#if defined(__x86_64__) && defined(__GNUC__)
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

namespace {
const char* isa_cap() {
  const char* force = std::getenv("SAMBALM_CPU_ISA");
  if (!force) return nullptr;
  for (const char* cap : {"baseline", "avx2", "avx512"})
    if (std::strcmp(force, cap) == 0) return cap;
  return nullptr;
}
}  // namespace

bool bf16_gemm_enabled() {
  static const bool on = bf16_gemm_supported() && !isa_cap();
  return on;
}

std::string bf16_gemm_fallback_reason() {
  if (bf16_gemm_enabled()) return "";
  if (const char* cap = isa_cap()) return std::string("SAMBALM_CPU_ISA=") + cap + " caps the kernels below AVX512-BF16";
  return "this CPU has no AVX512-BF16";
}

#if defined(__x86_64__) && defined(__GNUC__)
namespace {

constexpr int64_t kMR = 8;        // activation rows per register tile
constexpr int64_t kNR = 32;       // weight rows per panel (two 16-lane vectors)
constexpr int64_t kMChunk = 256;  // rows of activations per task (their bf16 copy stays in L2)

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")

// a[m * K2 + kp] = the bf16 pair (inp[m, 2kp], inp[m, 2kp + 1]) (low half first), zero past K.
void round_rows_to_bf16(uint32_t* a, const float* inp, int64_t ld_inp, int64_t m0, int64_t m1, int64_t K, int64_t K2) {
  for (int64_t m = m0; m < m1; ++m) {
    const float* x = inp + m * ld_inp;
    uint16_t* row = reinterpret_cast<uint16_t*>(a + m * K2);
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
      const __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(x + k));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(row + k), (__m256i)h);
    }
    if (k < K) {
      const __mmask16 mask = static_cast<__mmask16>((1u << (K - k)) - 1);
      const __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, x + k));
      _mm256_mask_storeu_epi16(row + k, mask, (__m256i)h);
    }
    if (K % 2) row[K] = 0;
  }
}

// bp[kp * kNR + j] = the bf16 pair (w[j * ld + 2kp], w[j * ld + 2kp + 1]) for j < rows (<= kNR), zero
// past `rows` or K: one gather of 16 rows' pairs per store.
void pack_panel(uint32_t* bp, const uint16_t* w, int64_t ld, int64_t K, int64_t rows) {
  const int64_t whole = K / 2;
  const __m512i row_bytes = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                               _mm512_set1_epi32(int(ld * 2)));
  for (int64_t j0 = 0; j0 < kNR; j0 += 16) {
    const int64_t valid = std::clamp<int64_t>(rows - j0, 0, 16);
    const __mmask16 mask = static_cast<__mmask16>((1u << valid) - 1);
    if (valid == 0) {
      for (int64_t kp = 0; kp < (K + 1) / 2; ++kp) _mm512_storeu_si512(bp + kp * kNR + j0, _mm512_setzero_si512());
      continue;
    }
    const char* base = reinterpret_cast<const char*>(w + j0 * ld);
    for (int64_t kp = 0; kp < whole; ++kp)
      _mm512_storeu_si512(bp + kp * kNR + j0,
                          _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mask, row_bytes, base + 4 * kp, 1));
    if (K % 2)
      for (int64_t j = 0; j < 16; ++j) bp[whole * kNR + j0 + j] = j < valid ? w[(j0 + j) * ld + K - 1] : 0u;
  }
}

// The same from f16 or q8 weights: the panel's rows dequantized to float32 (`rows` scratch, kNR x K),
// rounded to bf16 (nearest even; `pairs` scratch, kNR x K2 pairs), then packed as above.
void pack_panel_converted(uint32_t* bp, float* rows, uint32_t* pairs, const PackedMatrix& W, int64_t n0) {
  const int64_t K = W.cols, K2 = (K + 1) / 2, valid = std::min(kNR, W.rows - n0);
  dequantize_rows(PackedIsa::Avx512, rows, W, nullptr, n0, valid);
  round_rows_to_bf16(pairs, rows, K, 0, valid, K, K2);
  pack_panel(bp, reinterpret_cast<const uint16_t*>(pairs), 2 * K2, K, valid);
}

// out[r, 0..nvalid) for r < MR: the products of MR bf16 activation rows with one packed panel.
template <int MR>
void tile(float* out, int64_t ld_out, const uint32_t* a, int64_t K2, const uint32_t* bp, const float* bias,
          int64_t nvalid) {
  __m512 acc[MR][2];
  // Fully unrolled, so that the accumulators stay in registers (GCC keeps a rolled loop's array in memory).
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t kp = 0; kp < K2; ++kp) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp + kp * kNR);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(bp + kp * kNR + 16);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512bh x = (__m512bh)_mm512_set1_epi32(int(a[r * K2 + kp]));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, b1);
    }
  }
  const __mmask16 m0 = static_cast<__mmask16>((1u << std::min<int64_t>(nvalid, 16)) - 1);
  const __mmask16 m1 = static_cast<__mmask16>((1u << std::clamp<int64_t>(nvalid - 16, 0, 16)) - 1);
  const __m512 bias0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
  const __m512 bias1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    _mm512_mask_storeu_ps(out + r * ld_out, m0, _mm512_add_ps(acc[r][0], bias0));
    _mm512_mask_storeu_ps(out + r * ld_out + 16, m1, _mm512_add_ps(acc[r][1], bias1));
  }
}

template <int... R>
constexpr auto tile_table(std::integer_sequence<int, R...>) {
  using Fn = void (*)(float*, int64_t, const uint32_t*, int64_t, const uint32_t*, const float*, int64_t);
  return std::array<Fn, sizeof...(R)>{&tile<R + 1>...};
}

#pragma GCC pop_options

// Grown once to the largest size, then reused (thread_local: concurrent callers never share one).
std::vector<uint32_t>& activations_scratch(size_t n) {
  static thread_local std::vector<uint32_t> buf;
  if (buf.size() < n) buf.resize(n);
  return buf;
}
template <int Which, typename T>
T* panel_scratch(size_t n) {
  static thread_local std::vector<T> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

}  // namespace

void matmul_bf16(float* out, int64_t ld_out, const float* inp, int64_t ld_inp, const PackedMatrix& W, const float* bias,
                 int64_t M) {
  SAMBALM_CHECK(W.format != MatrixFormat::F32, "matmul_bf16: f32 weights");
  SAMBALM_CHECK(bf16_gemm_supported(), "matmul_bf16: this CPU has no AVX512-BF16");
  const int64_t N = W.rows, K = W.cols, K2 = (K + 1) / 2;
  if (M <= 0 || N <= 0) return;
  uint32_t* a = activations_scratch(static_cast<size_t>(M * K2)).data();
  const int64_t row_blocks = (M + kMR - 1) / kMR;
#pragma omp parallel for schedule(static) if (M * K > (1 << 15))
  for (int64_t b = 0; b < row_blocks; ++b)
    round_rows_to_bf16(a, inp, ld_inp, b * kMR, std::min(M, (b + 1) * kMR), K, K2);

  static constexpr auto tiles = tile_table(std::make_integer_sequence<int, kMR>{});
  const auto* w = static_cast<const uint16_t*>(W.data);
  const int64_t panels = (N + kNR - 1) / kNR, chunks = (M + kMChunk - 1) / kMChunk;
  // Tasks run chunk-major, so the consecutive tasks of a thread reuse one chunk of activations.
#pragma omp parallel for schedule(static) if (M * N * K > (1 << 18))
  for (int64_t t = 0; t < panels * chunks; ++t) {
    const int64_t n0 = (t % panels) * kNR, c0 = (t / panels) * kMChunk, c1 = std::min(M, c0 + kMChunk);
    uint32_t* bp = panel_scratch<0, uint32_t>(static_cast<size_t>(K2 * kNR));
    if (W.format == MatrixFormat::BF16)
      pack_panel(bp, w + n0 * K, K, K, std::min(kNR, N - n0));
    else
      pack_panel_converted(bp, panel_scratch<1, float>(static_cast<size_t>(kNR * K)),
                           panel_scratch<2, uint32_t>(static_cast<size_t>(kNR * K2)), W, n0);
    const int64_t nvalid = std::min(kNR, N - n0);
    for (int64_t m0 = c0; m0 < c1; m0 += kMR) {
      const int64_t mr = std::min(kMR, c1 - m0);
      tiles[mr - 1](out + m0 * ld_out + n0, ld_out, a + m0 * K2, K2, bp, bias ? bias + n0 : nullptr, nvalid);
    }
  }
}

AmxStatus amx_status() {
  static const AmxStatus status = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return AmxStatus{false, "the CPU reports no leaf 7 features"};
    const bool tile = edx & (1u << 24), amx_bf16 = edx & (1u << 22);
    if (!tile || !amx_bf16) return AmxStatus{false, "this CPU has no AMX (AMX-TILE and AMX-BF16 absent)"};
#if defined(__linux__)
    constexpr int kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;  // asm/prctl.h, Linux 5.16+
    if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0)
      return AmxStatus{false, std::string("the kernel refused AMX tile data (arch_prctl ARCH_REQ_XCOMP_PERM: ") +
                                  std::strerror(errno) + ")"};
    return AmxStatus{true, "AMX-BF16 present and tile data granted by the kernel"};
#else
    return AmxStatus{false, "AMX tile data needs Linux's arch_prctl permission"};
#endif
  }();
  return status;
}

#else  // not x86-64 with GCC/Clang

void matmul_bf16(float*, int64_t, const float*, int64_t, const PackedMatrix&, const float*, int64_t) {
  fail("matmul_bf16: AVX512-BF16 needs an x86-64 build");
}
AmxStatus amx_status() { return AmxStatus{false, "AMX needs x86-64"}; }

#endif

}  // namespace sambalm::ops::cpu
