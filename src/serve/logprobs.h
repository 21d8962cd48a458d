// Log-probabilities of a logits row, as the completions API reports them.
#pragma once

#include <cstdint>

#include "serve/job.h"

namespace sambalm::serve {

// log-softmax of logits[0..n) at `id`, and the `top` largest entries (ties: lower id first).
TokenInfo token_logprobs(const float* logits, int64_t n, int32_t id, int top);

}  // namespace sambalm::serve
