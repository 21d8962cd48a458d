#include "model/model.h"

#include <cmath>
#include <limits>

#include "core/error.h"
#include "ops/ops.h"

namespace sambalm {

template <typename T>
struct Model<T>::Sub : SublayerParams {
  MambaActs<T> mamba;
  AttentionActs<T> attn;
  MlpActs<T> mlp;
  std::vector<T> xn, mean, rstd;  // normed input and its statistics
};

template <typename T>
Model<T>::Model(const ModelConfig& cfg, const std::vector<ParamEntry>& entries) : cfg_(cfg) {
  cfg_.validate();
  d_ = cfg.n_embd;
  V_ = cfg.padded_vocab_size;
  ModelParams mp = resolve_model(cfg, entries);
  embed_ = mp.embed;
  head_ = mp.head;
  norm_f_w_ = mp.norm_w;
  norm_f_b_ = mp.norm_b;
  block_last_sub_ = std::move(mp.block_last_sub);
  for (auto& p : mp.subs) {
    auto sub = std::make_unique<Sub>();
    static_cast<SublayerParams&>(*sub) = std::move(p);
    if (sub->spec.kind == SublayerKind::Attention) rope_dims_ = std::max(rope_dims_, sub->ad.rope_dims);
    subs_.push_back(std::move(sub));
  }
}

template <typename T>
Model<T>::~Model() = default;

template <typename T>
const T* Model<T>::block_output(int64_t block) const {
  SAMBALM_CHECK(block >= 0 && block < static_cast<int64_t>(block_last_sub_.size()), "block {} out of range", block);
  return res_[block_last_sub_[block] + 1].data();
}

template <typename T>
void Model<T>::ensure_rope(int64_t Tn) {
  if (rope_dims_ == 0 || Tn <= rope_len_) return;
  rope_cos_.assign(Tn * rope_dims_ / 2, T(0));
  rope_sin_.assign(Tn * rope_dims_ / 2, T(0));
  ops::rope_table(rope_cos_.data(), rope_sin_.data(), Tn, rope_dims_, cfg_.rope_base, cfg_.condense_ratio);
  rope_len_ = Tn;
}

template <typename T>
void Model<T>::norm_forward(T* out, int64_t k, const T* x, const T* params, int64_t n) {
  Sub& s = *subs_[k];
  T* rstd = ensure(s.rstd, n);
  if (cfg_.norm == NormKind::RMSNorm) {
    ops::rmsnorm_forward(out, rstd, x, s.norm_w.at(params), n, d_, cfg_.norm_eps);
  } else {
    ops::layernorm_forward(out, ensure(s.mean, n), rstd, x, s.norm_w.at(params), s.norm_b.at(params), n, d_,
                           cfg_.norm_eps);
  }
}

template <typename T>
double Model<T>::forward(const T* params, const int32_t* tokens, const int32_t* targets, int64_t B, int64_t Tn,
                         double loss_scale) {
  SAMBALM_CHECK(B > 0 && Tn > 0, "forward: empty batch ({} x {})", B, Tn);
  const int64_t BT = B * Tn;
  for (int64_t i = 0; i < BT; ++i)
    SAMBALM_CHECK(tokens[i] >= 0 && tokens[i] < V_,
                  "forward: token id {} at position {} is outside the vocabulary [0, {})", tokens[i], i, V_);
  B_ = B;
  T_ = Tn;
  tokens_.assign(tokens, tokens + BT);
  ensure_rope(Tn);
  res_.resize(subs_.size() + 1);
  for (auto& r : res_) ensure(r, BT * d_);
  ops::embedding_forward(res_[0].data(), tokens, embed_.at(params), BT, d_);
  for (size_t k = 0; k < subs_.size(); ++k) {
    Sub& s = *subs_[k];
    T* xn = ensure(s.xn, BT * d_);
    norm_forward(xn, static_cast<int64_t>(k), res_[k].data(), params, BT);
    T* out = res_[k + 1].data();
    switch (s.spec.kind) {
      case SublayerKind::Mamba:
        mamba_forward(out, s.mamba, xn, params, s.mp, s.md, B, Tn, scratch_);
        break;
      case SublayerKind::Attention:
        attention_forward_layer(out, s.attn, xn, params, s.ap, s.ad, rope_cos_.data(), rope_sin_.data(), B, Tn);
        break;
      case SublayerKind::MLP:
        mlp_forward(out, s.mlp, xn, params, s.lp, d_, s.spec.mlp_hidden, B, Tn);
        break;
    }
    ops::add_inplace(out, res_[k].data(), BT * d_);
  }
  T* xf = ensure(xf_, BT * d_);
  T* rstd = ensure(xf_rstd_, BT);
  if (cfg_.norm == NormKind::RMSNorm)
    ops::rmsnorm_forward(xf, rstd, res_.back().data(), norm_f_w_.at(params), BT, d_, cfg_.norm_eps);
  else
    ops::layernorm_forward(xf, ensure(xf_mean_, BT), rstd, res_.back().data(), norm_f_w_.at(params),
                           norm_f_b_.at(params), BT, d_, cfg_.norm_eps);
  T* logits = ensure(logits_, BT * V_);
  ops::matmul_forward(logits, xf, head_.at(params), static_cast<const T*>(nullptr), BT, d_, V_);
  have_targets_ = targets != nullptr;
  if (!targets) return std::numeric_limits<double>::quiet_NaN();
  for (int64_t i = 0; i < BT; ++i)
    SAMBALM_CHECK(targets[i] < V_, "forward: target id {} at position {} is outside the vocabulary [0, {})", targets[i],
                  i, V_);
  T* dlogits = ensure(dlogits_, BT * V_);
  return ops::cross_entropy_forward_backward(dlogits, static_cast<T*>(nullptr), logits, targets, BT, V_, loss_scale);
}

template <typename T>
void Model<T>::backward(const T* params, T* grads) {
  SAMBALM_CHECK(have_targets_, "backward: the last forward had no targets");
  const int64_t BT = B_ * T_;
  T* dxf = zeroed(dxf_, BT * d_);
  ops::matmul_backward(dxf, head_.at(grads), static_cast<T*>(nullptr), dlogits_.data(), xf_.data(), head_.at(params),
                       BT, d_, V_);
  T* dres = zeroed(dres_, BT * d_);
  if (cfg_.norm == NormKind::RMSNorm)
    ops::rmsnorm_backward(dres, norm_f_w_.at(grads), dxf, res_.back().data(), norm_f_w_.at(params), xf_rstd_.data(), BT,
                          d_);
  else
    ops::layernorm_backward(dres, norm_f_w_.at(grads), norm_f_b_.at(grads), dxf, res_.back().data(),
                            norm_f_w_.at(params), xf_mean_.data(), xf_rstd_.data(), BT, d_);
  for (int64_t k = static_cast<int64_t>(subs_.size()) - 1; k >= 0; --k) {
    Sub& s = *subs_[k];
    T* dxn = zeroed(dxn_, BT * d_);
    switch (s.spec.kind) {
      case SublayerKind::Mamba:
        mamba_backward(dxn, grads, dres, s.mamba, s.xn.data(), params, s.mp, s.md, B_, T_, scratch_);
        break;
      case SublayerKind::Attention:
        attention_backward_layer(dxn, grads, dres, s.attn, s.xn.data(), params, s.ap, s.ad, rope_cos_.data(),
                                 rope_sin_.data(), B_, T_, scratch_);
        break;
      case SublayerKind::MLP:
        mlp_backward(dxn, grads, dres, s.mlp, s.xn.data(), params, s.lp, d_, s.spec.mlp_hidden, B_, T_, scratch_);
        break;
    }
    // res_{k+1} = res_k + f(norm(res_k)): the residual passes dres through; the norm adds its part.
    if (cfg_.norm == NormKind::RMSNorm)
      ops::rmsnorm_backward(dres, s.norm_w.at(grads), dxn, res_[k].data(), s.norm_w.at(params), s.rstd.data(), BT, d_);
    else
      ops::layernorm_backward(dres, s.norm_w.at(grads), s.norm_b.at(grads), dxn, res_[k].data(), s.norm_w.at(params),
                              s.mean.data(), s.rstd.data(), BT, d_);
  }
  ops::embedding_backward(embed_.at(grads), dres, tokens_.data(), BT, d_);
}

template class Model<float>;
template class Model<double>;

}  // namespace sambalm
