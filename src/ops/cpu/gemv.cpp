// gemv_rows (gemv_tiles.h) compiled for the baseline and for AVX2 + FMA; isa.h picks one at run time.
//   out[m, n] = bias[n] + sum_k in[m, k] W[n, k]      for all m < M, rows n in blocks of kGemvBlock
// (Its 32-byte vector helpers are always inlined, so the baseline build's note that passing them would
// change the ABI does not apply.)
#include "ops/cpu/gemv.h"

#include <algorithm>

namespace sambalm::ops::cpu {

namespace {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
namespace generic {
#include "ops/cpu/gemv_tiles.h"  // NOLINT(build/include): compiled into this namespace
}
#pragma GCC diagnostic pop
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "ops/cpu/gemv_tiles.h"  // NOLINT(build/include)
}
#pragma GCC pop_options
#endif

constexpr int64_t kGemvBlock = 64;  // output rows per task

}  // namespace

void gemv_linear(Isa isa, float* out, int64_t ld_out, const float* in, int64_t ld_in, const float* W, const float* bias,
                 int64_t M, int64_t K, int64_t N) {
  if (M <= 0 || N <= 0) return;
  auto rows = generic::gemv_rows;
#if defined(__x86_64__) && defined(__GNUC__)
  if (isa == Isa::Avx2) rows = avx2::gemv_rows;
#endif
  const int64_t blocks = (N + kGemvBlock - 1) / kGemvBlock;
#pragma omp parallel for schedule(static) if (N * K > (1 << 16))
  for (int64_t i = 0; i < blocks; ++i)
    rows(out, ld_out, in, ld_in, M, W, i * kGemvBlock, std::min(N, (i + 1) * kGemvBlock), K);
  if (bias)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) out[m * ld_out + n] += bias[n];
}

}  // namespace sambalm::ops::cpu
