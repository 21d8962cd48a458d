// Perplexity at a context length, window by window (the length-extrapolation measurement).
//
// A window of length L is L + 1 consecutive tokens: inputs w[0..L), targets w[1..L+1), so each
// prediction sees at most L tokens of context. Windows start at 0, S, 2S, ... (S = stride, 1 <= S <= L,
// default L) while a whole window fits the data (a shorter tail is left out), at most max_windows of
// them. The first window scores all its L targets; every later one only its last S targets, so each
// token is scored once and, after the first window, with at least L - S tokens of context (S = L:
// disjoint windows, every token scored; S < L: a sliding evaluation, slower by L / S).
// Each window starts from an empty state and is prefilled in chunks (Scorer): memory is one chunk's
// logits and one decode state at any length.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "eval/scorer.h"
#include "eval/token_data.h"
#include "tokenizer/tokenizer.h"

namespace sambalm {

struct PerplexityWindow {
  int64_t start = 0;         // first token of the window in the data
  int64_t first_target = 1;  // index (in the window's L + 1 tokens) of its first scored target
};

// The windows of length L and stride S over n tokens (max_windows 0: all). Error when n < L + 1.
std::vector<PerplexityWindow> perplexity_windows(int64_t n, int64_t L, int64_t S, int64_t max_windows);

struct PerplexityResult {
  int64_t length = 0, stride = 0, windows = 0, tokens = 0;
  double loss_sum = 0;  // nats, summed over the scored tokens
  int64_t bytes = 0;    // bytes of the decoded text of the scored tokens (text input only; else 0)
  double mean_loss() const;
  double perplexity() const;
  double bits_per_token() const;
  double bits_per_byte() const;  // NaN when bytes are unknown
};

// Scores every window of `data` (tokens decoded by `tok` for bits per byte; null: no bytes).
// on_window (optional) is called after each window with the result so far.
PerplexityResult evaluate_perplexity(Scorer& scorer, const EvalTokens& data, const Tokenizer* tok, int64_t L, int64_t S,
                                     int64_t max_windows,
                                     const std::function<void(const PerplexityResult&)>& on_window = {});

}  // namespace sambalm
