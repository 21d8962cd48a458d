// Log-probabilities of a logits row, as the completions API reports them.
#pragma once

#include <cstdint>

#include "serve/job.h"

namespace sambalm::serve {

// log-softmax of logits[0..n) at `id`, and the `top` largest of the real ids [0, n_real) (ties: lower
// id first). n is the whole (padded) row: the normalizer is the one of the model's own distribution,
// as `sambalm forward`, training and `sambalm eval` compute it (and as the harness does with the
// original model's padded logits), so a text scores the same through the server and through
// `sambalm eval mc`. Padding ids are never offered as alternatives: they are never sampled.
TokenInfo token_logprobs(const float* logits, int64_t n, int64_t n_real, int32_t id, int top);

}  // namespace sambalm::serve
