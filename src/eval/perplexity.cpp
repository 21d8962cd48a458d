// Perplexity window by window (see perplexity.h).
#include "eval/perplexity.h"

#include <cmath>
#include <limits>
#include <span>

#include "core/error.h"

namespace sambalm {

std::vector<PerplexityWindow> perplexity_windows(int64_t n, int64_t L, int64_t S, int64_t max_windows) {
  SAMBALM_CHECK(L >= 1, "perplexity: length must be at least 1, got {}", L);
  SAMBALM_CHECK(S >= 1 && S <= L, "perplexity: stride must be in [1, length {}], got {}", L, S);
  SAMBALM_CHECK(n >= L + 1, "perplexity: a window of length {} needs {} tokens, the data has {}", L, L + 1, n);
  std::vector<PerplexityWindow> w;
  for (int64_t k = 0; k * S + L + 1 <= n; ++k) {
    if (max_windows > 0 && k >= max_windows) break;
    w.push_back({k * S, k == 0 ? 1 : 1 + (L - S)});
  }
  return w;
}

double PerplexityResult::mean_loss() const {
  return tokens > 0 ? loss_sum / double(tokens) : std::numeric_limits<double>::quiet_NaN();
}
double PerplexityResult::perplexity() const { return std::exp(mean_loss()); }
double PerplexityResult::bits_per_token() const { return mean_loss() / std::log(2.0); }
double PerplexityResult::bits_per_byte() const {
  return bytes > 0 ? loss_sum / std::log(2.0) / double(bytes) : std::numeric_limits<double>::quiet_NaN();
}

PerplexityResult evaluate_perplexity(Scorer& scorer, const EvalTokens& data, const Tokenizer* tok, int64_t L, int64_t S,
                                     int64_t max_windows,
                                     const std::function<void(const PerplexityResult&)>& on_window) {
  const auto windows = perplexity_windows(data.size(), L, S, max_windows);
  PerplexityResult r;
  r.length = L;
  r.stride = S;
  std::vector<int32_t> ids(static_cast<size_t>(L + 1));
  for (const auto& w : windows) {
    data.read(w.start, L + 1, ids.data());
    r.loss_sum += scorer.score(ids.data(), L + 1, w.first_target);
    r.tokens += L + 1 - w.first_target;
    if (tok && data.is_text())
      r.bytes += static_cast<int64_t>(
          tok->decode(std::span<const int32_t>(ids.data() + w.first_target, ids.size() - size_t(w.first_target)))
              .size());
    ++r.windows;
    if (on_window) on_window(r);
  }
  return r;
}

}  // namespace sambalm
