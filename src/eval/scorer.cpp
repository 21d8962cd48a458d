// Log-likelihoods through chunked prefill (see scorer.h).
#include "eval/scorer.h"

#include <algorithm>

#include "core/context.h"
#include "core/error.h"
#include "ops/ops.h"

namespace sambalm {

Scorer::Scorer(DecodeModel& model) : model_(model), state_(model.new_state()) {
  const size_t C = static_cast<size_t>(model_.options().chunk);
  logits_.resize(C * static_cast<size_t>(model_.vocab()));
  losses_.resize(C);
  targets_.resize(C);
}

double Scorer::score(const int32_t* ids, int64_t n, int64_t first_target, float* losses) {
  state_.reset();
  return score_continued(ids, n, first_target, losses);
}

double Scorer::score_continued(const int32_t* ids, int64_t n, int64_t first_target, float* losses) {
  SAMBALM_CHECK(first_target >= 1 && first_target <= n, "score: first target {} outside [1, {}]", first_target, n);
  const int64_t start = state_.pos();
  SAMBALM_CHECK(start <= first_target - 1, "score: the state has consumed {} ids, past the first target's input {}",
                start, first_target - 1);
  const int64_t C = model_.options().chunk, V = model_.vocab();
  // The inputs are checked by prefill; the last target is no input.
  SAMBALM_CHECK(ids[n - 1] >= 0 && ids[n - 1] < V, "score: token id {} is outside the vocabulary [0, {})", ids[n - 1],
                V);
  // Inputs before the first scored position: prefilled, no logits.
  if (first_target - 1 > start) model_.prefill(state_, ids + start, first_target - 1 - start, nullptr, nullptr);
  double total = 0;
  for (int64_t t0 = first_target - 1; t0 < n - 1; t0 += C) {
    const int64_t c = std::min(C, n - 1 - t0);
    model_.prefill(state_, ids + t0, c, logits_.data(), nullptr);
    std::copy_n(ids + t0 + 1, c, targets_.data());
    ops::cross_entropy_forward_backward(cpu_context(), static_cast<float*>(nullptr), losses_.data(), logits_.data(),
                                        targets_.data(), c, V, 1.0);
    for (int64_t i = 0; i < c; ++i) total += double(losses_[static_cast<size_t>(i)]);
    if (losses) std::copy_n(losses_.data(), c, losses + (t0 + 1 - first_target));
  }
  return total;
}

}  // namespace sambalm
