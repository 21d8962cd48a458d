// Scorer: log-likelihoods of token sequences under a model, through the decoding path (DecodeModel:
// chunked prefill, the state carried from chunk to chunk), so memory is bounded by one chunk's logits
// whatever the sequence's length. Every evaluation (perplexity, multiple choice) scores through it.
//
// A sequence ids[0..n) is read as inputs ids[0..n-1) and targets ids[1..n): target t is predicted
// from the logits of position t - 1. Only targets from `first_target` on are scored; the inputs before
// position first_target - 1 are prefilled without computing logits (no LM head on them).
// The loss of a target is the cross-entropy over the whole padded vocabulary (ops::
// cross_entropy_forward_backward, the one `sambalm forward` and training use), so scores equal the
// one-pass forward's up to float rounding.
#pragma once

#include <cstdint>
#include <vector>

#include "infer/decode_model.h"

namespace sambalm {

class Scorer {
 public:
  // Uses one decode state of `model` (acquired here) and chunks of model.options().chunk tokens.
  explicit Scorer(DecodeModel& model);

  DecodeModel& model() { return model_; }
  DecodeState& state() { return state_; }

  // Sum over targets t in [first_target, n) of -log p(ids[t] | ids[0..t)), from an empty context.
  // losses (nullable) receives the n - first_target per-target losses. 1 <= first_target <= n.
  double score(const int32_t* ids, int64_t n, int64_t first_target, float* losses = nullptr);
  // The same, continuing from state() as it is: it has consumed ids[0..state().pos()), which must be
  // at most first_target - 1 (the ids before that are not fed again).
  double score_continued(const int32_t* ids, int64_t n, int64_t first_target, float* losses = nullptr);

 private:
  DecodeModel& model_;
  DecodeState state_;
  std::vector<float> logits_, losses_;  // [chunk, V], [chunk]
  std::vector<int32_t> targets_;        // [chunk]
};

}  // namespace sambalm
