// Direct tests of the ops that prefill and decoding run on (and the optimizer's): the small-batch
// matmul path on every ISA this machine runs, RoPE at arbitrary positions, attention of new queries
// over a key/value ring against attention_ref over the unrolled sequence, the ring write, A = -exp(A_log)
// and AdamW / the gradient norm against their formulas written out here.
#include <cmath>
#include <random>
#include <type_traits>
#include <vector>

#include "ops/cpu/gemv.h"
#include "ops/ops.h"
#include "testing.h"

using namespace sambalm;

namespace {

std::vector<float> uniform(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

}  // namespace

// Rows 1..70 (partial 3-row batch tiles, the GEMV/GEMM boundary at 64), K not a multiple of the
// 8-lane vectors, N not a multiple of the 4-row tiles, strided input and output, with and without bias.
TEST(SmallBatchMatmul, MatchesADoubleReferenceOnEveryIsa) {
  std::vector<ops::cpu::Isa> isas = {ops::cpu::Isa::Baseline};
  if (ops::cpu::cpu_supports(ops::cpu::Isa::Avx2)) isas.push_back(ops::cpu::Isa::Avx2);
  uint32_t seed = 7;
  for (int path = 0; path <= static_cast<int>(isas.size()); ++path)  // each ISA's tiles, then matmul_forward
    for (int64_t M : {1, 2, 3, 4, 5, 7, 9, 16, 64, 65, 70})
      for (int64_t K : {1, 7, 8, 13, 64, 100})
        for (int64_t N : {1, 3, 4, 5, 17, 130})
          for (bool with_bias : {false, true}) {
            if (path < static_cast<int>(isas.size()) && M > ops::cpu::kGemvMaxRows) continue;
            const int64_t ld_in = K + 3, ld_out = N + 2;
            auto in = uniform(M * ld_in, ++seed), W = uniform(N * K, ++seed), bias = uniform(N, ++seed);
            std::vector<float> out(M * ld_out, 123.0f);
            const float* b = with_bias ? bias.data() : nullptr;
            if (path < static_cast<int>(isas.size()))
              ops::cpu::gemv_linear(isas[path], out.data(), ld_out, in.data(), ld_in, W.data(), b, M, K, N);
            else
              ops::matmul_forward_strided(cpu_context(), out.data(), ld_out, in.data(), ld_in, W.data(), b, M, K, N);
            double worst = 0;
            for (int64_t m = 0; m < M; ++m) {
              for (int64_t n = 0; n < N; ++n) {
                double ref = with_bias ? bias[n] : 0.0;
                for (int64_t k = 0; k < K; ++k) ref += double(in[m * ld_in + k]) * double(W[n * K + k]);
                worst = std::max(worst, std::abs(double(out[m * ld_out + n]) - ref));
              }
              for (int64_t n = N; n < ld_out; ++n) ASSERT_EQ(out[m * ld_out + n], 123.0f) << "wrote past N";
            }
            EXPECT_LT(worst, 1e-5 * std::sqrt(double(K)) + 1e-6)
                << "path " << path << " M " << M << " K " << K << " N " << N;
          }
}

TEST(RopeAtPositions, EachSequencesRowsMatchTheTableAtItsPositions) {
  const int64_t dims = 16, half = 8, L = 5;
  const std::vector<int64_t> pos = {70000, 0, 123};
  const int64_t B = static_cast<int64_t>(pos.size()), max_pos = 70000 + L;
  std::vector<float> tc(max_pos * half), ts(max_pos * half), rc(B * L * half), rs(B * L * half);
  ops::rope_table(cpu_context(), tc.data(), ts.data(), max_pos, dims, 10000.0, 1.0);
  ops::rope_at_positions(cpu_context(), rc.data(), rs.data(), pos.data(), B, L, dims, 10000.0, 1.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < L * half; ++i) {
      EXPECT_EQ(rc[b * L * half + i], tc[pos[b] * half + i]) << b;
      EXPECT_EQ(rs[b * L * half + i], ts[pos[b] * half + i]) << b;
    }
}

// Two sequences in slots 3 and 1 of a 4-slot cache consume their tokens in chunks of varying length
// (1 .. longer than the window, so the ring wraps several times), the second starting 5 positions
// later; each chunk's outputs must equal the reference attention over the whole unrolled sequence.
TEST(CachedAttention, RingAtArbitraryPositionsMatchesTheUnrolledReference) {
  struct Case {
    int64_t H, G, hs, window;
  };
  for (const Case c : {Case{4, 2, 8, 7}, Case{2, 2, 4, 3}, Case{3, 1, 8, 0}, Case{4, 4, 8, 16}}) {
    const int64_t T = 50, S = 4, H = c.H, G = c.G, hs = c.hs;
    const int64_t cap = c.window > 0 ? c.window : T;
    const double scale = 1.0 / std::sqrt(double(hs));
    const std::vector<int32_t> slots = {3, 1};
    // Per sequence: q [H, T, hs], k/v [G, T, hs] and the reference output [T, H*hs].
    std::vector<std::vector<float>> q(2), k(2), v(2), ref(2);
    for (int s = 0; s < 2; ++s) {
      q[s] = uniform(H * T * hs, 100 + s);
      k[s] = uniform(G * T * hs, 200 + s);
      v[s] = uniform(G * T * hs, 300 + s);
      ref[s].resize(T * H * hs);
      std::vector<float> lse(H * T), scores(T * T);
      ops::attention_ref_forward(cpu_context(), ref[s].data(), lse.data(), scores.data(), q[s].data(), k[s].data(),
                                 v[s].data(), int64_t(1), T, H, G, hs, c.window, scale);
    }
    std::vector<float> kc(S * G * cap * hs, 0.0f), vc(S * G * cap * hs, 0.0f);
    std::vector<int64_t> pos = {0, 0};
    // Rows [p0, p0 + L) of sequence s in the op's layouts ([H or G, L, hs] per sequence).
    auto chunk = [&](const std::vector<float>& x, int64_t heads, int64_t p0, int64_t L, float* dst) {
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t t = 0; t < L; ++t) std::copy_n(x.data() + (h * T + p0 + t) * hs, hs, dst + (h * L + t) * hs);
    };
    auto run = [&](const std::vector<int>& seqs, int64_t L) {
      const int64_t B = static_cast<int64_t>(seqs.size());
      std::vector<float> qc(B * H * L * hs), kn(B * G * L * hs), vn(B * G * L * hs), out(B * L * H * hs);
      std::vector<int32_t> sl;
      std::vector<int64_t> ps;
      for (int64_t b = 0; b < B; ++b) {
        const int s = seqs[b];
        chunk(q[s], H, pos[s], L, qc.data() + b * H * L * hs);
        chunk(k[s], G, pos[s], L, kn.data() + b * G * L * hs);
        chunk(v[s], G, pos[s], L, vn.data() + b * G * L * hs);
        sl.push_back(slots[s]);
        ps.push_back(pos[s]);
      }
      ops::attention_cached_forward(cpu_context(), out.data(), qc.data(), kn.data(), vn.data(), kc.data(), vc.data(),
                                    sl.data(), ps.data(), B, L, H, G, hs, cap, c.window, scale);
      ops::kv_cache_write(cpu_context(), kc.data(), vc.data(), kn.data(), vn.data(), sl.data(), ps.data(), B, L, G, hs,
                          cap);
      for (int64_t b = 0; b < B; ++b) {
        const int s = seqs[b];
        const double err = test::rel_error(out.data() + b * L * H * hs, ref[s].data() + pos[s] * H * hs, L * H * hs);
        EXPECT_LT(err, 1e-5) << "H " << H << " G " << G << " window " << c.window << " seq " << s << " at " << pos[s]
                             << " L " << L;
        pos[s] += L;
      }
    };
    run({1}, 5);
    for (int64_t L : {1, 3, 1, 11, 2, 1, 9, 1}) run({0, 1}, L);
    while (pos[0] < T) run({0}, std::min<int64_t>(T - pos[0], 4));
  }
}

TEST(KvCacheWrite, KeepsTheLastCapPositionsOfTheSlotOnly) {
  const int64_t S = 3, G = 2, hs = 2, cap = 4, L = 6;
  std::vector<float> kc(S * G * cap * hs, -1.0f), vc(S * G * cap * hs, -1.0f), kn(G * L * hs), vn(G * L * hs);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t t = 0; t < L; ++t)
      for (int64_t i = 0; i < hs; ++i) {
        kn[(g * L + t) * hs + i] = float(100 * g + t);
        vn[(g * L + t) * hs + i] = float(-100 * g - t);
      }
  const int32_t slot = 1;
  const int64_t pos = 9;  // positions 9..14: 11..14 survive, at entries 3, 0, 1, 2
  ops::kv_cache_write(cpu_context(), kc.data(), vc.data(), kn.data(), vn.data(), &slot, &pos, int64_t(1), L, G, hs,
                      cap);
  for (int64_t s = 0; s < S; ++s)
    for (int64_t g = 0; g < G; ++g)
      for (int64_t e = 0; e < cap; ++e) {
        const float* kr = kc.data() + ((s * G + g) * cap + e) * hs;
        const float* vr = vc.data() + ((s * G + g) * cap + e) * hs;
        if (s != slot) {
          EXPECT_EQ(kr[0], -1.0f);
          continue;
        }
        const int64_t p = 11 + (e - 11 % cap + cap) % cap;  // the position stored at entry e
        EXPECT_EQ(p % cap, e);
        EXPECT_EQ(kr[1], float(100 * g + p - pos)) << "entry " << e;
        EXPECT_EQ(vr[0], float(-100 * g - (p - pos))) << "entry " << e;
      }
}

TEST(NegExp, ForwardAndBackwardFollowTheFormula) {
  auto a_log = uniform(37, 1, -3.0f, 2.0f), dA = uniform(37, 2);
  std::vector<double> x(a_log.begin(), a_log.end()), A(37), dA_log(37, 0.5), d(dA.begin(), dA.end());
  ops::neg_exp_forward(cpu_context(), A.data(), x.data(), int64_t(37));
  ops::neg_exp_backward(cpu_context(), dA_log.data(), d.data(), A.data(), int64_t(37));
  for (int i = 0; i < 37; ++i) {
    EXPECT_DOUBLE_EQ(A[i], -std::exp(x[i]));
    EXPECT_NEAR(dA_log[i], 0.5 + d[i] * -std::exp(x[i]), 1e-15);  // d(-exp(x))/dx = -exp(x)
  }
}

// Three AdamW steps against torch's formula written out in double.
TEST(OptimOps, AdamWFollowsTheFormula) {
  const int64_t n = 40000;  // past the parallel threshold
  auto p = uniform(n, 11), m = uniform(n, 12, 0.0f, 0.1f), v = uniform(n, 13, 0.0f, 0.01f);
  std::vector<double> pd(p.begin(), p.end()), md(m.begin(), m.end()), vd(v.begin(), v.end());
  const double lr = 3e-3, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
  for (int64_t t = 1; t <= 3; ++t) {
    auto g = uniform(n, 20 + uint32_t(t));
    ops::adamw_update(cpu_context(), p.data(), g.data(), m.data(), v.data(), n, lr, b1, b2, eps, wd, t);
    for (int64_t i = 0; i < n; ++i) {
      pd[i] *= 1 - lr * wd;
      md[i] = b1 * md[i] + (1 - b1) * g[i];
      vd[i] = b2 * vd[i] + (1 - b2) * double(g[i]) * g[i];
      const double mhat = md[i] / (1 - std::pow(b1, t));
      pd[i] -= lr * mhat / (std::sqrt(vd[i]) / std::sqrt(1 - std::pow(b2, t)) + eps);
    }
  }
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(p[i] - pd[i]));
  EXPECT_LT(worst, 1e-5);
}

TEST(OptimOps, SumOfSquaresAndScale) {
  const int64_t n = 50001;
  auto x = uniform(n, 31);
  double want = 0;
  for (float f : x) want += double(f) * f;
  double got = -1;
  ops::sum_squares(cpu_context(), &got, x.data(), n);
  EXPECT_NEAR(got, want, 1e-9 * want);
  auto y = x;
  ops::scale_inplace(cpu_context(), y.data(), n, 0.25);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[i], x[i] * 0.25f);
}

// A compute type narrower than its statistics (as bf16 beside fp32 on the GPU): the op signatures take
// the statistics in stat_t<T>, and the CPU, which computes in one precision, refuses the call.
struct NarrowValue {
  float v;
};
template <>
struct sambalm::precision<NarrowValue> {
  using stat = float;
};

TEST(OpPrecision, StatisticsHaveTheirOwnTypeAndTheCpuRefusesMixedCalls) {
  static_assert(std::is_same_v<stat_t<float>, float> && std::is_same_v<stat_t<double>, double>);
  static_assert(std::is_same_v<stat_t<NarrowValue>, float>);
  NarrowValue out[4]{}, x[4]{}, w[4]{};
  float rstd[1]{};
  EXPECT_THROW(ops::rmsnorm_forward(cpu_context(), out, rstd, x, w, int64_t(1), int64_t(4), 1e-5), Error);
  float y[4]{}, xf[4] = {1, 2, 3, 4}, wf[4] = {1, 1, 1, 1};
  ops::rmsnorm_forward(cpu_context(), y, rstd, xf, wf, int64_t(1), int64_t(4), 1e-5);
  EXPECT_NEAR(rstd[0], 1.0 / std::sqrt(7.5 + 1e-5), 1e-6);
}
