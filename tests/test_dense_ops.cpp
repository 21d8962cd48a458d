// Dense ops: every backward against central finite differences in float64, every fast forward
// against a direct reference (naive loops, closed forms, the materialised-score attention).
#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "ops/ops.h"
#include "testing.h"

using namespace sambalm;
using Vec = std::vector<double>;
using VecF = std::vector<float>;

namespace {

Vec randn(size_t n, uint32_t seed, double scale = 1.0) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> dist(0.0, scale);
  Vec v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}
VecF to_f32(const Vec& v) { return VecF(v.begin(), v.end()); }

double max_rel(const Vec& a, const Vec& b) {
  double md = 0, mb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    md = std::max(md, std::fabs(a[i] - b[i]));
    mb = std::max(mb, std::fabs(b[i]));
  }
  return mb > 0 ? md / mb : md;
}

// Gradient buffers start at this value: backward ops must ADD, so the check subtracts it again.
constexpr double kGradInit = 0.25;

// Central differences of the scalar loss() with respect to every element of x, compared with the
// analytic gradient `grad` (already accumulated onto kGradInit).
void expect_fd(const char* what, Vec& x, const Vec& grad, const std::function<double()>& loss, double tol = 1e-6) {
  ASSERT_EQ(x.size(), grad.size()) << what;
  const double h = 1e-5;
  Vec num(x.size()), ana(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double lp = loss();
    x[i] = x0 - h;
    const double lm = loss();
    x[i] = x0;
    num[i] = (lp - lm) / (2 * h);
    ana[i] = grad[i] - kGradInit;
  }
  double mx = 0;
  for (double v : num) mx = std::max(mx, std::fabs(v));
  EXPECT_GT(mx, 0.0) << what << ": gradient is identically zero, the check proves nothing";
  EXPECT_LT(max_rel(ana, num), tol) << what;
}

// Weighted sum of an output: the scalar whose gradient with respect to the output is `w`.
double dot(const Vec& a, const Vec& w) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * w[i];
  return s;
}

Vec grad_buf(size_t n) { return Vec(n, kGradInit); }

}  // namespace

// ---- matmul ------------------------------------------------------------------------------------

TEST(Matmul, ForwardMatchesTripleLoop) {
  const int64_t M = 7, K = 13, N = 5;
  Vec inp = randn(M * K, 1), w = randn(N * K, 2), b = randn(N, 3);
  VecF fi = to_f32(inp), fw = to_f32(w), fb = to_f32(b), out(M * N), outnb(M * N);
  ops::matmul_forward(out.data(), fi.data(), fw.data(), fb.data(), M, K, N);
  ops::matmul_forward(outnb.data(), fi.data(), fw.data(), (const float*)nullptr, M, K, N);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += double(fi[m * K + k]) * double(fw[n * K + k]);
      EXPECT_NEAR(out[m * N + n], s + fb[n], 1e-5);
      EXPECT_NEAR(outnb[m * N + n], s, 1e-5);
    }
}

TEST(Matmul, BackwardFiniteDifferences) {
  const int64_t M = 4, K = 6, N = 3;
  Vec inp = randn(M * K, 4), w = randn(N * K, 5), b = randn(N, 6), r = randn(M * N, 7), out(M * N);
  auto loss = [&] {
    ops::matmul_forward(out.data(), inp.data(), w.data(), b.data(), M, K, N);
    return dot(out, r);
  };
  Vec di = grad_buf(inp.size()), dw = grad_buf(w.size()), db = grad_buf(b.size());
  ops::matmul_backward(di.data(), dw.data(), db.data(), r.data(), inp.data(), w.data(), M, K, N);
  expect_fd("dinp", inp, di, loss);
  expect_fd("dweight", w, dw, loss);
  expect_fd("dbias", b, db, loss);
}

TEST(Matmul, StridedViewsFiniteDifferences) {
  // inp is a column window of a wider buffer, out is written into a wider buffer: the columns
  // outside the views must be left alone by the forward and get no gradient from the backward.
  const int64_t M = 5, K = 4, N = 3, ld_in = 9, in_off = 2, ld_out = 7, out_off = 3;
  Vec big_in = randn(M * ld_in, 8), w = randn(N * K, 9), b = randn(N, 10), r = randn(M * ld_out, 11);
  Vec out(M * ld_out, 7.0);
  auto loss = [&] {
    ops::matmul_forward_strided(out.data() + out_off, ld_out, big_in.data() + in_off, ld_in, w.data(), b.data(), M, K,
                                N);
    double s = 0;
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) s += out[m * ld_out + out_off + n] * r[m * ld_out + out_off + n];
    return s;
  };
  loss();
  for (int64_t m = 0; m < M; ++m)
    for (int64_t c = 0; c < ld_out; ++c)
      if (c < out_off || c >= out_off + N) {
        EXPECT_EQ(out[m * ld_out + c], 7.0);
      }
  Vec di = grad_buf(big_in.size()), dw = grad_buf(w.size()), db = grad_buf(b.size());
  ops::matmul_backward_strided(di.data() + in_off, ld_in, dw.data(), db.data(), r.data() + out_off, ld_out,
                               big_in.data() + in_off, ld_in, w.data(), M, K, N);
  expect_fd("dinp (strided)", big_in, di, loss);
  expect_fd("dweight (strided)", w, dw, loss);
  expect_fd("dbias (strided)", b, db, loss);
}

// ---- embedding ---------------------------------------------------------------------------------

TEST(Embedding, ForwardAndBackwardWithRepeatedIds) {
  const int64_t V = 5, C = 3;
  std::vector<int32_t> ids = {3, 1, 3, 0, 3, 4};
  const int64_t n = int64_t(ids.size());
  Vec table = randn(V * C, 12), r = randn(n * C, 13), out(n * C);
  ops::embedding_forward(out.data(), ids.data(), table.data(), n, C);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < C; ++c) EXPECT_EQ(out[i * C + c], table[ids[i] * C + c]);
  auto loss = [&] {
    ops::embedding_forward(out.data(), ids.data(), table.data(), n, C);
    return dot(out, r);
  };
  Vec dt = grad_buf(table.size());
  ops::embedding_backward(dt.data(), r.data(), ids.data(), n, C);
  // Row 2 is never used: its gradient stays exactly at the initial value.
  for (int64_t c = 0; c < C; ++c) EXPECT_EQ(dt[2 * C + c], kGradInit);
  expect_fd("dtable", table, dt, loss);
}

// ---- norms -------------------------------------------------------------------------------------

TEST(RMSNorm, ForwardMatchesFormula) {
  const int64_t n = 3, C = 10;
  Vec x = randn(n * C, 14), w = randn(C, 15), out(n * C), rstd(n);
  ops::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), n, C, 1e-5);
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0;
    for (int64_t c = 0; c < C; ++c) ss += x[i * C + c] * x[i * C + c];
    const double r = 1 / std::sqrt(ss / C + 1e-5);
    EXPECT_NEAR(rstd[i], r, 1e-12);
    for (int64_t c = 0; c < C; ++c) EXPECT_NEAR(out[i * C + c], x[i * C + c] * r * w[c], 1e-12);
  }
}

TEST(RMSNorm, BackwardFiniteDifferences) {
  const int64_t n = 4, C = 7;
  Vec x = randn(n * C, 16), w = randn(C, 17), r = randn(n * C, 18), out(n * C), rstd(n);
  auto loss = [&] {
    ops::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), n, C, 1e-5);
    return dot(out, r);
  };
  loss();
  Vec dx = grad_buf(x.size()), dw = grad_buf(w.size());
  ops::rmsnorm_backward(dx.data(), dw.data(), r.data(), x.data(), w.data(), rstd.data(), n, C);
  expect_fd("dx", x, dx, loss);
  expect_fd("dweight", w, dw, loss);
}

// ---- elementwise -------------------------------------------------------------------------------

TEST(Elementwise, AddInplace) {
  Vec y = randn(9, 19), x = randn(9, 20), y0 = y;
  ops::add_inplace(y.data(), x.data(), 9);
  for (int i = 0; i < 9; ++i) EXPECT_EQ(y[i], y0[i] + x[i]);
}

TEST(Elementwise, SwigluForwardAndBackward) {
  const int64_t n = 11;
  Vec a = randn(n, 21, 2.0), b = randn(n, 22), r = randn(n, 23), out(n);
  ops::swiglu_forward(out.data(), a.data(), b.data(), n);
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(out[i], a[i] / (1 + std::exp(-a[i])) * b[i], 1e-14);
  auto loss = [&] {
    ops::swiglu_forward(out.data(), a.data(), b.data(), n);
    return dot(out, r);
  };
  Vec da = grad_buf(n), db = grad_buf(n);
  ops::swiglu_backward(da.data(), db.data(), r.data(), a.data(), b.data(), n);
  expect_fd("da", a, da, loss);
  expect_fd("db", b, db, loss);
}

// ---- cross-entropy -----------------------------------------------------------------------------

TEST(CrossEntropy, ForwardMatchesLogSumExpAndIgnoresNegativeTargets) {
  const int64_t n = 5, V = 9;
  Vec logits = randn(n * V, 24, 3.0);
  std::vector<int32_t> tg = {2, -1, 8, 0, -100};
  VecF fl = to_f32(logits), losses(n);
  const double mean = ops::cross_entropy_forward_backward<float>(nullptr, losses.data(), fl.data(), tg.data(), n, V, 1);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (tg[i] < 0) {
      EXPECT_EQ(losses[i], 0.0f);
      continue;
    }
    double s = 0;
    for (int64_t v = 0; v < V; ++v) s += std::exp(double(fl[i * V + v]));
    const double l = std::log(s) - double(fl[i * V + tg[i]]);
    EXPECT_NEAR(losses[i], l, 1e-5);
    sum += l;
  }
  EXPECT_NEAR(mean, sum / 3, 1e-5);
}

TEST(CrossEntropy, GradientFiniteDifferencesAndAliasing) {
  const int64_t n = 4, V = 6;
  Vec logits = randn(n * V, 25, 2.0);
  std::vector<int32_t> tg = {1, -1, 5, 0};
  const double scale = 0.7;
  auto loss = [&] {
    return scale * ops::cross_entropy_forward_backward<double>(nullptr, nullptr, logits.data(), tg.data(), n, V, 1);
  };
  // The op writes (not adds) the gradient; shift it onto kGradInit for expect_fd.
  Vec dl(n * V, 123.0);
  ops::cross_entropy_forward_backward(dl.data(), (double*)nullptr, logits.data(), tg.data(), n, V, scale);
  for (int64_t v = 0; v < V; ++v) EXPECT_EQ(dl[1 * V + v], 0.0);
  Vec g = dl;
  for (auto& x : g) x += kGradInit;
  expect_fd("dlogits", logits, g, loss);
  // In place: dlogits aliases logits.
  Vec alias = logits;
  ops::cross_entropy_forward_backward(alias.data(), (double*)nullptr, alias.data(), tg.data(), n, V, scale);
  EXPECT_LT(max_rel(alias, dl), 1e-15);
}
