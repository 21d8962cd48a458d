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
// `may_be_zero`: the true gradient is zero (then the analytic one must be exactly zero too).
void expect_fd(const char* what, Vec& x, const Vec& grad, const std::function<double()>& loss, double tol = 1e-6,
               bool may_be_zero = false) {
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
  if (may_be_zero && mx < 1e-9) {
    for (double a : ana) EXPECT_EQ(a, 0.0) << what;
    return;
  }
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
  ops::cpu::matmul_forward(out.data(), fi.data(), fw.data(), fb.data(), M, K, N);
  ops::cpu::matmul_forward(outnb.data(), fi.data(), fw.data(), (const float*)nullptr, M, K, N);
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
    ops::cpu::matmul_forward(out.data(), inp.data(), w.data(), b.data(), M, K, N);
    return dot(out, r);
  };
  Vec di = grad_buf(inp.size()), dw = grad_buf(w.size()), db = grad_buf(b.size());
  ops::cpu::matmul_backward(di.data(), dw.data(), db.data(), r.data(), inp.data(), w.data(), M, K, N);
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
    ops::cpu::matmul_forward_strided(out.data() + out_off, ld_out, big_in.data() + in_off, ld_in, w.data(), b.data(), M,
                                     K, N);
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
  ops::cpu::matmul_backward_strided(di.data() + in_off, ld_in, dw.data(), db.data(), r.data() + out_off, ld_out,
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
  ops::cpu::embedding_forward(out.data(), ids.data(), table.data(), n, C);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < C; ++c) EXPECT_EQ(out[i * C + c], table[ids[i] * C + c]);
  auto loss = [&] {
    ops::cpu::embedding_forward(out.data(), ids.data(), table.data(), n, C);
    return dot(out, r);
  };
  Vec dt = grad_buf(table.size());
  ops::cpu::embedding_backward(dt.data(), r.data(), ids.data(), n, C);
  // Row 2 is never used: its gradient stays exactly at the initial value.
  for (int64_t c = 0; c < C; ++c) EXPECT_EQ(dt[2 * C + c], kGradInit);
  expect_fd("dtable", table, dt, loss);
}

// ---- norms -------------------------------------------------------------------------------------

TEST(RMSNorm, ForwardMatchesFormula) {
  const int64_t n = 3, C = 10;
  Vec x = randn(n * C, 14), w = randn(C, 15), out(n * C), rstd(n);
  ops::cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), n, C, 1e-5);
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
    ops::cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), n, C, 1e-5);
    return dot(out, r);
  };
  loss();
  Vec dx = grad_buf(x.size()), dw = grad_buf(w.size());
  ops::cpu::rmsnorm_backward(dx.data(), dw.data(), r.data(), x.data(), w.data(), rstd.data(), n, C);
  expect_fd("dx", x, dx, loss);
  expect_fd("dweight", w, dw, loss);
}

// ---- elementwise -------------------------------------------------------------------------------

TEST(Elementwise, AddInplace) {
  Vec y = randn(9, 19), x = randn(9, 20), y0 = y;
  ops::cpu::add_inplace(y.data(), x.data(), 9);
  for (int i = 0; i < 9; ++i) EXPECT_EQ(y[i], y0[i] + x[i]);
}

TEST(Elementwise, SwigluForwardAndBackward) {
  const int64_t n = 11;
  Vec a = randn(n, 21, 2.0), b = randn(n, 22), r = randn(n, 23), out(n);
  ops::cpu::swiglu_forward(out.data(), a.data(), b.data(), n);
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(out[i], a[i] / (1 + std::exp(-a[i])) * b[i], 1e-14);
  auto loss = [&] {
    ops::cpu::swiglu_forward(out.data(), a.data(), b.data(), n);
    return dot(out, r);
  };
  Vec da = grad_buf(n), db = grad_buf(n);
  ops::cpu::swiglu_backward(da.data(), db.data(), r.data(), a.data(), b.data(), n);
  expect_fd("da", a, da, loss);
  expect_fd("db", b, db, loss);
}

// ---- cross-entropy -----------------------------------------------------------------------------

TEST(CrossEntropy, ForwardMatchesLogSumExpAndIgnoresNegativeTargets) {
  const int64_t n = 5, V = 9;
  Vec logits = randn(n * V, 24, 3.0);
  std::vector<int32_t> tg = {2, -1, 8, 0, -100};
  VecF fl = to_f32(logits), losses(n);
  const double mean =
      ops::cpu::cross_entropy_forward_backward<float>(nullptr, losses.data(), fl.data(), tg.data(), n, V, 1);
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
    return scale *
           ops::cpu::cross_entropy_forward_backward<double>(nullptr, nullptr, logits.data(), tg.data(), n, V, 1);
  };
  // The op writes (not adds) the gradient; shift it onto kGradInit for expect_fd.
  Vec dl(n * V, 123.0);
  ops::cpu::cross_entropy_forward_backward(dl.data(), (double*)nullptr, logits.data(), tg.data(), n, V, scale);
  for (int64_t v = 0; v < V; ++v) EXPECT_EQ(dl[1 * V + v], 0.0);
  Vec g = dl;
  for (auto& x : g) x += kGradInit;
  expect_fd("dlogits", logits, g, loss);
  // In place: dlogits aliases logits.
  Vec alias = logits;
  ops::cpu::cross_entropy_forward_backward(alias.data(), (double*)nullptr, alias.data(), tg.data(), n, V, scale);
  EXPECT_LT(max_rel(alias, dl), 1e-15);
}

// ---- LayerNorm ---------------------------------------------------------------------------------

TEST(LayerNorm, ForwardMatchesFormula) {
  const int64_t n = 3, C = 9;
  Vec x = randn(n * C, 30, 2.0), w = randn(C, 31), b = randn(C, 32), out(n * C), mean(n), rstd(n);
  for (auto& e : x) e += 1.5;  // a non-zero mean, so a missing centring shows
  ops::cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), n, C, 1e-5);
  for (int64_t i = 0; i < n; ++i) {
    double mu = 0, var = 0;
    for (int64_t c = 0; c < C; ++c) mu += x[i * C + c] / C;
    for (int64_t c = 0; c < C; ++c) var += (x[i * C + c] - mu) * (x[i * C + c] - mu) / C;
    const double r = 1 / std::sqrt(var + 1e-5);
    EXPECT_NEAR(mean[i], mu, 1e-12);
    EXPECT_NEAR(rstd[i], r, 1e-12);
    for (int64_t c = 0; c < C; ++c) EXPECT_NEAR(out[i * C + c], (x[i * C + c] - mu) * r * w[c] + b[c], 1e-12);
  }
}

TEST(LayerNorm, BackwardFiniteDifferencesWithAndWithoutBias) {
  const int64_t n = 4, C = 6;
  Vec x = randn(n * C, 33), w = randn(C, 34), b = randn(C, 35), r = randn(n * C, 36), out(n * C), mean(n), rstd(n);
  for (bool with_bias : {true, false}) {
    const double* bp = with_bias ? b.data() : nullptr;
    auto loss = [&] {
      ops::cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), bp, n, C, 1e-5);
      return dot(out, r);
    };
    loss();
    Vec dx = grad_buf(x.size()), dw = grad_buf(w.size()), db = grad_buf(b.size());
    ops::cpu::layernorm_backward(dx.data(), dw.data(), with_bias ? db.data() : nullptr, r.data(), x.data(), w.data(),
                                 mean.data(), rstd.data(), n, C);
    expect_fd("dx", x, dx, loss);
    expect_fd("dweight", w, dw, loss);
    if (with_bias) expect_fd("dbias", b, db, loss);
  }
}

// ---- RoPE and the qkv split --------------------------------------------------------------------

TEST(Rope, TableMatchesClosedForm) {
  const int64_t P = 50, R = 12, half = R / 2;
  for (double condense : {1.0, 4.0}) {
    VecF c(P * half), s(P * half);
    ops::cpu::rope_table(c.data(), s.data(), P, R, 10000.0, condense);
    for (int64_t p = 0; p < P; ++p)
      for (int64_t i = 0; i < half; ++i) {
        const double angle = (p / condense) / std::pow(10000.0, double(2 * i) / R);
        EXPECT_NEAR(c[p * half + i], std::cos(angle), 1e-7);
        EXPECT_NEAR(s[p * half + i], std::sin(angle), 1e-7);
      }
  }
}

namespace {
struct QkvShape {
  int64_t B, Tn, H, G, hs, rope_dims, pos0;
};
[[maybe_unused]] std::ostream& operator<<(std::ostream& os, const QkvShape& s) {
  return os << "B" << s.B << " T" << s.Tn << " H" << s.H << " G" << s.G << " hs" << s.hs << " rope" << s.rope_dims
            << " pos0 " << s.pos0;
}
}  // namespace

class QkvSplitRope : public ::testing::TestWithParam<QkvShape> {};

TEST_P(QkvSplitRope, ForwardMatchesClosedFormRotation) {
  const auto [B, Tn, H, G, hs, R, pos0] = GetParam();
  const int64_t half = R / 2, qpk = H / G, row = (H + 2 * G) * hs;
  Vec cos((pos0 + Tn) * std::max<int64_t>(half, 1)), sin(cos.size());
  if (R > 0) ops::cpu::rope_table(cos.data(), sin.data(), pos0 + Tn, R, 10000.0, 1.0);
  Vec qkv = randn(B * Tn * row, 40), q(B * H * Tn * hs), k(B * G * Tn * hs), v(B * G * Tn * hs);
  ops::cpu::qkv_split_rope_forward(q.data(), k.data(), v.data(), qkv.data(), cos.data(), sin.data(), B, Tn, H, G, hs, R,
                                   pos0);
  // Expected: head `slot` of group g in the token's row, rotated by the closed-form angle.
  auto expect_head = [&](const double* got, int64_t b, int64_t t, int64_t g, int64_t slot, bool rope) {
    const double* x = qkv.data() + (b * Tn + t) * row + (g * (qpk + 2) + slot) * hs;
    for (int64_t i = 0; i < hs; ++i) {
      double want = x[i];
      if (rope && i < 2 * half) {
        const int64_t f = i % half;
        const double a = double(pos0 + t) * std::pow(10000.0, -2.0 * f / R);
        want =
            i < half ? x[i] * std::cos(a) - x[i + half] * std::sin(a) : x[i] * std::cos(a) + x[i - half] * std::sin(a);
      }
      EXPECT_NEAR(got[i], want, 1e-12) << "b=" << b << " t=" << t << " g=" << g << " slot=" << slot << " i=" << i;
    }
  };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < Tn; ++t)
      for (int64_t g = 0; g < G; ++g) {
        for (int64_t j = 0; j < qpk; ++j)
          expect_head(q.data() + ((b * H + g * qpk + j) * Tn + t) * hs, b, t, g, j, R > 0);
        expect_head(k.data() + ((b * G + g) * Tn + t) * hs, b, t, g, qpk, R > 0);
        expect_head(v.data() + ((b * G + g) * Tn + t) * hs, b, t, g, qpk + 1, false);
      }
}

TEST_P(QkvSplitRope, BackwardFiniteDifferences) {
  const auto [B, Tn, H, G, hs, R, pos0] = GetParam();
  const int64_t half = R / 2, row = (H + 2 * G) * hs;
  Vec cos((pos0 + Tn) * std::max<int64_t>(half, 1)), sin(cos.size());
  if (R > 0) ops::cpu::rope_table(cos.data(), sin.data(), pos0 + Tn, R, 10000.0, 1.0);
  Vec qkv = randn(B * Tn * row, 41), q(B * H * Tn * hs), k(B * G * Tn * hs), v(B * G * Tn * hs);
  Vec rq = randn(q.size(), 42), rk = randn(k.size(), 43), rv = randn(v.size(), 44);
  auto loss = [&] {
    ops::cpu::qkv_split_rope_forward(q.data(), k.data(), v.data(), qkv.data(), cos.data(), sin.data(), B, Tn, H, G, hs,
                                     R, pos0);
    return dot(q, rq) + dot(k, rk) + dot(v, rv);
  };
  Vec dqkv = grad_buf(qkv.size());
  ops::cpu::qkv_split_rope_backward(dqkv.data(), rq.data(), rk.data(), rv.data(), cos.data(), sin.data(), B, Tn, H, G,
                                    hs, R, pos0);
  expect_fd("dqkv", qkv, dqkv, loss);
}

INSTANTIATE_TEST_SUITE_P(Layouts, QkvSplitRope,
                         ::testing::Values(QkvShape{2, 3, 2, 2, 4, 4, 0},    // MHA, full rotary
                                           QkvShape{1, 4, 4, 2, 6, 4, 5},    // GQA, partial rotary, pos0 > 0
                                           QkvShape{2, 2, 3, 1, 4, 2, 3},    // MQA
                                           QkvShape{1, 3, 2, 1, 4, 0, 0}));  // no RoPE

// ---- attention ---------------------------------------------------------------------------------

namespace {
struct AttnShape {
  int64_t B, Tn, H, G, hs, window;
};
[[maybe_unused]] std::ostream& operator<<(std::ostream& os, const AttnShape& s) {
  return os << "B" << s.B << " T" << s.Tn << " H" << s.H << " G" << s.G << " hs" << s.hs << " W" << s.window;
}
}  // namespace

class Attention : public ::testing::TestWithParam<AttnShape> {};

TEST_P(Attention, BackwardFiniteDifferences) {
  const auto [B, Tn, H, G, hs, W] = GetParam();
  const double scale = 1 / std::sqrt(double(hs));
  Vec q = randn(B * H * Tn * hs, 50), k = randn(B * G * Tn * hs, 51), v = randn(B * G * Tn * hs, 52);
  Vec out(B * Tn * H * hs), lse(B * H * Tn), r = randn(out.size(), 53);
  auto loss = [&] {
    ops::cpu::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), B, Tn, H, G, hs, W, scale);
    return dot(out, r);
  };
  loss();
  Vec dq = grad_buf(q.size()), dk = grad_buf(k.size()), dv = grad_buf(v.size());
  ops::cpu::attention_backward(dq.data(), dk.data(), dv.data(), r.data(), out.data(), lse.data(), q.data(), k.data(),
                               v.data(), B, Tn, H, G, hs, W, scale);
  // With window 1 every query sees only itself, so out = v and q, k get no gradient.
  expect_fd("dq", q, dq, loss, 1e-6, W == 1);
  expect_fd("dk", k, dk, loss, 1e-6, W == 1);
  expect_fd("dv", v, dv, loss);
  // A nullptr gradient is skipped without changing the others.
  loss();  // expect_fd left out/lse at a perturbed point
  Vec dq2 = grad_buf(q.size());
  ops::cpu::attention_backward(dq2.data(), (double*)nullptr, (double*)nullptr, r.data(), out.data(), lse.data(),
                               q.data(), k.data(), v.data(), B, Tn, H, G, hs, W, scale);
  EXPECT_EQ(dq2, dq);
}

TEST_P(Attention, ForwardMatchesMaterialisedReference) {
  const auto [B, Tn, H, G, hs, W] = GetParam();
  const double scale = 1 / std::sqrt(double(hs));
  VecF q = to_f32(randn(B * H * Tn * hs, 54, 1.5)), k = to_f32(randn(B * G * Tn * hs, 55, 1.5));
  VecF v = to_f32(randn(B * G * Tn * hs, 56));
  VecF out(B * Tn * H * hs), lse(B * H * Tn), ref(out.size()), ref_lse(lse.size()), scores(Tn * Tn);
  ops::cpu::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), B, Tn, H, G, hs, W, scale);
  ops::cpu::attention_ref_forward(ref.data(), ref_lse.data(), scores.data(), q.data(), k.data(), v.data(), B, Tn, H, G,
                                  hs, W, scale);
  EXPECT_LT(test::rel_error(out.data(), ref.data(), int64_t(out.size())), 1e-5);
  EXPECT_LT(test::rel_error(lse.data(), ref_lse.data(), int64_t(lse.size())), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Shapes, Attention,
                         ::testing::Values(AttnShape{2, 7, 4, 2, 5, 3},    // GQA, window shorter than T
                                           AttnShape{1, 6, 3, 1, 4, 10},   // MQA, window >= T
                                           AttnShape{2, 5, 2, 2, 3, 0},    // MHA, full causal
                                           AttnShape{1, 5, 2, 1, 4, 1},    // window 1: each query sees itself
                                           AttnShape{1, 6, 2, 2, 4, 6}));  // window == T

TEST(AttentionLong, ForwardMatchesReferenceAcrossChunks) {
  // Long enough that the online softmax runs over several key chunks and rescales between them.
  for (const AttnShape& s : {AttnShape{1, 150, 2, 1, 16, 100}, AttnShape{2, 131, 4, 2, 8, 0},
                             AttnShape{1, 70, 2, 2, 8, 1}, AttnShape{1, 128, 2, 1, 8, 5}}) {
    const double scale = 1 / std::sqrt(double(s.hs));
    VecF q = to_f32(randn(s.B * s.H * s.Tn * s.hs, 57, 2.0)), k = to_f32(randn(s.B * s.G * s.Tn * s.hs, 58, 2.0));
    VecF v = to_f32(randn(s.B * s.G * s.Tn * s.hs, 59));
    VecF out(s.B * s.Tn * s.H * s.hs), lse(s.B * s.H * s.Tn), ref(out.size()), ref_lse(lse.size()), scores(s.Tn * s.Tn);
    ops::cpu::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), s.B, s.Tn, s.H, s.G, s.hs,
                                s.window, scale);
    ops::cpu::attention_ref_forward(ref.data(), ref_lse.data(), scores.data(), q.data(), k.data(), v.data(), s.B, s.Tn,
                                    s.H, s.G, s.hs, s.window, scale);
    EXPECT_LT(test::rel_error(out.data(), ref.data(), int64_t(out.size())), 1e-5) << "T=" << s.Tn;
    EXPECT_LT(test::rel_error(lse.data(), ref_lse.data(), int64_t(lse.size())), 1e-5) << "T=" << s.Tn;
  }
}

TEST(AttentionLong, ThreadedBackwardMatchesPlainLoops) {
  // Large enough to run multi-threaded (the finite-difference shapes above stay on one thread), so a
  // race in the dk/dv accumulation over GQA heads would show. The oracle: the softmax Jacobian
  // written out with full masks and no chunking.
  const int64_t B = 2, Tn = 100, H = 4, G = 2, hs = 16, W = 40, qpk = H / G;
  const double scale = 1 / std::sqrt(double(hs));
  Vec q = randn(B * H * Tn * hs, 60), k = randn(B * G * Tn * hs, 61), v = randn(B * G * Tn * hs, 62);
  Vec r = randn(B * Tn * H * hs, 63), out(r.size()), lse(B * H * Tn);
  ops::cpu::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), B, Tn, H, G, hs, W, scale);
  Vec dq(q.size(), 0.0), dk(k.size(), 0.0), dv(v.size(), 0.0);
  ops::cpu::attention_backward(dq.data(), dk.data(), dv.data(), r.data(), out.data(), lse.data(), q.data(), k.data(),
                               v.data(), B, Tn, H, G, hs, W, scale);
  Vec eq(q.size(), 0.0), ek(k.size(), 0.0), ev(v.size(), 0.0), P(Tn), dP(Tn);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t kv = (b * G + h / qpk) * Tn * hs;
      for (int64_t t = 0; t < Tn; ++t) {
        const double* qt = &q[((b * H + h) * Tn + t) * hs];
        const double* gt = &r[(b * Tn + t) * H * hs + h * hs];
        double mx = -INFINITY, sum = 0, D = 0;
        for (int64_t s = 0; s < Tn; ++s) {
          P[s] = -INFINITY;
          if (s <= t && s > t - W) {
            P[s] = 0;
            for (int64_t i = 0; i < hs; ++i) P[s] += scale * qt[i] * k[kv + s * hs + i];
          }
          mx = std::max(mx, P[s]);
        }
        for (int64_t s = 0; s < Tn; ++s) sum += std::exp(P[s] - mx);
        for (int64_t s = 0; s < Tn; ++s) {
          P[s] = std::exp(P[s] - mx) / sum;
          dP[s] = 0;
          for (int64_t i = 0; i < hs; ++i) dP[s] += gt[i] * v[kv + s * hs + i];
          D += P[s] * dP[s];
        }
        for (int64_t s = 0; s < Tn; ++s) {
          const double dS = P[s] * (dP[s] - D);
          for (int64_t i = 0; i < hs; ++i) {
            eq[((b * H + h) * Tn + t) * hs + i] += scale * dS * k[kv + s * hs + i];
            ek[kv + s * hs + i] += scale * dS * qt[i];
            ev[kv + s * hs + i] += P[s] * gt[i];
          }
        }
      }
    }
  EXPECT_LT(max_rel(dq, eq), 1e-10);
  EXPECT_LT(max_rel(dk, ek), 1e-10);
  EXPECT_LT(max_rel(dv, ev), 1e-10);
}

// The residual step out = x + f (also in place) and the element conversion, on the CPU; a call whose
// element types differ (the GPU's bf16 mixed precision) has no CPU body and says so.
TEST(Residual, AddAndConvertOnTheCpu) {
  const Context& ctx = cpu_context();
  const VecF x = {1.5f, -2.f, 3.25f, 0.f, 1e-8f}, f = {0.5f, 2.f, -1.f, 7.f, 1.f};
  VecF out(x.size(), NAN), y = x;
  ops::residual_add(ctx, out.data(), x.data(), f.data(), int64_t(x.size()));
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(out[i], x[i] + f[i]) << i;
  ops::residual_add(ctx, y.data(), y.data(), f.data(), int64_t(y.size()));
  EXPECT_EQ(y, out);
  const Vec d = {0.1, -1e30, 1.0 / 3.0};
  VecF c(d.size(), NAN);
  ops::convert(ctx, c.data(), d.data(), int64_t(d.size()));
  for (size_t i = 0; i < d.size(); ++i) EXPECT_EQ(c[i], static_cast<float>(d[i])) << i;
  std::vector<bf16> narrow(x.size());
  try {
    ops::residual_add(ctx, out.data(), x.data(), narrow.data(), int64_t(x.size()));
    FAIL() << "a bf16 residual add ran on the CPU";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("residual_add: no cpu body"), std::string::npos) << e.what();
  }
}
