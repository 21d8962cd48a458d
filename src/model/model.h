// Model: the whole block stack's forward and backward over explicit activation buffers.
//
//   res_0 = embedding[tokens]
//   res_{k+1} = res_k + mixer_k(norm_k(res_k))          one step per residual sublayer k
//   logits = norm_f(res_last) @ head^T                   head = embedding when tied
//   loss = mean cross-entropy over the padded vocabulary
//
// Parameters are not owned: forward/backward take the flat parameter buffer (ParamStore layout)
// and the gradient buffer of the same layout. T = float for compute, double for gradient checks.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "model/config.h"
#include "model/layers.h"
#include "model/params.h"

namespace sambalm {

template <typename T>
class Model {
 public:
  Model(const ModelConfig& cfg, const std::vector<ParamEntry>& entries);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return cfg_; }

  // Runs the stack on tokens [B, Tn]. When targets are given, returns the mean loss over the
  // positions whose target is >= 0 and prepares d(loss * loss_scale)/d(logits) for backward();
  // otherwise returns NaN. Token ids must be < padded_vocab_size (checked: throws Error).
  double forward(const T* params, const int32_t* tokens, const int32_t* targets, int64_t B, int64_t Tn,
                 double loss_scale = 1.0);
  // Adds d(loss * loss_scale)/d(params) into grads (caller zeroes it). Requires a forward with targets.
  void backward(const T* params, T* grads);

  const T* logits() const { return logits_.data(); }          // [B*Tn, padded_vocab]
  const T* block_output(int64_t block) const;                 // residual after block i, [B*Tn, d]
  int64_t batch() const { return B_; }
  int64_t seq_len() const { return T_; }

 private:
  struct Sub;
  void ensure_rope(int64_t Tn);
  void norm_forward(T* out, int64_t k, const T* x, const T* params, int64_t n);

  ModelConfig cfg_;
  std::vector<std::unique_ptr<Sub>> subs_;
  std::vector<int64_t> block_last_sub_;  // index of the last sublayer of each block
  ParamRef embed_, head_, norm_f_w_, norm_f_b_;
  int64_t B_ = 0, T_ = 0, d_ = 0, V_ = 0;
  bool have_targets_ = false;
  std::vector<int32_t> tokens_;
  std::vector<std::vector<T>> res_;  // nsub + 1 residual streams
  std::vector<T> xf_, xf_mean_, xf_rstd_, logits_, dlogits_, dres_, dxn_, dxf_;
  std::vector<T> rope_cos_, rope_sin_;
  int64_t rope_len_ = 0, rope_dims_ = 0;
  LayerScratch<T> scratch_;
};

}  // namespace sambalm
