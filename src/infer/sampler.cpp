#include "infer/sampler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace sambalm {

void SamplingParams::validate() const {
  SAMBALM_CHECK(std::isfinite(temperature) && temperature >= 0.0, "sampling: temperature must be >= 0, got {}",
                temperature);
  SAMBALM_CHECK(top_p >= 0.0 && top_p <= 1.0, "sampling: top-p must be in [0, 1], got {}", top_p);
  SAMBALM_CHECK(min_p >= 0.0 && min_p <= 1.0, "sampling: min-p must be in [0, 1], got {}", min_p);
  SAMBALM_CHECK(std::isfinite(repetition_penalty) && repetition_penalty > 0.0,
                "sampling: repetition penalty must be > 0, got {}", repetition_penalty);
}

Sampler::Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) { p_.validate(); }

double Sampler::uniform() { return double(rng_() >> 11) * 0x1.0p-53; }

namespace {
// Descending by logit, then ascending id: a total order, so results never depend on the sort.
inline bool before(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}
}  // namespace

int64_t Sampler::filter(const float* logits, int64_t n, std::span<const int32_t> history) {
  SAMBALM_CHECK(n > 0, "sampling: empty vocabulary");
  pen_.assign(logits, logits + n);
  // 1. Repetition penalty, from the original logit of each id (so repeats count once).
  if (p_.repetition_penalty != 1.0) {
    const float r = float(p_.repetition_penalty);
    for (int32_t id : history) {
      if (id < 0 || id >= n) continue;
      const float l = logits[id];
      pen_[id] = l < 0 ? l * r : l / r;
    }
  }
  work_.resize(static_cast<size_t>(n));
  // 2. Greedy: the argmax alone.
  if (p_.greedy()) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; ++i)
      if (pen_[i] > pen_[best]) best = i;
    work_[0] = {pen_[best], int32_t(best)};
    return 1;
  }
  // 3. Temperature.
  const float inv_t = float(1.0 / p_.temperature);
  for (int64_t i = 0; i < n; ++i) work_[i] = {pen_[i] * inv_t, int32_t(i)};
  // 4. Top-k, leaving the candidates sorted best first.
  int64_t m = n;
  if (p_.top_k > 0 && p_.top_k < n) {
    m = p_.top_k;
    std::partial_sort(work_.begin(), work_.begin() + m, work_.end(), before);
  } else {
    std::sort(work_.begin(), work_.end(), before);
  }
  // Probabilities of the kept candidates.
  prob_.resize(static_cast<size_t>(m));
  const double mx = work_[0].first;
  double z = 0;
  for (int64_t i = 0; i < m; ++i) z += prob_[i] = std::exp(double(work_[i].first) - mx);
  // 5. Top-p: mamba_ssm removes tokens whose cumulative probability in ascending order is <= 1 - top_p.
  if (p_.top_p > 0.0 && p_.top_p < 1.0) {
    double cum = 0;
    int64_t keep = m;
    for (int64_t i = m - 1; i > 0; --i) {  // ascending order; the best token is never removed
      cum += prob_[i] / z;
      if (cum <= 1.0 - p_.top_p)
        keep = i;
      else
        break;
    }
    m = keep;
  }
  // 6. Min-p: probability relative to the best candidate (prob_[0] / z).
  if (p_.min_p > 0.0 && p_.min_p < 1.0) {
    int64_t keep = 1;
    while (keep < m && prob_[keep] / prob_[0] >= p_.min_p) ++keep;
    m = keep;
  }
  return m;
}

int32_t Sampler::sample(const float* logits, int64_t n, std::span<const int32_t> history) {
  const int64_t m = filter(logits, n, history);
  if (m == 1) return work_[0].second;
  double z = 0;
  for (int64_t i = 0; i < m; ++i) z += prob_[i];
  const double u = uniform() * z;
  double c = 0;
  for (int64_t i = 0; i < m; ++i) {
    c += prob_[i];
    if (u < c) return work_[i].second;
  }
  return work_[m - 1].second;
}

void Sampler::distribution(const float* logits, int64_t n, std::span<const int32_t> history,
                           std::vector<double>& probs) {
  const int64_t m = filter(logits, n, history);
  probs.assign(static_cast<size_t>(n), 0.0);
  if (m == 1) {
    probs[work_[0].second] = 1.0;
    return;
  }
  double z = 0;
  for (int64_t i = 0; i < m; ++i) z += prob_[i];
  for (int64_t i = 0; i < m; ++i) probs[work_[i].second] = prob_[i] / z;
}

}  // namespace sambalm
