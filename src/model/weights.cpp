// Name-mapping tables between sambalm's parameter names and the originals' state_dict names, and
// the state_dict -> ParamStore -> state_dict conversions built on them.
#include "model/weights.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "core/error.h"
#include "model/packed_weights.h"

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
    case SublayerKind::DiffAttention:
    case SublayerKind::CrossAttention:
    case SublayerKind::Gmu:
      break;  // SambaY only: sambay_weight_names
  }
  return p;
}

void add_norm(std::vector<WeightName>& out, const ModelConfig& c, const std::string& native,
              const std::string& external) {
  out.push_back({native + "weight", external + "weight", {c.n_embd}});
  if (c.norm == NormKind::LayerNorm) out.push_back({native + "bias", external + "bias", {c.n_embd}});
}

// SambaY in lit_gpt (ArchScale) or Hugging Face Phi4Flash names (fixtures README "sambay_tiny").
std::vector<WeightName> sambay_weight_names(const ModelConfig& cfg, WeightFormat fmt,
                                            const std::map<std::string, Shape>& shapes) {
  const bool hf = fmt == WeightFormat::HF;
  std::vector<WeightName> out;
  auto numel = [&](const std::string& n) { return shape_numel(shapes.at(n)); };
  auto one = [&](const std::string& native, const std::string& ext) {
    Shape sh = shapes.at(native);
    if (native.size() >= 11 && native.compare(native.size() - 11, 11, "conv.weight") == 0) sh = {sh[0], 1, sh[1]};
    out.push_back({native, ext, sh});
  };
  // Pieces packed along the first dimension; the external shape is the first piece's with the rows summed.
  auto packed = [&](const std::string& ext, std::vector<WeightName::Piece> pieces, const Shape& first) {
    int64_t total = 0;
    for (const auto& p : pieces) total += p.numel;
    const int64_t row = first.size() > 1 ? first[1] : 1;
    Shape sh = first;
    sh[0] = total / row;
    WeightName w{pieces.front().native, ext, sh};
    w.packed = std::move(pieces);
    out.push_back(std::move(w));
  };
  const Shape emb = shapes.at("embedding.weight");
  if (!hf && cfg.tied_embeddings) out.push_back({"embedding.weight", "lm_head.weight", emb, true});
  if (!cfg.tied_embeddings) one("lm_head.weight", "lm_head.weight");
  one("embedding.weight", hf ? "model.embed_tokens.weight" : "transformer.wte.weight");
  const auto blocks = cfg.layout();
  for (size_t i = 0; i < blocks.size(); ++i) {
    const std::string ext = (hf ? "model.layers." : "transformer.h.") + std::to_string(i) + ".";
    for (size_t s = 0; s < blocks[i].sublayers.size(); ++s) {
      const Sublayer& sub = blocks[i].sublayers[s];
      const std::string nat = fmt::format("blocks.{}.{}.", i, s);
      const std::string norm = hf ? (s == 0 ? "input_layernorm." : "post_attention_layernorm.") : sub.lit_norm + ".";
      one(nat + "norm.weight", ext + norm + "weight");
      one(nat + "norm.bias", ext + norm + "bias");
      const std::string m = ext + sub.lit_module + ".";
      switch (sub.kind) {
        case SublayerKind::Mamba:
          for (const auto& [n, e] : module_params(cfg, sub)) one(nat + n, m + e);
          break;
        case SublayerKind::MLP:
          packed(m + (hf ? "fc1.weight" : "w1.weight"),
                 {{nat + "w1.weight", numel(nat + "w1.weight")}, {nat + "w2.weight", numel(nat + "w2.weight")}},
                 shapes.at(nat + "w1.weight"));
          one(nat + "w3.weight", m + (hf ? "fc2.weight" : "w3.weight"));
          break;
        case SublayerKind::Gmu:
          one(nat + "in_proj.weight", m + (hf ? "in_proj.weight" : "gmu.in_proj.weight"));
          one(nat + "out_proj.weight", m + (hf ? "out_proj.weight" : "gmu.out_proj.weight"));
          break;
        case SublayerKind::DiffAttention:
        case SublayerKind::CrossAttention: {
          const bool cross = sub.kind == SublayerKind::CrossAttention;
          if (hf) {
            std::vector<WeightName::Piece> w{{nat + "q_proj.weight", numel(nat + "q_proj.weight")}};
            if (!cross) {
              w.push_back({nat + "k_proj.weight", numel(nat + "k_proj.weight")});
              w.push_back({nat + "v_proj.weight", numel(nat + "v_proj.weight")});
            }
            packed(m + "Wqkv.weight", w, shapes.at(nat + "q_proj.weight"));
            if (cfg.attn_bias) {
              std::vector<WeightName::Piece> b{{nat + "q_proj.bias", numel(nat + "q_proj.bias")}};
              if (!cross) {
                b.push_back({"", numel(nat + "v_proj.bias")});  // the key bias, absent in the original
                b.push_back({nat + "v_proj.bias", numel(nat + "v_proj.bias")});
              }
              packed(m + "Wqkv.bias", b, shapes.at(nat + "q_proj.bias"));
            }
          } else {
            for (const char* p : {"q_proj.weight", "q_proj.bias", "k_proj.weight", "v_proj.weight", "v_proj.bias"})
              if (shapes.count(nat + p)) one(nat + p, m + p);
          }
          const std::string da = m + (hf ? "inner_cross_attn." : "da.");
          for (const char* l : {"lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2", "subln.weight"})
            one(nat + l, da + l);
          const std::string proj = m + (hf ? "out_proj." : "proj.");
          one(nat + "proj.weight", proj + "weight");
          if (cfg.attn_out_bias) one(nat + "proj.bias", proj + "bias");
          break;
        }
        case SublayerKind::Attention:
          fail("a SambaY layout has no standard attention sublayer");
      }
    }
  }
  const std::string fn = hf ? "model.final_layernorm." : "transformer.ln_f.";
  one("final_norm.weight", fn + "weight");
  one("final_norm.bias", fn + "bias");
  return out;
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
  if (cfg.sambay) {
    SAMBALM_CHECK(fmt != WeightFormat::MambaSsm, "mamba_ssm weight names cannot hold the SambaY model '{}'", cfg.name);
    return sambay_weight_names(cfg, fmt, shapes);
  }
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
  if (sd.count("model.embed_tokens.weight")) return WeightFormat::HF;  // Phi4Flash (SambaY)
  std::vector<std::string> some;
  for (const auto& [k, v] : sd) {
    if (some.size() == 5) break;
    some.push_back(k);
  }
  fail(
      "{}: cannot tell the weight naming scheme: no embedding.weight (sambalm), transformer.wte.weight "
      "(lit_gpt), backbone.embedding.weight (mamba_ssm), backbone.embeddings.weight or model.embed_tokens.weight (hf) "
      "among its {} "
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
                       const std::function<void(const void* src, size_t bytes)>& on_converted,
                       std::shared_ptr<const PackedWeights> packed) {
  const auto sd = strip_wrapper_prefix(state_dict);
  // A packed embedding (take_packed) has left the state_dict: those are sambalm's names.
  const WeightFormat fmt =
      packed && packed->find("embedding.weight") ? WeightFormat::Sambalm : detect_weight_format(sd, source);
  std::vector<WeightName> names;
  try {
    names = weight_names(cfg, fmt);
  } catch (const Error& e) {
    fail("{}: weights use {} names: {}", source, weight_format_name(fmt), e.what());
  }
  ParamStore store(param_specs(cfg), packed);
  std::set<std::string> used;
  std::vector<std::string> missing;
  std::vector<const WeightName*> aliases;
  for (const auto& w : names) {
    if (packed && w.packed.empty() && packed->find(w.native)) continue;  // kept packed, not in the state_dict
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
    if (!w.packed.empty()) {
      std::vector<float> all(static_cast<size_t>(t.numel()));
      convert_to_f32(t.dtype(), t.raw(), all.data(), all.size());
      if (on_converted) on_converted(t.raw(), all.size() * dtype_size(t.dtype()));
      size_t at = 0;
      for (const auto& piece : w.packed) {
        if (!piece.native.empty())
          std::copy(all.begin() + static_cast<long>(at), all.begin() + static_cast<long>(at + piece.numel),
                    store.get(piece.native));
        at += static_cast<size_t>(piece.numel);
      }
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
    SAMBALM_CHECK(!store.entry(w->native).packed, "{}: '{}' beside a packed embedding: a tied head is stored once",
                  source, w->external);
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

void gather_external(const WeightName& w, const ParamStore& params, float* out) {
  if (w.packed.empty()) {
    const ParamEntry& e = params.entry(w.native);
    SAMBALM_CHECK(e.numel() == shape_numel(w.external_shape), "parameter '{}' has {} values, expected {}", w.native,
                  e.numel(), shape_numel(w.external_shape));
    std::memcpy(out, params.get(w.native), static_cast<size_t>(e.numel()) * sizeof(float));
    return;
  }
  int64_t at = 0;
  for (const auto& piece : w.packed) {
    if (piece.native.empty())
      std::fill(out + at, out + at + piece.numel, 0.0f);
    else
      std::memcpy(out + at, params.get(piece.native), static_cast<size_t>(piece.numel) * sizeof(float));
    at += piece.numel;
  }
  SAMBALM_CHECK(at == shape_numel(w.external_shape), "weight '{}': pieces hold {} values, expected {}", w.external, at,
                shape_numel(w.external_shape));
}

std::vector<std::pair<std::string, Tensor>> export_params(const ModelConfig& cfg, const ParamStore& params,
                                                          WeightFormat fmt, DType dtype) {
  SAMBALM_CHECK(is_float(dtype), "cannot export weights as {}: expected F32, BF16, F16 or F64", dtype_name(dtype));
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& w : weight_names(cfg, fmt)) {
    if (!w.packed.empty()) {
      Tensor t = Tensor::empty(DType::F32, w.external_shape);
      gather_external(w, params, t.data<float>());
      out.emplace_back(w.external, dtype == DType::F32 ? t : t.to_dtype(dtype));
      continue;
    }
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
