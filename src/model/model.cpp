#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "core/error.h"
#include "model/linear.h"
#include "ops/ops.h"
#include "ops/profiler.h"

namespace sambalm {

template <typename T>
Model<T>::Model(const ModelConfig& cfg, const std::vector<ParamEntry>& entries, const Context& ctx)
    : cfg_(cfg), ctx_(ctx) {
  cfg_.validate();
  d_ = cfg.n_embd;
  V_ = cfg.padded_vocab_size;
  refs_ = resolve_model(cfg, entries);
  for (const auto& e : entries) has_packed_ = has_packed_ || e.packed;
  SAMBALM_CHECK(!has_packed_ || (std::is_same_v<T, float>),
                "model: packed (bf16/f16/q8) weights compute in float32 only");
  SAMBALM_CHECK(
      !has_packed_ || ctx_.device == Device::CPU,
      "model: weights kept in bf16/f16/q8 run on the CPU only for now; load a float32 model directory (sambalm "
      "convert --dtype f32) for {}",
      ctx_.name());
  nsub_ = static_cast<int64_t>(refs_.subs.size());
  for (const auto& s : refs_.subs) {
    if (s.spec.kind == SublayerKind::Attention) rope_dims_ = std::max(rope_dims_, s.attn_dims.rope_dims);
    if (s.spec.kind == SublayerKind::MLP) max_mlp_hidden_ = std::max(max_mlp_hidden_, s.spec.mlp_hidden);
  }
  for (int64_t k = 0; k < nsub_; ++k) {
    if (refs_.subs[k].spec.keeps_memory) memory_sub_ = k;
    if (refs_.subs[k].spec.shares_kv) shared_kv_sub_ = k;
  }
  SAMBALM_CHECK(!cfg_.sambay || (memory_sub_ >= 0 && shared_kv_sub_ >= 0 && memory_sub_ < shared_kv_sub_),
                "model: a SambaY layout needs its memory Mamba layer before its shared-KV layer");
  // Sized once: the layouts below only assign pointers.
  train_.res.assign(static_cast<size_t>(nsub_ + 1), nullptr);
  train_.subs.assign(static_cast<size_t>(nsub_), SubBuffers{});
  train_.A.assign(static_cast<size_t>(nsub_), nullptr);
  cached_A_.assign(static_cast<size_t>(nsub_), nullptr);
  // Nothing is allocated here (the constants' arena comes with refresh_constants, the buffers with the
  // first call), so a model can be built to plan memory on a device it never opens.
}

template <typename T>
Model<T>::~Model() = default;

template <typename T>
void Model<T>::embed(S* out, const int32_t* tokens, const S* master, int64_t n) {
  if (refs_.embed.packed) {
    if constexpr (std::is_same_v<T, float>)
      return ops::embedding_forward_packed(ctx_, out, tokens, *refs_.embed.packed, n, d_);
  }
  ops::embedding_forward(ctx_, out, tokens, refs_.embed.at(master), n, d_);
}

template <typename T>
const stat_t<T>* Model<T>::block_output(int64_t block) const {
  SAMBALM_CHECK(block >= 0 && block < static_cast<int64_t>(refs_.block_last_sub.size()), "block {} out of range",
                block);
  SAMBALM_CHECK(train_B_ > 0, "block_output: no forward has run");
  return train_.res[refs_.block_last_sub[block] + 1];
}

// ---- Buffer plans ------------------------------------------------------------------------------

template <typename T>
const SublayerParams* Model<T>::first_of(SublayerKind kind) const {
  for (const auto& s : refs_.subs)
    if (s.spec.kind == kind) return &s;
  return nullptr;
}

template <typename T>
void Model<T>::layout_train(Arena& a, int64_t B, int64_t Tn) {
  const int64_t BT = B * Tn;
  const bool ln = cfg_.norm == NormKind::LayerNorm;
  train_.tokens = a.template take<int32_t>(BT);
  train_.targets = a.template take<int32_t>(BT);
  for (auto& r : train_.res) r = a.template take<S>(BT * d_);
  train_.f = a.template take<T>(BT * d_);
  for (int64_t k = 0; k < nsub_; ++k) {
    const SublayerParams& s = refs_.subs[k];
    SubBuffers& b = train_.subs[k];
    b.xn = a.template take<T>(BT * d_);
    b.rstd = a.template take<stat_t<T>>(BT);
    b.mean = ln ? a.template take<stat_t<T>>(BT) : nullptr;
    switch (s.spec.kind) {
      case SublayerKind::Mamba:
        plan_mamba_acts(ctx_, a, b.mamba, s.mamba_dims, B, Tn);
        train_.A[k] = a.template take<stat_t<T>>(s.mamba_dims.di * s.mamba_dims.N);
        break;
      case SublayerKind::Attention:
        plan_attention_acts(ctx_, a, b.attn, s.attn_dims, B, Tn, true);
        break;
      case SublayerKind::MLP:
        plan_mlp_acts(ctx_, a, b.mlp, s.spec.mlp_hidden, B, Tn);
        break;
      case SublayerKind::DiffAttention:
      case SublayerKind::CrossAttention:
        plan_diff_attention_acts(ctx_, a, b.dattn, s.dattn_dims, B, Tn);
        break;
      case SublayerKind::Gmu:
        plan_gmu_acts(ctx_, a, b.gmu, s.gmu_inner, B, Tn);
        break;
    }
  }
  train_.xf = a.template take<T>(BT * d_);
  train_.xf_rstd = a.template take<stat_t<T>>(BT);
  train_.xf_mean = ln ? a.template take<stat_t<T>>(BT) : nullptr;
  train_.logits = a.template take<T>(BT * V_);
  train_.dlogits = a.template take<T>(BT * V_);
  train_.rope_cos = a.template take<T>(Tn * std::max<int64_t>(1, rope_dims_ / 2));
  train_.rope_sin = a.template take<T>(Tn * std::max<int64_t>(1, rope_dims_ / 2));
  // Backward: the residual gradient, a sublayer's d(normed input), d(final norm output), and one
  // region shared by the layers' own temporaries (one layer's backward runs at a time).
  train_.dres = a.template take<S>(BT * d_);
  if constexpr (!kOneType) train_.dres_t = a.template take<T>(BT * d_);
  train_.dxn = a.template take<T>(BT * d_);
  train_.dxf = a.template take<T>(BT * d_);
  if (memory_sub_ >= 0) {
    train_.dmemory = a.template take<T>(BT * refs_.subs[memory_sub_].mamba_dims.di);
    train_.dshared_qkv = a.template take<T>(BT * refs_.subs[shared_kv_sub_].dattn_dims.shared_width());
  }
  // Every Mamba (attention) sublayer has the same sizes; MLPs may differ: the largest hidden width.
  const size_t region = a.mark();
  if (const SublayerParams* s = first_of(SublayerKind::Mamba))
    plan_mamba_grads(ctx_, a, train_.mamba_grads, s->mamba_dims, B, Tn);
  a.rewind(region);
  if (const SublayerParams* s = first_of(SublayerKind::Attention))
    plan_attention_grads(ctx_, a, train_.attn_grads, s->attn_dims, B, Tn);
  a.rewind(region);
  if (max_mlp_hidden_ > 0) plan_mlp_grads(ctx_, a, train_.mlp_grads, max_mlp_hidden_, B, Tn);
  a.rewind(region);
  if (shared_kv_sub_ >= 0)
    plan_diff_attention_grads(ctx_, a, train_.dattn_grads, refs_.subs[shared_kv_sub_].dattn_dims, B, Tn);
  a.rewind(region);
  if (const SublayerParams* s = first_of(SublayerKind::Gmu))
    plan_gmu_grads(ctx_, a, train_.gmu_grads, s->gmu_inner, B, Tn);
}

// Lays out the training buffers for (B, Tn): re-plans (one allocation) only when they outgrow the arena.
template <typename T>
void Model<T>::use_train_layout(int64_t B, int64_t Tn) {
  if (B == train_B_ && Tn == train_T_) return;
  Arena count;
  count.set_stagger(true);
  layout_train(count, B, Tn);
  if (count.bytes() > train_arena_.capacity()) train_arena_ = ops::arena_on(ctx_, count.bytes());
  train_arena_.reset();
  train_arena_.set_stagger(true);
  layout_train(train_arena_, B, Tn);
  train_B_ = B;
  train_T_ = Tn;
  if (rope_dims_ > 0)
    ops::rope_table(ctx_, train_.rope_cos, train_.rope_sin, Tn, rope_dims_, cfg_.rope_base, cfg_.condense_ratio);
}

template <typename T>
size_t Model<T>::plan_train_bytes(int64_t B, int64_t Tn) {
  SAMBALM_CHECK(B > 0 && Tn > 0, "model: cannot plan for {} sequences of {} tokens", B, Tn);
  const TrainBuffers current = train_;  // the counting layout hands out null views: keep the real ones
  Arena count;
  count.set_stagger(true);  // as use_train_layout lays it out
  layout_train(count, B, Tn);
  train_ = current;
  return count.bytes();
}

template <typename T>
void Model<T>::layout_cached(Arena& a, int64_t B, int64_t L) {
  const int64_t BL = B * L;
  cached_.x = a.template take<S>(BL * d_);
  cached_.out = a.template take<T>(BL * d_);
  cached_.rope_cos = a.template take<T>(BL * std::max<int64_t>(1, rope_dims_ / 2));
  cached_.rope_sin = a.template take<T>(BL * std::max<int64_t>(1, rope_dims_ / 2));
  SubBuffers& b = cached_.shared;
  b.xn = a.template take<T>(BL * d_);
  b.rstd = a.template take<stat_t<T>>(BL);
  b.mean = cfg_.norm == NormKind::LayerNorm ? a.template take<stat_t<T>>(BL) : nullptr;
  if (shared_kv_sub_ >= 0) {  // live from their layer to the cross-decoder: outside the shared region
    cached_.memory = a.template take<T>(BL * refs_.subs[memory_sub_].mamba_dims.di);
    cached_.shared_qkv = a.template take<T>(BL * refs_.subs[shared_kv_sub_].dattn_dims.shared_width());
    cached_.pos_last = a.template take<int64_t>(B);
  }
  if (ctx_.device != Device::CPU) {
    cached_.tokens = a.template take<int32_t>(BL);
    cached_.slots = a.template take<int32_t>(B);
    cached_.pos = a.template take<int64_t>(B);
  }
  // The sublayers run one at a time: their activations share one region.
  const size_t region = a.mark();
  // One token per sequence runs the one-step scan: no chunk states.
  if (const SublayerParams* s = first_of(SublayerKind::Mamba))
    plan_mamba_acts(ctx_, a, b.mamba, s->mamba_dims, B, L, L > 1);
  a.rewind(region);
  if (const SublayerParams* s = first_of(SublayerKind::Attention))
    plan_attention_acts(ctx_, a, b.attn, s->attn_dims, B, L, false);
  a.rewind(region);
  if (max_mlp_hidden_ > 0) plan_mlp_acts(ctx_, a, b.mlp, max_mlp_hidden_, B, L);
  if (shared_kv_sub_ >= 0) {
    a.rewind(region);
    // The shared-KV layer's dims are the widest differential attention (its projection has k and v).
    plan_diff_attention_acts(ctx_, a, b.dattn, refs_.subs[shared_kv_sub_].dattn_dims, B, L);
    a.rewind(region);
    if (const SublayerParams* s = first_of(SublayerKind::Gmu)) plan_gmu_acts(ctx_, a, b.gmu, s->gmu_inner, B, L);
  }
}

template <typename T>
void Model<T>::plan_cached(const std::vector<std::pair<int64_t, int64_t>>& shapes) {
  size_t need = 0;
  for (auto [B, L] : shapes) {
    SAMBALM_CHECK(B > 0 && L > 0, "model: cannot plan for {} sequences of {} tokens", B, L);
    Arena count;
    layout_cached(count, B, L);
    need = std::max(need, count.bytes());
  }
  if (need > infer_arena_.capacity()) {
    infer_arena_ = ops::arena_on(ctx_, need);
    infer_B_ = infer_L_ = -1;
    ++infer_generation_;
  }
}

template <typename T>
void Model<T>::use_cached_layout(int64_t B, int64_t L) {
  if (B == infer_B_ && L == infer_L_) return;
  Arena count;
  layout_cached(count, B, L);
  if (count.bytes() > infer_arena_.capacity()) {
    infer_arena_ = ops::arena_on(ctx_, count.bytes());
    ++infer_generation_;
  }
  infer_arena_.reset();
  layout_cached(infer_arena_, B, L);
  infer_B_ = B;
  infer_L_ = L;
}

template <typename T>
void Model<T>::refresh_constants(const S* master) {
  if (!constants_ready_) {
    // A = -exp(A_log) for forward_cached: [di, N] per Mamba sublayer, one arena, allocated once.
    auto layout_constants = [&](Arena& a) {
      for (int64_t k = 0; k < nsub_; ++k) {
        const auto& s = refs_.subs[k];
        if (s.spec.kind == SublayerKind::Mamba)
          cached_A_[k] = a.template take<stat_t<T>>(s.mamba_dims.di * s.mamba_dims.N);
      }
    };
    Arena count;
    layout_constants(count);
    constants_arena_ = ops::arena_on(ctx_, count.bytes());
    layout_constants(constants_arena_);
  }
  for (int64_t k = 0; k < nsub_; ++k) {
    const auto& s = refs_.subs[k];
    if (s.spec.kind == SublayerKind::Mamba)
      ops::neg_exp_forward(ctx_, cached_A_[k], s.mamba.A_log.at(master), s.mamba_dims.di * s.mamba_dims.N);
  }
  constants_ready_ = true;
}

// ---- The stack ---------------------------------------------------------------------------------

template <typename T>
void Model<T>::norm_forward(T* out, stat_t<T>* mean, stat_t<T>* rstd, const S* x, const S* master, const ParamRef& w,
                            const ParamRef& b, int64_t n) {
  if (cfg_.norm == NormKind::RMSNorm)
    ops::rmsnorm_forward(ctx_, out, rstd, x, w.at(master), n, d_, cfg_.norm_eps);
  else
    ops::layernorm_forward(ctx_, out, mean, rstd, x, w.at(master), b.at(master), n, d_, cfg_.norm_eps);
}

template <typename T>
void Model<T>::norm_backward(S* dx, G* grads, const T* dout, const S* x, const S* master, const ParamRef& w,
                             const ParamRef& b, const stat_t<T>* mean, const stat_t<T>* rstd, int64_t n) {
  if (cfg_.norm == NormKind::RMSNorm)
    ops::rmsnorm_backward(ctx_, dx, w.at(grads), dout, x, w.at(master), rstd, n, d_);
  else
    ops::layernorm_backward(ctx_, dx, w.at(grads), b.at(grads), dout, x, w.at(master), mean, rstd, n, d_);
}

template <typename T>
void Model<T>::run_stack(const T* params, const S* master, int64_t B, int64_t L, const T* cos, const T* sin,
                         int64_t cs_batch_rows, const int32_t* slots, const int64_t* pos,
                         const std::vector<LayerState<T>>* layers, CrossDecoder cross) {
  const bool training = layers == nullptr;
  int64_t BL = B * L;
  // SambaY: the memory and the shared keys/values the cross-decoder reads.
  const T* memory = nullptr;
  const T* shared_qkv = nullptr;
  if (memory_sub_ >= 0) {
    memory = training ? train_.subs[memory_sub_].mamba.y : cached_.memory;
    shared_qkv = training ? train_.subs[shared_kv_sub_].dattn.qkv : cached_.shared_qkv;
  }
  for (int64_t k = 0; k < nsub_; ++k) {
    const SublayerParams& s = refs_.subs[k];
    SubBuffers& b = training ? train_.subs[k] : cached_.shared;
    const S* x = training ? train_.res[k] : cached_.x;
    T* f = training ? train_.f : cached_.out;
    norm_forward(b.xn, b.mean, b.rstd, x, master, s.norm_w, s.norm_b, BL);
    profile_mark("fwd norm+residual");
    LayerState<T> st;
    if (!training) {
      // Cross-attention has no state of its own: it reads the shared-KV layer's cache.
      st = (*layers)[s.spec.kind == SublayerKind::CrossAttention ? shared_kv_sub_ : k];
      st.slots = slots;
      st.pos = pos;
    }
    const LayerState<T>* stp = training ? nullptr : &st;
    switch (s.spec.kind) {
      case SublayerKind::Mamba: {
        const MambaDims& m = s.mamba_dims;
        stat_t<T>* A = training ? train_.A[k] : cached_A_[k];
        if (training) ops::neg_exp_forward(ctx_, A, s.mamba.A_log.at(master), m.di * m.N);
        profile_mark("fwd mamba scan");
        MambaActs<T> acts = b.mamba;
        if (!training && s.spec.keeps_memory) acts.y = cached_.memory;  // kept for the GMUs
        mamba_forward(ctx_, f, acts, b.xn, params, master, s.mamba, m, A, B, L, stp);
        break;
      }
      case SublayerKind::Attention:
        attention_forward_layer(ctx_, f, b.attn, b.xn, params, s.attn, s.attn_dims, cos, sin, cs_batch_rows, B, L, stp);
        break;
      case SublayerKind::MLP:
        mlp_forward(ctx_, f, b.mlp, b.xn, params, s.mlp, d_, s.spec.mlp_hidden, B, L);
        break;
      // SambaY. The memory is the memory layer's scan output, the shared keys/values the shared-KV
      // layer's projection (training: their saved activations; cached: the buffers kept for them).
      case SublayerKind::DiffAttention:
      case SublayerKind::CrossAttention: {
        DiffAttentionActs<T> acts = b.dattn;
        if (!training && s.spec.shares_kv) acts.qkv = cached_.shared_qkv;  // kept for the cross-decoder
        diff_attention_forward_layer(ctx_, f, acts, b.xn, params, s.dattn, s.dattn_dims, B, L,
                                     s.dattn_dims.cross ? shared_qkv : nullptr, stp);
        profile_mark("fwd sambay attention");
        break;
      }
      case SublayerKind::Gmu:
        gmu_forward(ctx_, f, b.gmu, b.xn, params, s.gmu, memory, d_, s.gmu_inner, B, L);
        profile_mark("fwd sambay gmu");
        break;
    }
    // x_{k+1} = x_k + f: training keeps every x_k (a buffer per k), the cached path updates x in place.
    ops::residual_add(ctx_, training ? train_.res[k + 1] : cached_.x, x, f, BL * d_);
    profile_mark("fwd norm+residual");
    if (k == shared_kv_sub_ && cross == CrossDecoder::None) return;
    if (k == shared_kv_sub_ && cross == CrossDecoder::LastToken && L > 1) {
      // The caches hold every token now; the cross-decoder only feeds the logits, so it runs on each
      // sequence's last token (rows b*L + L-1 move to rows b).
      ops::take_last_rows(ctx_, cached_.x, d_, B, L);
      ops::take_last_rows(ctx_, cached_.memory, refs_.subs[memory_sub_].mamba_dims.di, B, L);
      ops::take_last_rows(ctx_, cached_.shared_qkv, s.dattn_dims.shared_width(), B, L);
      ops::last_positions(ctx_, cached_.pos_last, pos, B, L);
      pos = cached_.pos_last;
      L = 1;
      BL = B;
    }
  }
}

template <typename T>
double Model<T>::forward(const T* params, const S* master, const int32_t* tokens, const int32_t* targets, int64_t B,
                         int64_t Tn, double loss_scale) {
  SAMBALM_CHECK(B > 0 && Tn > 0, "forward: empty batch ({} x {})", B, Tn);
  const int64_t BT = B * Tn;
  for (int64_t i = 0; i < BT; ++i)
    SAMBALM_CHECK(tokens[i] >= 0 && tokens[i] < V_,
                  "forward: token id {} at position {} is outside the vocabulary [0, {})", tokens[i], i, V_);
  use_train_layout(B, Tn);
  B_ = B;
  T_ = Tn;
  ops::upload(ctx_, train_.tokens, tokens, sizeof(int32_t) * BT);
  // The residual stream starts from the master copy of the embedding (fp32 beside bf16); the tied head
  // below multiplies by its working copy.
  embed(train_.res[0], train_.tokens, master, BT);
  profile_mark("fwd embedding");
  run_stack(params, master, B, Tn, train_.rope_cos, train_.rope_sin, 0, nullptr, nullptr, nullptr);
  norm_forward(train_.xf, train_.xf_mean, train_.xf_rstd, train_.res.back(), master, refs_.norm_w, refs_.norm_b, BT);
  profile_mark("fwd norm+residual");
  linear_forward(ctx_, train_.logits, train_.xf, params, refs_.head, static_cast<const T*>(nullptr), BT, d_, V_);
  profile_mark("fwd lm_head");
  have_targets_ = targets != nullptr;
  if (!targets) return std::numeric_limits<double>::quiet_NaN();
  for (int64_t i = 0; i < BT; ++i)
    SAMBALM_CHECK(targets[i] < V_, "forward: target id {} at position {} is outside the vocabulary [0, {})", targets[i],
                  i, V_);
  ops::upload(ctx_, train_.targets, targets, sizeof(int32_t) * BT);
  const double loss = ops::cross_entropy_forward_backward(ctx_, train_.dlogits, static_cast<stat_t<T>*>(nullptr),
                                                          train_.logits, train_.targets, BT, V_, loss_scale);
  profile_mark("fwd cross_entropy");
  return loss;
}

template <typename T>
void Model<T>::backward(const T* params, const S* master, G* grads) {
  SAMBALM_CHECK(have_targets_, "backward: the last forward had no targets");
  SAMBALM_CHECK(!has_packed_,
                "backward: this model's weights are packed for inference (bf16/f16/q8); train from float32");
  const int64_t BT = B_ * T_;
  auto zero = [&](auto* x, int64_t n) { ops::fill_zero(ctx_, x, n); };
  zero(train_.dxf, BT * d_);
  ops::matmul_backward(ctx_, train_.dxf, refs_.head.at(grads), static_cast<G*>(nullptr), train_.dlogits, train_.xf,
                       refs_.head.at(params), BT, d_, V_);
  profile_mark("bwd lm_head");
  zero(train_.dres, BT * d_);
  if (train_.dmemory) {
    zero(train_.dmemory, BT * refs_.subs[memory_sub_].mamba_dims.di);
    zero(train_.dshared_qkv, BT * refs_.subs[shared_kv_sub_].dattn_dims.shared_width());
  }
  norm_backward(train_.dres, grads, train_.dxf, train_.res.back(), master, refs_.norm_w, refs_.norm_b, train_.xf_mean,
                train_.xf_rstd, BT);
  profile_mark("bwd norm+residual");
  for (int64_t k = nsub_ - 1; k >= 0; --k) {
    const SublayerParams& s = refs_.subs[k];
    const SubBuffers& b = train_.subs[k];
    zero(train_.dxn, BT * d_);
    // The sublayer's d(output) is the residual's gradient, in the compute type for its GEMMs.
    const T* dres_t = nullptr;
    if constexpr (kOneType) {
      dres_t = train_.dres;
    } else {
      ops::convert(ctx_, train_.dres_t, train_.dres, BT * d_);
      dres_t = train_.dres_t;
    }
    profile_mark("bwd norm+residual");
    switch (s.spec.kind) {
      case SublayerKind::Mamba:
        mamba_backward(ctx_, train_.dxn, grads, dres_t, b.mamba, b.xn, params, master, s.mamba, s.mamba_dims,
                       train_.A[k], B_, T_, train_.mamba_grads, s.spec.keeps_memory ? train_.dmemory : nullptr);
        break;
      case SublayerKind::Attention:
        attention_backward_layer(ctx_, train_.dxn, grads, dres_t, b.attn, b.xn, params, s.attn, s.attn_dims,
                                 train_.rope_cos, train_.rope_sin, B_, T_, train_.attn_grads);
        break;
      case SublayerKind::MLP:
        mlp_backward(ctx_, train_.dxn, grads, dres_t, b.mlp, b.xn, params, s.mlp, d_, s.spec.mlp_hidden, B_, T_,
                     train_.mlp_grads);
        break;
      // The cross-decoder runs after the memory and shared-KV layers, so in reverse its gradients for
      // them are complete when those layers' backwards read them.
      case SublayerKind::DiffAttention:
      case SublayerKind::CrossAttention: {
        const bool cross = s.dattn_dims.cross;
        diff_attention_backward_layer(ctx_, train_.dxn, grads, dres_t, b.dattn, b.xn, params, s.dattn, s.dattn_dims, B_,
                                      T_, train_.dattn_grads, cross ? train_.subs[shared_kv_sub_].dattn.qkv : nullptr,
                                      cross || s.spec.shares_kv ? train_.dshared_qkv : nullptr);
        profile_mark("bwd sambay attention");
        break;
      }
      case SublayerKind::Gmu:
        gmu_backward(ctx_, train_.dxn, grads, train_.dmemory, dres_t, b.gmu, b.xn, params, s.gmu,
                     train_.subs[memory_sub_].mamba.y, d_, s.gmu_inner, B_, T_, train_.gmu_grads);
        profile_mark("bwd sambay gmu");
        break;
    }
    // res_{k+1} = res_k + f(norm(res_k)): the residual passes dres through; the norm adds its part.
    norm_backward(train_.dres, grads, train_.dxn, train_.res[k], master, s.norm_w, s.norm_b, b.mean, b.rstd, BT);
    profile_mark("bwd norm+residual");
  }
  ops::embedding_backward(ctx_, refs_.embed.at(grads), train_.dres, train_.tokens, BT, d_);
  profile_mark("bwd embedding");
}

template <typename T>
void Model<T>::forward_cached(const T* params, const S* master, const int32_t* tokens, int64_t B, int64_t L,
                              const int32_t* slots, const int64_t* pos, const std::vector<LayerState<T>>& layers,
                              T* logits, bool all_logits) {
  stage_cached(tokens, B, L, slots, pos);
  run_cached(params, master, layers, logits, all_logits);
}

template <typename T>
void Model<T>::stage_cached(const int32_t* tokens, int64_t B, int64_t L, const int32_t* slots, const int64_t* pos) {
  SAMBALM_CHECK(B > 0 && L > 0, "forward_cached: empty batch ({} x {})", B, L);
  use_cached_layout(B, L);
  const int64_t BL = B * L;
  if (ctx_.device != Device::CPU) {  // the ops read device memory
    ops::upload(ctx_, cached_.tokens, tokens, sizeof(int32_t) * BL);
    ops::upload(ctx_, cached_.slots, slots, sizeof(int32_t) * B);
    ops::upload(ctx_, cached_.pos, pos, sizeof(int64_t) * B);
    tokens = cached_.tokens;
    slots = cached_.slots;
    pos = cached_.pos;
  }
  staged_ = {B, L, tokens, slots, pos};
}

template <typename T>
void Model<T>::run_cached(const T* params, const S* master, const std::vector<LayerState<T>>& layers, T* logits,
                          bool all_logits) {
  SAMBALM_CHECK(constants_ready_, "forward_cached: refresh_constants() was not called");
  SAMBALM_CHECK(static_cast<int64_t>(layers.size()) == nsub_, "forward_cached: {} layer states for {} sublayers",
                layers.size(), nsub_);
  SAMBALM_CHECK(staged_.B > 0 && staged_.B == infer_B_ && staged_.L == infer_L_,
                "forward_cached: run_cached without a stage_cached of its shape");
  const int64_t B = staged_.B, L = staged_.L, BL = B * L;
  const int32_t *tokens = staged_.tokens, *slots = staged_.slots;
  const int64_t* pos = staged_.pos;
  embed(cached_.x, tokens, master, BL);
  if (rope_dims_ > 0)
    ops::rope_at_positions(ctx_, cached_.rope_cos, cached_.rope_sin, pos, B, L, rope_dims_, cfg_.rope_base,
                           cfg_.condense_ratio);
  // SambaY without all logits: the cross-decoder on the last tokens only, which then sit in rows 0..B-1.
  CrossDecoder cross = CrossDecoder::All;
  if (cfg_.sambay && skip_cross_ && !all_logits) cross = !logits ? CrossDecoder::None : CrossDecoder::LastToken;
  const bool last_only = cross == CrossDecoder::LastToken && L > 1;
  run_stack(params, master, B, L, cached_.rope_cos, cached_.rope_sin, L, slots, pos, &layers, cross);
  if (!logits) return;
  SubBuffers& b = cached_.shared;
  const ParamRef& head = refs_.head;
  if (last_only) {
    norm_forward(b.xn, b.mean, b.rstd, cached_.x, master, refs_.norm_w, refs_.norm_b, B);
    linear_forward(ctx_, logits, b.xn, params, head, static_cast<const T*>(nullptr), B, d_, V_);
    return;
  }
  if (all_logits || L == 1) {
    norm_forward(b.xn, b.mean, b.rstd, cached_.x, master, refs_.norm_w, refs_.norm_b, BL);
    linear_forward(ctx_, logits, b.xn, params, head, static_cast<const T*>(nullptr), BL, d_, V_);
    return;
  }
  // The last token of each sequence: rows b * L + L - 1.
  for (int64_t s = 0; s < B; ++s)
    norm_forward(b.xn + s * d_, b.mean ? b.mean + s : nullptr, b.rstd + s, cached_.x + (s * L + L - 1) * d_, master,
                 refs_.norm_w, refs_.norm_b, 1);
  linear_forward(ctx_, logits, b.xn, params, head, static_cast<const T*>(nullptr), B, d_, V_);
}

template class Model<float>;
template class Model<double>;
#if SAMBALM_HAVE_CUDA
template class Model<bf16>;  // the CPU has no bf16 bodies: the GPU's mixed precision only
#endif

}  // namespace sambalm
