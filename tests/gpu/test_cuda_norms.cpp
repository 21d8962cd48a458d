// The CUDA RMSNorm and LayerNorm against their CPU twins (run in double on the same inputs; for bf16
// the inputs rounded to bf16), forward (outputs and the fp32 statistics) and backward (dx and the
// weight/bias gradients, which accumulate), on odd row counts and widths. Overwritten outputs start
// as NaN, accumulated ones random.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>

#include "dense_testing.h"
#include "ops/dense_ops.h"

namespace sambalm {
namespace {

using namespace testing_gpu;

struct NormShape {
  int64_t n, C;
};
// 70000 rows: more than one row per block (the row loop), with a tiny C to stay fast. C a multiple of
// 8 takes RMSNorm's eight-wide kernels: one chunk of eight (C=8), one a thread (1536, Samba's d_model),
// two a thread (2056), past their limit of 4 (8200, the scalar kernels again), and 20001 rows of 24
// (more rows than the backward's fixed grid, whose blocks then loop).
const NormShape kShapes[] = {{1, 1}, {7, 37},    {37, 129}, {5, 1537}, {129, 64},  {70000, 3},
                             {1, 8}, {33, 1536}, {7, 2056}, {3, 8200}, {20001, 24}};
constexpr double kEps = 1e-5;

template <typename T>
class CudaNorms : public ::testing::Test {};
using ElementTypes = ::testing::Types<float, bf16>;
TYPED_TEST_SUITE(CudaNorms, ElementTypes);

std::string shape_tag(const char* op, const char* type, const NormShape& s) {
  return std::string(op) + " " + type + " n=" + std::to_string(s.n) + " C=" + std::to_string(s.C);
}

TYPED_TEST(CudaNorms, RmsnormForward) {
  using T = TypeParam;
  SAMBALM_REQUIRE_GPU();
  for (const auto& s : kShapes) {
    const auto x = random_for<T>(s.n * s.C, 1, 3.f), w = random_for<T>(s.C, 2);
    auto d_x = upload<T>(x);
    auto d_w = upload<T>(w);
    auto d_out = upload<T>(nan_vector(s.n * s.C));
    DeviceBuffer<float> d_rstd(nan_vector(s.n));
    ops::rmsnorm_forward(gpu(), d_out.get(), d_rstd.get(), d_x.get(), d_w.get(), s.n, s.C, kEps);
    const auto xd = to_double(x), wd = to_double(w);
    std::vector<double> out(s.n * s.C), rstd(s.n);
    ops::cpu::rmsnorm_forward(out.data(), rstd.data(), xd.data(), wd.data(), s.n, s.C, kEps);
    const auto tag = shape_tag("rmsnorm_forward", type_name<T>(), s);
    expect_close(fetch(d_out), out, elem_tol<T>(), tag + " out");
    expect_close(d_rstd.download(), rstd, 1e-5, tag + " rstd");  // fp32 statistics in both precisions
    // rstd is optional.
    auto d_out2 = upload<T>(nan_vector(s.n * s.C));
    ops::rmsnorm_forward(gpu(), d_out2.get(), static_cast<float*>(nullptr), d_x.get(), d_w.get(), s.n, s.C, kEps);
    expect_close(fetch(d_out2), out, elem_tol<T>(), tag + " out (no rstd)");
  }
}

TYPED_TEST(CudaNorms, RmsnormBackward) {
  using T = TypeParam;
  SAMBALM_REQUIRE_GPU();
  for (const auto& s : kShapes) {
    const auto x = random_for<T>(s.n * s.C, 3, 3.f), w = random_for<T>(s.C, 4), dout = random_for<T>(s.n * s.C, 5);
    const auto dx0 = random_for<T>(s.n * s.C, 6), dw0 = random_for<T>(s.C, 7);
    // Both sides use the same saved statistics: the reference forward's, rounded to fp32.
    const auto xd = to_double(x), wd = to_double(w), gd = to_double(dout);
    std::vector<double> out(s.n * s.C), rstd_d(s.n);
    ops::cpu::rmsnorm_forward(out.data(), rstd_d.data(), xd.data(), wd.data(), s.n, s.C, kEps);
    const std::vector<float> rstd(rstd_d.begin(), rstd_d.end());
    auto d_x = upload<T>(x);
    auto d_w = upload<T>(w);
    auto d_dout = upload<T>(dout);
    auto d_dx = upload<T>(dx0);
    auto d_dw = upload<T>(dw0);
    DeviceBuffer<float> d_rstd(rstd);
    ops::rmsnorm_backward(gpu(), d_dx.get(), d_dw.get(), d_dout.get(), d_x.get(), d_w.get(), d_rstd.get(), s.n, s.C);
    std::vector<double> dx = to_double(dx0), dw = to_double(dw0);
    const auto rd = to_double(rstd);
    ops::cpu::rmsnorm_backward(dx.data(), dw.data(), gd.data(), xd.data(), wd.data(), rd.data(), s.n, s.C);
    const auto tag = shape_tag("rmsnorm_backward", type_name<T>(), s);
    expect_close(fetch(d_dx), dx, elem_tol<T>(), tag + " dx");
    expect_close(fetch(d_dw), dw, reduce_tol<T>(), tag + " dweight");
    // Either gradient may be null.
    auto d_dx2 = upload<T>(dx0);
    auto d_dw2 = upload<T>(dw0);
    ops::rmsnorm_backward(gpu(), d_dx2.get(), static_cast<T*>(nullptr), d_dout.get(), d_x.get(), d_w.get(),
                          d_rstd.get(), s.n, s.C);
    ops::rmsnorm_backward(gpu(), static_cast<T*>(nullptr), d_dw2.get(), d_dout.get(), d_x.get(), d_w.get(),
                          d_rstd.get(), s.n, s.C);
    expect_close(fetch(d_dx2), dx, elem_tol<T>(), tag + " dx (no dweight)");
    expect_close(fetch(d_dw2), dw, reduce_tol<T>(), tag + " dweight (no dx)");
  }
}

TYPED_TEST(CudaNorms, LayernormForward) {
  using T = TypeParam;
  SAMBALM_REQUIRE_GPU();
  for (const auto& s : kShapes)
    for (bool with_bias : {true, false}) {
      // An offset mean: the two-pass variance must not lose it.
      auto x = random_vector(s.n * s.C, 8, 3.f);
      for (auto& v : x) v += 2.f;
      x = prep<T>(x);
      const auto w = random_for<T>(s.C, 9), b = random_for<T>(s.C, 10);
      auto d_x = upload<T>(x);
      auto d_w = upload<T>(w);
      auto d_b = upload<T>(b);
      auto d_out = upload<T>(nan_vector(s.n * s.C));
      DeviceBuffer<float> d_mean(nan_vector(s.n)), d_rstd(nan_vector(s.n));
      ops::layernorm_forward(gpu(), d_out.get(), d_mean.get(), d_rstd.get(), d_x.get(), d_w.get(),
                             with_bias ? d_b.get() : static_cast<T*>(nullptr), s.n, s.C, kEps);
      const auto xd = to_double(x), wd = to_double(w), bd = to_double(b);
      std::vector<double> out(s.n * s.C), mean(s.n), rstd(s.n);
      ops::cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), xd.data(), wd.data(),
                                  with_bias ? bd.data() : static_cast<const double*>(nullptr), s.n, s.C, kEps);
      const auto tag = shape_tag("layernorm_forward", type_name<T>(), s) + (with_bias ? " bias" : " no bias");
      expect_close(fetch(d_out), out, elem_tol<T>(), tag + " out");
      expect_close(d_mean.download(), mean, 1e-5, tag + " mean");
      // C = 1: the variance is 0 and rstd = 1/sqrt(eps) in both.
      expect_close(d_rstd.download(), rstd, 1e-4, tag + " rstd");
    }
}

TYPED_TEST(CudaNorms, LayernormBackward) {
  using T = TypeParam;
  SAMBALM_REQUIRE_GPU();
  for (const auto& s : kShapes) {
    auto x = random_vector(s.n * s.C, 11, 3.f);
    for (auto& v : x) v -= 1.f;
    x = prep<T>(x);
    const auto w = random_for<T>(s.C, 12), dout = random_for<T>(s.n * s.C, 13);
    const auto dx0 = random_for<T>(s.n * s.C, 14), dw0 = random_for<T>(s.C, 15), db0 = random_for<T>(s.C, 16);
    const auto xd = to_double(x), wd = to_double(w), gd = to_double(dout);
    std::vector<double> out(s.n * s.C), mean_d(s.n), rstd_d(s.n);
    ops::cpu::layernorm_forward(out.data(), mean_d.data(), rstd_d.data(), xd.data(), wd.data(),
                                static_cast<const double*>(nullptr), s.n, s.C, kEps);
    const std::vector<float> mean(mean_d.begin(), mean_d.end()), rstd(rstd_d.begin(), rstd_d.end());
    auto d_x = upload<T>(x);
    auto d_w = upload<T>(w);
    auto d_dout = upload<T>(dout);
    auto d_dx = upload<T>(dx0);
    auto d_dw = upload<T>(dw0);
    auto d_db = upload<T>(db0);
    DeviceBuffer<float> d_mean(mean), d_rstd(rstd);
    ops::layernorm_backward(gpu(), d_dx.get(), d_dw.get(), d_db.get(), d_dout.get(), d_x.get(), d_w.get(), d_mean.get(),
                            d_rstd.get(), s.n, s.C);
    std::vector<double> dx = to_double(dx0), dw = to_double(dw0), db = to_double(db0);
    const auto md = to_double(mean), rd = to_double(rstd);
    ops::cpu::layernorm_backward(dx.data(), dw.data(), db.data(), gd.data(), xd.data(), wd.data(), md.data(), rd.data(),
                                 s.n, s.C);
    const auto tag = shape_tag("layernorm_backward", type_name<T>(), s);
    // A row of one element has zero variance: rstd = 1/sqrt(eps) ~ 316 amplifies the float rounding of
    // x - mean (measured 6e-5 on an H100), so that degenerate row gets 1e-3.
    expect_close(fetch(d_dx), dx, s.C == 1 ? std::max(1e-3, elem_tol<T>()) : elem_tol<T>(), tag + " dx");
    expect_close(fetch(d_dw), dw, reduce_tol<T>(), tag + " dweight");
    expect_close(fetch(d_db), db, reduce_tol<T>(), tag + " dbias");
    // dbias alone (no dx, no dweight).
    auto d_db2 = upload<T>(db0);
    ops::layernorm_backward(gpu(), static_cast<T*>(nullptr), static_cast<T*>(nullptr), d_db2.get(), d_dout.get(),
                            d_x.get(), d_w.get(), d_mean.get(), d_rstd.get(), s.n, s.C);
    expect_close(fetch(d_db2), db, reduce_tol<T>(), tag + " dbias alone");
  }
}

// The scalar path (C not a multiple of 8) sums the weight gradient in a fixed order. The eight-wide
// path adds each block's column sums with atomics, so its last bits may vary run to run.
TEST(CudaNormsFp32, WeightGradientIsDeterministic) {
  SAMBALM_REQUIRE_GPU();
  const int64_t n = 4097, C = 129;
  DeviceBuffer<float> d_x(random_vector(n * C, 17)), d_w(random_vector(C, 18)), d_dout(random_vector(n * C, 19));
  DeviceBuffer<float> d_rstd(std::vector<float>(n, 0.75f));
  DeviceBuffer<float> a(std::vector<float>(C, 0.f)), b(std::vector<float>(C, 0.f));
  ops::rmsnorm_backward(gpu(), static_cast<float*>(nullptr), a.get(), d_dout.get(), d_x.get(), d_w.get(), d_rstd.get(),
                        n, C);
  ops::rmsnorm_backward(gpu(), static_cast<float*>(nullptr), b.get(), d_dout.get(), d_x.get(), d_w.get(), d_rstd.get(),
                        n, C);
  EXPECT_EQ(a.download(), b.download());
}

// Views one element into their buffers (not 16-byte aligned): the scalar kernels, the same results.
TYPED_TEST(CudaNorms, RmsnormMisalignedViews) {
  using T = TypeParam;
  SAMBALM_REQUIRE_GPU();
  const int64_t n = 9, C = 264;
  const auto x = random_for<T>(n * C + 1, 41, 3.f), w = random_for<T>(C + 1, 42), dout = random_for<T>(n * C + 1, 43);
  const auto dx0 = random_for<T>(n * C + 1, 44), dw0 = random_for<T>(C + 1, 45);
  auto d_x = upload<T>(x);
  auto d_w = upload<T>(w);
  auto d_dout = upload<T>(dout);
  auto d_out = upload<T>(nan_vector(n * C + 1));
  auto d_dx = upload<T>(dx0);
  auto d_dw = upload<T>(dw0);
  DeviceBuffer<float> d_rstd(nan_vector(n));
  ops::rmsnorm_forward(gpu(), d_out.get() + 1, d_rstd.get(), d_x.get() + 1, d_w.get() + 1, n, C, kEps);
  const auto rstd = d_rstd.download();
  ops::rmsnorm_backward(gpu(), d_dx.get() + 1, d_dw.get() + 1, d_dout.get() + 1, d_x.get() + 1, d_w.get() + 1,
                        d_rstd.get(), n, C);
  const auto xd = to_double(x), wd = to_double(w), gd = to_double(dout), rd = to_double(rstd);
  std::vector<double> out(n * C + 1), rstd_want(n), dx = to_double(dx0), dw = to_double(dw0);
  ops::cpu::rmsnorm_forward(out.data() + 1, rstd_want.data(), xd.data() + 1, wd.data() + 1, n, C, kEps);
  ops::cpu::rmsnorm_backward(dx.data() + 1, dw.data() + 1, gd.data() + 1, xd.data() + 1, wd.data() + 1, rd.data(), n,
                             C);
  auto got_out = fetch(d_out);
  got_out.erase(got_out.begin());
  out.erase(out.begin());
  const std::string tag = std::string("rmsnorm misaligned ") + type_name<T>();
  expect_close(got_out, out, elem_tol<T>(), tag + " out");
  expect_close(rstd, rstd_want, 1e-5, tag + " rstd");
  expect_close(fetch(d_dx), dx, elem_tol<T>(), tag + " dx");
  expect_close(fetch(d_dw), dw, reduce_tol<T>(), tag + " dweight");
}

}  // namespace
}  // namespace sambalm
