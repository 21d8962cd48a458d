// Mamba mixer ops (src/ops/mamba_ops.h): causal conv1d, SiLU / softplus / SiLU gate, selective scan
// (reference, parallel forward in both strategies, backward, decode step). Forwards are checked
// against direct formulas written out here, backwards against central finite differences in double.
#include <omp.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "ops/cpu/scan_internal.h"
#include "ops/ops.h"
#include "testing.h"

namespace sambalm {
namespace {

using ops::cpu::scan::ForwardMode;
using sambalm::test::rel_error;

template <typename T>
std::vector<T> randn(size_t n, std::mt19937& rng, double mean = 0, double sd = 1) {
  std::normal_distribution<double> dist(mean, sd);
  std::vector<T> v(n);
  for (auto& x : v) x = T(dist(rng));
  return v;
}

double rel_error_d(const std::vector<double>& a, const std::vector<double>& b) {
  double maxdiff = 0, maxb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    maxdiff = std::max(maxdiff, std::fabs(a[i] - b[i]));
    maxb = std::max(maxb, std::fabs(b[i]));
  }
  return maxb > 0 ? maxdiff / maxb : maxdiff;
}

// Central-difference gradient of a scalar function of `x` (perturbed in place), element by element.
std::vector<double> numeric_grad(std::vector<double>& x, const std::function<double()>& loss, double eps = 1e-6) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + eps;
    const double lp = loss();
    x[i] = keep - eps;
    const double lm = loss();
    x[i] = keep;
    g[i] = (lp - lm) / (2 * eps);
  }
  return g;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Runs the scope on one OpenMP thread.
struct OneThread {
  int keep = omp_get_max_threads();
  OneThread() { omp_set_num_threads(1); }
  ~OneThread() { omp_set_num_threads(keep); }
};

// ---- Scan inputs ------------------------------------------------------------------------------

// Everything one selective scan call reads, with Bm / Cm as views of stride ld_bc into a wider
// array whose unused columns hold NaN (a read of them would poison the outputs).
template <typename T>
struct ScanInputs {
  int64_t B, L, D, N, ld_bc;
  std::vector<T> u, delta, A, bc, Dskip, h0;
  T* Bm() { return bc.data(); }
  T* Cm() { return bc.data() + N; }
  ScanInputs(int64_t B_, int64_t L_, int64_t D_, int64_t N_, int64_t pad, uint32_t seed)
      : B(B_), L(L_), D(D_), N(N_), ld_bc(2 * N_ + pad) {
    std::mt19937 rng(seed);
    u = randn<T>(B * L * D, rng);
    delta = randn<T>(B * L * D, rng, -1.0, 0.7);
    for (auto& x : delta) x = std::log1p(std::exp(x));  // dt = softplus(.), in (0, ~1.5)
    A = randn<T>(D * N, rng, 0.5, 0.6);
    for (auto& x : A) x = -std::exp(x);  // A = -exp(A_log)
    bc = randn<T>(B * L * ld_bc, rng);
    for (int64_t r = 0; r < B * L; ++r)
      for (int64_t k = 2 * N; k < ld_bc; ++k) bc[r * ld_bc + k] = T(NAN);
    Dskip = randn<T>(D, rng, 1.0, 0.3);
    h0 = randn<T>(B * D * N, rng);
  }
};

// Every state h_t of the recurrence, in double: states[((b * (L + 1) + t) * D + d) * N + n] is the
// state after t steps (t = 0: h0).
template <typename T>
std::vector<double> all_states(ScanInputs<T>& in, bool use_h0) {
  const int64_t B = in.B, L = in.L, D = in.D, N = in.N;
  std::vector<double> s(B * (L + 1) * D * N);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t d = 0; d < D; ++d)
      for (int64_t n = 0; n < N; ++n) {
        double h = use_h0 ? in.h0[(b * D + d) * N + n] : 0.0;
        s[((b * (L + 1)) * D + d) * N + n] = h;
        for (int64_t t = 0; t < L; ++t) {
          const double dt = in.delta[(b * L + t) * D + d];
          h = std::exp(dt * double(in.A[d * N + n])) * h +
              dt * double(in.Bm()[(b * L + t) * in.ld_bc + n]) * double(in.u[(b * L + t) * D + d]);
          s[((b * (L + 1) + t + 1) * D + d) * N + n] = h;
        }
      }
  return s;
}

struct ScanCase {
  int64_t B, L, D, N, chunk, pad;
};

// ---- (a) parallel forward == reference --------------------------------------------------------

TEST(SelectiveScan, ForwardMatchesReference) {
  const ScanCase cases[] = {
      {2, 37, 20, 16, 8, 0},   // L not a multiple of chunk, D not a multiple of the channel block
      {1, 5, 7, 4, 16, 3},     // L < chunk, strided Bm/Cm
      {2, 9, 3, 5, 1, 1},      // chunk = 1
      {1, 64, 33, 16, 16, 0},  // L a multiple of chunk
      {3, 50, 40, 2, 7, 2},
  };
  for (const auto& c : cases) {
    for (bool use_h0 : {false, true}) {
      ScanInputs<float> in(c.B, c.L, c.D, c.N, c.pad, uint32_t(c.L * 31 + c.D + use_h0));
      const float* h0 = use_h0 ? in.h0.data() : nullptr;
      std::vector<float> y_ref(c.B * c.L * c.D), h_ref(c.B * c.D * c.N);
      ops::cpu::selective_scan_ref_forward(y_ref.data(), h_ref.data(), in.u.data(), in.delta.data(), in.A.data(),
                                           in.Bm(), in.Cm(), in.ld_bc, in.Dskip.data(), h0, c.B, c.L, c.D, c.N);
      const std::vector<double> states = all_states(in, use_h0);
      const int64_t nch = (c.L + c.chunk - 1) / c.chunk;
      ASSERT_EQ(ops::cpu::selective_scan_chunk_states_size(c.B, c.L, c.D, c.N, c.chunk), c.B * (nch + 1) * c.D * c.N);
      for (ForwardMode mode : {ForwardMode::kAuto, ForwardMode::kChannels, ForwardMode::kSequenceSplit}) {
        SCOPED_TRACE(testing::Message() << "B=" << c.B << " L=" << c.L << " D=" << c.D << " N=" << c.N
                                        << " chunk=" << c.chunk << " h0=" << use_h0 << " mode=" << int(mode));
        std::vector<float> y(c.B * c.L * c.D, -1.f), h_last(c.B * c.D * c.N, -1.f);
        std::vector<float> cs(ops::cpu::selective_scan_chunk_states_size(c.B, c.L, c.D, c.N, c.chunk), -1.f);
        ops::cpu::scan::forward(mode, y.data(), h_last.data(), cs.data(), in.u.data(), in.delta.data(), in.A.data(),
                                in.Bm(), in.Cm(), in.ld_bc, in.Dskip.data(), h0, c.B, c.L, c.D, c.N, c.chunk);
        EXPECT_LT(rel_error(y.data(), y_ref.data(), y.size()), 1e-5);
        EXPECT_LT(rel_error(h_last.data(), h_ref.data(), h_last.size()), 1e-5);
        // chunk_states[b, k] is the state after min(k * chunk, L) steps.
        std::vector<double> got, want;
        for (int64_t b = 0; b < c.B; ++b)
          for (int64_t k = 0; k <= nch; ++k)
            for (int64_t i = 0; i < c.D * c.N; ++i) {
              got.push_back(cs[(b * (nch + 1) + k) * c.D * c.N + i]);
              want.push_back(states[(b * (c.L + 1) + std::min(k * c.chunk, c.L)) * c.D * c.N + i]);
            }
        EXPECT_LT(rel_error_d(got, want), 1e-5);
      }
      // h_last is optional.
      std::vector<float> y2(c.B * c.L * c.D);
      std::vector<float> cs(ops::cpu::selective_scan_chunk_states_size(c.B, c.L, c.D, c.N, c.chunk));
      ops::cpu::selective_scan_forward(y2.data(), static_cast<float*>(nullptr), cs.data(), in.u.data(), in.delta.data(),
                                       in.A.data(), in.Bm(), in.Cm(), in.ld_bc, in.Dskip.data(), h0, c.B, c.L, c.D, c.N,
                                       c.chunk);
      EXPECT_LT(rel_error(y2.data(), y_ref.data(), y2.size()), 1e-5);
    }
  }
}

TEST(SelectiveScan, AutoModeChoosesByShape) {
  EXPECT_EQ(ops::cpu::scan::auto_mode(1, 4096, 1536, 64), ForwardMode::kChannels);
  EXPECT_EQ(ops::cpu::scan::auto_mode(1, 4096, 64, 64), ForwardMode::kSequenceSplit);
  EXPECT_EQ(ops::cpu::scan::auto_mode(1, 40, 64, 64), ForwardMode::kChannels);  // one chunk: nothing to split
}

// The float exp used by the fast scan against std::exp.
TEST(SelectiveScan, FastExpAccuracy) {
  double worst = 0;
  for (double x = -87.0; x <= 88.0; x += 0.0137) {
    const float got = ops::cpu::scan::generic::exp_scan(float(x)), want = std::exp(float(x));
    worst = std::max(worst, std::fabs(double(got) - double(want)) / double(want));
  }
  EXPECT_LT(worst, 5e-7);
  EXPECT_GE(ops::cpu::scan::generic::exp_scan(-1000.0f), 0.0f);
  EXPECT_LT(ops::cpu::scan::generic::exp_scan(-1000.0f), 1e-37f);
  EXPECT_EQ(ops::cpu::scan::generic::exp_scan(0.0f), 1.0f);
}

// ---- (b) backward vs finite differences -----------------------------------------------------

// loss = sum(w * y) through the parallel forward; every input's gradient from the backward (which
// adds into buffers pre-filled with noise) against central differences, in double.
TEST(SelectiveScan, BackwardMatchesFiniteDifferences) {
  struct Case {
    int64_t B, L, D, N, chunk, pad;
    bool use_h0;
  };
  const Case cases[] = {
      {2, 10, 5, 3, 3, 2, true},    // 4 chunks, the last one partial; sequence-split forward
      {1, 12, 18, 2, 4, 0, false},  // 3 chunks, two channel blocks
      {2, 7, 3, 4, 20, 1, true},    // one chunk
  };
  for (const Case& c : cases) {
    for (ForwardMode mode : {ForwardMode::kChannels, ForwardMode::kSequenceSplit}) {
      SCOPED_TRACE(testing::Message() << "B=" << c.B << " L=" << c.L << " D=" << c.D << " N=" << c.N
                                      << " chunk=" << c.chunk << " mode=" << int(mode));
      const int64_t B = c.B, L = c.L, D = c.D, N = c.N, chunk = c.chunk;
      ScanInputs<double> in(B, L, D, N, c.pad, uint32_t(100 + L + D));
      std::mt19937 rng(17);
      auto w = randn<double>(B * L * D, rng);
      std::vector<double> y(B * L * D), cs(ops::cpu::selective_scan_chunk_states_size(B, L, D, N, chunk));
      const double* h0 = c.use_h0 ? in.h0.data() : nullptr;
      auto loss = [&] {
        ops::cpu::scan::forward(mode, y.data(), static_cast<double*>(nullptr), cs.data(), in.u.data(), in.delta.data(),
                                in.A.data(), in.Bm(), in.Cm(), in.ld_bc, in.Dskip.data(), h0, B, L, D, N, chunk);
        return dot(y, w);
      };
      loss();  // leaves chunk_states of the unperturbed inputs
      auto noise = [&](size_t n) { return randn<double>(n, rng); };
      auto du = noise(in.u.size()), ddelta = noise(in.delta.size()), dA = noise(in.A.size()), dbc = noise(in.bc.size()),
           dD = noise(in.Dskip.size()), dh0 = noise(in.h0.size());
      const auto du0 = du, ddelta0 = ddelta, dA0 = dA, dbc0 = dbc, dD0 = dD, dh00 = dh0;
      std::vector<double> scratch(ops::cpu::selective_scan_backward_scratch_size(B, L, D, N, chunk), NAN);
      ops::cpu::selective_scan_backward(du.data(), ddelta.data(), dA.data(), dbc.data(), dbc.data() + N, dD.data(),
                                        dh0.data(), w.data(), cs.data(), in.u.data(), in.delta.data(), in.A.data(),
                                        in.Bm(), in.Cm(), in.ld_bc, in.Dskip.data(), h0, B, L, D, N, chunk,
                                        scratch.data());
      // The ~1000 forward calls of the differences run on one thread: on a busy 2-core machine each
      // parallel region can cost a context switch, and the threaded forward is checked elsewhere.
      OneThread one_thread;
      auto added = [](const std::vector<double>& g, const std::vector<double>& g0) {
        std::vector<double> r(g.size());
        for (size_t i = 0; i < g.size(); ++i) r[i] = g[i] - g0[i];
        return r;
      };
      EXPECT_LT(rel_error_d(added(du, du0), numeric_grad(in.u, loss)), 1e-6) << "du";
      EXPECT_LT(rel_error_d(added(ddelta, ddelta0), numeric_grad(in.delta, loss)), 1e-6) << "ddelta";
      EXPECT_LT(rel_error_d(added(dA, dA0), numeric_grad(in.A, loss)), 1e-6) << "dA";
      EXPECT_LT(rel_error_d(added(dD, dD0), numeric_grad(in.Dskip, loss)), 1e-6) << "dDskip";
      if (c.use_h0) {
        EXPECT_LT(rel_error_d(added(dh0, dh00), numeric_grad(in.h0, loss)), 1e-6) << "dh0";
      }
      // Bm and Cm share one strided array; the NaN padding columns are skipped by the perturbation.
      std::vector<double> num_bc(in.bc.size(), 0.0), got_bc(in.bc.size(), 0.0);
      for (int64_t r = 0; r < B * L; ++r)
        for (int64_t k = 0; k < 2 * N; ++k) {
          const int64_t i = r * in.ld_bc + k;
          const double keep = in.bc[i], eps = 1e-6;
          in.bc[i] = keep + eps;
          const double lp = loss();
          in.bc[i] = keep - eps;
          const double lm = loss();
          in.bc[i] = keep;
          num_bc[i] = (lp - lm) / (2 * eps);
          got_bc[i] = dbc[i] - dbc0[i];
        }
      EXPECT_LT(rel_error_d(got_bc, num_bc), 1e-6) << "dBm/dCm";
      for (int64_t r = 0; r < B * L; ++r)
        for (int64_t k = 2 * N; k < in.ld_bc; ++k) EXPECT_EQ(dbc[r * in.ld_bc + k], dbc0[r * in.ld_bc + k]);
    }
  }
}

// The backward with every gradient optional, and its bits independent of the thread count.
TEST(SelectiveScan, BackwardNullGradientsAndDeterminism) {
  const int64_t B = 2, L = 45, D = 40, N = 16, chunk = 8;
  ScanInputs<float> in(B, L, D, N, 1, 23);
  std::mt19937 rng(29);
  auto dy = randn<float>(B * L * D, rng);
  std::vector<float> y(B * L * D), cs(ops::cpu::selective_scan_chunk_states_size(B, L, D, N, chunk));
  ops::cpu::selective_scan_forward(y.data(), static_cast<float*>(nullptr), cs.data(), in.u.data(), in.delta.data(),
                                   in.A.data(), in.Bm(), in.Cm(), in.ld_bc, in.Dskip.data(), in.h0.data(), B, L, D, N,
                                   chunk);
  std::vector<float> scratch(ops::cpu::selective_scan_backward_scratch_size(B, L, D, N, chunk));
  struct Grads {
    std::vector<float> du, ddelta, dA, dbc, dD, dh0;
  };
  auto run = [&](int threads, bool all) {
    Grads g{std::vector<float>(in.u.size()), std::vector<float>(in.delta.size()),
            std::vector<float>(in.A.size()), std::vector<float>(in.bc.size()),
            std::vector<float>(D),           std::vector<float>(in.h0.size())};
    const int keep = omp_get_max_threads();
    omp_set_num_threads(threads);
    ops::cpu::selective_scan_backward(g.du.data(), all ? g.ddelta.data() : nullptr, all ? g.dA.data() : nullptr,
                                      all ? g.dbc.data() : nullptr, g.dbc.data() + N, all ? g.dD.data() : nullptr,
                                      all ? g.dh0.data() : nullptr, dy.data(), cs.data(), in.u.data(), in.delta.data(),
                                      in.A.data(), in.Bm(), in.Cm(), in.ld_bc, in.Dskip.data(), in.h0.data(), B, L, D,
                                      N, chunk, scratch.data());
    omp_set_num_threads(keep);
    return g;
  };
  const Grads one = run(1, true), two = run(2, true), three = run(3, true), some = run(2, false);
  for (const Grads* g : {&two, &three}) {
    EXPECT_EQ(g->du, one.du);
    EXPECT_EQ(g->ddelta, one.ddelta);
    EXPECT_EQ(g->dA, one.dA);
    EXPECT_EQ(g->dbc, one.dbc);
    EXPECT_EQ(g->dD, one.dD);
    EXPECT_EQ(g->dh0, one.dh0);
  }
  // Skipping gradients leaves the requested ones unchanged.
  EXPECT_EQ(some.du, one.du);
  for (int64_t r = 0; r < B * L; ++r)
    for (int64_t n = 0; n < N; ++n) {
      EXPECT_EQ(some.dbc[r * in.ld_bc + N + n], one.dbc[r * in.ld_bc + N + n]);
      EXPECT_EQ(some.dbc[r * in.ld_bc + n], 0.0f);
    }
  // float gradients agree with double ones.
  ScanInputs<double> ind(B, L, D, N, 1, 23);
  std::vector<double> dyd(dy.begin(), dy.end()), yd(y.size()), csd(cs.size()), dud(in.u.size(), 0.0),
      dAd(in.A.size(), 0.0), scr(scratch.size());
  ops::cpu::selective_scan_forward(yd.data(), static_cast<double*>(nullptr), csd.data(), ind.u.data(), ind.delta.data(),
                                   ind.A.data(), ind.Bm(), ind.Cm(), ind.ld_bc, ind.Dskip.data(), ind.h0.data(), B, L,
                                   D, N, chunk);
  ops::cpu::selective_scan_backward(dud.data(), static_cast<double*>(nullptr), dAd.data(),
                                    static_cast<double*>(nullptr), static_cast<double*>(nullptr),
                                    static_cast<double*>(nullptr), static_cast<double*>(nullptr), dyd.data(),
                                    csd.data(), ind.u.data(), ind.delta.data(), ind.A.data(), ind.Bm(), ind.Cm(),
                                    ind.ld_bc, ind.Dskip.data(), ind.h0.data(), B, L, D, N, chunk, scr.data());
  EXPECT_LT(rel_error_d(std::vector<double>(one.du.begin(), one.du.end()), dud), 1e-5);
  EXPECT_LT(rel_error_d(std::vector<double>(one.dA.begin(), one.dA.end()), dAd), 1e-5);
}

// The AVX2 build of the kernels (used by default where the CPU has it) against the baseline build.
TEST(SelectiveScan, KernelBuildsAgree) {
  const auto* avx2 = ops::cpu::scan::avx2_kernels<float>();
  if (!avx2) GTEST_SKIP() << "CPU without AVX2+FMA";
  const auto& gen = ops::cpu::scan::generic_kernels<float>();
  EXPECT_EQ(&ops::cpu::scan::kernels<float>(), avx2);
  const int64_t L = 23, D = 21, N = 13;  // odd sizes: vector remainders
  ScanInputs<float> in(1, L, D, N, 3, 41);
  std::mt19937 rng(43);
  auto dy = randn<float>(L * D, rng);
  for (bool with_y : {true, false}) {
    std::vector<float> h1 = in.h0, h2 = in.h0, y1(L * D), y2(L * D);
    (with_y ? gen.scan_y : gen.scan_no_y)(h1.data(), y1.data(), in.u.data(), in.delta.data(), in.A.data(), in.Bm(),
                                          in.Cm(), in.ld_bc, in.Dskip.data(), L, D, D, N);
    (with_y ? avx2->scan_y : avx2->scan_no_y)(h2.data(), y2.data(), in.u.data(), in.delta.data(), in.A.data(), in.Bm(),
                                              in.Cm(), in.ld_bc, in.Dskip.data(), L, D, D, N);
    EXPECT_LT(rel_error(h2.data(), h1.data(), h1.size()), 1e-6);
    if (with_y) {
      EXPECT_LT(rel_error(y2.data(), y1.data(), y1.size()), 1e-6);
    }
  }
  struct Out {
    std::vector<float> g, dA, bcp, rec, du, ddelta;
    float dD;
  };
  auto run = [&](const ops::cpu::scan::Kernels<float>& k) {
    Out o{std::vector<float>(N, 0.5f),
          std::vector<float>(N, 0.f),
          std::vector<float>(2 * L * N, 0.f),
          std::vector<float>(2 * L * N),
          std::vector<float>(L * D, 0.f),
          std::vector<float>(L * D, 0.f),
          0.f};
    o.dD = k.backward_channel(o.g.data(), o.dA.data(), o.bcp.data(), o.bcp.data() + L * N, o.rec.data(),
                              o.rec.data() + L * N, o.du.data(), o.ddelta.data(), dy.data() + 2, in.u.data() + 2,
                              in.delta.data() + 2, in.A.data() + 2 * N, in.Bm(), in.Cm(), in.ld_bc, in.Dskip[2],
                              in.h0.data(), L, D, N);
    return o;
  };
  const Out a = run(gen), b = run(*avx2);
  EXPECT_LT(rel_error(b.g.data(), a.g.data(), N), 1e-5);
  EXPECT_LT(rel_error(b.dA.data(), a.dA.data(), N), 1e-5);
  EXPECT_LT(rel_error(b.bcp.data(), a.bcp.data(), 2 * L * N), 1e-5);
  EXPECT_LT(rel_error(b.du.data(), a.du.data(), L * D), 1e-5);
  EXPECT_LT(rel_error(b.ddelta.data(), a.ddelta.data(), L * D), 1e-5);
  EXPECT_NEAR(b.dD, a.dD, 1e-5 * std::fabs(a.dD));
}

// ---- (e) decode step by step == forward; (f) prefill in two parts == one pass ----------------

TEST(SelectiveScan, StepByStepEqualsForward) {
  const int64_t B = 2, L = 13, D = 19, N = 16, chunk = 4;
  ScanInputs<float> in(B, L, D, N, 2, 7);
  std::vector<float> y(B * L * D), h_last(B * D * N), cs(ops::cpu::selective_scan_chunk_states_size(B, L, D, N, chunk));
  ops::cpu::selective_scan_forward(y.data(), h_last.data(), cs.data(), in.u.data(), in.delta.data(), in.A.data(),
                                   in.Bm(), in.Cm(), in.ld_bc, in.Dskip.data(), in.h0.data(), B, L, D, N, chunk);
  std::vector<float> h = in.h0, ys(B * L * D);
  std::vector<float> ut(B * D), dt(B * D), bct(B * in.ld_bc), yt(B * D);
  for (int64_t t = 0; t < L; ++t) {
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t d = 0; d < D; ++d) {
        ut[b * D + d] = in.u[(b * L + t) * D + d];
        dt[b * D + d] = in.delta[(b * L + t) * D + d];
      }
      for (int64_t k = 0; k < in.ld_bc; ++k) bct[b * in.ld_bc + k] = in.bc[(b * L + t) * in.ld_bc + k];
    }
    ops::cpu::selective_scan_step(yt.data(), h.data(), ut.data(), dt.data(), in.A.data(), bct.data(), bct.data() + N,
                                  in.ld_bc, in.Dskip.data(), B, D, N);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t d = 0; d < D; ++d) ys[(b * L + t) * D + d] = yt[b * D + d];
  }
  EXPECT_LT(rel_error(ys.data(), y.data(), y.size()), 1e-6);
  EXPECT_LT(rel_error(h.data(), h_last.data(), h.size()), 1e-6);
}

TEST(SelectiveScan, PrefillInTwoPartsEqualsOnePass) {
  const int64_t B = 2, L = 40, L1 = 17, D = 24, N = 8, chunk = 6;
  ScanInputs<float> in(B, L, D, N, 0, 11);
  std::vector<float> y(B * L * D), h_last(B * D * N), cs(ops::cpu::selective_scan_chunk_states_size(B, L, D, N, chunk));
  ops::cpu::selective_scan_forward(y.data(), h_last.data(), cs.data(), in.u.data(), in.delta.data(), in.A.data(),
                                   in.Bm(), in.Cm(), in.ld_bc, in.Dskip.data(), static_cast<const float*>(nullptr), B,
                                   L, D, N, chunk);
  // Split every [B, L, .] input at time L1 into two contiguous [B, L1, .] and [B, L - L1, .] arrays.
  auto part = [&](const std::vector<float>& v, int64_t width, int64_t t0, int64_t len) {
    std::vector<float> p(B * len * width);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < len; ++t)
        for (int64_t k = 0; k < width; ++k) p[(b * len + t) * width + k] = v[(b * L + t0 + t) * width + k];
    return p;
  };
  std::vector<float> y_parts(B * L * D), h_mid(B * D * N), h_end(B * D * N);
  for (int p = 0; p < 2; ++p) {
    const int64_t t0 = p == 0 ? 0 : L1, len = p == 0 ? L1 : L - L1;
    auto u = part(in.u, D, t0, len), delta = part(in.delta, D, t0, len), bc = part(in.bc, in.ld_bc, t0, len);
    std::vector<float> yp(B * len * D), csp(ops::cpu::selective_scan_chunk_states_size(B, len, D, N, chunk));
    ops::cpu::selective_scan_forward(yp.data(), p == 0 ? h_mid.data() : h_end.data(), csp.data(), u.data(),
                                     delta.data(), in.A.data(), bc.data(), bc.data() + N, in.ld_bc, in.Dskip.data(),
                                     p == 0 ? static_cast<const float*>(nullptr) : h_mid.data(), B, len, D, N, chunk);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < len; ++t)
        for (int64_t d = 0; d < D; ++d) y_parts[(b * L + t0 + t) * D + d] = yp[(b * len + t) * D + d];
  }
  EXPECT_LT(rel_error(y_parts.data(), y.data(), y.size()), 1e-5);
  EXPECT_LT(rel_error(h_end.data(), h_last.data(), h_end.size()), 1e-5);
}

// ---- (c) causal conv1d --------------------------------------------------------------------------

// out[b, t, d] = bias[d] + sum_j w[d, j] * (state ++ x)[b, t + j, d], in double.
std::vector<double> conv_direct(const std::vector<double>& x, int64_t ld_x, const std::vector<double>& w,
                                const std::vector<double>& bias, const double* state, int64_t B, int64_t L, int64_t D,
                                int64_t K) {
  std::vector<double> out(B * L * D);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t)
      for (int64_t d = 0; d < D; ++d) {
        double s = bias[d];
        for (int64_t j = 0; j < K; ++j) {
          const int64_t r = t + j - (K - 1);  // time index into x; negative = state row K-1+r
          double v = 0;
          if (r >= 0)
            v = x[(b * L + r) * ld_x + d];
          else if (state)
            v = state[(b * (K - 1) + (K - 1 + r)) * D + d];
          s += w[d * K + j] * v;
        }
        out[(b * L + t) * D + d] = s;
      }
  return out;
}

TEST(CausalConv1d, ForwardMatchesDirect) {
  struct Case {
    int64_t B, L, D, K, ld_x;
    bool state;
  };
  for (const Case& c : {Case{2, 9, 70, 4, 150, true}, Case{1, 2, 5, 4, 5, true}, Case{2, 6, 3, 3, 8, false},
                        Case{1, 7, 130, 1, 130, false}}) {
    std::mt19937 rng(uint32_t(c.L * 100 + c.D));
    auto x = randn<double>(c.B * c.L * c.ld_x, rng), w = randn<double>(c.D * c.K, rng), bias = randn<double>(c.D, rng),
         st = randn<double>(c.B * (c.K - 1) * c.D, rng);
    const double* state = c.state ? st.data() : nullptr;
    const auto want = conv_direct(x, c.ld_x, w, bias, state, c.B, c.L, c.D, c.K);
    std::vector<double> out(c.B * c.L * c.D);
    ops::cpu::causal_conv1d_forward(out.data(), x.data(), c.ld_x, w.data(), bias.data(), state, c.B, c.L, c.D, c.K);
    EXPECT_LT(rel_error_d(out, want), 1e-14);
    // float build agrees as well.
    std::vector<float> xf(x.begin(), x.end()), wf(w.begin(), w.end()), bf(bias.begin(), bias.end()),
        sf(st.begin(), st.end()), of(out.size());
    ops::cpu::causal_conv1d_forward(of.data(), xf.data(), c.ld_x, wf.data(), bf.data(), c.state ? sf.data() : nullptr,
                                    c.B, c.L, c.D, c.K);
    EXPECT_LT(rel_error_d(std::vector<double>(of.begin(), of.end()), want), 1e-6);
  }
}

TEST(CausalConv1d, GradientsMatchFiniteDifferences) {
  const int64_t B = 2, L = 5, D = 6, K = 4, ld = 9;
  std::mt19937 rng(3);
  auto x = randn<double>(B * L * ld, rng), w = randn<double>(D * K, rng), bias = randn<double>(D, rng),
       st = randn<double>(B * (K - 1) * D, rng), wy = randn<double>(B * L * D, rng);
  std::vector<double> out(B * L * D);
  auto loss = [&] {
    ops::cpu::causal_conv1d_forward(out.data(), x.data(), ld, w.data(), bias.data(), st.data(), B, L, D, K);
    return dot(out, wy);
  };
  // Gradients start from non-zero values: the backward must add.
  auto dx0 = randn<double>(x.size(), rng), dw0 = randn<double>(w.size(), rng), db0 = randn<double>(D, rng);
  auto dx = dx0, dw = dw0, db = db0;
  ops::cpu::causal_conv1d_backward(dx.data(), ld, dw.data(), db.data(), wy.data(), x.data(), ld, w.data(), st.data(), B,
                                   L, D, K);
  OneThread one_thread;
  auto check = [&](std::vector<double>& param, const std::vector<double>& g, const std::vector<double>& g0,
                   const char* name) {
    auto num = numeric_grad(param, loss);
    std::vector<double> got(g.size());
    for (size_t i = 0; i < g.size(); ++i) got[i] = g[i] - g0[i];
    EXPECT_LT(rel_error_d(got, num), 1e-7) << name;
  };
  check(x, dx, dx0, "dx");  // entries outside the D used columns must stay untouched (numeric grad 0)
  check(w, dw, dw0, "dw");
  check(bias, db, db0, "dbias");
  // nullptr gradients are skipped.
  auto dx2 = dx0;
  ops::cpu::causal_conv1d_backward(dx2.data(), ld, static_cast<double*>(nullptr), static_cast<double*>(nullptr),
                                   wy.data(), x.data(), ld, w.data(), st.data(), B, L, D, K);
  EXPECT_EQ(dx2, dx);
}

// The conv and its SiLU in one pass: the bits of causal_conv1d_forward then silu_forward.
TEST(CausalConv1d, SiluForwardEqualsConvThenSilu) {
  const int64_t B = 3, L = 33, D = 70, K = 4, ld = 2 * D + 1;
  std::mt19937 rng(13);
  auto x = randn<float>(B * L * ld, rng), w = randn<float>(D * K, rng), bias = randn<float>(D, rng),
       st = randn<float>(B * (K - 1) * D, rng);
  for (bool state : {true, false}) {
    const float* s = state ? st.data() : nullptr;
    std::vector<float> out(B * L * D), act(B * L * D), out2(B * L * D, NAN), act2(B * L * D, NAN);
    ops::cpu::causal_conv1d_forward(out.data(), x.data(), ld, w.data(), bias.data(), s, B, L, D, K);
    ops::cpu::silu_forward(act.data(), out.data(), B * L * D);
    ops::cpu::causal_conv1d_silu_forward(out2.data(), act2.data(), x.data(), ld, w.data(), bias.data(), s, B, L, D, K);
    EXPECT_EQ(out2, out);
    EXPECT_EQ(act2, act);
  }
}

// The conv followed by a SiLU, differentiated in one pass from d(silu output) and the saved conv output.
TEST(CausalConv1d, SiluBackwardMatchesFiniteDifferences) {
  const int64_t B = 2, L = 5, D = 6, K = 3, ld = 9;
  std::mt19937 rng(7);
  auto x = randn<double>(B * L * ld, rng), w = randn<double>(D * K, rng), bias = randn<double>(D, rng),
       st = randn<double>(B * (K - 1) * D, rng), wy = randn<double>(B * L * D, rng);
  std::vector<double> pre(B * L * D), act(B * L * D);
  auto loss = [&] {
    ops::cpu::causal_conv1d_forward(pre.data(), x.data(), ld, w.data(), bias.data(), st.data(), B, L, D, K);
    ops::cpu::silu_forward(act.data(), pre.data(), B * L * D);
    return dot(act, wy);
  };
  loss();  // pre at the unperturbed inputs
  const auto pre0 = pre;
  auto dx0 = randn<double>(x.size(), rng), dw0 = randn<double>(w.size(), rng), db0 = randn<double>(D, rng);
  auto dx = dx0, dw = dw0, db = db0;
  ops::cpu::causal_conv1d_silu_backward(dx.data(), ld, dw.data(), db.data(), wy.data(), pre0.data(), x.data(), ld,
                                        w.data(), st.data(), B, L, D, K);
  OneThread one_thread;
  auto check = [&](std::vector<double>& param, const std::vector<double>& g, const std::vector<double>& g0,
                   const char* name) {
    auto num = numeric_grad(param, loss);
    std::vector<double> got(g.size());
    for (size_t i = 0; i < g.size(); ++i) got[i] = g[i] - g0[i];
    EXPECT_LT(rel_error_d(got, num), 1e-7) << name;
  };
  check(x, dx, dx0, "dx");
  check(w, dw, dw0, "dw");
  check(bias, db, db0, "dbias");
}

// In float it gives the bits of the two ops it replaces: silu_backward into a zeroed buffer, then the
// plain backward (two channel blocks, no state, null gradients skipped).
TEST(CausalConv1d, SiluBackwardEqualsSiluThenConvBackward) {
  const int64_t B = 3, L = 33, D = 70, K = 4, ld = 2 * D;
  std::mt19937 rng(11);
  auto x = randn<float>(B * L * ld, rng), w = randn<float>(D * K, rng), pre = randn<float>(B * L * D, rng, 0, 3),
       dact = randn<float>(B * L * D, rng);
  for (bool all : {true, false}) {
    auto dx = randn<float>(B * L * ld, rng), dw = randn<float>(D * K, rng), db = randn<float>(D, rng);
    auto dx2 = dx, dw2 = dw, db2 = db;
    std::vector<float> g(B * L * D, 0.f);
    ops::cpu::silu_backward(g.data(), dact.data(), pre.data(), B * L * D);
    ops::cpu::causal_conv1d_backward(dx.data(), ld, all ? dw.data() : nullptr, all ? db.data() : nullptr, g.data(),
                                     x.data(), ld, w.data(), static_cast<const float*>(nullptr), B, L, D, K);
    ops::cpu::causal_conv1d_silu_backward(dx2.data(), ld, all ? dw2.data() : nullptr, all ? db2.data() : nullptr,
                                          dact.data(), pre.data(), x.data(), ld, w.data(),
                                          static_cast<const float*>(nullptr), B, L, D, K);
    EXPECT_EQ(dx2, dx);
    EXPECT_EQ(dw2, dw);
    EXPECT_EQ(db2, db);
  }
}

TEST(CausalConv1d, StateUpdateAndTokenByTokenDecode) {
  const int64_t B = 2, L = 7, D = 10, K = 4, ld = 13;
  std::mt19937 rng(5);
  auto x = randn<float>(B * L * ld, rng), w = randn<float>(D * K, rng), bias = randn<float>(D, rng),
       st = randn<float>(B * (K - 1) * D, rng);
  std::vector<float> full(B * L * D);
  ops::cpu::causal_conv1d_forward(full.data(), x.data(), ld, w.data(), bias.data(), st.data(), B, L, D, K);
  // new_state after the whole sequence: its last K-1 rows.
  std::vector<float> ns(B * (K - 1) * D);
  ops::cpu::causal_conv1d_state_update(ns.data(), x.data(), ld, st.data(), B, L, D, K);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < K - 1; ++i)
      for (int64_t d = 0; d < D; ++d) EXPECT_EQ(ns[(b * (K - 1) + i) * D + d], x[(b * L + L - (K - 1) + i) * ld + d]);
  // Token by token with an in-place state update reproduces the full forward.
  std::vector<float> s = st, xt(B * ld), ot(B * D);
  for (int64_t t = 0; t < L; ++t) {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t k = 0; k < ld; ++k) xt[b * ld + k] = x[(b * L + t) * ld + k];
    ops::cpu::causal_conv1d_forward(ot.data(), xt.data(), ld, w.data(), bias.data(), s.data(), B, 1, D, K);
    ops::cpu::causal_conv1d_state_update(s.data(), xt.data(), ld, s.data(), B, 1, D, K);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t d = 0; d < D; ++d) EXPECT_EQ(ot[b * D + d], full[(b * L + t) * D + d]);
  }
  EXPECT_EQ(s, ns);
  // A prefill shorter than K-1 keeps part of the old state.
  std::vector<float> ns2(B * (K - 1) * D), x1(B * ld);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < ld; ++k) x1[b * ld + k] = x[(b * L) * ld + k];
  ops::cpu::causal_conv1d_state_update(ns2.data(), x1.data(), ld, st.data(), B, 1, D, K);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t d = 0; d < D; ++d) {
      EXPECT_EQ(ns2[(b * (K - 1) + 0) * D + d], st[(b * (K - 1) + 1) * D + d]);
      EXPECT_EQ(ns2[(b * (K - 1) + 1) * D + d], st[(b * (K - 1) + 2) * D + d]);
      EXPECT_EQ(ns2[(b * (K - 1) + 2) * D + d], x[(b * L) * ld + d]);
    }
}

// ---- (d) activations -------------------------------------------------------------------------

TEST(Activations, ForwardValues) {
  const std::vector<double> x = {-30.0, -3.0, -0.5, 0.0, 0.7, 4.0, 19.9, 20.5, 50.0};
  std::vector<double> s(x.size()), sp(x.size());
  ops::cpu::silu_forward(s.data(), x.data(), int64_t(x.size()));
  ops::cpu::softplus_forward(sp.data(), x.data(), int64_t(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_NEAR(s[i], x[i] / (1 + std::exp(-x[i])), 1e-15 * (1 + std::fabs(x[i])));
    const double want = x[i] > 20 ? x[i] : std::log(1 + std::exp(x[i]));
    EXPECT_NEAR(sp[i], want, 1e-15 * (1 + std::fabs(want)));
  }
}

TEST(Activations, GradientsMatchFiniteDifferences) {
  std::mt19937 rng(9);
  const int64_t n = 40;
  auto x = randn<double>(n, rng, 0, 3), wy = randn<double>(n, rng);
  x[0] = 25.0;  // softplus's linear branch
  std::vector<double> out(n);
  using Fwd = void (*)(double*, const double*, int64_t);
  using Bwd = void (*)(double*, const double*, const double*, int64_t);
  const std::pair<Fwd, Bwd> fns[] = {{ops::cpu::silu_forward<double>, ops::cpu::silu_backward<double>},
                                     {ops::cpu::softplus_forward<double>, ops::cpu::softplus_backward<double>}};
  for (auto [fwd, bwd] : fns) {
    auto loss = [&] {
      fwd(out.data(), x.data(), n);
      return dot(out, wy);
    };
    auto num = numeric_grad(x, loss);
    std::vector<double> dx(n, 0.5);
    bwd(dx.data(), wy.data(), x.data(), n);
    for (auto& g : dx) g -= 0.5;
    EXPECT_LT(rel_error_d(dx, num), 1e-8);
  }
  // Gate: out[r, d] = y[r, d] * silu(z[r, d]), z and dz strided.
  const int64_t rows = 4, D = 5, ld_z = 8, ld_dz = 7;
  auto y = randn<double>(rows * D, rng), z = randn<double>(rows * ld_z, rng, 0, 2), wg = randn<double>(rows * D, rng);
  std::vector<double> g(rows * D);
  auto loss = [&] {
    ops::cpu::silu_gate_forward(g.data(), y.data(), z.data(), ld_z, rows, D);
    return dot(g, wg);
  };
  auto num_y = numeric_grad(y, loss), num_z = numeric_grad(z, loss);
  std::vector<double> dy(rows * D, 0.0), dz(rows * ld_dz, 0.0);
  ops::cpu::silu_gate_backward(dy.data(), dz.data(), ld_dz, wg.data(), y.data(), z.data(), ld_z, rows, D);
  EXPECT_LT(rel_error_d(dy, num_y), 1e-8);
  std::vector<double> dz_dense(rows * ld_z, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t d = 0; d < D; ++d) dz_dense[r * ld_z + d] = dz[r * ld_dz + d];
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t d = D; d < ld_dz; ++d) EXPECT_EQ(dz[r * ld_dz + d], 0.0);
  EXPECT_LT(rel_error_d(dz_dense, num_z), 1e-8);
}

}  // namespace
}  // namespace sambalm
