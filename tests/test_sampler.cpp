// Sampler: each filter against distributions computed by hand, the order of the filters, greedy
// short-cuts, seeding, and that draws follow the distribution.
#include <cmath>
#include <vector>

#include "core/error.h"
#include "infer/sampler.h"
#include "testing.h"

using namespace sambalm;

namespace {

// Logits whose softmax is exactly the given probabilities (up to rounding).
std::vector<float> logits_of(const std::vector<double>& p) {
  std::vector<float> l;
  for (double x : p) l.push_back(float(std::log(x)));
  return l;
}

std::vector<double> dist(const SamplingParams& sp, const std::vector<float>& logits,
                         const std::vector<int32_t>& history = {}) {
  Sampler s(sp);
  std::vector<double> out;
  s.distribution(logits.data(), int64_t(logits.size()), history, out);
  return out;
}

void expect_dist(const std::vector<double>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-6) << "token " << i;
}

const std::vector<double> kP = {0.1, 0.2, 0.3, 0.4};

}  // namespace

TEST(Sampler, PlainSoftmax) { expect_dist(dist({}, logits_of(kP)), kP); }

TEST(Sampler, Temperature) {
  SamplingParams sp;
  sp.temperature = 0.5;  // p^(1/T) = p^2, renormalised
  expect_dist(dist(sp, logits_of(kP)), {0.01 / 0.30, 0.04 / 0.30, 0.09 / 0.30, 0.16 / 0.30});
}

TEST(Sampler, TopK) {
  SamplingParams sp;
  sp.top_k = 2;
  expect_dist(dist(sp, logits_of(kP)), {0, 0, 3.0 / 7, 4.0 / 7});
  sp.top_k = 100;  // larger than the vocabulary: no limit
  expect_dist(dist(sp, logits_of(kP)), kP);
}

TEST(Sampler, TopP) {
  // Ascending cumulative probabilities: 0.1, 0.3, 0.6, 1.0; removed when <= 1 - top_p.
  SamplingParams sp;
  sp.top_p = 0.5;  // removes 0.1 and 0.3
  expect_dist(dist(sp, logits_of(kP)), {0, 0, 3.0 / 7, 4.0 / 7});
  sp.top_p = 0.75;  // removes 0.1 only
  expect_dist(dist(sp, logits_of(kP)), {0, 2.0 / 9, 3.0 / 9, 4.0 / 9});
  sp.top_p = 0.05;  // the most likely token always stays
  expect_dist(dist(sp, logits_of(kP)), {0, 0, 0, 1});
  sp.top_p = 1.0;  // off
  expect_dist(dist(sp, logits_of(kP)), kP);
}

TEST(Sampler, MinP) {
  SamplingParams sp;
  sp.min_p = 0.6;  // floor 0.24: keeps 0.3 and 0.4
  expect_dist(dist(sp, logits_of(kP)), {0, 0, 3.0 / 7, 4.0 / 7});
  sp.min_p = 0.45;  // floor 0.18: keeps 0.2, 0.3, 0.4
  expect_dist(dist(sp, logits_of(kP)), {0, 2.0 / 9, 3.0 / 9, 4.0 / 9});
}

TEST(Sampler, RepetitionPenalty) {
  // Positive logits are divided, negative ones multiplied; a repeated id is penalised once.
  SamplingParams sp;
  sp.repetition_penalty = 2.0;
  std::vector<float> l = {1.0f, -1.0f, 0.5f, 2.0f};
  std::vector<double> e = {std::exp(0.5), std::exp(-2.0), std::exp(0.5), std::exp(2.0)};
  double z = e[0] + e[1] + e[2] + e[3];
  expect_dist(dist(sp, l, {0, 1, 1}), {e[0] / z, e[1] / z, e[2] / z, e[3] / z});
}

TEST(Sampler, OrderPenaltyTemperatureTopKTopPMinP) {
  SamplingParams sp;
  sp.top_k = 3;
  sp.top_p = 0.6;
  std::vector<float> l = logits_of(kP);
  // top-3 of {0.1 .. 0.4} = {0.2, 0.3, 0.4}/0.9; ascending cum 2/9, 5/9, 1: removes <= 0.4 -> id 1.
  expect_dist(dist(sp, l), {0, 0, 3.0 / 7, 4.0 / 7});
  // Temperature before top-p: T = 0.5 squares: {0.04, 0.09, 0.16}/0.29, cum 0.138, 0.448 -> removes id 1 only;
  // then min-p 0.55 of 0.16 = 0.088 removes nothing more.
  sp.temperature = 0.5;
  sp.min_p = 0.55;
  expect_dist(dist(sp, l), {0, 0, 0.09 / 0.25, 0.16 / 0.25});
  // min-p after top-p: 0.7 of 0.16 = 0.112 removes id 2 as well.
  sp.min_p = 0.7;
  expect_dist(dist(sp, l), {0, 0, 0, 1});
}

TEST(Sampler, Greedy) {
  std::vector<float> l = {3.0f, 2.9f, -1.0f};
  SamplingParams sp;
  sp.temperature = 0.0;
  Sampler s0(sp);
  EXPECT_EQ(s0.sample(l.data(), 3, {}), 0);
  sp.repetition_penalty = 1.2;  // 3.0 / 1.2 = 2.5 < 2.9
  Sampler s1(sp);
  std::vector<int32_t> hist = {0};
  EXPECT_EQ(s1.sample(l.data(), 3, hist), 1);
  SamplingParams k1;
  k1.top_k = 1;
  k1.temperature = 5.0;
  Sampler s2(k1);
  EXPECT_EQ(s2.sample(l.data(), 3, {}), 0);
  // Only the real vocabulary is sampled: a padding logit beyond n is never chosen.
  std::vector<float> padded = {0.0f, 1.0f, 100.0f};
  EXPECT_EQ(s2.sample(padded.data(), 2, {}), 1);
}

TEST(Sampler, SeededAndFollowsTheDistribution) {
  SamplingParams sp;
  sp.seed = 42;
  std::vector<float> l = logits_of(kP);
  Sampler a(sp), b(sp);
  sp.seed = 43;
  Sampler c(sp);
  std::vector<int> counts(4, 0);
  bool differs = false;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    int32_t ta = a.sample(l.data(), 4, {});
    EXPECT_EQ(ta, b.sample(l.data(), 4, {}));
    differs |= ta != c.sample(l.data(), 4, {});
    counts[ta]++;
  }
  EXPECT_TRUE(differs);
  // Binomial standard deviation at n = 20000 is <= 0.0035: 5 sigma.
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(counts[i] / double(n), kP[i], 0.018) << "token " << i;
}

TEST(Sampler, RejectsBadParameters) {
  SamplingParams sp;
  sp.temperature = -1;
  EXPECT_THROW(Sampler{sp}, Error);
  sp = {};
  sp.top_p = 1.5;
  EXPECT_THROW(Sampler{sp}, Error);
  sp = {};
  sp.repetition_penalty = 0;
  EXPECT_THROW(Sampler{sp}, Error);
  sp = {};
  sp.min_p = -0.1;
  EXPECT_THROW(Sampler{sp}, Error);
}
