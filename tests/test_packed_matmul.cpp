// The packed-weight matmuls (bf16, f16, q8, q4; core/packed_matrix.h) against a double-precision reference
// over the dequantized weights: the decoding GEMV on every instruction set this machine runs (the
// others are skipped with a message), the prefill path (panels dequantized for the GEMM), the
// embedding gather, and the packing itself (round trips, q8's and q4's error bounds, q4's nibble order).
#include <cmath>
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif
#include <cstdio>
#include <random>
#include <vector>

#include "core/bf16.h"
#include "core/packed_matrix.h"
#include "ops/cpu/gemv.h"
#include "ops/cpu/gemv_packed.h"
#include "ops/cpu/matmul_bf16.h"
#include "ops/ops.h"
#include "testing.h"

using namespace sambalm;
using ops::cpu::PackedIsa;

namespace {

std::vector<float> uniform(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

std::vector<PackedIsa> runnable_isas() {
  std::vector<PackedIsa> isas;
  for (PackedIsa isa : {PackedIsa::Baseline, PackedIsa::Avx2, PackedIsa::Avx512}) {
    if (ops::cpu::packed_isa_supported(isa))
      isas.push_back(isa);
    else
      std::printf("[ SKIPPED  ] packed kernels, %s path: this CPU cannot run it\n", ops::cpu::packed_isa_name(isa));
  }
  return isas;
}

// Largest |out - reference| relative to |bias| + sum_k |w x| (the scale of the rounding a float sum can make),
// checking that nothing was written past N on each output row.
double check_against_reference(const std::vector<float>& out, int64_t ld_out, const std::vector<float>& in,
                               int64_t ld_in, const PackedMatrix& W, const float* bias, int64_t M) {
  const int64_t N = W.rows, K = W.cols;
  double worst = 0;
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double ref = bias ? bias[n] : 0.0, mag = 1e-30 + std::abs(ref);
      for (int64_t k = 0; k < K; ++k) {
        const double t = double(in[m * ld_in + k]) * double(packed_value(W, n, k));
        ref += t;
        mag += std::abs(t);
      }
      worst = std::max(worst, std::abs(double(out[m * ld_out + n]) - ref) / mag);
    }
    for (int64_t n = N; n < ld_out; ++n) EXPECT_EQ(out[m * ld_out + n], 123.0f) << "wrote past N";
  }
  return worst;
}

// The activations as the bf16 GEMM sees them (rounded to bf16, nearest even).
std::vector<float> rounded_to_bf16(std::vector<float> v) {
  for (auto& x : v) x = float(bf16(x));
  return v;
}

// The weights as the bf16 GEMM multiplies them: dequantized, then rounded to bf16.
OwnedPackedMatrix as_bf16(const PackedMatrix& W) {
  std::vector<float> w(W.rows * W.cols);
  for (int64_t n = 0; n < W.rows; ++n)
    for (int64_t k = 0; k < W.cols; ++k) w[n * W.cols + k] = packed_value(W, n, k);
  return pack_matrix(w.data(), W.rows, W.cols, MatrixFormat::BF16);
}

// For the q8 products through integer dot products (gemv_q8dot), whose activations are rounded to int8
// in blocks of 32 as well: the largest |out - reference| over the bound that rounding allows,
// sum_k |w_k| * xscale(k) / 2 (xscale = max|x| / 127 of the block), plus float rounding. Below 1 passes.
double q8dot_error_over_bound(const std::vector<float>& out, int64_t ld_out, const std::vector<float>& in,
                              int64_t ld_in, const PackedMatrix& W, const float* bias, int64_t M) {
  const int64_t N = W.rows, K = W.cols;
  double worst = 0;
  for (int64_t m = 0; m < M; ++m) {
    std::vector<double> xscale(K / kQ8Block, 0.0);
    for (int64_t k = 0; k < K; ++k)
      xscale[k / kQ8Block] = std::max(xscale[k / kQ8Block], std::abs(double(in[m * ld_in + k])) / 127);
    for (int64_t n = 0; n < N; ++n) {
      double ref = bias ? bias[n] : 0.0, mag = 1e-30 + std::abs(ref), bound = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double w = packed_value(W, n, k), t = double(in[m * ld_in + k]) * w;
        ref += t;
        mag += std::abs(t);
        bound += std::abs(w) * xscale[k / kQ8Block] * 0.5;
      }
      worst = std::max(worst, std::abs(double(out[m * ld_out + n]) - ref) / (bound * 1.001 + 1e-5 * mag));
    }
    for (int64_t n = N; n < ld_out; ++n) EXPECT_EQ(out[m * ld_out + n], 123.0f) << "wrote past N";
  }
  return worst;
}

const MatrixFormat kFormats[] = {MatrixFormat::F32, MatrixFormat::BF16, MatrixFormat::F16, MatrixFormat::Q8,
                                 MatrixFormat::Q4};

}  // namespace

// Batch rows 1..9 (the 8-row single-sequence tiles, partial 3-row batch tiles), N across the 4- and
// 8-row tiles and the 64-row task blocks, K not a multiple of the 8- or 16-lane vectors (float
// formats; q8 rows are whole blocks of 32), strided input and output, with and without bias.
TEST(PackedMatmul, GemvMatchesADoubleReferenceOnEveryIsa) {
  uint32_t seed = 11;
  for (PackedIsa isa : runnable_isas())
    for (MatrixFormat f : kFormats)
      for (int64_t K : {1, 7, 17, 32, 33, 64, 100, 160})
        for (int64_t N : {1, 3, 8, 9, 63, 64, 65, 130}) {
          if (is_block_format(f) && K % kQ8Block != 0) continue;
          auto Wf = uniform(N * K, ++seed);
          const OwnedPackedMatrix W = pack_matrix(Wf.data(), N, K, f);
          for (int64_t M : {1, 2, 3, 4, 5, 7, 9})
            for (bool with_bias : {false, true}) {
              const int64_t ld_in = K + 3, ld_out = N + 2;
              auto in = uniform(M * ld_in, ++seed), bias = uniform(N, ++seed);
              std::vector<float> out(M * ld_out, 123.0f);
              const float* b = with_bias ? bias.data() : nullptr;
              ops::cpu::gemv_packed(isa, out.data(), ld_out, in.data(), ld_in, W.view, b, M);
              EXPECT_LT(check_against_reference(out, ld_out, in, ld_in, W.view, b, M), 1e-5)
                  << ops::cpu::packed_isa_name(isa) << " " << matrix_format_name(f) << " M " << M << " K " << K << " N "
                  << N;
            }
        }
}

// The AVX512-BF16 GEMM: M across the 8-row tiles and the 256-row task chunks, N across the 32-row
// panels and their 16-lane halves, K odd and even (the zero partner of the last pair), strided input
// and output, with and without bias; bf16 weights and f16 / q8 ones converted a panel at a time.
// Against the double reference over the bf16-rounded activations and weights it is float32-exact;
// against the float activations and the format's own weights within bf16's rounding of both.
TEST(PackedMatmul, Bf16GemmMatchesADoubleReferenceAcrossTiles) {
  if (!ops::cpu::bf16_gemm_supported()) GTEST_SKIP() << "bf16 GEMM: this CPU has no AVX512-BF16";
  uint32_t seed = 7;
  for (MatrixFormat f : {MatrixFormat::BF16, MatrixFormat::F16, MatrixFormat::Q8, MatrixFormat::Q4})
    for (int64_t K : {1, 2, 15, 16, 17, 32, 33, 64, 100})
      for (int64_t N : {1, 5, 16, 31, 32, 33, 70}) {
        if (is_block_format(f) && K % kQ8Block != 0) continue;
        if (f != MatrixFormat::BF16 && N % 2 == 0) continue;  // fewer cases for the converted formats
        auto Wf = uniform(N * K, ++seed);
        const OwnedPackedMatrix W = pack_matrix(Wf.data(), N, K, f);
        const OwnedPackedMatrix Wb = as_bf16(W.view);
        for (int64_t M : {1, 7, 8, 9, 17, 65})
          for (bool with_bias : {false, true}) {
            const int64_t ld_in = K + 3, ld_out = N + 2;
            auto in = uniform(M * ld_in, ++seed), bias = uniform(N, ++seed);
            std::vector<float> out(M * ld_out, 123.0f);
            const float* b = with_bias ? bias.data() : nullptr;
            ops::cpu::matmul_bf16(out.data(), ld_out, in.data(), ld_in, W.view, b, M);
            const auto where = ::testing::Message() << matrix_format_name(f) << " M " << M << " K " << K << " N " << N
                                                    << " bias " << with_bias;
            EXPECT_LT(check_against_reference(out, ld_out, rounded_to_bf16(in), ld_in, Wb.view, b, M), 1e-5) << where;
            EXPECT_LT(check_against_reference(out, ld_out, in, ld_in, W.view, b, M), 1.0 / 128) << where;
          }
      }
  // Past one chunk of rows, and a panel count that does not divide among the threads.
  const int64_t M = 300, K = 47, N = 97, ld_in = K, ld_out = N;
  auto Wf = uniform(N * K, 1), in = uniform(M * K, 2);
  const OwnedPackedMatrix W = pack_matrix(Wf.data(), N, K, MatrixFormat::BF16);
  std::vector<float> out(M * N, 123.0f);
  ops::cpu::matmul_bf16(out.data(), ld_out, in.data(), ld_in, W.view, nullptr, M);
  EXPECT_LT(check_against_reference(out, ld_out, rounded_to_bf16(in), ld_in, W.view, nullptr, M), 1e-5);
}

// The fallback's reason is given exactly when the bf16 GEMM is not used; AMX is reported with a
// reason (this build has no AMX kernel: only whether one could run).
TEST(PackedMatmul, Bf16FallbackAndAmxAreReportedWithAReason) {
  EXPECT_EQ(ops::cpu::bf16_gemm_fallback_reason().empty(), ops::cpu::bf16_gemm_enabled());
  if (!ops::cpu::bf16_gemm_supported()) {
    EXPECT_FALSE(ops::cpu::bf16_gemm_enabled());
  }
  const ops::cpu::AmxStatus amx = ops::cpu::amx_status();
  std::printf("AMX: %s (%s)\n", amx.usable ? "usable" : "not usable", amx.reason.c_str());
  EXPECT_FALSE(amx.reason.empty());
  bool cpu_has_amx = false;
#if defined(__x86_64__) && defined(__GNUC__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) cpu_has_amx = (edx >> 24) & 1 && (edx >> 22) & 1;
#endif
  if (!cpu_has_amx) {
    EXPECT_FALSE(amx.usable);
    EXPECT_NE(amx.reason.find("no AMX"), std::string::npos) << amx.reason;
  }
}

// The op as the model calls it: the GEMV up to kGemvMaxRows rows, dequantized panels + GEMM above
// (with AVX512-BF16: the bf16 GEMM, exact over the bf16-rounded activations and weights).
TEST(PackedMatmul, OpMatchesADoubleReferenceAtDecodeAndPrefillSizes) {
  uint32_t seed = 99;
  for (MatrixFormat f : kFormats)
    for (int64_t M : {1, 64, 65, 130})
      for (int64_t K : {32, 96})
        for (int64_t N : {5, 70}) {
          auto Wf = uniform(N * K, ++seed);
          const OwnedPackedMatrix W = pack_matrix(Wf.data(), N, K, f);
          const int64_t ld_in = K + 1, ld_out = N + 2;
          auto in = uniform(M * ld_in, ++seed), bias = uniform(N, ++seed);
          std::vector<float> out(M * ld_out, 123.0f);
          ops::matmul_forward_packed(cpu_context(), out.data(), ld_out, in.data(), ld_in, W.view, bias.data(), M, K, N);
          const bool bf16_gemm = f != MatrixFormat::F32 && M > ops::cpu::kGemvMaxRows && ops::cpu::bf16_gemm_enabled();
          const OwnedPackedMatrix Wb = as_bf16(W.view);
          // Decoding-sized q8 / q4 products go through the integer dot products where the CPU has them.
          if (is_block_format(f) && M <= ops::cpu::kGemvMaxRows && ops::cpu::q8dot() != ops::cpu::Q8Dot::Float)
            EXPECT_LT(q8dot_error_over_bound(out, ld_out, in, ld_in, W.view, bias.data(), M), 1.0)
                << matrix_format_name(f) << " " << ops::cpu::q8dot_name(ops::cpu::q8dot()) << " M " << M << " K " << K
                << " N " << N;
          else
            EXPECT_LT(check_against_reference(out, ld_out, bf16_gemm ? rounded_to_bf16(in) : in, ld_in,
                                              bf16_gemm ? Wb.view : W.view, bias.data(), M),
                      1e-5)
                << matrix_format_name(f) << " M " << M << " K " << K << " N " << N;
        }
}

// Every integer dot product path (the others skipped with a message) against the double reference
// within the activations' rounding bound: batch rows 1..9, N across the 8/4/1-row tiles and the 64-row
// task blocks, K of 1 to 8 blocks, strided, with and without bias; a block of zero activations (scale 0)
// and one of large values. q8 and q4 weights.
TEST(PackedMatmul, Q8DotMatchesADoubleReferenceOnEveryPath) {
  using ops::cpu::Q8Dot;
  std::vector<Q8Dot> paths;
  for (Q8Dot d : {Q8Dot::Avx2, Q8Dot::AvxVnni, Q8Dot::Avx512Vnni}) {
    if (ops::cpu::q8dot_supported(d))
      paths.push_back(d);
    else
      std::printf("[ SKIPPED  ] q8 integer dot products, %s path: this CPU cannot run it\n", ops::cpu::q8dot_name(d));
  }
  if (paths.empty()) GTEST_SKIP() << "no integer dot product path on this CPU";
  uint32_t seed = 7;
  int checked = 0;
  for (MatrixFormat f : {MatrixFormat::Q8, MatrixFormat::Q4})
    for (int64_t K : {32, 64, 96, 256})
      for (int64_t N : {1, 3, 8, 9, 63, 64, 65, 130}) {
        auto Wf = uniform(N * K, ++seed);
        const OwnedPackedMatrix W = pack_matrix(Wf.data(), N, K, f);
        for (int64_t M : {1, 2, 3, 4, 5, 7, 9})
          for (bool with_bias : {false, true}) {
            const int64_t ld_in = K + 3, ld_out = N + 2;
            auto in = uniform(M * ld_in, ++seed), bias = uniform(N, ++seed);
            for (int64_t k = 0; k < 32; ++k) in[k] = 0;  // row 0's first block: all zero
            if (K >= 64)
              for (int64_t k = 32; k < 64; ++k) in[(M - 1) * ld_in + k] *= 1000;
            const float* b = with_bias ? bias.data() : nullptr;
            for (Q8Dot d : paths) {
              std::vector<float> out(M * ld_out, 123.0f);
              ops::cpu::gemv_q8dot(d, out.data(), ld_out, in.data(), ld_in, W.view, b, M);
              EXPECT_LT(q8dot_error_over_bound(out, ld_out, in, ld_in, W.view, b, M), 1.0)
                  << matrix_format_name(f) << " " << ops::cpu::q8dot_name(d) << " M " << M << " K " << K << " N " << N;
              ++checked;
            }
          }
      }
  EXPECT_GT(checked, 0);
}

TEST(PackedMatmul, EmbeddingGatherDequantizesRowsExactly) {
  const int64_t V = 37, C = 96;
  auto table = uniform(V * C, 5);
  const std::vector<int32_t> ids = {0, 36, 5, 5, 17};
  for (PackedIsa isa : runnable_isas())
    for (MatrixFormat f : kFormats) {
      const OwnedPackedMatrix W = pack_matrix(table.data(), V, C, f);
      std::vector<float> out(ids.size() * C);
      ops::cpu::dequantize_rows(isa, out.data(), W.view, ids.data(), 0, int64_t(ids.size()));
      for (size_t i = 0; i < ids.size(); ++i)
        for (int64_t c = 0; c < C; ++c)
          ASSERT_EQ(out[i * C + c], packed_value(W.view, ids[i], c))
              << ops::cpu::packed_isa_name(isa) << " " << matrix_format_name(f) << " row " << ids[i] << " col " << c;
    }
  std::vector<float> out(ids.size() * C);
  const OwnedPackedMatrix W = pack_matrix(table.data(), V, C, MatrixFormat::Q8);
  ops::embedding_forward_packed(cpu_context(), out.data(), ids.data(), W.view, int64_t(ids.size()), C);
  EXPECT_EQ(out[1 * C + 3], packed_value(W.view, 36, 3));
}

// bf16/f16 keep about 3 / 4 significant digits; q8's error per weight is at most half a step of its
// block (scale / 2, scale = max|w| / 127 of the block); q4's too (scale = -m / 8, m the block's weight of
// largest magnitude), except a whole step where w / scale passes 7.5 (the codes end at +7).
TEST(PackedMatmul, PackingErrorIsWithinEachFormatsBound) {
  const int64_t N = 6, K = 64;
  auto w = uniform(N * K, 3, -2.0f, 2.0f);
  w[5] = 0;                                            // a zero stays zero
  for (int64_t k = 32; k < 64; ++k) w[2 * K + k] = 0;  // an all-zero block: scale 0, no NaN
  for (MatrixFormat f : kFormats) {
    const OwnedPackedMatrix W = pack_matrix(w.data(), N, K, f);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) {
        const float x = w[n * K + k], y = packed_value(W.view, n, k);
        double bound = 0;
        if (f == MatrixFormat::BF16) bound = std::abs(x) * (1.0 / 256);
        if (f == MatrixFormat::F16) bound = std::abs(x) * (1.0 / 2048) + 1e-7;
        if (f == MatrixFormat::Q8) bound = W.view.scales[n * 2 + k / 32] * 0.5 * 1.001;
        if (f == MatrixFormat::Q4) {
          const double s = std::abs(W.view.scales[n * 2 + k / 32]);
          bound = (s > 0 && x / W.view.scales[n * 2 + k / 32] > 7.5 ? 1.0 : 0.5) * s * 1.001;
        }
        ASSERT_LE(std::abs(double(x) - y), bound) << matrix_format_name(f) << " " << n << "," << k;
      }
  }
  EXPECT_THROW(pack_matrix(w.data(), 2, 48, MatrixFormat::Q8), Error);  // 48 is not whole blocks of 32
  EXPECT_THROW(pack_matrix(w.data(), 2, 48, MatrixFormat::Q4), Error);
}

// q4's bytes as docs/FORMATS.md gives them: in each block's 16 bytes, byte i holds weight i's code in
// its low nibble and weight i + 16's in its high one; code = w / scale + 8, the largest |w| at code 0.
TEST(PackedMatmul, Q4PacksTwoCodesPerByteInBlockOrder) {
  std::vector<float> w(64);
  for (int k = 0; k < 32; ++k) w[k] = float(k % 16 - 8);       // block 0: codes 0..15 twice, scale 1
  for (int k = 32; k < 64; ++k) w[k] = k == 40 ? 3.0f : 0.0f;  // block 1: m = 3, scale -3/8
  const OwnedPackedMatrix W = pack_matrix(w.data(), 1, 64, MatrixFormat::Q4);
  ASSERT_EQ(W.bytes.size(), 32u);
  EXPECT_EQ(W.view.scales[0], 1.0f);
  EXPECT_EQ(W.view.scales[1], -0.375f);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(W.bytes[i], uint8_t(i | i << 4)) << i;
  for (int i = 0; i < 16; ++i) EXPECT_EQ(W.bytes[16 + i], i == 8 ? 0x80 : 0x88) << i;
  EXPECT_EQ(packed_value(W.view, 0, 40), 3.0f);
  EXPECT_EQ(packed_value(W.view, 0, 5), -3.0f);
  EXPECT_EQ(packed_value(W.view, 0, 21), -3.0f);
}
