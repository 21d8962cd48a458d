// Chunked prefill and the batched decode step. The sublayer math is the one of model/layers.h:
//   Mamba      xz = in_proj(xn); x = xz[:di], z = xz[di:]; xc = silu(conv(x; conv state) + b)
//              (dt_low | B | C) = x_proj(xc); dt = softplus(dt_proj(dt_low) + b_dt)
//              h = exp(dt A) h + dt B xc;  y = C . h + D xc;  out = out_proj(y * silu(z))
//   Attention  qkv = Wqkv xn; q, k = RoPE at absolute positions; softmax over the keys of positions
//              p - window < s <= p (cached ring + chunk); out = proj(att)
//   MLP        out = w3(silu(w1 xn) * w2 xn)
// Prefill runs the layers' own forwards (mamba_forward, mlp_forward: the chunk is a small batch of
// sequence) with the states passed in and out; attention is done here because it must also see the
// cached keys. The step runs the same math for one token per sequence with GEMVs.
#include "infer/decode_model.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "core/error.h"
#include "infer/decode_kernels.h"
#include "ops/ops.h"

namespace sambalm {

struct DecodeModel::Sub : SublayerParams {
  size_t index = 0;      // in the state layout
  std::vector<float> A;  // -exp(A_log), [di, N]
};

namespace {
template <typename T>
T* grow(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}
}  // namespace

namespace {

// fn(b) for each of B sequences: in parallel over the sequences when there are several (each op
// inside then runs on one thread), directly for one, so that a single sequence's ops keep their own
// parallel loops (inside even an inactive parallel region they would run on one thread).
template <typename Fn>
void for_each_sequence(int64_t B, Fn&& fn) {
  if (B == 1) {
    fn(int64_t(0));
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < B; ++b) fn(b);
}

}  // namespace

DecodeModel::DecodeModel(const ModelConfig& cfg, const std::vector<ParamEntry>& entries, const float* params,
                         const DecodeOptions& opt)
    : cfg_(cfg), opt_(opt), params_(params) {
  cfg_.validate();
  SAMBALM_CHECK(opt_.chunk > 0, "decode: prefill chunk must be positive, got {}", opt_.chunk);
  SAMBALM_CHECK(opt_.max_batch > 0, "decode: max batch must be positive, got {}", opt_.max_batch);
  if (opt_.max_context <= 0) opt_.max_context = cfg_.block_size;
  layout_ = DecodeLayout::make(cfg_, opt_.max_context);
  for (auto& e : entries) num_params_ += e.numel();
  d_ = cfg_.n_embd;
  V_ = cfg_.padded_vocab_size;
  ModelParams mp = resolve_model(cfg_, entries);
  embed_ = mp.embed;
  head_ = mp.head;
  norm_f_w_ = mp.norm_w;
  norm_f_b_ = mp.norm_b;
  for (auto& p : mp.subs) {
    auto sub = std::make_unique<Sub>();
    static_cast<SublayerParams&>(*sub) = std::move(p);
    sub->index = subs_.size();
    switch (sub->spec.kind) {
      case SublayerKind::Mamba:
        max_hidden_ = std::max(max_hidden_, 2 * sub->md.di);
        break;
      case SublayerKind::Attention: {
        max_qkv_ = std::max(max_qkv_, sub->ad.qkv());
        rope_dims_ = std::max(rope_dims_, sub->ad.rope_dims);
        const int64_t cap = layout_->subs[sub->index].cap;
        max_keys_ = std::max(max_keys_, sub->spec.window > 0 ? sub->spec.window - 1 : cap);
        break;
      }
      case SublayerKind::MLP:
        max_hidden_ = std::max(max_hidden_, sub->spec.mlp_hidden);
        break;
    }
    subs_.push_back(std::move(sub));
  }
  refresh();

  // Prefill scratch, sized once for a full chunk.
  const int64_t C = opt_.chunk, di = cfg_.d_inner(), hs = cfg_.head_size, H = cfg_.n_head, G = cfg_.n_query_groups;
  for (auto* v : {&px_, &pxn_, &pout_}) grow(*v, C * d_);
  grow(pmean_, C);
  grow(prstd_, C);
  if (max_qkv_ > 0) {
    grow(pqkv_, C * max_qkv_);
    grow(pq_, C * H * hs);
    grow(pk_, C * G * hs);
    grow(pv_, C * G * hs);
    grow(pkeys_, (max_keys_ + C) * G * hs);
    grow(pvals_, (max_keys_ + C) * G * hs);
    grow(patt_, C * H * hs);
    grow(pcos_, C * std::max<int64_t>(1, rope_dims_ / 2));
    grow(psin_, C * std::max<int64_t>(1, rope_dims_ / 2));
  }
  for (auto& s : subs_) {
    if (s->spec.kind == SublayerKind::Mamba) {
      mamba_alloc(mamba_acts_, s->md, 1, C);
      grow(layer_scratch_.A, di * cfg_.d_state);
      grow(h_tmp_, di * cfg_.d_state);
      grow(conv_tmp_, (cfg_.d_conv - 1) * di);
    } else if (s->spec.kind == SublayerKind::MLP) {
      mlp_alloc(mlp_acts_, s->spec.mlp_hidden, 1, C);
    }
  }
  ensure_batch(opt_.max_batch);
}

DecodeModel::~DecodeModel() = default;

void DecodeModel::refresh() {
  for (auto& s : subs_) {
    if (s->spec.kind != SublayerKind::Mamba) continue;
    const int64_t n = s->md.di * s->md.N;
    s->A.resize(static_cast<size_t>(n));
    const float* A_log = s->mp.A_log.at(params_);
    for (int64_t i = 0; i < n; ++i) s->A[i] = -std::exp(A_log[i]);
  }
}

void DecodeModel::ensure_batch(int64_t B) {
  if (B <= batch_cap_) return;
  const int64_t di = cfg_.d_inner(), hs = cfg_.head_size, H = cfg_.n_head, G = cfg_.n_query_groups;
  const int64_t big = std::max({max_hidden_, max_qkv_, int64_t(1)});
  for (auto* v : {&x_, &xn_, &out_}) grow(*v, B * d_);
  grow(pmean_, B);  // norm statistics: shared with prefill, sized for both
  grow(prstd_, B);
  for (auto* v : {&big1_, &big2_, &big3_}) grow(*v, B * big);
  for (auto* v : {&conv_out_, &xc_, &dt_pre_, &dt_, &y_, &yg_}) grow(*v, B * di);
  grow(xdbl_, B * (cfg_.mamba_dt_rank() + 2 * cfg_.d_state));
  grow(q_, B * H * hs);
  grow(k1_, B * G * hs);
  grow(v1_, B * G * hs);
  grow(att_, B * H * hs);
  grow(cos_, B * std::max<int64_t>(1, rope_dims_ / 2));  // a RoPE row per sequence
  grow(sin_, B * std::max<int64_t>(1, rope_dims_ / 2));
  batch_cap_ = B;
}

int64_t DecodeModel::weight_bytes_per_token() const {
  int64_t n = num_params_;
  if (!cfg_.tied_embeddings) n -= V_ * d_ - d_;  // the untied embedding: one row per token
  return n * int64_t(sizeof(float));
}

int64_t DecodeModel::scratch_bytes() const {
  int64_t n = 0;
  auto add = [&](const std::vector<float>& v) { n += static_cast<int64_t>(v.capacity()); };
  for (auto* v :
       {&px_,     &pxn_,  &pout_,  &pmean_,    &prstd_, &pqkv_, &pq_,  &pk_,   &pv_,   &pkeys_, &pvals_,    &patt_,
        &pcos_,   &psin_, &h_tmp_, &conv_tmp_, &x_,     &xn_,   &out_, &big1_, &big2_, &big3_,  &conv_out_, &xc_,
        &dt_pre_, &dt_,   &y_,     &yg_,       &xdbl_,  &q_,    &k1_,  &v1_,   &att_,  &cos_,   &sin_})
    add(*v);
  for (auto* v : {&mamba_acts_.xz, &mamba_acts_.conv_out, &mamba_acts_.xc, &mamba_acts_.xdbl, &mamba_acts_.dt_pre,
                  &mamba_acts_.dt, &mamba_acts_.y, &mamba_acts_.yg, &mamba_acts_.chunk_states, &mlp_acts_.a,
                  &mlp_acts_.b, &mlp_acts_.h})
    add(*v);
  return n * int64_t(sizeof(float));
}

void DecodeModel::check_ids(const int32_t* tokens, int64_t n, const char* what) const {
  for (int64_t i = 0; i < n; ++i)
    SAMBALM_CHECK(tokens[i] >= 0 && tokens[i] < V_, "{}: token id {} at position {} is outside the vocabulary [0, {})",
                  what, tokens[i], i, V_);
}

void DecodeModel::norm(float* out, const Sub& s, const float* x, int64_t n) {
  if (cfg_.norm == NormKind::RMSNorm)
    ops::rmsnorm_forward(out, grow(prstd_, n), x, s.norm_w.at(params_), n, d_, cfg_.norm_eps);
  else
    ops::layernorm_forward(out, grow(pmean_, n), grow(prstd_, n), x, s.norm_w.at(params_), s.norm_b.at(params_), n, d_,
                           cfg_.norm_eps);
}

void DecodeModel::final_norm(float* out, const float* x, int64_t n) {
  if (cfg_.norm == NormKind::RMSNorm)
    ops::rmsnorm_forward(out, grow(prstd_, n), x, norm_f_w_.at(params_), n, d_, cfg_.norm_eps);
  else
    ops::layernorm_forward(out, grow(pmean_, n), grow(prstd_, n), x, norm_f_w_.at(params_), norm_f_b_.at(params_), n,
                           d_, cfg_.norm_eps);
}

void DecodeModel::prefill(DecodeState& st, const int32_t* tokens, int64_t n, float* all_logits, float* last_logits) {
  SAMBALM_CHECK(n > 0, "prefill: no tokens to consume");
  SAMBALM_CHECK(st.layout_ptr() == layout_, "prefill: the decode state belongs to another model");
  check_ids(tokens, n, "prefill");
  if (layout_->max_context > 0)
    SAMBALM_CHECK(st.pos() + n <= layout_->max_context,
                  "prefill: {} + {} tokens exceed the full-attention cache of {} positions (max context)", st.pos(), n,
                  layout_->max_context);
  for (int64_t t0 = 0; t0 < n; t0 += opt_.chunk) {
    const int64_t C = std::min(opt_.chunk, n - t0);
    prefill_chunk(st, tokens + t0, C, all_logits ? all_logits + t0 * V_ : nullptr, t0 + C == n ? last_logits : nullptr);
  }
}

void DecodeModel::prefill_chunk(DecodeState& st, const int32_t* tokens, int64_t C, float* all_logits,
                                float* last_logits) {
  const int64_t pos = st.pos();
  float *x = px_.data(), *xn = pxn_.data(), *out = pout_.data();
  ops::embedding_forward(x, tokens, embed_.at(params_), C, d_);
  for (auto& sp : subs_) {
    Sub& s = *sp;
    norm(xn, s, x, C);
    switch (s.spec.kind) {
      case SublayerKind::Mamba: {
        // The layer's forward with the carried states; the new states go to scratch first because
        // mamba_forward still reads the old ones after writing the new.
        const MambaDims& m = s.md;
        mamba_forward(out, mamba_acts_, xn, params_, s.mp, m, int64_t(1), C, layer_scratch_, st.ssm(s.index),
                      h_tmp_.data(), st.conv(s.index), conv_tmp_.data());
        std::copy(h_tmp_.begin(), h_tmp_.begin() + m.di * m.N, st.ssm(s.index));
        std::copy(conv_tmp_.begin(), conv_tmp_.begin() + (m.K - 1) * m.di, st.conv(s.index));
        break;
      }
      case SublayerKind::Attention: {
        const AttentionDims& a = s.ad;
        const auto& slot = layout_->subs[s.index];
        const int64_t cap = slot.cap, hs = a.hs, G = a.G;
        infer::linear(pqkv_.data(), xn, s.ap.qkv_w.at(params_), s.ap.qkv_b.at(params_), C, d_, a.qkv());
        if (a.rope_dims > 0)
          infer::rope_rows(pcos_.data(), psin_.data(), pos, C, a.rope_dims, cfg_.rope_base, cfg_.condense_ratio);
        ops::qkv_split_rope_forward(pq_.data(), pk_.data(), pv_.data(), pqkv_.data(), pcos_.data(), psin_.data(),
                                    int64_t(1), C, a.H, G, hs, a.rope_dims, int64_t(0));
        // Keys in position order: the L cached positions this chunk can still see, then its own.
        const int64_t L = std::min(pos, a.window > 0 ? a.window - 1 : cap), S = L + C;
        float *ks = st.keys(s.index), *vs = st.values(s.index);
        for (int64_t g = 0; g < G; ++g) {
          for (int64_t j = 0; j < L; ++j) {
            const int64_t slot_j = (pos - L + j) % cap;
            std::copy_n(ks + (g * cap + slot_j) * hs, hs, pkeys_.data() + (g * S + j) * hs);
            std::copy_n(vs + (g * cap + slot_j) * hs, hs, pvals_.data() + (g * S + j) * hs);
          }
          std::copy_n(pk_.data() + g * C * hs, C * hs, pkeys_.data() + (g * S + L) * hs);
          std::copy_n(pv_.data() + g * C * hs, C * hs, pvals_.data() + (g * S + L) * hs);
        }
        infer::attend_chunk(patt_.data(), pq_.data(), pkeys_.data(), pvals_.data(), C, S, a.H, G, hs, a.window,
                            1.0 / std::sqrt(double(hs)));
        // The ring keeps the last `cap` positions.
        for (int64_t p = std::max(pos, pos + C - cap); p < pos + C; ++p) {
          for (int64_t g = 0; g < G; ++g) {
            std::copy_n(pk_.data() + (g * C + p - pos) * hs, hs, ks + (g * cap + p % cap) * hs);
            std::copy_n(pv_.data() + (g * C + p - pos) * hs, hs, vs + (g * cap + p % cap) * hs);
          }
        }
        infer::linear(out, patt_.data(), s.ap.proj_w.at(params_), s.ap.proj_b.at(params_), C, a.H * hs, d_);
        break;
      }
      case SublayerKind::MLP:
        mlp_forward(out, mlp_acts_, xn, params_, s.lp, d_, s.spec.mlp_hidden, int64_t(1), C);
        break;
    }
    ops::add_inplace(x, out, C * d_);
  }
  st.set_pos(pos + C);
  if (all_logits) {
    final_norm(xn, x, C);
    infer::linear(all_logits, xn, head_.at(params_), nullptr, C, d_, V_);
    if (last_logits) std::copy_n(all_logits + (C - 1) * V_, V_, last_logits);
  } else if (last_logits) {
    final_norm(xn, x + (C - 1) * d_, 1);
    infer::linear(last_logits, xn, head_.at(params_), nullptr, 1, d_, V_);
  }
}

void DecodeModel::step(DecodeState* const* states, int64_t B, const int32_t* tokens, float* logits) {
  SAMBALM_CHECK(B > 0, "decode step: empty batch");
  check_ids(tokens, B, "decode step");
  for (int64_t b = 0; b < B; ++b) {
    SAMBALM_CHECK(states[b]->layout_ptr() == layout_, "decode step: state {} belongs to another model", b);
    if (layout_->max_context > 0)
      SAMBALM_CHECK(states[b]->pos() < layout_->max_context,
                    "decode step: sequence {} reached the full-attention cache of {} positions (max context)", b,
                    layout_->max_context);
  }
  ensure_batch(B);
  float *x = x_.data(), *xn = xn_.data(), *out = out_.data();
  ops::embedding_forward(x, tokens, embed_.at(params_), B, d_);
  for (auto& sp : subs_) {
    Sub& s = *sp;
    norm(xn, s, x, B);
    switch (s.spec.kind) {
      case SublayerKind::Mamba: {
        const MambaDims& m = s.md;
        const int64_t di = m.di, X = m.xdbl();
        float* xz = big1_.data();
        infer::linear(xz, xn, s.mp.in_proj_w.at(params_), s.mp.in_proj_b.at(params_), B, d_, 2 * di);
        for_each_sequence(B, [&](int64_t b) {
          float* conv = states[b]->conv(s.index);
          ops::causal_conv1d_forward(conv_out_.data() + b * di, xz + b * 2 * di, 2 * di, s.mp.conv_w.at(params_),
                                     s.mp.conv_b.at(params_), conv, int64_t(1), int64_t(1), di, m.K);
          ops::causal_conv1d_state_update(conv, xz + b * 2 * di, 2 * di, conv, int64_t(1), int64_t(1), di, m.K);
        });
        ops::silu_forward(xc_.data(), conv_out_.data(), B * di);
        infer::linear(xdbl_.data(), xc_.data(), s.mp.x_proj_w.at(params_), nullptr, B, di, X);
        infer::linear(dt_pre_.data(), di, xdbl_.data(), X, s.mp.dt_proj_w.at(params_), s.mp.dt_proj_b.at(params_), B,
                      m.R, di);
        ops::softplus_forward(dt_.data(), dt_pre_.data(), B * di);
        for_each_sequence(B, [&](int64_t b) {
          const float* xd = xdbl_.data() + b * X;
          ops::selective_scan_step(y_.data() + b * di, states[b]->ssm(s.index), xc_.data() + b * di,
                                   dt_.data() + b * di, s.A.data(), xd + m.R, xd + m.R + m.N, X, s.mp.D.at(params_),
                                   int64_t(1), di, m.N);
        });
        ops::silu_gate_forward(yg_.data(), y_.data(), xz + di, 2 * di, B, di);
        infer::linear(out, yg_.data(), s.mp.out_proj_w.at(params_), s.mp.out_proj_b.at(params_), B, di, d_);
        break;
      }
      case SublayerKind::Attention: {
        const AttentionDims& a = s.ad;
        const int64_t cap = layout_->subs[s.index].cap, hs = a.hs, G = a.G, H = a.H;
        float* qkv = big1_.data();
        infer::linear(qkv, xn, s.ap.qkv_w.at(params_), s.ap.qkv_b.at(params_), B, d_, a.qkv());
        const int64_t half = std::max<int64_t>(1, rope_dims_ / 2);
        for_each_sequence(B, [&](int64_t b) {
          const int64_t p = states[b]->pos();
          float *cb = cos_.data() + b * half, *sb = sin_.data() + b * half;
          if (a.rope_dims > 0) infer::rope_rows(cb, sb, p, 1, a.rope_dims, cfg_.rope_base, cfg_.condense_ratio);
          float *qb = q_.data() + b * H * hs, *kb = k1_.data() + b * G * hs, *vb = v1_.data() + b * G * hs;
          ops::qkv_split_rope_forward(qb, kb, vb, qkv + b * a.qkv(), cb, sb, int64_t(1), int64_t(1), H, G, hs,
                                      a.rope_dims, int64_t(0));
          float *ks = states[b]->keys(s.index), *vs = states[b]->values(s.index);
          for (int64_t g = 0; g < G; ++g) {
            std::copy_n(kb + g * hs, hs, ks + (g * cap + p % cap) * hs);
            std::copy_n(vb + g * hs, hs, vs + (g * cap + p % cap) * hs);
          }
          const int64_t lo = a.window > 0 ? std::max<int64_t>(0, p - a.window + 1) : 0;
          infer::attend_ring(att_.data() + b * H * hs, qb, ks, vs, cap, lo, p, H, G, hs, 1.0 / std::sqrt(double(hs)));
        });
        infer::linear(out, att_.data(), s.ap.proj_w.at(params_), s.ap.proj_b.at(params_), B, H * hs, d_);
        break;
      }
      case SublayerKind::MLP: {
        const int64_t hid = s.spec.mlp_hidden;
        infer::linear(big1_.data(), xn, s.lp.w1.at(params_), s.lp.b1.at(params_), B, d_, hid);
        infer::linear(big2_.data(), xn, s.lp.w2.at(params_), s.lp.b2.at(params_), B, d_, hid);
        ops::swiglu_forward(big3_.data(), big1_.data(), big2_.data(), B * hid);
        infer::linear(out, big3_.data(), s.lp.w3.at(params_), s.lp.b3.at(params_), B, hid, d_);
        break;
      }
    }
    ops::add_inplace(x, out, B * d_);
  }
  final_norm(xn, x, B);
  infer::linear(logits, xn, head_.at(params_), nullptr, B, d_, V_);
  for (int64_t b = 0; b < B; ++b) states[b]->set_pos(states[b]->pos() + 1);
}

}  // namespace sambalm
