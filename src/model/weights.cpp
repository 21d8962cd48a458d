// Name-mapping tables between sambalm's parameter names and the originals' state_dict names, and
// the state_dict -> ParamStore -> state_dict conversions built on them.
#include "model/weights.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "core/error.h"

namespace sambalm {

WeightFormat parse_weight_format(const std::string& name) {
  if (name == "sambalm") return WeightFormat::Sambalm;
  if (name == "lit_gpt" || name == "lit-gpt" || name == "litgpt") return WeightFormat::LitGpt;
  if (name == "mamba_ssm" || name == "mamba-ssm") return WeightFormat::MambaSsm;
  if (name == "hf" || name == "huggingface" || name == "transformers") return WeightFormat::HF;
  fail("unknown weight format '{}' (expected sambalm, lit_gpt, mamba_ssm or hf)", name);
}

const char* weight_format_name(WeightFormat fmt) {
  switch (fmt) {
    case WeightFormat::Sambalm:
      return "sambalm";
    case WeightFormat::LitGpt:
      return "lit_gpt";
    case WeightFormat::MambaSsm:
      return "mamba_ssm";
    case WeightFormat::HF:
      return "hf";
  }
  return "?";
}

namespace {

// Parameter suffixes of one sublayer module: (native, external), in the original registration
// order (a torch module lists its own parameters before its children's: A_log and D come first).
std::vector<std::pair<std::string, std::string>> module_params(const ModelConfig& c, const Sublayer& s) {
  std::vector<std::pair<std::string, std::string>> p;
  switch (s.kind) {
    case SublayerKind::Mamba:
      p = {{"A_log", "A_log"}, {"D", "D"}, {"in_proj.weight", "in_proj.weight"}};
      if (c.proj_bias) p.push_back({"in_proj.bias", "in_proj.bias"});
      p.push_back({"conv.weight", "conv1d.weight"});
      if (c.conv_bias) p.push_back({"conv.bias", "conv1d.bias"});
      p.push_back({"x_proj.weight", "x_proj.weight"});
      p.push_back({"dt_proj.weight", "dt_proj.weight"});
      p.push_back({"dt_proj.bias", "dt_proj.bias"});
      p.push_back({"out_proj.weight", "out_proj.weight"});
      if (c.proj_bias) p.push_back({"out_proj.bias", "out_proj.bias"});
      break;
    case SublayerKind::Attention:
      // lit_gpt CausalSelfAttention: `attn` is the fused qkv Linear, `proj` the output Linear.
      p = {{"qkv.weight", "attn.weight"}};
      if (c.bias) p.push_back({"qkv.bias", "attn.bias"});
      p.push_back({"proj.weight", "proj.weight"});
      if (c.bias) p.push_back({"proj.bias", "proj.bias"});
      break;
    case SublayerKind::MLP:
      // lit_gpt LLaMAMLP wraps xformers SwiGLU(_pack_weights=False) as `swiglu`.
      for (const char* w : {"w1", "w2", "w3"}) {
        p.push_back({std::string(w) + ".weight", std::string("swiglu.") + w + ".weight"});
        if (c.bias) p.push_back({std::string(w) + ".bias", std::string("swiglu.") + w + ".bias"});
      }
      break;
  }
  return p;
}

void add_norm(std::vector<WeightName>& out, const ModelConfig& c, const std::string& native,
              const std::string& external) {
  out.push_back({native + "weight", external + "weight", {c.n_embd}});
  if (c.norm == NormKind::LayerNorm) out.push_back({native + "bias", external + "bias", {c.n_embd}});
}

}  // namespace

std::vector<WeightName> weight_names(const ModelConfig& cfg, WeightFormat fmt) {
  std::vector<WeightName> out;
  std::map<std::string, Shape> shapes;
  for (const auto& s : param_specs(cfg)) shapes[s.name] = s.shape;
  auto shape_of = [&](const std::string& native) { return shapes.at(native); };

  if (fmt == WeightFormat::Sambalm) {
    for (const auto& s : param_specs(cfg)) out.push_back({s.name, s.name, s.shape});
    return out;
  }
  const char* fname = weight_format_name(fmt);
  if (fmt == WeightFormat::MambaSsm || fmt == WeightFormat::HF)
    SAMBALM_CHECK(cfg.mamba, "{} weight names exist only for pure Mamba models; '{}' is {}", fname, cfg.name,
                  cfg.layer_pattern());
  if (fmt == WeightFormat::HF)
    SAMBALM_CHECK(cfg.norm == NormKind::RMSNorm, "hf MambaForCausalLM has RMSNorm only; '{}' uses LayerNorm", cfg.name);

  std::string embed, block_prefix, final_norm;
  switch (fmt) {
    case WeightFormat::LitGpt:
      embed = "transformer.wte.weight", block_prefix = "transformer.h.", final_norm = "transformer.ln_f.";
      break;
    case WeightFormat::MambaSsm:
      embed = "backbone.embedding.weight", block_prefix = "backbone.layers.", final_norm = "backbone.norm_f.";
      break;
    default:
      embed = "backbone.embeddings.weight", block_prefix = "backbone.layers.", final_norm = "backbone.norm_f.";
      break;
  }
  const Shape emb_shape = shape_of("embedding.weight");
  // lit_gpt registers lm_head before transformer; mamba_ssm puts it last.
  const bool alias_head = cfg.tied_embeddings && fmt != WeightFormat::HF;
  if (fmt == WeightFormat::LitGpt) {
    if (alias_head)
      out.push_back({"embedding.weight", "lm_head.weight", emb_shape, true});
    else if (!cfg.tied_embeddings)
      out.push_back({"lm_head.weight", "lm_head.weight", shape_of("lm_head.weight")});
  }
  out.push_back({"embedding.weight", embed, emb_shape});
  auto blocks = cfg.layout();
  for (size_t i = 0; i < blocks.size(); ++i) {
    const auto& subs = blocks[i].sublayers;
    // Sublayer by sublayer, norm then module; MBlock (lit_gpt mamba=true, mamba_ssm, hf) registers
    // its mixer before its norm.
    std::vector<size_t> order;
    if (cfg.mamba) {
      order = {0};
    } else {
      for (size_t s = 0; s < subs.size(); ++s) order.push_back(s);
    }
    for (size_t s : order) {
      const Sublayer& sub = subs[s];
      std::string native = fmt::format("blocks.{}.{}.", i, s);
      std::string norm = cfg.mamba ? "norm" : sub.lit_norm;
      std::string module = cfg.mamba ? "mixer" : sub.lit_module;
      std::string ext = fmt::format("{}{}.", block_prefix, i);
      if (!cfg.mamba) add_norm(out, cfg, native + "norm.", ext + norm + ".");
      for (const auto& [n, e] : module_params(cfg, sub)) {
        Shape shape = shape_of(native + n);
        if (n == "conv.weight") shape = {shape[0], 1, shape[1]};
        out.push_back({native + n, ext + module + "." + e, shape});
      }
      if (cfg.mamba) add_norm(out, cfg, native + "norm.", ext + norm + ".");
    }
  }
  add_norm(out, cfg, "final_norm.", final_norm);
  if (fmt != WeightFormat::LitGpt) {
    if (alias_head)
      out.push_back({"embedding.weight", "lm_head.weight", emb_shape, true});
    else if (!cfg.tied_embeddings)
      out.push_back({"lm_head.weight", "lm_head.weight", shape_of("lm_head.weight")});
  }
  return out;
}

WeightFormat detect_weight_format(const std::map<std::string, Tensor>& sd, const std::string& source) {
  if (sd.count("embedding.weight")) return WeightFormat::Sambalm;
  if (sd.count("transformer.wte.weight")) return WeightFormat::LitGpt;
  if (sd.count("backbone.embedding.weight")) return WeightFormat::MambaSsm;
  if (sd.count("backbone.embeddings.weight")) return WeightFormat::HF;
  std::vector<std::string> some;
  for (const auto& [k, v] : sd) {
    if (some.size() == 5) break;
    some.push_back(k);
  }
  fail(
      "{}: cannot tell the weight naming scheme: no embedding.weight (sambalm), transformer.wte.weight "
      "(lit_gpt), backbone.embedding.weight (mamba_ssm) or backbone.embeddings.weight (hf) among its {} "
      "tensors (first: {})",
      source, sd.size(), fmt::join(some, ", "));
}

namespace {

// Removes a wrapper prefix that every key carries (Fabric/DDP "_forward_module.", torch.compile
// "_orig_mod.", DataParallel "module.").
std::map<std::string, Tensor> strip_wrapper_prefix(const std::map<std::string, Tensor>& sd) {
  for (const std::string prefix : {"_forward_module.", "_orig_mod.", "module."}) {
    bool all = !sd.empty();
    for (const auto& [k, v] : sd) all = all && k.rfind(prefix, 0) == 0;
    if (!all) continue;
    std::map<std::string, Tensor> out;
    for (const auto& [k, v] : sd) out.emplace(k.substr(prefix.size()), v);
    return strip_wrapper_prefix(out);
  }
  return sd;
}

bool is_float(DType t) { return t == DType::F32 || t == DType::F64 || t == DType::F16 || t == DType::BF16; }

std::string list_some(const std::vector<std::string>& names) {
  const size_t k = 12;
  std::vector<std::string> head(names.begin(), names.begin() + static_cast<long>(std::min(k, names.size())));
  std::string s = fmt::format("{}", fmt::join(head, ", "));
  if (names.size() > k) s += fmt::format(" (and {} more)", names.size() - k);
  return s;
}

}  // namespace

ParamStore load_params(const ModelConfig& cfg, const std::map<std::string, Tensor>& state_dict,
                       const std::string& source,
                       const std::function<void(const void* src, size_t bytes)>& on_converted) {
  const auto sd = strip_wrapper_prefix(state_dict);
  const WeightFormat fmt = detect_weight_format(sd, source);
  std::vector<WeightName> names;
  try {
    names = weight_names(cfg, fmt);
  } catch (const Error& e) {
    fail("{}: weights use {} names: {}", source, weight_format_name(fmt), e.what());
  }
  ParamStore store(param_specs(cfg));
  std::set<std::string> used;
  std::vector<std::string> missing;
  std::vector<const WeightName*> aliases;
  for (const auto& w : names) {
    auto it = sd.find(w.external);
    if (it == sd.end()) {
      if (!w.tied_alias) missing.push_back(w.external);
      continue;
    }
    used.insert(w.external);
    const Tensor& t = it->second;
    SAMBALM_CHECK(t.shape() == w.external_shape, "{}: weight '{}' has shape {}, but the config expects {}", source,
                  w.external, shape_str(t.shape()), shape_str(w.external_shape));
    SAMBALM_CHECK(is_float(t.dtype()), "{}: weight '{}' has dtype {}, expected a float type (F32, BF16, F16, F64)",
                  source, w.external, dtype_name(t.dtype()));
    if (w.tied_alias) {
      aliases.push_back(&w);
      continue;
    }
    const size_t n = static_cast<size_t>(t.numel()), es = dtype_size(t.dtype());
    const size_t span = on_converted ? (size_t{64} << 20) / es : n;
    for (size_t i = 0; i < n; i += span) {
      const size_t k = std::min(span, n - i);
      const void* src = static_cast<const uint8_t*>(t.raw()) + i * es;
      convert_to_f32(t.dtype(), src, store.get(w.native) + i, k);
      if (on_converted) on_converted(src, k * es);
    }
  }
  SAMBALM_CHECK(missing.empty(), "{}: {} weight(s) missing for this config ({} names): {}", source, missing.size(),
                weight_format_name(fmt), list_some(missing));
  std::vector<std::string> unexpected;
  for (const auto& [k, v] : sd)
    if (!used.count(k)) unexpected.push_back(k);
  SAMBALM_CHECK(unexpected.empty(), "{}: {} unexpected weight(s) that this config has no place for: {}", source,
                unexpected.size(), list_some(unexpected));
  // A tied head stored under both names must be the embedding itself (one storage in the original).
  for (const WeightName* w : aliases) {
    const Tensor& t = sd.at(w->external);
    std::vector<float> head(static_cast<size_t>(t.numel()));
    convert_to_f32(t.dtype(), t.raw(), head.data(), head.size());
    SAMBALM_CHECK(std::memcmp(head.data(), store.get(w->native), head.size() * sizeof(float)) == 0,
                  "{}: '{}' differs from the embedding, but the config ties the LM head to the embedding "
                  "(tied_embeddings); the weights do not belong to this config",
                  source, w->external);
  }
  return store;
}

std::vector<std::pair<std::string, Tensor>> export_params(const ModelConfig& cfg, const ParamStore& params,
                                                          WeightFormat fmt, DType dtype) {
  SAMBALM_CHECK(is_float(dtype), "cannot export weights as {}: expected F32, BF16, F16 or F64", dtype_name(dtype));
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& w : weight_names(cfg, fmt)) {
    const ParamEntry& e = params.entry(w.native);
    SAMBALM_CHECK(e.numel() == shape_numel(w.external_shape), "parameter '{}' has {} values, expected {}", w.native,
                  e.numel(), shape_numel(w.external_shape));
    Tensor t = Tensor::empty(DType::F32, w.external_shape);
    std::memcpy(t.data<float>(), params.get(w.native), static_cast<size_t>(e.numel()) * sizeof(float));
    out.emplace_back(w.external, dtype == DType::F32 ? t : t.to_dtype(dtype));
  }
  return out;
}

}  // namespace sambalm
