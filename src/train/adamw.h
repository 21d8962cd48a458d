// AdamW over the flat parameter buffer (torch.optim.AdamW, the single-tensor path pretrain.py uses),
// run as ops (ops/optim_ops.h) range by range,
// plus global gradient-norm clipping (torch.nn.utils.clip_grad_norm_).
//
// One step t = 1, 2, ... for every parameter p with gradient g, in this order:
//   p  <- p * (1 - lr * wd)                       decoupled weight decay, applied first
//   m  <- b1 * m + (1 - b1) * g
//   v  <- b2 * v + (1 - b2) * g^2
//   p  <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// Note where eps sits: after the bias correction of sqrt(v), as torch computes the denominator.
//
// Clipping: norm = sqrt(sum of g^2 over every gradient); g <- g * min(1, max_norm / (norm + 1e-6)).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model/params.h"

namespace sambalm {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

// A contiguous range of the buffer and whether weight decay applies to it.
struct DecayRange {
  size_t offset = 0, size = 0;
  bool decay = true;
};

// Weight-decay ranges for a ParamStore layout. all = true: every parameter decays (pretrain.py).
// all = false: norms, biases, embeddings, A_log and D are excluded (Mamba's recipe): only matrices
// of rank >= 2 other than the embedding and A_log decay.
std::vector<DecayRange> decay_ranges(const std::vector<ParamEntry>& entries, bool all);
bool param_decays(const ParamEntry& e);  // the rule used when all = false

class AdamW {
 public:
  AdamW(size_t n, AdamWOptions opts, std::vector<DecayRange> ranges = {});

  // One update of `params` from `grads` at learning rate lr; advances t.
  void step(float* params, const float* grads, double lr);

  const AdamWOptions& options() const { return opts_; }
  size_t size() const { return m_.size(); }
  int64_t t = 0;  // number of updates done (torch's state['step'])
  std::vector<float>& m() { return m_; }
  std::vector<float>& v() { return v_; }
  const std::vector<float>& m() const { return m_; }
  const std::vector<float>& v() const { return v_; }

 private:
  AdamWOptions opts_;
  std::vector<DecayRange> ranges_;
  std::vector<float> m_, v_;
};

// L2 norm over all n gradients (accumulated in double).
double grad_global_norm(const float* g, size_t n);
// Scales g in place when its norm exceeds max_norm (max_norm <= 0: never). Returns the norm before.
double clip_grad_norm(float* g, size_t n, double max_norm);

}  // namespace sambalm
