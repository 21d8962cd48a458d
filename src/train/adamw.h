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

#include "core/context.h"
#include "model/params.h"
#include "ops/memory_ops.h"

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

// The moments live in the context's memory (on a GPU: a device copy of the host vectors, which
// m()/v() bring back up to date).
class AdamW {
 public:
  AdamW(size_t n, AdamWOptions opts, std::vector<DecayRange> ranges = {}, const Context& ctx = cpu_context());

  // One update of `params` from `grads` (both in the context's memory) at learning rate lr; advances t.
  void step(float* params, const float* grads, double lr);

  const AdamWOptions& options() const { return opts_; }
  size_t size() const { return m_.size(); }
  int64_t t = 0;  // number of updates done (torch's state['step'])
  // The moments on the host, current (copied back from the device first).
  const std::vector<float>& m() const;
  const std::vector<float>& v() const;
  // Replaces the moments (a resumed run); sizes must match.
  void set_moments(const std::vector<float>& m, const std::vector<float>& v);

 private:
  AdamWOptions opts_;
  std::vector<DecayRange> ranges_;
  std::vector<float> m_, v_;
  ops::Mirror<float> dm_, dv_;
};

// L2 norm over all n gradients (accumulated in double), in the context's memory. On a GPU the sum
// lands in `scratch` (one double of device memory) and comes back to the host.
double grad_global_norm(const float* g, size_t n, const Context& ctx = cpu_context(), double* scratch = nullptr);
// Scales g in place when its norm exceeds max_norm (max_norm <= 0: never). Returns the norm before.
double clip_grad_norm(float* g, size_t n, double max_norm, const Context& ctx = cpu_context(),
                      double* scratch = nullptr);

}  // namespace sambalm
