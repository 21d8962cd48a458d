// The bf16 mixed-precision bodies, whose arguments differ in element type, against the CPU ops run in
// double on odd sizes (inputs rounded to bf16 where the kernel reads bf16, so the reference sees what
// the kernel sees): the GEMM backward with fp32 weight/bias gradients, the GEMM with fp32 output and
// fp32 bias and softplus from fp32 (Mamba's dt_pre and dt bias), the block norms (fp32 residual and
// weights in, bf16 out; bf16 d(out) in, fp32 d(residual) and weight gradients out), the residual add
// (fp32 += bf16), the bf16 copy of fp32 parameters, and the conv backward with fp32 dw/dbias.
// Gradient outputs start from random values (they accumulate); overwritten outputs start as NaN.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "dense_testing.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/dense_ops.h"
#include "ops/mamba_ops.h"
#include "ops/optim_ops.h"

namespace sambalm {
namespace {

using namespace testing_gpu;

constexpr double kBf16Tol = 1e-2;  // outputs rounded to bf16, or sums of bf16 products
constexpr double kF32Tol = 1e-4;   // fp32 outputs of fp32 sums over bf16 inputs

struct Shape3 {
  int64_t M, K, N;
};

TEST(CudaMixed, MatmulBackwardFp32Gradients) {
  SAMBALM_REQUIRE_GPU();
  const Shape3 shapes[] = {{1, 7, 5}, {37, 53, 29}, {129, 96, 201}, {3, 1, 4}};
  for (const bool strided : {false, true}) {
    for (const auto& s : shapes) {
      const int64_t ld_inp = strided ? s.K + 2 : s.K, ld_dout = strided ? s.N + 3 : s.N,
                    ld_dinp = strided ? s.K + 1 : s.K;
      const auto inp = round_bf16(random_vector(s.M * ld_inp, 1)), w = round_bf16(random_vector(s.N * s.K, 2)),
                 dout = round_bf16(random_vector(s.M * ld_dout, 3));
      const auto dinp0 = round_bf16(random_vector(s.M * ld_dinp, 4));
      const auto dw0 = random_vector(s.N * s.K, 5), db0 = random_vector(s.N, 6);
      DeviceBuffer<bf16> d_inp(to_bf16(inp)), d_w(to_bf16(w)), d_dout(to_bf16(dout)), d_dinp(to_bf16(dinp0));
      DeviceBuffer<float> d_dw(dw0), d_db(db0);
      if (strided)
        ops::matmul_backward_strided(gpu(), d_dinp.get(), ld_dinp, d_dw.get(), d_db.get(), d_dout.get(), ld_dout,
                                     d_inp.get(), ld_inp, d_w.get(), s.M, s.K, s.N);
      else
        ops::matmul_backward(gpu(), d_dinp.get(), d_dw.get(), d_db.get(), d_dout.get(), d_inp.get(), d_w.get(), s.M,
                             s.K, s.N);
      std::vector<double> dinp(to_double(dinp0)), dw(to_double(dw0)), db(to_double(db0));
      const auto inp_d = to_double(inp), w_d = to_double(w), dout_d = to_double(dout);
      ops::cpu::matmul_backward_strided(dinp.data(), ld_dinp, dw.data(), db.data(), dout_d.data(), ld_dout,
                                        inp_d.data(), ld_inp, w_d.data(), s.M, s.K, s.N);
      const std::string tag = "M" + std::to_string(s.M) + " K" + std::to_string(s.K) + " N" + std::to_string(s.N) +
                              (strided ? " strided" : "");
      expect_close(to_f32(d_dinp.download()), dinp, kBf16Tol, tag + " dinp (bf16)");
      expect_close(d_dw.download(), dw, kF32Tol, tag + " dweight (fp32)");
      expect_close(d_db.download(), db, kF32Tol, tag + " dbias (fp32)");
    }
  }
}

// Mamba's dt_pre in bf16 mode: bf16 operands (a strided view), fp32 output and fp32 bias.
TEST(CudaMixed, MatmulForwardFp32OutputAndBias) {
  SAMBALM_REQUIRE_GPU();
  const Shape3 shapes[] = {{1, 7, 5}, {37, 3, 129}, {130, 48, 1000}, {3, 1, 4}};
  for (const bool with_bias : {false, true}) {
    for (const auto& s : shapes) {
      const int64_t ld_inp = s.K + 9, ld_out = s.N + 2;
      const auto inp = round_bf16(random_vector(s.M * ld_inp, 51)), w = round_bf16(random_vector(s.N * s.K, 52));
      const auto bias = random_vector(s.N, 53);  // fp32: not rounded
      std::vector<double> want(s.M * ld_out, 0.0);
      const auto inp_d = to_double(inp), w_d = to_double(w), bias_d = to_double(bias);
      ops::cpu::matmul_forward_strided(want.data(), ld_out, inp_d.data(), ld_inp, w_d.data(),
                                       with_bias ? bias_d.data() : nullptr, s.M, s.K, s.N);
      DeviceBuffer<bf16> d_inp(to_bf16(inp)), d_w(to_bf16(w));
      DeviceBuffer<float> d_bias(bias), d_out(nan_vector(s.M * ld_out));
      ops::matmul_forward_strided(gpu(), d_out.get(), ld_out, d_inp.get(), ld_inp, d_w.get(),
                                  with_bias ? d_bias.get() : nullptr, s.M, s.K, s.N);
      const auto full = d_out.download();
      std::vector<float> got;
      std::vector<double> ref;
      for (int64_t m = 0; m < s.M; ++m)
        for (int64_t n = 0; n < s.N; ++n) got.push_back(full[m * ld_out + n]), ref.push_back(want[m * ld_out + n]);
      expect_close(got, ref, kF32Tol,
                   "M" + std::to_string(s.M) + " K" + std::to_string(s.K) + " N" + std::to_string(s.N) +
                       (with_bias ? " bias" : "") + " out (fp32)");
    }
  }
}

// dt = softplus(dt_pre): fp32 input, bf16 output; the backward adds into bf16 dx from bf16 dout.
TEST(CudaMixed, SoftplusFp32InputBf16Output) {
  SAMBALM_REQUIRE_GPU();
  for (const int64_t n : {int64_t(1), int64_t(1001), int64_t(300007)}) {
    const auto x = random_vector(n, 61, 30.f);  // both sides of the x > 20 threshold
    const auto dout = round_bf16(random_vector(n, 62)), dx0 = round_bf16(random_vector(n, 63));
    std::vector<double> out(n), dx(to_double(dx0));
    const auto x_d = to_double(x), dout_d = to_double(dout);
    ops::cpu::softplus_forward(out.data(), x_d.data(), n);
    ops::cpu::softplus_backward(dx.data(), dout_d.data(), x_d.data(), n);
    DeviceBuffer<float> d_x(x);
    DeviceBuffer<bf16> d_out(to_bf16(nan_vector(n))), d_dout(to_bf16(dout)), d_dx(to_bf16(dx0));
    ops::softplus_forward(gpu(), d_out.get(), d_x.get(), n);
    ops::softplus_backward(gpu(), d_dx.get(), d_dout.get(), d_x.get(), n);
    expect_close(to_f32(d_out.download()), out, kBf16Tol, "n " + std::to_string(n) + " softplus (bf16)");
    expect_close(to_f32(d_dx.download()), dx, kBf16Tol, "n " + std::to_string(n) + " dx (bf16)");
  }
}

// The CPU ops in double: RMSNorm or LayerNorm forward, then its backward adding into dx0, dw0, db0.
struct NormRef {
  std::vector<double> out, mean, rstd, dx, dw, db;
};
NormRef norm_ref(bool layer, const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b,
                 const std::vector<float>& dout, const std::vector<float>& dx0, const std::vector<float>& dw0,
                 const std::vector<float>& db0, int64_t n, int64_t C, double eps) {
  NormRef r;
  r.out.resize(n * C), r.mean.resize(n), r.rstd.resize(n);
  r.dx = to_double(dx0), r.dw = to_double(dw0), r.db = to_double(db0);
  const auto xd = to_double(x), wd = to_double(w), bd = to_double(b), gd = to_double(dout);
  if (layer) {
    ops::cpu::layernorm_forward(r.out.data(), r.mean.data(), r.rstd.data(), xd.data(), wd.data(), bd.data(), n, C, eps);
    ops::cpu::layernorm_backward(r.dx.data(), r.dw.data(), r.db.data(), gd.data(), xd.data(), wd.data(), r.mean.data(),
                                 r.rstd.data(), n, C);
  } else {
    ops::cpu::rmsnorm_forward(r.out.data(), r.rstd.data(), xd.data(), wd.data(), n, C, eps);
    ops::cpu::rmsnorm_backward(r.dx.data(), r.dw.data(), gd.data(), xd.data(), wd.data(), r.rstd.data(), n, C);
  }
  return r;
}

TEST(CudaMixed, BlockNormsFp32ResidualBf16Output) {
  SAMBALM_REQUIRE_GPU();
  // C a multiple of 8 (1000, 1536, 2304) takes RMSNorm's eight-wide kernels.
  const int64_t shapes[][2] = {{1, 7}, {37, 129}, {130, 1000}, {5, 4097}, {33, 1536}, {300, 2304}};
  const double eps = 1e-5;
  for (const bool layer : {false, true}) {
    for (const auto& sh : shapes) {
      const int64_t n = sh[0], C = sh[1];
      // The residual and the weights are fp32 (not rounded); d(out) is bf16.
      const auto x = random_vector(n * C, 11, 2.f), w = random_vector(C, 12), b = random_vector(C, 13);
      const auto dout = round_bf16(random_vector(n * C, 14));
      const auto dx0 = random_vector(n * C, 15), dw0 = random_vector(C, 16), db0 = random_vector(C, 17);
      const NormRef ref = norm_ref(layer, x, w, b, dout, dx0, dw0, db0, n, C, eps);
      DeviceBuffer<float> d_x(x), d_w(w), d_b(b), d_mean(nan_vector(n)), d_rstd(nan_vector(n));
      DeviceBuffer<bf16> d_out(to_bf16(nan_vector(n * C))), d_dout(to_bf16(dout));
      DeviceBuffer<float> d_dx(dx0), d_dw(dw0), d_db(db0);
      if (layer) {
        ops::layernorm_forward(gpu(), d_out.get(), d_mean.get(), d_rstd.get(), d_x.get(), d_w.get(), d_b.get(), n, C,
                               eps);
        ops::layernorm_backward(gpu(), d_dx.get(), d_dw.get(), d_db.get(), d_dout.get(), d_x.get(), d_w.get(),
                                d_mean.get(), d_rstd.get(), n, C);
      } else {
        ops::rmsnorm_forward(gpu(), d_out.get(), d_rstd.get(), d_x.get(), d_w.get(), n, C, eps);
        ops::rmsnorm_backward(gpu(), d_dx.get(), d_dw.get(), d_dout.get(), d_x.get(), d_w.get(), d_rstd.get(), n, C);
      }
      const std::string tag =
          std::string(layer ? "layernorm" : "rmsnorm") + " n" + std::to_string(n) + " C" + std::to_string(C);
      expect_close(to_f32(d_out.download()), ref.out, kBf16Tol, tag + " out (bf16)");
      expect_close(d_rstd.download(), ref.rstd, kF32Tol, tag + " rstd");
      if (layer) expect_close(d_mean.download(), ref.mean, kF32Tol, tag + " mean");
      expect_close(d_dx.download(), ref.dx, kF32Tol, tag + " dx (fp32)");
      expect_close(d_dw.download(), ref.dw, kF32Tol, tag + " dweight (fp32)");
      if (layer) expect_close(d_db.download(), ref.db, kF32Tol, tag + " dbias (fp32)");
    }
  }
}

TEST(CudaMixed, ResidualAddFp32PlusBf16) {
  SAMBALM_REQUIRE_GPU();
  // n % 8 = 1: the eight-wide kernel's tail; 8 and 16: chunks only.
  for (const int64_t n : {int64_t(1), int64_t(8), int64_t(16), int64_t(1001), int64_t(3000017)}) {
    const auto x = random_vector(n, 21, 3.f), f = round_bf16(random_vector(n, 22));
    std::vector<float> want(n);
    for (int64_t i = 0; i < n; ++i) want[i] = x[i] + f[i];  // one fp32 rounding, as the kernel
    DeviceBuffer<float> d_x(x), d_out(nan_vector(n));
    DeviceBuffer<bf16> d_f(to_bf16(f));
    ops::residual_add(gpu(), d_out.get(), d_x.get(), d_f.get(), n);
    EXPECT_EQ(d_out.download(), want) << "n " << n;
    EXPECT_EQ(d_x.download(), x) << "n " << n << ": x must be left as it was";
    // In place (the cached path): x += f.
    ops::residual_add(gpu(), d_x.get(), d_x.get(), d_f.get(), n);
    EXPECT_EQ(d_x.download(), want) << "n " << n << " in place";
  }
}

TEST(CudaMixed, ConvertFp32ToBf16RoundsToNearestEven) {
  SAMBALM_REQUIRE_GPU();
  for (const int64_t n : {int64_t(1), int64_t(4099), int64_t(2000003)}) {
    auto v = random_vector(n, 31, 100.f);
    if (n > 8) {
      v[1] = 0.f, v[2] = -0.f, v[3] = 1e-40f, v[4] = 3.4e38f, v[5] = INFINITY, v[6] = -INFINITY;
      uint32_t tie = 0x3f808000u;  // exactly halfway between two bf16 values: rounds to even
      std::memcpy(&v[7], &tie, 4);
    }
    DeviceBuffer<float> d_in(v);
    DeviceBuffer<bf16> d_out(to_bf16(nan_vector(n)));
    ops::convert(gpu(), d_out.get(), d_in.get(), n);
    const auto got = d_out.download();
    const auto want = to_bf16(v);  // core/bf16.h: round to nearest even
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; ++i)
      if (got[i].bits != want[i].bits && bad++ == 0) first = i;
    EXPECT_EQ(bad, 0) << "n " << n << ": first difference at " << first;
  }
}

TEST(CudaMixed, ConvBackwardFp32WeightGradients) {
  SAMBALM_REQUIRE_GPU();
  const int64_t shapes[][4] = {{1, 1, 3, 4},
                               {2, 37, 29, 4},
                               {3, 70, 130, 3},
                               {1, 9, 17, 2},
                               {3, 1000, 264, 4}};  // B, L, D, K (the last: several runs a sequence)
  for (const auto& sh : shapes) {
    const int64_t B = sh[0], L = sh[1], D = sh[2], K = sh[3], ld_x = 2 * D + 1, ld_dx = 2 * D;
    const auto x = round_bf16(random_vector(B * L * ld_x, 41)), w = round_bf16(random_vector(D * K, 42)),
               dout = round_bf16(random_vector(B * L * D, 43));
    const auto dx0 = round_bf16(random_vector(B * L * ld_dx, 44));
    const auto dw0 = random_vector(D * K, 45), db0 = random_vector(D, 46);
    std::vector<double> dx(to_double(dx0)), dw(to_double(dw0)), db(to_double(db0));
    const auto x_d = to_double(x), w_d = to_double(w), dout_d = to_double(dout);
    ops::cpu::causal_conv1d_backward(dx.data(), ld_dx, dw.data(), db.data(), dout_d.data(), x_d.data(), ld_x,
                                     w_d.data(), static_cast<const double*>(nullptr), B, L, D, K);
    DeviceBuffer<bf16> d_x(to_bf16(x)), d_w(to_bf16(w)), d_dout(to_bf16(dout)), d_dx(to_bf16(dx0));
    DeviceBuffer<float> d_dw(dw0), d_db(db0);
    ops::causal_conv1d_backward(gpu(), d_dx.get(), ld_dx, d_dw.get(), d_db.get(), d_dout.get(), d_x.get(), ld_x,
                                d_w.get(), static_cast<const bf16*>(nullptr), B, L, D, K);
    const std::string tag =
        "B" + std::to_string(B) + " L" + std::to_string(L) + " D" + std::to_string(D) + " K" + std::to_string(K);
    expect_close(to_f32(d_dx.download()), dx, kBf16Tol, tag + " dx (bf16)");
    expect_close(d_dw.download(), dw, kF32Tol, tag + " dw (fp32)");
    expect_close(d_db.download(), db, kF32Tol, tag + " dbias (fp32)");
  }
}

}  // namespace
}  // namespace sambalm
