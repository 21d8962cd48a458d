#include "train/adamw.h"

#include <cmath>

#include "core/error.h"

namespace sambalm {

bool param_decays(const ParamEntry& e) {
  auto ends_with = [&](const std::string& s) {
    return e.name.size() >= s.size() && e.name.compare(e.name.size() - s.size(), s.size(), s) == 0;
  };
  // Rank-1 tensors are norms, biases and D; the embedding and A_log are the rank-2 exceptions.
  if (e.shape.size() < 2) return false;
  if (e.name == "embedding.weight" || ends_with("A_log")) return false;
  return true;
}

std::vector<DecayRange> decay_ranges(const std::vector<ParamEntry>& entries, bool all) {
  std::vector<DecayRange> out;
  for (const auto& e : entries) {
    const bool d = all || param_decays(e);
    const size_t n = static_cast<size_t>(e.numel());
    // Merge neighbours with the same flag: fewer, longer loops.
    if (!out.empty() && out.back().decay == d && out.back().offset + out.back().size == e.offset)
      out.back().size += n;
    else
      out.push_back({e.offset, n, d});
  }
  return out;
}

AdamW::AdamW(size_t n, AdamWOptions opts, std::vector<DecayRange> ranges)
    : opts_(opts), ranges_(std::move(ranges)), m_(n, 0.0f), v_(n, 0.0f) {
  if (ranges_.empty()) ranges_.push_back({0, n, true});
  for (const auto& r : ranges_)
    SAMBALM_CHECK(r.offset + r.size <= n, "AdamW: range [{}, {}) outside the buffer of {} parameters", r.offset,
                  r.offset + r.size, n);
}

void AdamW::step(float* params, const float* grads, double lr) {
  ++t;
  const double b1 = opts_.beta1, b2 = opts_.beta2;
  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(b2, static_cast<double>(t));
  const float step_size = static_cast<float>(lr / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float eps = static_cast<float>(opts_.eps);
  const float fb1 = static_cast<float>(b1), fb2 = static_cast<float>(b2);
  const float c1 = static_cast<float>(1.0 - b1), c2 = static_cast<float>(1.0 - b2);
  float* m = m_.data();
  float* v = v_.data();
  for (const auto& r : ranges_) {
    const float decay = static_cast<float>(1.0 - lr * (r.decay ? opts_.weight_decay : 0.0));
    const int64_t lo = static_cast<int64_t>(r.offset), hi = lo + static_cast<int64_t>(r.size);
#pragma omp parallel for schedule(static)
    for (int64_t i = lo; i < hi; ++i) {
      const float g = grads[i];
      float p = params[i] * decay;
      m[i] = fb1 * m[i] + c1 * g;
      v[i] = fb2 * v[i] + c2 * g * g;
      const float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
      p -= step_size * m[i] / denom;
      params[i] = p;
    }
  }
}

double grad_global_norm(const float* g, size_t n) {
  double s = 0.0;
  const int64_t nn = static_cast<int64_t>(n);
#pragma omp parallel for reduction(+ : s) schedule(static)
  for (int64_t i = 0; i < nn; ++i) s += static_cast<double>(g[i]) * g[i];
  return std::sqrt(s);
}

double clip_grad_norm(float* g, size_t n, double max_norm) {
  const double norm = grad_global_norm(g, n);
  if (max_norm <= 0 || !std::isfinite(norm)) return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) {
    const float c = static_cast<float>(coef);
    const int64_t nn = static_cast<int64_t>(n);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < nn; ++i) g[i] *= c;
  }
  return norm;
}

}  // namespace sambalm
