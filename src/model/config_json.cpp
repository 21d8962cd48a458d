// config.json readers and writer. Four formats, told apart by their keys:
//   sambalm    "format": "sambalm" (ModelConfig::to_json; docs/FORMATS.md "Model directory")
//   Hugging Face MambaConfig   "model_type": "mamba" / "hidden_size" + "state_size"
//   mamba_ssm MambaConfig      "d_model"
//   lit_gpt Config             "n_embd"
// Missing fields take the defaults of the original dataclass (not ours), so a config.json written
// by the original code means what it meant there.
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "io/file.h"
#include "model/config.h"
#include "model/presets.h"

namespace sambalm {

using nlohmann::json;

namespace {

constexpr int64_t kMaxInteger = int64_t(1) << 31;

// Typed access to one JSON object with errors that name the file and the key.
class Fields {
 public:
  Fields(const json& j, std::string source) : j_(j), source_(std::move(source)) {}

  bool has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }
  const json& at(const char* key) const { return j_.at(key); }

  // Integers are at most 2^31 in magnitude (kMaxInteger), so that sums and products of two of them,
  // formed while reading, cannot overflow; check_limits() then bounds each size on its own.
  int64_t integer(const char* key, int64_t def) const {
    if (!has(key)) return def;
    const json& v = j_.at(key);
    int64_t n = 0;
    if (v.is_number_unsigned())
      n = v.get<uint64_t>() > uint64_t(kMaxInteger) ? kMaxInteger + 1 : int64_t(v.get<uint64_t>());
    else if (v.is_number_integer())
      n = v.get<int64_t>();
    // Python writes 1.0 for some int fields that went through arithmetic; accept integral floats.
    else if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>())
      n = std::fabs(v.get<double>()) <= double(kMaxInteger) ? int64_t(v.get<double>()) : kMaxInteger + 1;
    else
      fail("{}: key '{}' must be an integer, found {}", source_, key, describe(v));
    SAMBALM_CHECK(n >= -kMaxInteger && n <= kMaxInteger, "{}: key '{}' is {}, outside [-2^31, 2^31]", source_, key,
                  describe(v));
    return n;
  }
  double number(const char* key, double def) const {
    if (!has(key)) return def;
    const json& v = j_.at(key);
    SAMBALM_CHECK(v.is_number(), "{}: key '{}' must be a number, found {}", source_, key, describe(v));
    return v.get<double>();
  }
  bool boolean(const char* key, bool def) const {
    if (!has(key)) return def;
    const json& v = j_.at(key);
    SAMBALM_CHECK(v.is_boolean(), "{}: key '{}' must be true or false, found {}", source_, key, describe(v));
    return v.get<bool>();
  }
  std::string string(const char* key, const std::string& def) const {
    if (!has(key)) return def;
    const json& v = j_.at(key);
    SAMBALM_CHECK(v.is_string(), "{}: key '{}' must be a string, found {}", source_, key, describe(v));
    return v.get<std::string>();
  }
  // "auto" or an integer (mamba_ssm dt_rank, HF time_step_rank): 0 stands for "auto".
  int64_t auto_or_integer(const char* key) const {
    if (!has(key)) return 0;
    const json& v = j_.at(key);
    if (v.is_string() && v.get<std::string>() == "auto") return 0;
    SAMBALM_CHECK(v.is_number_integer() && v.get<int64_t>() > 0,
                  "{}: key '{}' must be \"auto\" or a positive integer, found {}", source_, key, describe(v));
    return integer(key, 0);
  }
  const std::string& source() const { return source_; }

  // Dumps a scalar or a flat array/object; a deeper one is summarised, since dumping recurses once
  // per level of nesting and a file can nest millions of levels deep.
  static std::string describe(const json& v) {
    const bool flat = std::none_of(v.begin(), v.end(), [](const json& e) { return e.is_structured(); });
    std::string s =
        flat ? v.dump()
             : (v.is_array() ? fmt::format("[... {} items]", v.size()) : fmt::format("{{... {} keys}}", v.size()));
    if (s.size() > 40) s = s.substr(0, 37) + "...";
    return fmt::format("{} ({})", s, v.type_name());
  }

 private:
  const json& j_;
  std::string source_;
};

// n rounded up to a multiple of m; n itself when that would overflow (validate() then refuses the size).
int64_t round_up(int64_t n, int64_t m) {
  int64_t r = 0;
  if (m <= 0 || __builtin_add_overflow(n, m - 1, &r)) return n;
  return r / m * m;
}

// lit_gpt attn_layer_pos is a string holding a Python list that the original eval()s, e.g. "[1,5]"
// or "[0,]"; a JSON list is accepted too.
std::vector<int64_t> parse_layer_list(const json& v, const std::string& source) {
  std::vector<int64_t> out;
  if (v.is_array()) {
    for (const auto& e : v) {
      SAMBALM_CHECK(e.is_number_integer(), "{}: key 'attn_layer_pos' must list integers, found {}", source,
                    Fields::describe(v));
      out.push_back(e.get<int64_t>());
    }
    return out;
  }
  SAMBALM_CHECK(v.is_string(), "{}: key 'attn_layer_pos' must be a list like \"[1,5]\", found {}", source,
                Fields::describe(v));
  std::string s = v.get<std::string>();
  size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
  bool ok = a != std::string::npos && ((s[a] == '[' && s[b] == ']') || (s[a] == '(' && s[b] == ')'));
  SAMBALM_CHECK(ok, "{}: key 'attn_layer_pos' must be a list like \"[1,5]\", found \"{}\"", source, s);
  std::string item;
  auto flush = [&](bool last) {
    size_t p = item.find_first_not_of(" \t"), q = item.find_last_not_of(" \t");
    std::string t = p == std::string::npos ? "" : item.substr(p, q - p + 1);
    item.clear();
    if (t.empty()) {
      if (last) return;  // trailing comma: "[0,]"
      fail("{}: key 'attn_layer_pos' has an empty entry in \"{}\"", source, s);
    }
    size_t used = 0;
    int64_t n = 0;
    try {
      n = std::stoll(t, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    SAMBALM_CHECK(used == t.size(), "{}: key 'attn_layer_pos' entry '{}' is not an integer (in \"{}\")", source, t, s);
    out.push_back(n);
  };
  for (size_t i = a + 1; i < b; ++i) {
    if (s[i] == ',')
      flush(false);
    else
      item += s[i];
  }
  flush(true);
  return out;
}

// Why a lit_gpt Config describes a model sambalm cannot build ("" when it can).
std::string lit_gpt_refusal(const Fields& f) {
  if (f.boolean("mamba", false)) return "";
  bool swa_mlp = f.boolean("mamba_swa_mlp", false);
  if (!swa_mlp && f.boolean("use_mega", false))
    return "it uses the Mega-S6 mixer (use_mega), which sambalm does not implement";
  if (!swa_mlp && !f.has("attn_layer_pos")) {
    int64_t L = f.integer("n_layer", 16), mb = f.integer("mb_per_layer", -1);
    int64_t ret = f.integer("ret_per_layer", -1), gla = f.integer("gla_per_layer", -1);
    for (int64_t i = 0; i < L; ++i) {
      if (mb > 0 && i % mb == 0) continue;
      if (ret > 0 && i % ret == 0)
        return "it uses the RetNet mixer (ret_per_layer), which needs flash-linear-attention kernels and is not "
               "implemented in sambalm";
      if (gla > 0 && i % gla == 0)
        return "it uses the GLA mixer (gla_per_layer), which needs flash-linear-attention kernels and is not "
               "implemented in sambalm";
    }
  }
  bool mlp = f.boolean("mlp", true);
  if (mlp && (f.boolean("parallel_residual", true) || f.boolean("shared_attention_norm", false)))
    return "parallel_residual/shared_attention_norm is set: the original Block then creates no norm_2 but its "
           "forward applies norm_2, so the original model cannot run (there is no parallel-residual forward)";
  if (mlp && f.string("_mlp_class", "GptNeoxMLP") != "LLaMAMLP")
    return fmt::format(
        "_mlp_class '{}' is not supported (only \"LLaMAMLP\", the SwiGLU MLP; GptNeoxMLP does not "
        "exist in lit_gpt/model.py)",
        f.string("_mlp_class", "GptNeoxMLP"));
  if (f.boolean("sc_attn", false)) return "sc_attn (a causal convolution on q, k, v) is not implemented in sambalm";
  return "";
}

// ArchScale's lit_gpt Config with yoco + gmu_yoco: SambaY (fixtures README "sambay_tiny"). Only the
// Phi-4-mini-flash family of flags is built; any other ArchScale variant is refused by name.
ModelConfig read_archscale_sambay(const Fields& f) {
  auto require = [&](const char* key, bool want, bool def) {
    SAMBALM_CHECK(f.boolean(key, def) == want, "{}: key '{}' must be {} for a SambaY model (yoco), found {}",
                  f.source(), key, want, !want);
  };
  require("gmu_yoco", true, false);
  require("use_da", true, false);
  require("nope", true, false);
  for (const char* k :
       {"moe",         "qk_norm",  "attn_norm",  "sc_attn",  "sink_attn",   "gated_attn", "da_const_lamb",
        "use_sigmoid", "relu2",    "mlp_relu2",  "gmu_attn", "gmu_mlp",     "yoco_nope",  "yoco_window",
        "post_norm",   "ffn_norm", "jamba_norm", "lc",       "scale_embed", "mup"})
    require(k, false, false);
  require("mlp", true, true);
  std::string rnn = f.string("rnn_type", "mamba");
  SAMBALM_CHECK(rnn == "mamba", "{}: key 'rnn_type' is \"{}\": SambaY is built with \"mamba\" only", f.source(), rnn);
  for (const char* k : {"rnn_per_layer", "gmu_per_layer"})
    SAMBALM_CHECK(f.integer(k, 2) == 2, "{}: key '{}' must be 2 for SambaY, found {}", f.source(), k, f.integer(k, 2));
  std::string norm = f.string("_norm_class", "LayerNorm");
  SAMBALM_CHECK(norm == "LayerNorm", "{}: key '_norm_class' must be \"LayerNorm\" for SambaY, found \"{}\"", f.source(),
                norm);
  ModelConfig c;
  c.sambay = true;
  c.name = f.string("name", "sambay");
  c.n_layer = f.integer("n_layer", 16);
  c.n_embd = f.integer("n_embd", 4096);
  c.n_head = f.integer("n_head", 32);
  SAMBALM_CHECK(c.n_head > 0, "{}: key 'n_head' must be positive, found {}", f.source(), c.n_head);
  c.head_size = f.has("head_dim") ? f.integer("head_dim", 0) : c.n_embd / c.n_head;
  c.n_query_groups = f.has("n_query_groups") ? f.integer("n_query_groups", 0) : c.n_head;
  c.vocab_size = f.integer("vocab_size", 50254);
  c.padding_multiple = f.integer("padding_multiple", 512);
  SAMBALM_CHECK(c.padding_multiple > 0, "{}: key 'padding_multiple' must be positive, found {}", f.source(),
                c.padding_multiple);
  c.padded_vocab_size =
      f.has("padded_vocab_size") ? f.integer("padded_vocab_size", 0) : round_up(c.vocab_size, c.padding_multiple);
  c.block_size = f.integer("block_size", 4096);
  c.norm_eps = f.number("norm_eps", 1e-5);
  c.norm = NormKind::LayerNorm;
  SAMBALM_CHECK(f.has("intermediate_size"), "{}: key 'intermediate_size' is missing", f.source());
  c.intermediate_size = f.integer("intermediate_size", 0);
  c.local_window = f.integer("local_window", -1);
  c.nope = true;
  c.bias = false;
  SAMBALM_CHECK(!f.boolean("bias", false), "{}: key 'bias' must be false for SambaY (its MLP and Mamba have none)",
                f.source());
  c.attn_bias = f.boolean("attn_bias", false);
  c.attn_out_bias = f.boolean("attn_out_bias", false);
  c.tied_embeddings = f.boolean("tied_embed", true);
  c.mamba_init = true;
  return c;
}

// Hugging Face Phi4Flash config.json (model_type "phi4flash", Phi-4-mini-flash-reasoning).
ModelConfig read_hf_phi4flash(const Fields& f) {
  ModelConfig c;
  c.sambay = true;
  c.name = f.string("_name_or_path", "phi4flash");
  c.n_layer = f.integer("num_hidden_layers", 32);
  c.n_embd = f.integer("hidden_size", 2560);
  c.n_head = f.integer("num_attention_heads", 40);
  SAMBALM_CHECK(c.n_head > 0, "{}: key 'num_attention_heads' must be positive, found {}", f.source(), c.n_head);
  c.head_size = c.n_embd / c.n_head;
  c.n_query_groups = f.integer("num_key_value_heads", c.n_head);
  c.intermediate_size = f.integer("intermediate_size", 4 * c.n_embd);
  // The embedding has exactly vocab_size rows (already padded in the published model).
  c.vocab_size = f.integer("vocab_size", 200064);
  c.padded_vocab_size = c.vocab_size;
  c.padding_multiple = 1;
  c.block_size = f.integer("max_position_embeddings", 4096);
  c.norm = NormKind::LayerNorm;
  c.norm_eps = f.number("layer_norm_eps", 1e-5);
  c.local_window = f.integer("sliding_window", 512);
  c.nope = true;
  c.bias = false;
  c.attn_bias = true;  // Wqkv and out_proj are Linear layers with biases
  c.attn_out_bias = true;
  c.tied_embeddings = f.boolean("tie_word_embeddings", true);
  c.mamba_init = true;
  SAMBALM_CHECK(f.integer("mb_per_layer", 2) == 2, "{}: key 'mb_per_layer' must be 2, found {}", f.source(),
                f.integer("mb_per_layer", 2));
  c.d_state = f.integer("mamba_d_state", 16);
  c.d_conv = f.integer("mamba_d_conv", 4);
  c.expand = f.integer("mamba_expand", 2);
  c.dt_rank = f.has("mamba_dt_rank") ? f.auto_or_integer("mamba_dt_rank") : 0;
  c.conv_bias = f.boolean("mamba_conv_bias", true);
  c.proj_bias = f.boolean("mamba_proj_bias", false);
  for (const char* k : {"mlp_bias", "lm_head_bias"})
    SAMBALM_CHECK(!f.boolean(k, false), "{}: key '{}' must be false (Phi4Flash has no such bias)", f.source(), k);
  std::string act = f.string("hidden_act", "silu");
  SAMBALM_CHECK(act == "silu", "{}: key 'hidden_act' must be \"silu\", found \"{}\"", f.source(), act);
  return c;
}

ModelConfig read_lit_gpt(const Fields& f) {
  if (f.boolean("yoco", false)) return read_archscale_sambay(f);
  std::string why = lit_gpt_refusal(f);
  SAMBALM_CHECK(why.empty(), "{}: unsupported lit_gpt model: {}", f.source(), why);
  ModelConfig c;
  c.name = f.string("name", "lit-GPT");
  c.n_layer = f.integer("n_layer", 16);
  c.n_embd = f.integer("n_embd", 4096);
  c.vocab_size = f.integer("vocab_size", 50254);
  c.padding_multiple = f.integer("padding_multiple", 512);
  SAMBALM_CHECK(c.padding_multiple > 0, "{}: key 'padding_multiple' must be positive, found {}", f.source(),
                c.padding_multiple);
  c.padded_vocab_size =
      f.has("padded_vocab_size") ? f.integer("padded_vocab_size", 0) : round_up(c.vocab_size, c.padding_multiple);
  c.block_size = f.integer("block_size", 4096);
  c.norm_eps = f.number("norm_eps", 1e-5);
  if (f.boolean("mamba", false)) {
    // The lit_gpt mamba=true path reads only these fields (presets README "Two model paths"); its
    // Mamba mixer keeps the mamba_simple.py defaults and the head is always tied.
    c.mamba = true;
    c.mamba_init = true;
    c.tied_embeddings = true;
    c.mlp = false;
    c.norm = f.boolean("rms_norm", true) ? NormKind::RMSNorm : NormKind::LayerNorm;
    return c;
  }
  c.n_head = f.integer("n_head", 32);
  SAMBALM_CHECK(c.n_head > 0, "{}: key 'n_head' must be positive, found {}", f.source(), c.n_head);
  c.n_query_groups = f.has("n_query_groups") ? f.integer("n_query_groups", 0) : c.n_head;
  c.head_size = c.n_embd / c.n_head;  // a property of the original Config
  c.mlp = f.boolean("mlp", true);
  if (f.has("intermediate_size"))
    c.intermediate_size = f.integer("intermediate_size", 0);
  else if (c.mlp)
    fail("{}: key 'intermediate_size' is missing (LLaMAMLP needs it, as in the original Config)", f.source());
  c.rotary_percentage = f.number("rotary_percentage", 0.25);
  c.condense_ratio = f.number("condense_ratio", 1.0);
  c.local_window = f.integer("local_window", -1);
  c.full_per_layer = f.integer("full_per_layer", 1000000);
  c.mb_per_layer = f.integer("mb_per_layer", -1);
  if (f.has("attn_layer_pos")) {
    c.attn_layer_pos = parse_layer_list(f.at("attn_layer_pos"), f.source());
    c.has_attn_layer_pos = true;
  }
  c.mamba_swa_mlp = f.boolean("mamba_swa_mlp", false);
  c.abl_mamba = f.boolean("abl_mamba", false);
  c.nope = f.boolean("nope", false);
  c.bias = f.boolean("bias", true);
  c.mamba_init = f.boolean("mamba_init", false);
  c.tied_embeddings = c.mamba_init;  // GPT.__init__ ties only under mamba_init
  std::string norm = f.string("_norm_class", "LayerNorm");
  if (norm == "RMSNorm" || norm == "FusedRMSNorm")
    c.norm = NormKind::RMSNorm;
  else if (norm == "LayerNorm")
    c.norm = NormKind::LayerNorm;
  else
    fail("{}: key '_norm_class' must be \"RMSNorm\", \"FusedRMSNorm\" or \"LayerNorm\", found \"{}\"", f.source(),
         norm);
  return c;
}

ModelConfig read_mamba_ssm(const Fields& f) {
  ModelConfig c;
  c.name = f.string("name", "mamba");
  c.mamba = true;
  c.mamba_init = true;
  c.mlp = false;
  c.n_embd = f.integer("d_model", 2560);
  c.n_layer = f.integer("n_layer", 64);
  c.vocab_size = f.integer("vocab_size", 50277);
  c.padding_multiple = f.integer("pad_vocab_size_multiple", 8);
  SAMBALM_CHECK(c.padding_multiple > 0, "{}: key 'pad_vocab_size_multiple' must be positive, found {}", f.source(),
                c.padding_multiple);
  c.padded_vocab_size = round_up(c.vocab_size, c.padding_multiple);
  c.norm = f.boolean("rms_norm", true) ? NormKind::RMSNorm : NormKind::LayerNorm;
  c.tied_embeddings = f.boolean("tie_embeddings", true);
  SAMBALM_CHECK(f.integer("d_intermediate", 0) == 0,
                "{}: key 'd_intermediate' is {}: mamba_ssm's gated MLP blocks are not supported (only 0)", f.source(),
                f.integer("d_intermediate", 0));
  if (f.has("attn_layer_idx")) {
    const json& a = f.at("attn_layer_idx");
    SAMBALM_CHECK(a.is_array() && a.empty(),
                  "{}: key 'attn_layer_idx' is {}: mamba_ssm attention layers are not supported (only [])", f.source(),
                  Fields::describe(a));
  }
  if (f.has("ssm_cfg")) {
    const json& s = f.at("ssm_cfg");
    SAMBALM_CHECK(s.is_object(), "{}: key 'ssm_cfg' must be an object, found {}", f.source(), Fields::describe(s));
    Fields ssm(s, f.source() + " ssm_cfg");
    std::string layer = ssm.string("layer", "Mamba1");
    SAMBALM_CHECK(layer == "Mamba1", "{}: ssm_cfg layer '{}' is not supported (only Mamba1)", f.source(), layer);
    c.d_state = ssm.integer("d_state", 16);
    c.d_conv = ssm.integer("d_conv", 4);
    c.expand = ssm.integer("expand", 2);
    c.dt_rank = ssm.auto_or_integer("dt_rank");
    c.conv_bias = ssm.boolean("conv_bias", true);
    c.proj_bias = ssm.boolean("bias", false);
  }
  return c;
}

ModelConfig read_hf_mamba(const Fields& f) {
  std::string type = f.string("model_type", "mamba");
  if (type == "phi4flash") return read_hf_phi4flash(f);
  SAMBALM_CHECK(type == "mamba", "{}: Hugging Face model_type '{}' is not supported (only \"mamba\" and \"phi4flash\")",
                f.source(), type);
  ModelConfig c;
  c.name = f.string("_name_or_path", "hf-mamba");
  c.mamba = true;
  c.mamba_init = true;
  c.mlp = false;
  c.norm = NormKind::RMSNorm;  // MambaRMSNorm throughout
  c.n_embd = f.integer("hidden_size", 768);
  c.n_layer = f.integer("num_hidden_layers", 32);
  // MambaForCausalLM's embedding has exactly vocab_size rows (pad_vocab_size_multiple is not applied).
  c.vocab_size = f.integer("vocab_size", 50280);
  c.padded_vocab_size = c.vocab_size;
  c.padding_multiple = 1;
  c.d_state = f.integer("state_size", 16);
  c.d_conv = f.integer("conv_kernel", 4);
  c.expand = f.integer("expand", 2);
  c.dt_rank = f.auto_or_integer("time_step_rank");
  c.conv_bias = f.boolean("use_conv_bias", true);
  c.proj_bias = f.boolean("use_bias", false);
  c.norm_eps = f.number("layer_norm_epsilon", 1e-5);
  c.tied_embeddings = f.boolean("tie_word_embeddings", true);
  if (f.has("intermediate_size")) {
    int64_t product = 0;
    SAMBALM_CHECK(!__builtin_mul_overflow(c.expand, c.n_embd, &product) && f.integer("intermediate_size", 0) == product,
                  "{}: key 'intermediate_size' ({}) must equal expand * hidden_size ({} * {})", f.source(),
                  f.integer("intermediate_size", 0), c.expand, c.n_embd);
  }
  return c;
}

const char* kNormNames[] = {"rmsnorm", "layernorm"};

ModelConfig read_sambalm(const json& j, const Fields& f) {
  static const std::set<std::string> known = {"format",
                                              "version",
                                              "name",
                                              "mamba",
                                              "sambay",
                                              "attn_bias",
                                              "attn_out_bias",
                                              "n_layer",
                                              "n_embd",
                                              "n_head",
                                              "n_query_groups",
                                              "head_size",
                                              "intermediate_size",
                                              "vocab_size",
                                              "padded_vocab_size",
                                              "padding_multiple",
                                              "block_size",
                                              "local_window",
                                              "full_per_layer",
                                              "mb_per_layer",
                                              "attn_layer_pos",
                                              "mamba_swa_mlp",
                                              "abl_mamba",
                                              "nope",
                                              "mlp",
                                              "bias",
                                              "mamba_init",
                                              "tied_embeddings",
                                              "rotary_percentage",
                                              "rope_base",
                                              "condense_ratio",
                                              "norm_eps",
                                              "norm",
                                              "d_state",
                                              "d_conv",
                                              "expand",
                                              "dt_rank",
                                              "conv_bias",
                                              "proj_bias",
                                              "layer_pattern"};
  for (const auto& [k, v] : j.items())
    SAMBALM_CHECK(known.count(k), "{}: unknown key '{}' in a sambalm config", f.source(), k);
  int64_t version = f.integer("version", 1);
  SAMBALM_CHECK(version == 1, "{}: sambalm config version {} is not supported (expected 1)", f.source(), version);
  ModelConfig c;
  const ModelConfig d;
  c.name = f.string("name", "");
  c.mamba = f.boolean("mamba", d.mamba);
  c.sambay = f.boolean("sambay", d.sambay);
  c.attn_bias = f.boolean("attn_bias", d.attn_bias);
  c.attn_out_bias = f.boolean("attn_out_bias", d.attn_out_bias);
  c.n_layer = f.integer("n_layer", 0);
  c.n_embd = f.integer("n_embd", 0);
  c.n_head = f.integer("n_head", 0);
  c.n_query_groups = f.integer("n_query_groups", c.n_head);
  c.head_size = f.integer("head_size", c.n_head > 0 ? c.n_embd / c.n_head : 0);
  c.intermediate_size = f.integer("intermediate_size", 0);
  c.vocab_size = f.integer("vocab_size", 0);
  c.padding_multiple = f.integer("padding_multiple", d.padding_multiple);
  c.padded_vocab_size = f.integer("padded_vocab_size", round_up(c.vocab_size, c.padding_multiple));
  c.block_size = f.integer("block_size", d.block_size);
  c.local_window = f.integer("local_window", d.local_window);
  c.full_per_layer = f.integer("full_per_layer", d.full_per_layer);
  c.mb_per_layer = f.integer("mb_per_layer", d.mb_per_layer);
  if (f.has("attn_layer_pos")) {
    c.attn_layer_pos = parse_layer_list(f.at("attn_layer_pos"), f.source());
    c.has_attn_layer_pos = true;
  }
  c.mamba_swa_mlp = f.boolean("mamba_swa_mlp", d.mamba_swa_mlp);
  c.abl_mamba = f.boolean("abl_mamba", d.abl_mamba);
  c.nope = f.boolean("nope", d.nope);
  c.mlp = f.boolean("mlp", d.mlp);
  c.bias = f.boolean("bias", d.bias);
  c.mamba_init = f.boolean("mamba_init", d.mamba_init);
  c.tied_embeddings = f.boolean("tied_embeddings", d.tied_embeddings);
  c.rotary_percentage = f.number("rotary_percentage", d.rotary_percentage);
  c.rope_base = f.number("rope_base", d.rope_base);
  c.condense_ratio = f.number("condense_ratio", d.condense_ratio);
  c.norm_eps = f.number("norm_eps", d.norm_eps);
  std::string norm = f.string("norm", "rmsnorm");
  if (norm == kNormNames[0])
    c.norm = NormKind::RMSNorm;
  else if (norm == kNormNames[1])
    c.norm = NormKind::LayerNorm;
  else
    fail("{}: key 'norm' must be \"rmsnorm\" or \"layernorm\", found \"{}\"", f.source(), norm);
  c.d_state = f.integer("d_state", d.d_state);
  c.d_conv = f.integer("d_conv", d.d_conv);
  c.expand = f.integer("expand", d.expand);
  c.dt_rank = f.integer("dt_rank", d.dt_rank);
  c.conv_bias = f.boolean("conv_bias", d.conv_bias);
  c.proj_bias = f.boolean("proj_bias", d.proj_bias);
  return c;
}

// Sizes a config file may give: far above any real model, low enough that no count formed from
// them (parameters, elements of a tensor, state floats) overflows 64 bits and that the per-layer
// tables stay small; reading a config must not cost more than the config is worth.
void check_limits(const ModelConfig& c, const std::string& source) {
  struct Limit {
    const char* field;
    int64_t value, max;
  };
  const Limit limits[] = {{"n_layer", c.n_layer, 4096},
                          {"n_embd", c.n_embd, int64_t(1) << 18},
                          {"n_head", c.n_head, 4096},
                          {"n_query_groups", c.n_query_groups, 4096},
                          {"head_size", c.head_size, 4096},
                          {"intermediate_size", c.intermediate_size, int64_t(1) << 20},
                          {"vocab_size", c.vocab_size, int64_t(1) << 26},
                          {"padded_vocab_size", c.padded_vocab_size, int64_t(1) << 26},
                          {"d_state", c.d_state, 4096},
                          {"d_conv", c.d_conv, 256},
                          {"expand", c.expand, 64},
                          {"dt_rank", c.dt_rank, int64_t(1) << 18}};
  for (const Limit& l : limits)
    SAMBALM_CHECK(l.value <= l.max, "{}: {} = {} is larger than sambalm supports (at most {})", source, l.field,
                  l.value, l.max);
  for (auto [field, v] : {std::pair{"rotary_percentage", c.rotary_percentage},
                          {"rope_base", c.rope_base},
                          {"condense_ratio", c.condense_ratio},
                          {"norm_eps", c.norm_eps}})
    SAMBALM_CHECK(std::isfinite(v), "{}: {} must be a finite number, found {}", source, field, v);
  SAMBALM_CHECK(c.rotary_percentage >= 0 && c.rotary_percentage <= 1,
                "{}: rotary_percentage must be in [0, 1], found {}", source, c.rotary_percentage);
}

}  // namespace

ModelConfig ModelConfig::from_json(const json& j, const std::string& source) {
  SAMBALM_CHECK(j.is_object(), "{}: a model config must be a JSON object, found {}", source, j.type_name());
  Fields f(j, source);
  ModelConfig c;
  if (j.contains("format")) {
    std::string fmt_name = f.string("format", "");
    SAMBALM_CHECK(fmt_name == "sambalm", "{}: key 'format' is \"{}\", expected \"sambalm\"", source, fmt_name);
    c = read_sambalm(j, f);
  } else if (j.contains("model_type") || (j.contains("hidden_size") && j.contains("state_size"))) {
    c = read_hf_mamba(f);
  } else if (j.contains("d_model")) {
    c = read_mamba_ssm(f);
  } else if (j.contains("n_embd")) {
    c = read_lit_gpt(f);
  } else {
    fail(
        "{}: unknown model config format: expected a sambalm config (\"format\": \"sambalm\"), a lit_gpt Config "
        "(\"n_embd\"), a mamba_ssm MambaConfig (\"d_model\") or a Hugging Face MambaConfig (\"model_type\": "
        "\"mamba\")",
        source);
  }
  check_limits(c, source);
  try {
    c.validate();
  } catch (const Error& e) {
    fail("{}: {}", source, e.what());
  }
  return c;
}

ModelConfig ModelConfig::from_json_file(const std::string& path) {
  std::string text = read_text_file(path);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
  return from_json(j, path);
}

json ModelConfig::to_json() const {
  json j;
  j["format"] = "sambalm";
  j["version"] = 1;
  j["name"] = name;
  j["mamba"] = mamba;
  if (sambay) {
    j["sambay"] = true;
    j["attn_bias"] = attn_bias;
    j["attn_out_bias"] = attn_out_bias;
  }
  j["n_layer"] = n_layer;
  j["n_embd"] = n_embd;
  j["vocab_size"] = vocab_size;
  j["padded_vocab_size"] = padded_vocab_size;
  j["padding_multiple"] = padding_multiple;
  j["block_size"] = block_size;
  j["norm"] = kNormNames[norm == NormKind::RMSNorm ? 0 : 1];
  j["norm_eps"] = norm_eps;
  j["tied_embeddings"] = tied_embeddings;
  j["mamba_init"] = mamba_init;
  j["d_state"] = d_state;
  j["d_conv"] = d_conv;
  j["expand"] = expand;
  j["dt_rank"] = mamba_dt_rank();
  j["conv_bias"] = conv_bias;
  j["proj_bias"] = proj_bias;
  if (!mamba) {
    j["n_head"] = n_head;
    j["n_query_groups"] = n_query_groups;
    j["head_size"] = head_size;
    j["intermediate_size"] = intermediate_size;
    j["local_window"] = local_window;
    j["full_per_layer"] = full_per_layer;
    j["mb_per_layer"] = mb_per_layer;
    if (has_attn_layer_pos || !attn_layer_pos.empty()) j["attn_layer_pos"] = attn_layer_pos;
    j["mamba_swa_mlp"] = mamba_swa_mlp;
    j["abl_mamba"] = abl_mamba;
    j["nope"] = nope;
    j["mlp"] = mlp;
    j["bias"] = bias;
    j["rotary_percentage"] = rotary_percentage;
    j["rope_base"] = rope_base;
    j["condense_ratio"] = condense_ratio;
  }
  j["layer_pattern"] = layer_pattern();  // informative; ignored on reading
  return j;
}

json ModelConfig::to_hf_json() const {
  if (sambay) {
    // Phi4FlashConfig: what read_hf_phi4flash reads back as this config (the padded vocabulary is
    // the embedding's rows). Its attention biases are fixed (Wqkv and out_proj have them).
    SAMBALM_CHECK(attn_bias && attn_out_bias && head_size * n_head == n_embd,
                  "'{}' cannot be written as a Hugging Face Phi4Flash config: it needs attention biases and "
                  "head_size * n_head == n_embd",
                  name);
    json j;
    j["architectures"] = {"Phi4FlashForCausalLM"};
    j["model_type"] = "phi4flash";
    j["_name_or_path"] = name;
    j["vocab_size"] = padded_vocab_size;
    j["hidden_size"] = n_embd;
    j["intermediate_size"] = intermediate_size;
    j["num_hidden_layers"] = n_layer;
    j["num_attention_heads"] = n_head;
    j["num_key_value_heads"] = n_query_groups;
    j["hidden_act"] = "silu";
    j["layer_norm_eps"] = norm_eps;
    j["max_position_embeddings"] = block_size;
    j["sliding_window"] = local_window;
    j["mb_per_layer"] = 2;
    j["mamba_d_state"] = d_state;
    j["mamba_d_conv"] = d_conv;
    j["mamba_expand"] = expand;
    j["mamba_dt_rank"] = mamba_dt_rank();
    j["mamba_conv_bias"] = conv_bias;
    j["mamba_proj_bias"] = proj_bias;
    j["mlp_bias"] = false;
    j["lm_head_bias"] = false;
    j["tie_word_embeddings"] = tied_embeddings;
    return j;
  }
  SAMBALM_CHECK(mamba, "'{}' is not a pure Mamba model: a Hugging Face MambaConfig cannot describe it", name);
  SAMBALM_CHECK(norm == NormKind::RMSNorm, "'{}' uses LayerNorm: Hugging Face MambaForCausalLM has RMSNorm only", name);
  json j;
  j["architectures"] = {"MambaForCausalLM"};
  j["model_type"] = "mamba";
  j["_name_or_path"] = name;  // read back as the name; transformers overwrites it with the load path
  // MambaForCausalLM's embedding has exactly vocab_size rows: the padded size is the vocabulary
  // there (as in transformers' own conversion of the state-spaces checkpoints).
  j["vocab_size"] = padded_vocab_size;
  // Not used by MambaForCausalLM (it never pads); kept from the source when it padded, else the
  // MambaConfig default.
  j["pad_vocab_size_multiple"] = padding_multiple > 1 ? padding_multiple : 8;
  j["hidden_size"] = n_embd;
  j["num_hidden_layers"] = n_layer;
  j["state_size"] = d_state;
  j["expand"] = expand;
  j["intermediate_size"] = d_inner();
  j["conv_kernel"] = d_conv;
  j["time_step_rank"] = mamba_dt_rank();
  j["use_bias"] = proj_bias;
  j["use_conv_bias"] = conv_bias;
  j["layer_norm_epsilon"] = norm_eps;
  j["tie_word_embeddings"] = tied_embeddings;
  j["hidden_act"] = "silu";
  // sambalm keeps the residual stream in float32 on every path.
  j["residual_in_fp32"] = true;
  // The remaining fields take MambaConfig's defaults: token ids (GPT-NeoX's <|endoftext|> is 0) and
  // the initialisation and kernel-choice settings, which do not change what the weights compute.
  j["bos_token_id"] = 0;
  j["eos_token_id"] = 0;
  j["pad_token_id"] = 0;
  j["initializer_range"] = 0.1;
  j["rescale_prenorm_residual"] = false;
  j["time_step_scale"] = 1.0;
  j["time_step_min"] = 0.001;
  j["time_step_max"] = 0.1;
  j["time_step_init_scheme"] = "random";
  j["time_step_floor"] = 1e-4;
  j["use_cache"] = true;
  j["use_mambapy"] = false;
  return j;
}

json ModelConfig::to_mamba_ssm_json() const {
  SAMBALM_CHECK(mamba, "'{}' is not a pure Mamba model: a mamba_ssm MambaConfig cannot describe it", name);
  // MambaLMHeadModel builds its norms with the default epsilon; a config.json cannot change it.
  SAMBALM_CHECK(norm_eps == 1e-5, "'{}' has norm_eps {}: mamba_ssm's MambaLMHeadModel always uses 1e-5", name,
                norm_eps);
  // Only the fields of mamba_ssm 1.x's MambaConfig (2.x adds d_intermediate, attn_layer_idx and
  // attn_cfg with defaults that mean "pure Mamba"): MambaConfig(**config) refuses unknown keys, and
  // Mamba(**ssm_cfg) in 1.x refuses "layer", so this file loads under either.
  json j;
  j["d_model"] = n_embd;
  j["n_layer"] = n_layer;
  // mamba_ssm pads vocab_size up to a multiple of pad_vocab_size_multiple, as we do; when our padded
  // size is not that rounding (a config that set it directly), the padded size is the vocabulary.
  const bool rounds = padding_multiple > 0 && round_up(vocab_size, padding_multiple) == padded_vocab_size;
  j["vocab_size"] = rounds ? vocab_size : padded_vocab_size;
  j["pad_vocab_size_multiple"] = rounds ? padding_multiple : 1;
  j["ssm_cfg"] = {{"d_state", d_state},         {"d_conv", d_conv},       {"expand", expand},
                  {"dt_rank", mamba_dt_rank()}, {"conv_bias", conv_bias}, {"bias", proj_bias}};
  j["rms_norm"] = norm == NormKind::RMSNorm;
  j["residual_in_fp32"] = true;
  j["fused_add_norm"] = true;
  j["tie_embeddings"] = tied_embeddings;
  return j;
}

std::string preset_refusal(const PresetEntry& p) {
  if (std::string(p.family) != "lit_gpt") return "";
  json j = json::parse(p.config_json);
  return lit_gpt_refusal(Fields(j, p.name));
}

}  // namespace sambalm
