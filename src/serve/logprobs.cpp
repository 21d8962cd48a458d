#include "serve/logprobs.h"

#include <algorithm>
#include <cmath>

namespace sambalm::serve {

TokenInfo token_logprobs(const float* logits, int64_t n, int64_t n_real, int32_t id, int top) {
  // In double: a log-softmax over tens of thousands of logits, compared with a reference in tests.
  double mx = logits[0];
  for (int64_t v = 1; v < n; ++v) mx = std::max(mx, double(logits[v]));
  double z = 0;
  for (int64_t v = 0; v < n; ++v) z += std::exp(double(logits[v]) - mx);
  const double lse = mx + std::log(z);
  TokenInfo t;
  t.id = id;
  t.has_logprob = true;
  t.logprob = float(double(logits[id]) - lse);
  n_real = std::min(n_real, n);
  const int64_t k = std::min<int64_t>(top, n_real);
  if (k > 0) {
    std::vector<int32_t> ids(static_cast<size_t>(n_real));
    for (int64_t v = 0; v < n_real; ++v) ids[v] = int32_t(v);
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(),
                      [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    for (int64_t i = 0; i < k; ++i) t.top.emplace_back(ids[i], float(double(logits[ids[i]]) - lse));
  }
  return t;
}

}  // namespace sambalm::serve
