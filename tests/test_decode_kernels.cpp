// infer::linear against a double-precision reference, over the shapes its two paths and the
// register tiles of the GEMV split into: rows 1..70 (partial 3-row batch tiles, the GEMV/GEMM
// boundary at 64), K not a multiple of the 8-lane vectors, N not a multiple of the 4-row tiles,
// strided input and output, with and without a bias.
#include <cmath>
#include <random>
#include <vector>

#include "infer/decode_kernels.h"
#include "testing.h"

using namespace sambalm;

TEST(DecodeKernels, LinearMatchesADoubleReference) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t M : {1, 2, 3, 4, 5, 7, 9, 16, 64, 65, 70})
    for (int64_t K : {1, 7, 8, 13, 64, 100})
      for (int64_t N : {1, 3, 4, 5, 17, 130})
        for (bool with_bias : {false, true}) {
          const int64_t ld_in = K + 3, ld_out = N + 2;
          std::vector<float> in(M * ld_in), W(N * K), bias(N), out(M * ld_out, 123.0f);
          for (auto& v : in) v = u(rng);
          for (auto& v : W) v = u(rng);
          for (auto& v : bias) v = u(rng);
          infer::linear(out.data(), ld_out, in.data(), ld_in, W.data(), with_bias ? bias.data() : nullptr, M, K, N);
          double worst = 0;
          for (int64_t m = 0; m < M; ++m) {
            for (int64_t n = 0; n < N; ++n) {
              double ref = with_bias ? bias[n] : 0.0;
              for (int64_t k = 0; k < K; ++k) ref += double(in[m * ld_in + k]) * double(W[n * K + k]);
              worst = std::max(worst, std::abs(double(out[m * ld_out + n]) - ref));
            }
            for (int64_t n = N; n < ld_out; ++n) ASSERT_EQ(out[m * ld_out + n], 123.0f) << "wrote past N";
          }
          EXPECT_LT(worst, 1e-5 * std::sqrt(double(K)) + 1e-6) << "M " << M << " K " << K << " N " << N;
        }
}
