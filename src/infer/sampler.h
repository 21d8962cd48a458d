// Next-token sampling with the semantics of mamba_ssm (utils/generation.py), in this order:
//   1. repetition penalty  every token id that occurs in the history (prompt + generated so far):
//                          l <- l * r if l < 0, else l / r           (CTRL, arXiv 1909.05858)
//   2. greedy              temperature == 0 or top_k == 1: argmax of the penalised logits (lowest id
//                          on ties), nothing random is drawn
//   3. temperature         l <- l / T
//   4. top-k               keep the k largest (k <= 0: all); ties at the k-th value broken by lower id
//   5. top-p               sort the kept logits ascending, p = softmax, remove every token whose
//                          ascending cumulative probability is <= 1 - top_p (0 < top_p < 1; the most
//                          likely token always stays)
//   6. min-p               remove tokens with probability < min_p * (largest probability) (0 < min_p < 1)
//   7. sample              one draw from softmax of what is left
// Steps 1-5 are mamba_ssm's (its temperature comes after top-k, which selects the same set). Its
// min-p, reachable only with top_k = 0, compares raw logits with min_p; we use the usual definition
// (relative to the most likely token, after temperature) and allow it together with top-k/top-p.
//
// Seedable and deterministic: the same seed and the same logits give the same tokens on every
// platform (a 64-bit Mersenne Twister, uniform draws from its top 53 bits, the CDF inverted in double).
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace sambalm {

struct SamplingParams {
  double temperature = 1.0;
  int64_t top_k = 0;   // <= 0: no limit; 1: greedy
  double top_p = 0.0;  // (0, 1): nucleus; otherwise off
  double min_p = 0.0;  // (0, 1): relative probability floor; otherwise off
  double repetition_penalty = 1.0;
  uint64_t seed = 0;

  bool greedy() const { return temperature == 0.0 || top_k == 1; }
  // Throws Error for values outside their ranges (negative temperature, top_p > 1, penalty <= 0, ...).
  void validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);
  const SamplingParams& params() const { return p_; }

  // Next token from logits[0..n) (n = the real vocabulary; padding ids are never produced) given the
  // ids seen so far. Does not allocate after the first call for a given n.
  int32_t sample(const float* logits, int64_t n, std::span<const int32_t> history);

  // The distribution step 7 draws from, after steps 1-6 (for tests and --verbose): probs[n], zero for
  // removed tokens. Greedy puts 1 on the argmax.
  void distribution(const float* logits, int64_t n, std::span<const int32_t> history, std::vector<double>& probs);

 private:
  // Fills work_ with the filtered (id, logit) candidates, returns how many.
  int64_t filter(const float* logits, int64_t n, std::span<const int32_t> history);
  double uniform();

  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<float> pen_;                       // penalised logits
  std::vector<std::pair<float, int32_t>> work_;  // candidates (logit, id)
  std::vector<double> prob_;
};

}  // namespace sambalm
