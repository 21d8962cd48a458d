// Evaluation and text samples during training, on the model's plain forward pass.
//
// Validation loss: the mean cross-entropy (nats) over a fixed set of windows of L+1 tokens (inputs
// are the first L, targets the last L). Every window has L predictions, so the mean over windows
// equals the mean over predicted tokens. Reported with
//   perplexity = exp(loss),  bits per token = loss / ln 2  (= bits per byte for the bytes tokenizer).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "model/precision_model.h"

namespace sambalm {

// windows: n * (L + 1) token ids, window after window. Runs `batch` windows per forward pass
// (fewer for the last); returns the mean loss over all windows.
double eval_windows(PrecisionModel& model, const std::vector<int32_t>& windows, int64_t L, int64_t batch);
// The number of windows in `windows`, and the sum of the mean losses of windows [first, first +
// count), `batch` per forward pass: a data-parallel run gives each rank a contiguous share and sums.
int64_t count_windows(const std::vector<int32_t>& windows, int64_t L);
double eval_windows_sum(PrecisionModel& model, const std::vector<int32_t>& windows, int64_t L, int64_t batch,
                        int64_t first, int64_t count);

// Continues `context` by n tokens through the decoding path (chunked prefill, then one decode step
// per token, constant memory) and the generator's sampler: softmax(logits / temperature) of the last
// position (temperature <= 0: argmax), drawn with `seed`. Ids >= vocab (ids the tokenizer lacks, the
// padding rows of the head) are never drawn.
std::vector<int32_t> sample_continuation(const ModelConfig& cfg, const std::vector<ParamEntry>& entries,
                                         const float* params, const std::vector<int32_t>& context, int64_t n,
                                         double temperature, int64_t vocab, uint64_t seed);

}  // namespace sambalm
