// gemv_packed_tiles.h compiled three times: baseline x86-64, AVX2 + FMA + F16C, and AVX-512
// (F/BW/VL/DQ); the run-time choice is packed_isa() (gemv_packed.h). The code is the same generic
// vector code in each; only the vector width (8 or 16 floats) and the instructions differ.
#include "ops/cpu/gemv_packed.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

namespace sambalm::ops::cpu {

namespace {

// The baseline build's 32-byte vector helpers are always inlined, so the note that passing them would
// change the ABI does not apply (as in gemv.cpp).
#pragma GCC diagnostic ignored "-Wpsabi"
namespace generic {
#define SAMBALM_VW 8
#define SAMBALM_PACKED_LEVEL 0
#include "ops/cpu/gemv_packed_tiles.h"  // NOLINT(build/include): compiled into this namespace
#undef SAMBALM_PACKED_LEVEL
#undef SAMBALM_VW
}  // namespace generic
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
namespace avx2 {
#define SAMBALM_VW 8
#define SAMBALM_PACKED_LEVEL 1
#include "ops/cpu/gemv_packed_tiles.h"  // NOLINT(build/include)
#undef SAMBALM_PACKED_LEVEL
#undef SAMBALM_VW
}  // namespace avx2
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
namespace avx512 {
#define SAMBALM_VW 16
#define SAMBALM_PACKED_LEVEL 2
#include "ops/cpu/gemv_packed_tiles.h"  // NOLINT(build/include)
#undef SAMBALM_PACKED_LEVEL
#undef SAMBALM_VW
}  // namespace avx512
#pragma GCC pop_options
#endif

constexpr int64_t kRowsPerTask = 64;

}  // namespace

bool packed_isa_supported(PackedIsa isa) {
  switch (isa) {
    case PackedIsa::Baseline:
      return true;
#if defined(__x86_64__) && defined(__GNUC__)
    case PackedIsa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case PackedIsa::Avx512:
      return packed_isa_supported(PackedIsa::Avx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512dq");
#else
    default:
      return false;
#endif
  }
  return false;
}

PackedIsa packed_isa() {
  static const PackedIsa isa = [] {
    const char* force = std::getenv("SAMBALM_CPU_ISA");
    PackedIsa cap = PackedIsa::Avx512;
    if (force && std::strcmp(force, "baseline") == 0) cap = PackedIsa::Baseline;
    if (force && std::strcmp(force, "avx2") == 0) cap = PackedIsa::Avx2;
    for (PackedIsa i : {PackedIsa::Avx512, PackedIsa::Avx2})
      if (i <= cap && packed_isa_supported(i)) return i;
    return PackedIsa::Baseline;
  }();
  return isa;
}

const char* packed_isa_name(PackedIsa isa) {
  switch (isa) {
    case PackedIsa::Baseline:
      return "baseline";
    case PackedIsa::Avx2:
      return "avx2";
    case PackedIsa::Avx512:
      return "avx512";
  }
  return "?";
}

void gemv_packed(PackedIsa isa, float* out, int64_t ld_out, const float* in, int64_t ld_in, const PackedMatrix& W,
                 const float* bias, int64_t M) {
  const int64_t N = W.rows, K = W.cols;
  if (M <= 0 || N <= 0) return;
  auto rows = generic::rows_fn(W.format);
#if defined(__x86_64__) && defined(__GNUC__)
  if (isa == PackedIsa::Avx2) rows = avx2::rows_fn(W.format);
  if (isa == PackedIsa::Avx512) rows = avx512::rows_fn(W.format);
#endif
  const int64_t tasks = (N + kRowsPerTask - 1) / kRowsPerTask;
#pragma omp parallel for schedule(static) if (N * K > (1 << 16))
  for (int64_t i = 0; i < tasks; ++i)
    rows(out, ld_out, in, ld_in, M, W, i * kRowsPerTask, std::min(N, (i + 1) * kRowsPerTask));
  if (bias)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) out[m * ld_out + n] += bias[n];
}

void dequantize_rows(PackedIsa isa, float* dst, const PackedMatrix& W, const int32_t* rows, int64_t first,
                     int64_t count) {
  auto fn = generic::dequant_fn(W.format);
#if defined(__x86_64__) && defined(__GNUC__)
  if (isa == PackedIsa::Avx2) fn = avx2::dequant_fn(W.format);
  if (isa == PackedIsa::Avx512) fn = avx512::dequant_fn(W.format);
#endif
  constexpr int64_t kRows = 16;
  const int64_t tasks = (count + kRows - 1) / kRows;
#pragma omp parallel for schedule(static) if (count * W.cols > (1 << 16))
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t i0 = t * kRows, n = std::min(kRows, count - i0);
    fn(dst + i0 * W.cols, W, rows ? rows + i0 : nullptr, first + i0, n);
  }
}

}  // namespace sambalm::ops::cpu
