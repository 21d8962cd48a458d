// ModelConfig: one description for every model sambalm runs — the microsoft/Samba lit_gpt
// configurations (Samba, Mamba+SWA+MLP, Llama full/SWA baselines, lit_gpt Mamba), the
// state-spaces Mamba LMs, and config.json files in lit_gpt / mamba_ssm / Hugging Face format.
// The architecture is resolved once into `layout()`: per block, the list of residual sublayers.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace sambalm {

enum class NormKind { RMSNorm, LayerNorm };
// SambaY (microsoft/ArchScale) adds three mixers: differential attention over its own keys/values
// (DiffAttention), differential cross-attention over the keys/values of the one full-attention
// layer (CrossAttention, YOCO), and the gated memory unit (Gmu) reading the memory of the last
// self-decoder Mamba layer.
enum class SublayerKind { Mamba, Attention, MLP, DiffAttention, CrossAttention, Gmu };

// One residual sublayer: x = x + f(norm(x)).
struct Sublayer {
  SublayerKind kind;
  int64_t mlp_hidden = 0;     // MLP: hidden size (intermediate_size, or 2*n_embd in abl_mamba slots)
  int64_t window = 0;         // Attention: keys seen per query including itself; <= 0 = full causal
  bool rope = true;           // Attention: RoPE on q, k
  bool keeps_memory = false;  // Mamba (SambaY block L/2): its scan output y is the GMUs' memory
  bool shares_kv = false;     // DiffAttention (SambaY block L/2+1): its keys/values serve the cross-attention
  double lambda_init = 0;     // DiffAttention, CrossAttention: 0.8 - 0.6 exp(-0.3 * block index)
  // Name of this sublayer's norm and module in the original lit_gpt state_dict, e.g.
  // ("norm_1", "attn"), ("norm_2", "mlp"), ("norm_m", "mamba"), ("norm_attn", "attn").
  std::string lit_norm, lit_module;
};

struct BlockLayout {
  std::vector<Sublayer> sublayers;
};

// The largest value each size field may take. Far above any published model (the largest have about
// 130 layers, d = 16384, vocabularies of 256K), low enough that a config's layout, parameter count and
// memory estimate are computed in moments and without overflow: a config.json with "n_layer":
// 10000000 is refused by validate() instead of making `info` build ten million blocks.
struct ConfigLimits {
  static constexpr int64_t n_layer = 4096;
  static constexpr int64_t n_embd = 1 << 17;               // 131072
  static constexpr int64_t vocab_size = int64_t(1) << 24;  // 16.7M, also padded_vocab_size
  static constexpr int64_t padding_multiple = 1 << 16;
  static constexpr int64_t n_head = 1 << 14;  // also n_query_groups
  static constexpr int64_t head_size = 1 << 14;
  static constexpr int64_t intermediate_size = 1 << 20;
  static constexpr int64_t block_size = int64_t(1) << 30;  // also local_window
  static constexpr int64_t d_state = 1 << 12;
  static constexpr int64_t d_conv = 1 << 10;
  static constexpr int64_t expand = 64;
  static constexpr int64_t dt_rank = 1 << 17;
};

struct ModelConfig {
  std::string name;    // preset name or a label
  bool mamba = false;  // pure Mamba LM path (mamba_ssm MambaLMHeadModel / lit_gpt mamba=true)
  // SambaY (ArchScale yoco + gmu_yoco + use_da, Phi-4-mini-flash): block roles fixed by the index
  // (layout()), LayerNorm, no position encoding, differential attention, MLP w1 fused as [gate | up].
  bool sambay = false;
  bool attn_bias = true;      // SambaY: q and v projections have biases (never k)
  bool attn_out_bias = true;  // SambaY: the attention output projection has a bias

  int64_t n_layer = 0;
  int64_t n_embd = 0;
  int64_t n_head = 0;
  int64_t n_query_groups = 0;
  int64_t head_size = 0;
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  int64_t padded_vocab_size = 0;
  int64_t padding_multiple = 64;
  int64_t block_size = 4096;  // training sequence length

  // Block-type selection (lit_gpt semantics, see presets/README).
  int64_t local_window = -1;
  int64_t full_per_layer = 1000000;
  int64_t mb_per_layer = -1;
  std::vector<int64_t> attn_layer_pos;  // empty = not set (unless has_attn_layer_pos)
  bool has_attn_layer_pos = false;      // set explicitly, possibly to an empty list ("[]")
  bool mamba_swa_mlp = false;
  bool abl_mamba = false;
  bool nope = false;
  bool mlp = true;
  bool bias = false;
  bool mamba_init = false;
  bool tied_embeddings = true;
  double rotary_percentage = 1.0;
  double rope_base = 10000.0;
  double condense_ratio = 1.0;
  double norm_eps = 1e-5;
  NormKind norm = NormKind::RMSNorm;

  // Mamba mixer hyper-parameters.
  int64_t d_state = 16;
  int64_t d_conv = 4;
  int64_t expand = 2;
  int64_t dt_rank = 0;  // 0 = ceil(n_embd / 16)
  bool conv_bias = true;
  bool proj_bias = false;

  int64_t d_inner() const { return expand * n_embd; }
  int64_t mamba_dt_rank() const { return dt_rank > 0 ? dt_rank : (n_embd + 15) / 16; }
  int64_t rope_n_elem() const;  // int(rotary_percentage * head_size); 0 when nope
  bool has_attention() const;

  // Per-block sublayers, derived from the fields above (the original's rules).
  std::vector<BlockLayout> layout() const;
  // Throws sambalm::Error with the offending field when inconsistent (n_embd % n_head, ...) or above
  // its ConfigLimits maximum (naming the value and the limit).
  void validate() const;
  // Short architecture string, e.g. "(M S)x6" or "mamba+swa2048+mlp4096 ..."
  std::string layer_pattern() const;
  // One string per block in the presets' `derived.layers` notation: sublayers joined by '+', each
  // "mamba", "swa<W>", "attn" or "mlp<hidden>" (e.g. "mamba+mlp4096", "swa2048+mlp4096").
  std::vector<std::string> block_strings() const;
  // Total number of parameters (param_specs summed; a tied head counts once).
  int64_t num_params() const;

  // The block index of SambaY's memory Mamba layer (L/2) and of its shared-KV attention (L/2 + 1).
  int64_t sambay_memory_block() const { return n_layer / 2; }
  int64_t sambay_kv_block() const { return n_layer / 2 + 1; }

  // Named presets: the 46 lit_gpt names, the 6 state-spaces Mamba names and phi4miniflash_d32.
  static ModelConfig from_preset(const std::string& name);
  static std::vector<std::string> preset_names();
  // A config.json in lit_gpt (also ArchScale's SambaY fields), mamba_ssm, Hugging Face MambaConfig or
  // Hugging Face Phi4Flash format (auto-detected);
  // `source` names the file in errors.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& source);
  static ModelConfig from_json_file(const std::string& path);
  // sambalm's own config.json (documented in docs/FORMATS.md).
  nlohmann::json to_json() const;
  // A Hugging Face config.json for transformers' MambaForCausalLM (docs/FORMATS.md), which
  // from_json reads back as this config except for the vocabulary: HF has no padding, so
  // `vocab_size` is the embedding's padded_vocab_size rows. Throws Error unless this is a pure Mamba
  // model with RMSNorm (the only kind MambaForCausalLM can hold) or SambaY (then a Phi4Flash config).
  nlohmann::json to_hf_json() const;
  // The MambaConfig config.json that state-spaces mamba_ssm's MambaLMHeadModel.from_pretrained reads
  // (d_model, n_layer, vocab_size, ssm_cfg, rms_norm, residual_in_fp32, fused_add_norm,
  // pad_vocab_size_multiple, tie_embeddings), which from_json reads back as this config. Throws
  // Error unless this is a pure Mamba model with norm_eps 1e-5 (mamba_ssm's fixed epsilon).
  nlohmann::json to_mamba_ssm_json() const;
};

}  // namespace sambalm
