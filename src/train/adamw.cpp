#include "train/adamw.h"

#include <algorithm>
#include <cmath>

#include "core/context.h"
#include "core/error.h"
#include "ops/optim_ops.h"

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

AdamW::AdamW(size_t n, AdamWOptions opts, std::vector<DecayRange> ranges, const Context& ctx)
    : opts_(opts),
      ranges_(std::move(ranges)),
      m_(n, 0.0f),
      v_(n, 0.0f),
      dm_(ctx, m_.data(), static_cast<int64_t>(n)),
      dv_(ctx, v_.data(), static_cast<int64_t>(n)) {
  if (ranges_.empty()) ranges_.push_back({0, n, true});
  for (const auto& r : ranges_)
    SAMBALM_CHECK(r.offset + r.size <= n, "AdamW: range [{}, {}) outside the buffer of {} parameters", r.offset,
                  r.offset + r.size, n);
}

void AdamW::step(float* params, const float* grads, double lr) {
  ++t;
  const Context& ctx = dm_.context();
  for (const auto& r : ranges_) {
    const int64_t lo = static_cast<int64_t>(r.offset), n = static_cast<int64_t>(r.size);
    ops::adamw_update(ctx, params + lo, grads + lo, dm_.get() + lo, dv_.get() + lo, n, lr, opts_.beta1, opts_.beta2,
                      opts_.eps, r.decay ? opts_.weight_decay : 0.0, t);
  }
}

const std::vector<float>& AdamW::m() const {
  dm_.pull();
  return m_;
}

const std::vector<float>& AdamW::v() const {
  dv_.pull();
  return v_;
}

void AdamW::set_moments(const std::vector<float>& m, const std::vector<float>& v) {
  SAMBALM_CHECK(m.size() == m_.size() && v.size() == v_.size(),
                "AdamW: moments of {} / {} values for {} parameters", m.size(), v.size(), m_.size());
  std::copy(m.begin(), m.end(), m_.begin());
  std::copy(v.begin(), v.end(), v_.begin());
  dm_.push();
  dv_.push();
}

double grad_global_norm(const float* g, size_t n, const Context& ctx, double* scratch) {
  double s = 0.0;
  if (ctx.device == Device::CPU) {
    ops::sum_squares(ctx, &s, g, static_cast<int64_t>(n));
  } else {
    SAMBALM_CHECK(scratch != nullptr, "grad_global_norm on {}: no device scratch for the sum", ctx.name());
    ops::sum_squares(ctx, scratch, g, static_cast<int64_t>(n));
    ops::download(ctx, &s, scratch, sizeof(double));
  }
  return std::sqrt(s);
}

double clip_grad_norm(float* g, size_t n, double max_norm, const Context& ctx, double* scratch) {
  const double norm = grad_global_norm(g, n, ctx, scratch);
  if (max_norm <= 0 || !std::isfinite(norm)) return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) ops::scale_inplace(ctx, g, static_cast<int64_t>(n), static_cast<double>(static_cast<float>(coef)));
  return norm;
}

}  // namespace sambalm
