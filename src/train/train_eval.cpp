#include "train/train_eval.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace sambalm {

double eval_windows(Model<float>& model, const float* params, const std::vector<int32_t>& windows, int64_t L,
                    int64_t batch) {
  const int64_t W = L + 1;
  SAMBALM_CHECK(L > 0 && windows.size() % W == 0, "eval_windows: {} ids is not a whole number of {}-token windows",
                windows.size(), W);
  const int64_t n = static_cast<int64_t>(windows.size()) / W;
  SAMBALM_CHECK(n > 0, "eval_windows: no validation windows of {} tokens", W);
  std::vector<int32_t> x, y;
  double sum = 0;
  for (int64_t i = 0; i < n; i += batch) {
    const int64_t b = std::min(batch, n - i);
    x.resize(b * L), y.resize(b * L);
    for (int64_t r = 0; r < b; ++r) {
      const int32_t* w = windows.data() + (i + r) * W;
      std::copy(w, w + L, x.begin() + r * L);
      std::copy(w + 1, w + W, y.begin() + r * L);
    }
    sum += model.forward(params, x.data(), y.data(), b, L) * static_cast<double>(b);
  }
  return sum / static_cast<double>(n);
}

std::vector<int32_t> sample_continuation(Model<float>& model, const float* params, std::vector<int32_t> context,
                                         int64_t n, double temperature, int64_t vocab, int64_t max_ctx,
                                         std::mt19937_64& rng) {
  SAMBALM_CHECK(!context.empty(), "sample: the prompt must hold at least one token");
  const int64_t V = model.config().padded_vocab_size;
  vocab = std::min(vocab, V);
  std::vector<int32_t> out;
  std::vector<double> p(vocab);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t T = std::min<int64_t>(static_cast<int64_t>(context.size()), max_ctx);
    const int32_t* ids = context.data() + context.size() - T;
    model.forward(params, ids, nullptr, 1, T);
    const float* logits = model.logits() + (T - 1) * V;
    int32_t next = 0;
    if (temperature <= 0) {
      next = static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
    } else {
      // softmax(logits / temperature), drawn by inverse CDF with one uniform number.
      const double mx = *std::max_element(logits, logits + vocab);
      double total = 0;
      for (int64_t v = 0; v < vocab; ++v) total += p[v] = std::exp((logits[v] - mx) / temperature);
      double u = std::uniform_real_distribution<double>(0.0, total)(rng);
      next = static_cast<int32_t>(vocab - 1);
      for (int64_t v = 0; v < vocab; ++v) {
        if ((u -= p[v]) < 0) {
          next = static_cast<int32_t>(v);
          break;
        }
      }
    }
    context.push_back(next);
    out.push_back(next);
  }
  return out;
}

}  // namespace sambalm
