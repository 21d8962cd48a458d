// param_specs: the model's parameters in buffer order (documented in params.h), and the
// contiguous ParamStore that holds them.
#include "model/params.h"

#include <fmt/format.h>

#include "core/error.h"
#include "model/packed_weights.h"

namespace sambalm {

namespace {

void add(std::vector<ParamSpec>& out, std::string name, Shape shape) {
  out.push_back({std::move(name), std::move(shape)});
}

void add_norm(std::vector<ParamSpec>& out, const ModelConfig& c, const std::string& prefix) {
  add(out, prefix + "weight", {c.n_embd});
  if (c.norm == NormKind::LayerNorm) add(out, prefix + "bias", {c.n_embd});
}

void add_mamba(std::vector<ParamSpec>& out, const ModelConfig& c, const std::string& p) {
  const int64_t d = c.n_embd, di = c.d_inner(), r = c.mamba_dt_rank(), n = c.d_state;
  add(out, p + "in_proj.weight", {2 * di, d});
  if (c.proj_bias) add(out, p + "in_proj.bias", {2 * di});
  add(out, p + "conv.weight", {di, c.d_conv});
  if (c.conv_bias) add(out, p + "conv.bias", {di});
  add(out, p + "x_proj.weight", {r + 2 * n, di});
  add(out, p + "dt_proj.weight", {di, r});
  add(out, p + "dt_proj.bias", {di});
  add(out, p + "A_log", {di, n});
  add(out, p + "D", {di});
  add(out, p + "out_proj.weight", {d, di});
  if (c.proj_bias) add(out, p + "out_proj.bias", {d});
}

void add_attention(std::vector<ParamSpec>& out, const ModelConfig& c, const std::string& p) {
  const int64_t qkv = (c.n_head + 2 * c.n_query_groups) * c.head_size, hd = c.n_head * c.head_size;
  add(out, p + "qkv.weight", {qkv, c.n_embd});
  if (c.bias) add(out, p + "qkv.bias", {qkv});
  add(out, p + "proj.weight", {c.n_embd, hd});
  if (c.bias) add(out, p + "proj.bias", {c.n_embd});
}

void add_mlp(std::vector<ParamSpec>& out, const ModelConfig& c, const std::string& p, int64_t hidden) {
  add(out, p + "w1.weight", {hidden, c.n_embd});
  if (c.bias) add(out, p + "w1.bias", {hidden});
  add(out, p + "w2.weight", {hidden, c.n_embd});
  if (c.bias) add(out, p + "w2.bias", {hidden});
  add(out, p + "w3.weight", {c.n_embd, hidden});
  if (c.bias) add(out, p + "w3.bias", {c.n_embd});
}

// Differential attention (self: q, k, v; cross: q only). q, k, v weights are consecutive, so together
// they are the fused [q | k | v] projection; k never has a bias (it would cancel in the softmax).
void add_diff_attention(std::vector<ParamSpec>& out, const ModelConfig& c, const std::string& p, bool cross) {
  const int64_t hd = c.head_size, q = c.n_head * hd, kv = c.n_query_groups * hd;
  add(out, p + "q_proj.weight", {q, c.n_embd});
  if (!cross) {
    add(out, p + "k_proj.weight", {kv, c.n_embd});
    add(out, p + "v_proj.weight", {kv, c.n_embd});
  }
  if (c.attn_bias) {
    add(out, p + "q_proj.bias", {q});
    if (!cross) add(out, p + "v_proj.bias", {kv});
  }
  for (const char* l : {"lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2"}) add(out, p + l, {hd});
  add(out, p + "subln.weight", {2 * hd});
  add(out, p + "proj.weight", {c.n_embd, q});
  if (c.attn_out_bias) add(out, p + "proj.bias", {c.n_embd});
}

}  // namespace

std::vector<ParamSpec> param_specs(const ModelConfig& cfg) {
  std::vector<ParamSpec> out;
  add(out, "embedding.weight", {cfg.padded_vocab_size, cfg.n_embd});
  auto blocks = cfg.layout();
  for (size_t i = 0; i < blocks.size(); ++i) {
    for (size_t s = 0; s < blocks[i].sublayers.size(); ++s) {
      const Sublayer& sub = blocks[i].sublayers[s];
      std::string p = fmt::format("blocks.{}.{}.", i, s);
      add_norm(out, cfg, p + "norm.");
      switch (sub.kind) {
        case SublayerKind::Mamba:
          add_mamba(out, cfg, p);
          break;
        case SublayerKind::Attention:
          add_attention(out, cfg, p);
          break;
        case SublayerKind::MLP:
          add_mlp(out, cfg, p, sub.mlp_hidden);
          break;
        case SublayerKind::DiffAttention:
        case SublayerKind::CrossAttention:
          add_diff_attention(out, cfg, p, sub.kind == SublayerKind::CrossAttention);
          break;
        case SublayerKind::Gmu:
          add(out, p + "in_proj.weight", {cfg.d_inner(), cfg.n_embd});
          add(out, p + "out_proj.weight", {cfg.n_embd, cfg.d_inner()});
          break;
      }
    }
  }
  add_norm(out, cfg, "final_norm.");
  if (!cfg.tied_embeddings) add(out, "lm_head.weight", {cfg.padded_vocab_size, cfg.n_embd});
  return out;
}

ParamStore::ParamStore(const std::vector<ParamSpec>& specs) : ParamStore(specs, nullptr) {}

ParamStore::ParamStore(const std::vector<ParamSpec>& specs, std::shared_ptr<const PackedWeights> packed)
    : packed_(std::move(packed)) {
  size_t offset = 0;
  entries_.reserve(specs.size());
  for (const auto& s : specs) {
    for (int64_t dim : s.shape) SAMBALM_CHECK(dim >= 0, "parameter '{}' has a negative dimension", s.name);
    SAMBALM_CHECK(!index_.count(s.name), "parameter '{}' is listed twice", s.name);
    index_[s.name] = entries_.size();
    const PackedMatrix* m = packed_ ? packed_->find(s.name) : nullptr;
    if (m) {
      SAMBALM_CHECK(s.shape.size() == 2 && m->rows == s.shape[0] && m->cols == s.shape[1],
                    "parameter '{}': packed matrix [{}, {}] for shape {}", s.name, m->rows, m->cols,
                    shape_str(s.shape));
      entries_.push_back({s.name, s.shape, offset, m});
      continue;
    }
    entries_.push_back({s.name, s.shape, offset});
    offset += static_cast<size_t>(shape_numel(s.shape));
  }
  buffer_.assign(offset, 0.0f);
}

const ParamEntry& ParamStore::entry(const std::string& name) const {
  auto it = index_.find(name);
  SAMBALM_CHECK(it != index_.end(), "no parameter named '{}' in this model ({} parameters)", name, entries_.size());
  return entries_[it->second];
}

const ParamEntry& ParamStore::float_entry(const std::string& name) const {
  const ParamEntry& e = entry(name);
  SAMBALM_CHECK(!e.packed, "parameter '{}' is kept in {} for inference and has no float32 values here", name,
                matrix_format_name(e.packed->format));
  return e;
}

int64_t ParamStore::bytes() const {
  int64_t n = static_cast<int64_t>(buffer_.size() * sizeof(float));
  for (const auto& e : entries_)
    if (e.packed) n += e.packed->bytes();
  return n;
}

Tensor ParamStore::view(const std::string& name) {
  const ParamEntry& e = float_entry(name);
  return Tensor::view(DType::F32, e.shape, buffer_.data() + e.offset, nullptr);
}

}  // namespace sambalm
