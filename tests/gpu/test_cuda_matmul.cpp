// The cuBLASLt GEMMs against a double-precision reference on odd shapes: forward with and without
// bias, the accumulating backward (dinp, dweight, dbias added to what is there), strided views;
// fp32 (no TF32: within 1e-5 of the reference) and bf16 (inputs rounded to bf16, fp32 accumulation,
// output rounded: within 1e-2).
#include <gtest/gtest.h>

#include "gpu_testing.h"
#include "ops/dense_ops.h"

namespace sambalm {
namespace {

using namespace testing_gpu;

struct Shape3 {
  int64_t M, K, N;
};
const Shape3 kShapes[] = {{1, 7, 5}, {37, 53, 29}, {128, 96, 200}, {3, 1, 4}, {257, 64, 33}};

// out[m, n] = sum_k inp[m, k] w[n, k] (+ bias[n]); inp rows of stride ld_inp, out of stride ld_out.
std::vector<double> ref_forward(const std::vector<float>& inp, int64_t ld_inp, const std::vector<float>& w,
                                const std::vector<float>* bias, int64_t M, int64_t K, int64_t N) {
  std::vector<double> out(M * N);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = bias ? (*bias)[n] : 0.0;
      for (int64_t k = 0; k < K; ++k) s += double(inp[m * ld_inp + k]) * w[n * K + k];
      out[m * N + n] = s;
    }
  return out;
}

template <typename T>
std::vector<T> cast(const std::vector<float>& v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else
    return to_bf16(v);
}
template <typename T>
std::vector<float> uncast(const std::vector<T>& v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else
    return to_f32(v);
}

template <typename T>
void check_forward(bool with_bias, bool strided, double tol) {
  for (const auto& s : kShapes) {
    const int64_t ld_inp = strided ? s.K + 3 : s.K, ld_out = strided ? s.N + 5 : s.N;
    auto inp = random_vector(s.M * ld_inp, 1), w = random_vector(s.N * s.K, 2), bias = random_vector(s.N, 3);
    if constexpr (!std::is_same_v<T, float>) inp = round_bf16(inp), w = round_bf16(w), bias = round_bf16(bias);
    DeviceBuffer<T> d_inp(cast<T>(inp)), d_w(cast<T>(w)), d_bias(cast<T>(bias));
    DeviceBuffer<T> d_out(cast<T>(std::vector<float>(s.M * ld_out, NAN)));
    if (strided)
      ops::matmul_forward_strided(gpu(), d_out.get(), ld_out, d_inp.get(), ld_inp, d_w.get(),
                                  with_bias ? d_bias.get() : nullptr, s.M, s.K, s.N);
    else
      ops::matmul_forward(gpu(), d_out.get(), d_inp.get(), d_w.get(), with_bias ? d_bias.get() : nullptr, s.M, s.K,
                          s.N);
    const auto got_full = uncast(d_out.download());
    std::vector<float> got(s.M * s.N);
    for (int64_t m = 0; m < s.M; ++m)
      for (int64_t n = 0; n < s.N; ++n) got[m * s.N + n] = got_full[m * ld_out + n];
    const auto want = ref_forward(inp, ld_inp, w, with_bias ? &bias : nullptr, s.M, s.K, s.N);
    EXPECT_LT(rel_error(got, want), tol) << "M" << s.M << " K" << s.K << " N" << s.N << " bias " << with_bias
                                         << " strided " << strided;
  }
}

template <typename T>
void check_backward(bool strided, double tol) {
  for (const auto& s : kShapes) {
    const int64_t ld_inp = strided ? s.K + 2 : s.K, ld_dout = strided ? s.N + 3 : s.N,
                  ld_dinp = strided ? s.K + 1 : s.K;
    auto inp = random_vector(s.M * ld_inp, 4), w = random_vector(s.N * s.K, 5), dout = random_vector(s.M * ld_dout, 6);
    auto dinp0 = random_vector(s.M * ld_dinp, 7), dw0 = random_vector(s.N * s.K, 8), db0 = random_vector(s.N, 9);
    if constexpr (!std::is_same_v<T, float>) {
      inp = round_bf16(inp), w = round_bf16(w), dout = round_bf16(dout);
      dinp0 = round_bf16(dinp0), dw0 = round_bf16(dw0), db0 = round_bf16(db0);
    }
    DeviceBuffer<T> d_inp(cast<T>(inp)), d_w(cast<T>(w)), d_dout(cast<T>(dout));
    DeviceBuffer<T> d_dinp(cast<T>(dinp0)), d_dw(cast<T>(dw0)), d_db(cast<T>(db0));
    if (strided)
      ops::matmul_backward_strided(gpu(), d_dinp.get(), ld_dinp, d_dw.get(), d_db.get(), d_dout.get(), ld_dout,
                                   d_inp.get(), ld_inp, d_w.get(), s.M, s.K, s.N);
    else
      ops::matmul_backward(gpu(), d_dinp.get(), d_dw.get(), d_db.get(), d_dout.get(), d_inp.get(), d_w.get(), s.M,
                           s.K, s.N);
    std::vector<double> want_dinp, want_dw(s.N * s.K), want_db(s.N);
    std::vector<float> got_dinp;
    const auto dinp_full = uncast(d_dinp.download());
    for (int64_t m = 0; m < s.M; ++m)
      for (int64_t k = 0; k < s.K; ++k) {
        double acc = dinp0[m * ld_dinp + k];
        for (int64_t n = 0; n < s.N; ++n) acc += double(dout[m * ld_dout + n]) * w[n * s.K + k];
        want_dinp.push_back(acc);
        got_dinp.push_back(dinp_full[m * ld_dinp + k]);
      }
    for (int64_t n = 0; n < s.N; ++n) {
      double b = db0[n];
      for (int64_t m = 0; m < s.M; ++m) b += dout[m * ld_dout + n];
      want_db[n] = b;
      for (int64_t k = 0; k < s.K; ++k) {
        double acc = dw0[n * s.K + k];
        for (int64_t m = 0; m < s.M; ++m) acc += double(dout[m * ld_dout + n]) * inp[m * ld_inp + k];
        want_dw[n * s.K + k] = acc;
      }
    }
    EXPECT_LT(rel_error(got_dinp, want_dinp), tol) << "dinp M" << s.M << " K" << s.K << " N" << s.N;
    EXPECT_LT(rel_error(uncast(d_dw.download()), want_dw), tol) << "dweight M" << s.M << " K" << s.K << " N" << s.N;
    EXPECT_LT(rel_error(uncast(d_db.download()), want_db), tol) << "dbias M" << s.M << " K" << s.K << " N" << s.N;
  }
}

TEST(CudaMatmul, ForwardFp32) {
  SAMBALM_REQUIRE_GPU();
  for (bool bias : {false, true})
    for (bool strided : {false, true}) check_forward<float>(bias, strided, 1e-5);
}
TEST(CudaMatmul, ForwardBf16) {
  SAMBALM_REQUIRE_GPU();
  for (bool bias : {false, true})
    for (bool strided : {false, true}) check_forward<bf16>(bias, strided, 1e-2);
}
TEST(CudaMatmul, BackwardFp32) {
  SAMBALM_REQUIRE_GPU();
  for (bool strided : {false, true}) check_backward<float>(strided, 1e-5);
}
TEST(CudaMatmul, BackwardBf16) {
  SAMBALM_REQUIRE_GPU();
  for (bool strided : {false, true}) check_backward<bf16>(strided, 1e-2);
}

}  // namespace
}  // namespace sambalm
