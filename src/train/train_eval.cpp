#include "train/train_eval.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "infer/decode_model.h"
#include "infer/sampler.h"

namespace sambalm {

int64_t count_windows(const std::vector<int32_t>& windows, int64_t L) {
  const int64_t W = L + 1;
  SAMBALM_CHECK(L > 0 && windows.size() % W == 0, "eval_windows: {} ids is not a whole number of {}-token windows",
                windows.size(), W);
  const int64_t n = static_cast<int64_t>(windows.size()) / W;
  SAMBALM_CHECK(n > 0, "eval_windows: no validation windows of {} tokens", W);
  return n;
}

double eval_windows_sum(PrecisionModel& model, const std::vector<int32_t>& windows, int64_t L, int64_t batch,
                        int64_t first, int64_t count) {
  const int64_t W = L + 1, end = first + count;
  SAMBALM_CHECK(first >= 0 && count >= 0 && end <= count_windows(windows, L),
                "eval_windows: windows [{}, {}) outside the {} given", first, end, count_windows(windows, L));
  std::vector<int32_t> x, y;
  double sum = 0;
  for (int64_t i = first; i < end; i += batch) {
    const int64_t b = std::min(batch, end - i);
    x.resize(b * L), y.resize(b * L);
    for (int64_t r = 0; r < b; ++r) {
      const int32_t* w = windows.data() + (i + r) * W;
      std::copy(w, w + L, x.begin() + r * L);
      std::copy(w + 1, w + W, y.begin() + r * L);
    }
    sum += model.forward(x.data(), y.data(), b, L) * static_cast<double>(b);
  }
  return sum;
}

double eval_windows(PrecisionModel& model, const std::vector<int32_t>& windows, int64_t L, int64_t batch) {
  const int64_t n = count_windows(windows, L);
  return eval_windows_sum(model, windows, L, batch, 0, n) / static_cast<double>(n);
}

std::vector<int32_t> sample_continuation(const ModelConfig& cfg, const std::vector<ParamEntry>& entries,
                                         const float* params, const std::vector<int32_t>& context, int64_t n,
                                         double temperature, int64_t vocab, uint64_t seed) {
  SAMBALM_CHECK(!context.empty(), "sample: the prompt must hold at least one token");
  const int64_t V = cfg.padded_vocab_size;
  vocab = std::min(vocab, V);
  DecodeOptions dopt;
  dopt.max_context = static_cast<int64_t>(context.size()) + n;  // full-attention layers' cache
  DecodeModel dm(cfg, entries, params, dopt);
  DecodeState st = dm.new_state();
  std::vector<float> logits(static_cast<size_t>(V));
  dm.prefill(st, context.data(), static_cast<int64_t>(context.size()), nullptr, logits.data());
  SamplingParams sp;
  sp.temperature = std::max(0.0, temperature);
  sp.top_k = temperature > 0 ? 0 : 1;
  sp.seed = seed;
  Sampler sampler(sp);
  std::vector<int32_t> history = context, out;
  DecodeState* batch = &st;
  for (int64_t k = 0; k < n; ++k) {
    const int32_t next = sampler.sample(logits.data(), vocab, history);
    history.push_back(next);
    out.push_back(next);
    if (k + 1 < n) dm.step(&batch, 1, &next, logits.data());
  }
  return out;
}

}  // namespace sambalm
