// Resolving parameter names to offsets in the flat buffer, once per model (layers.h).
#include "core/error.h"
#include "model/layers.h"

namespace sambalm {

ParamOffsets param_offsets(const std::vector<ParamEntry>& entries) {
  ParamOffsets idx;
  for (auto& e : entries) idx[e.name] = e.packed ? ParamRef{-1, e.packed} : ParamRef{static_cast<int64_t>(e.offset)};
  return idx;
}

ParamRef param_ref(const ParamOffsets& offsets, const std::string& name, bool required) {
  auto it = offsets.find(name);
  if (it == offsets.end()) {
    if (required) fail("model: parameter '{}' missing from the parameter layout", name);
    return {};
  }
  return it->second;
}

SublayerParams resolve_sublayer(const ModelConfig& cfg, const Sublayer& spec, const ParamOffsets& idx, size_t block,
                                size_t s) {
  const std::string pre = "blocks." + std::to_string(block) + "." + std::to_string(s) + ".";
  auto ref = [&](const char* name, bool required = true) { return param_ref(idx, pre + name, required); };
  SublayerParams p;
  p.spec = spec;
  p.norm_w = ref("norm.weight");
  p.norm_b = ref("norm.bias", false);
  switch (spec.kind) {
    case SublayerKind::Mamba:
      p.mamba_dims = {cfg.n_embd, cfg.d_inner(), cfg.d_state, cfg.d_conv, cfg.mamba_dt_rank()};
      p.mamba = {ref("in_proj.weight"),
                 ref("in_proj.bias", false),
                 ref("conv.weight"),
                 ref("conv.bias", false),
                 ref("x_proj.weight"),
                 ref("dt_proj.weight"),
                 ref("dt_proj.bias"),
                 ref("A_log"),
                 ref("D"),
                 ref("out_proj.weight"),
                 ref("out_proj.bias", false)};
      break;
    case SublayerKind::Attention:
      p.attn_dims = {cfg.n_embd,    cfg.n_head,  cfg.n_query_groups,
                     cfg.head_size, spec.window, spec.rope ? cfg.rope_n_elem() : 0};
      p.attn = {ref("qkv.weight"), ref("qkv.bias", false), ref("proj.weight"), ref("proj.bias", false)};
      break;
    case SublayerKind::DiffAttention:
    case SublayerKind::CrossAttention: {
      const bool cross = spec.kind == SublayerKind::CrossAttention;
      p.dattn_dims = {cfg.n_embd,       cfg.n_head, cfg.n_query_groups, cfg.head_size, cross ? 0 : spec.window,
                      spec.lambda_init, cross};
      p.dattn = {ref("q_proj.weight"),
                 cross ? ParamRef{} : ref("k_proj.weight"),
                 cross ? ParamRef{} : ref("v_proj.weight"),
                 ref("q_proj.bias", false),
                 ref("v_proj.bias", false),
                 ref("lambda_q1"),
                 ref("lambda_k1"),
                 ref("lambda_q2"),
                 ref("lambda_k2"),
                 ref("subln.weight"),
                 ref("proj.weight"),
                 ref("proj.bias", false)};
      break;
    }
    case SublayerKind::Gmu:
      p.gmu = {ref("in_proj.weight"), ref("out_proj.weight")};
      p.gmu_inner = cfg.d_inner();
      break;
    case SublayerKind::MLP:
      p.mlp = {ref("w1.weight"),      ref("w1.bias", false), ref("w2.weight"),
               ref("w2.bias", false), ref("w3.weight"),      ref("w3.bias", false)};
      break;
  }
  return p;
}

ModelParams resolve_model(const ModelConfig& cfg, const std::vector<ParamEntry>& entries) {
  const ParamOffsets idx = param_offsets(entries);
  ModelParams m;
  m.embed = param_ref(idx, "embedding.weight");
  m.head = cfg.tied_embeddings ? m.embed : param_ref(idx, "lm_head.weight");
  m.norm_w = param_ref(idx, "final_norm.weight");
  m.norm_b = param_ref(idx, "final_norm.bias", false);
  const auto layout = cfg.layout();
  for (size_t i = 0; i < layout.size(); ++i) {
    for (size_t s = 0; s < layout[i].sublayers.size(); ++s)
      m.subs.push_back(resolve_sublayer(cfg, layout[i].sublayers[s], idx, i, s));
    m.block_last_sub.push_back(static_cast<int64_t>(m.subs.size()) - 1);
  }
  return m;
}

}  // namespace sambalm
