// ModelConfig: the architecture rules (which sublayers block i gets) and the consistency checks.
// The rules are those of microsoft/Samba lit_gpt/model.py (Block, GPT) and of mamba_ssm's
// MambaLMHeadModel; presets/README.md in the reference data spells them out.
#include "model/config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/params.h"

namespace sambalm {

namespace {

Sublayer mamba_sublayer(const std::string& norm, const std::string& module) {
  Sublayer s;
  s.kind = SublayerKind::Mamba;
  s.lit_norm = norm;
  s.lit_module = module;
  return s;
}

Sublayer mlp_sublayer(int64_t hidden, const std::string& norm, const std::string& module) {
  Sublayer s;
  s.kind = SublayerKind::MLP;
  s.mlp_hidden = hidden;
  s.lit_norm = norm;
  s.lit_module = module;
  return s;
}

// Attention of block i. lit_gpt: a layer is "local" when i % full_per_layer < full_per_layer - 1,
// and a local layer uses the window only when local_window > -1 (flash-attn window (W-1, 0), i.e.
// W keys including the query itself).
Sublayer attention_sublayer(const ModelConfig& c, int64_t i, const std::string& norm) {
  Sublayer s;
  s.kind = SublayerKind::Attention;
  bool local = c.full_per_layer > 0 && (i % c.full_per_layer) < c.full_per_layer - 1;
  s.window = (local && c.local_window > -1) ? c.local_window : 0;
  s.rope = !c.nope && c.rope_n_elem() > 0;
  s.lit_norm = norm;
  s.lit_module = "attn";
  return s;
}

bool attn_pos_set(const ModelConfig& c) { return c.has_attn_layer_pos || !c.attn_layer_pos.empty(); }

// SambaY's mixer of block i of L (ArchScale lit_gpt/model.py with yoco, gmu_yoco, use_da, nope):
// the self-decoder alternates Mamba (even) and sliding-window attention (odd) below L/2; block L/2 is
// the Mamba layer whose scan output is the memory; L/2 + 1 full attention whose keys/values are shared;
// above, the cross-decoder alternates GMU (even) and cross-attention (odd).
Sublayer sambay_mixer(const ModelConfig& c, int64_t i) {
  Sublayer s;
  s.lit_norm = "norm_1";
  s.lit_module = "attn";
  s.rope = false;
  s.lambda_init = 0.8 - 0.6 * std::exp(-0.3 * static_cast<double>(i));
  const int64_t half = c.n_layer / 2;
  if (i < half) {
    s.kind = i % 2 == 0 ? SublayerKind::Mamba : SublayerKind::DiffAttention;
    if (s.kind == SublayerKind::DiffAttention) s.window = c.local_window;
  } else if (i == half) {
    s.kind = SublayerKind::Mamba;
    s.keeps_memory = true;
  } else if (i == half + 1) {
    s.kind = SublayerKind::DiffAttention;
    s.shares_kv = true;
  } else {
    s.kind = i % 2 == 0 ? SublayerKind::Gmu : SublayerKind::CrossAttention;
  }
  return s;
}

}  // namespace

int64_t ModelConfig::rope_n_elem() const {
  if (nope) return 0;
  return static_cast<int64_t>(rotary_percentage * static_cast<double>(head_size));
}

bool ModelConfig::has_attention() const {
  if (sambay) return true;
  for (const auto& b : layout())
    for (const auto& s : b.sublayers)
      if (s.kind == SublayerKind::Attention) return true;
  return false;
}

std::vector<BlockLayout> ModelConfig::layout() const {
  std::vector<BlockLayout> blocks(static_cast<size_t>(std::max<int64_t>(n_layer, 0)));
  for (int64_t i = 0; i < n_layer; ++i) {
    auto& subs = blocks[static_cast<size_t>(i)].sublayers;
    if (sambay) {
      subs.push_back(sambay_mixer(*this, i));
      subs.push_back(mlp_sublayer(intermediate_size, "norm_2", "mlp"));
      continue;
    }
    if (mamba) {
      // mamba_ssm MambaLMHeadModel / lit_gpt MBlock: fused add + norm, then the Mamba mixer.
      subs.push_back(mamba_sublayer("norm", "mixer"));
      continue;
    }
    if (mamba_swa_mlp) {
      // lit_gpt Block with mamba_swa_mlp: norm_m -> self.mb (Mamba), norm_attn -> self.attn.
      subs.push_back(mamba_sublayer("norm_m", "mb"));
      subs.push_back(attention_sublayer(*this, i, "norm_attn"));
    } else {
      bool use_mamba;
      if (attn_pos_set(*this))
        use_mamba = std::find(attn_layer_pos.begin(), attn_layer_pos.end(), i) == attn_layer_pos.end();
      else
        use_mamba = mb_per_layer > 0 && i % mb_per_layer == 0;
      if (use_mamba && abl_mamba)
        subs.push_back(mlp_sublayer(2 * n_embd, "norm_1", "attn"));  // LLaMAMLP in the Mamba slot
      else if (use_mamba)
        subs.push_back(mamba_sublayer("norm_1", "attn"));
      else
        subs.push_back(attention_sublayer(*this, i, "norm_1"));
    }
    if (mlp) subs.push_back(mlp_sublayer(intermediate_size, "norm_2", "mlp"));
  }
  return blocks;
}

std::vector<std::string> ModelConfig::block_strings() const {
  std::vector<std::string> out;
  for (const auto& b : layout()) {
    std::string s;
    for (const auto& sub : b.sublayers) {
      if (!s.empty()) s += "+";
      switch (sub.kind) {
        case SublayerKind::Mamba:
          s += "mamba";
          break;
        case SublayerKind::Attention:
          s += sub.window > 0 ? fmt::format("swa{}", sub.window) : "attn";
          break;
        case SublayerKind::MLP:
          s += fmt::format("mlp{}", sub.mlp_hidden);
          break;
        case SublayerKind::DiffAttention:
          s += sub.shares_kv ? "diffattn_shared_kv"
                             : (sub.window > 0 ? fmt::format("diffswa{}", sub.window) : "diffattn");
          break;
        case SublayerKind::CrossAttention:
          s += "cross_diffattn";
          break;
        case SublayerKind::Gmu:
          s += "gmu";
          break;
      }
      if (sub.keeps_memory) s += "_memory";
    }
    out.push_back(s);
  }
  return out;
}

std::string ModelConfig::layer_pattern() const {
  // One code per block for its mixers (the trailing standard MLP is implied): M Mamba, S sliding
  // window attention, A full attention, F the MLP in an abl_mamba Mamba slot; "MS" for
  // mamba_swa_mlp blocks. SambaY: m the memory Mamba, D differential SWA, K the shared-KV differential
  // attention, G a GMU, X cross-attention. Then the shortest repeating period: "(M S)x6", or the plain list.
  std::vector<std::string> codes;
  for (const auto& b : layout()) {
    std::string c;
    for (const auto& sub : b.sublayers) {
      if (sub.kind == SublayerKind::MLP && sub.lit_module == "mlp") continue;
      if (sub.kind == SublayerKind::Mamba) c += sub.keeps_memory ? "m" : "M";
      if (sub.kind == SublayerKind::DiffAttention) c += sub.shares_kv ? "K" : (sub.window > 0 ? "D" : "A");
      if (sub.kind == SublayerKind::CrossAttention) c += "X";
      if (sub.kind == SublayerKind::Gmu) c += "G";
      if (sub.kind == SublayerKind::Attention) c += sub.window > 0 ? "S" : "A";
      if (sub.kind == SublayerKind::MLP) c += "F";
    }
    codes.push_back(c);
  }
  size_t n = codes.size();
  if (n == 0) return "()";
  for (size_t p = 1; p <= n; ++p) {
    if (n % p) continue;
    bool periodic = true;
    for (size_t i = p; i < n && periodic; ++i) periodic = codes[i] == codes[i % p];
    if (!periodic) continue;
    if (p == n && n > 1) break;
    return fmt::format("({})x{}", fmt::join(codes.begin(), codes.begin() + static_cast<long>(p), " "), n / p);
  }
  return fmt::format("{}", fmt::join(codes, " "));
}

int64_t ModelConfig::num_params() const {
  int64_t n = 0;
  for (const auto& s : param_specs(*this)) n += shape_numel(s.shape);
  return n;
}

void ModelConfig::validate() const {
  const std::string& c = name.empty() ? std::string("model config") : name;
  auto positive = [&](const char* field, int64_t v) {
    SAMBALM_CHECK(v > 0, "{}: {} must be positive, found {}", c, field, v);
  };
  // Sizes first: everything below (layout(), the parameter count) takes time and memory in proportion.
  auto at_most = [&](const char* field, int64_t v, int64_t limit) {
    SAMBALM_CHECK(v <= limit, "{}: {} is {}, more than the {} this program supports", c, field, v, limit);
  };
  at_most("n_layer", n_layer, ConfigLimits::n_layer);
  at_most("n_embd", n_embd, ConfigLimits::n_embd);
  at_most("vocab_size", vocab_size, ConfigLimits::vocab_size);
  at_most("padded_vocab_size", padded_vocab_size, ConfigLimits::vocab_size);
  at_most("padding_multiple", padding_multiple, ConfigLimits::padding_multiple);
  at_most("n_head", n_head, ConfigLimits::n_head);
  at_most("n_query_groups", n_query_groups, ConfigLimits::n_head);
  at_most("head_size", head_size, ConfigLimits::head_size);
  at_most("intermediate_size", intermediate_size, ConfigLimits::intermediate_size);
  at_most("block_size", block_size, ConfigLimits::block_size);
  at_most("local_window", local_window, ConfigLimits::block_size);
  at_most("d_state", d_state, ConfigLimits::d_state);
  at_most("d_conv", d_conv, ConfigLimits::d_conv);
  at_most("expand", expand, ConfigLimits::expand);
  at_most("dt_rank", dt_rank, ConfigLimits::dt_rank);
  positive("n_layer", n_layer);
  positive("n_embd", n_embd);
  positive("vocab_size", vocab_size);
  positive("padded_vocab_size", padded_vocab_size);
  positive("block_size", block_size);
  SAMBALM_CHECK(padded_vocab_size >= vocab_size, "{}: padded_vocab_size ({}) must be >= vocab_size ({})", c,
                padded_vocab_size, vocab_size);
  SAMBALM_CHECK(norm_eps > 0 && std::isfinite(norm_eps), "{}: norm_eps must be positive, found {}", c, norm_eps);

  if (sambay) {
    // Differential attention pairs heads (2m, 2m+1) and key/value heads likewise; the roles need
    // L/2 + 2 to be even and a GMU/cross-attention pair per two blocks.
    SAMBALM_CHECK(n_layer % 4 == 0, "{}: n_layer ({}) must be a multiple of 4 for SambaY (num_hidden_layers)", c,
                  n_layer);
    SAMBALM_CHECK(n_head > 0 && n_head % 2 == 0,
                  "{}: n_head ({}) must be even for differential attention (num_attention_heads)", c, n_head);
    SAMBALM_CHECK(n_query_groups > 0 && n_query_groups % 2 == 0,
                  "{}: n_query_groups ({}) must be even for differential attention (num_key_value_heads)", c,
                  n_query_groups);
    SAMBALM_CHECK(local_window > 0, "{}: local_window must be a positive window for SambaY, found {}", c, local_window);
    SAMBALM_CHECK(norm == NormKind::LayerNorm, "{}: SambaY uses LayerNorm", c);
    SAMBALM_CHECK(!mamba && !mamba_swa_mlp && !abl_mamba && mlp,
                  "{}: SambaY cannot be combined with mamba, mamba_swa_mlp or abl_mamba, and needs its MLP", c);
  }
  bool any_mamba = false, any_attn = false, any_mlp = false;
  for (const auto& b : layout())
    for (const auto& s : b.sublayers) {
      any_mamba |= s.kind == SublayerKind::Mamba;
      any_attn |= s.kind == SublayerKind::Attention || s.kind == SublayerKind::DiffAttention;
      any_mlp |= s.kind == SublayerKind::MLP && s.lit_module == "mlp";
    }

  if (!mamba) {
    SAMBALM_CHECK(local_window == -1 || local_window > 0,
                  "{}: local_window must be -1 (full attention) or a positive window, found {}", c, local_window);
    SAMBALM_CHECK(full_per_layer >= 1, "{}: full_per_layer must be >= 1, found {}", c, full_per_layer);
    for (int64_t p : attn_layer_pos)
      SAMBALM_CHECK(p >= 0 && p < n_layer, "{}: attn_layer_pos entry {} is outside the {} layers", c, p, n_layer);
  }
  if (any_mamba) {
    positive("d_state", d_state);
    positive("d_conv", d_conv);
    positive("expand", expand);
    SAMBALM_CHECK(dt_rank >= 0, "{}: dt_rank must be positive (or 0 = ceil(n_embd/16)), found {}", c, dt_rank);
  }
  if (any_attn) {
    positive("n_head", n_head);
    positive("n_query_groups", n_query_groups);
    positive("head_size", head_size);
    SAMBALM_CHECK(n_embd % n_head == 0, "{}: n_embd ({}) must be divisible by n_head ({})", c, n_embd, n_head);
    SAMBALM_CHECK(n_head % n_query_groups == 0, "{}: n_head ({}) must be divisible by n_query_groups ({})", c, n_head,
                  n_query_groups);
    SAMBALM_CHECK(rotary_percentage >= 0 && rotary_percentage <= 1, "{}: rotary_percentage must be in [0, 1], found {}",
                  c, rotary_percentage);
    SAMBALM_CHECK(rope_n_elem() % 2 == 0,
                  "{}: RoPE dims int(rotary_percentage * head_size) = {} must be even (rotary_percentage {}, "
                  "head_size {})",
                  c, rope_n_elem(), rotary_percentage, head_size);
    SAMBALM_CHECK(rope_base > 0, "{}: rope_base must be positive, found {}", c, rope_base);
    SAMBALM_CHECK(condense_ratio > 0, "{}: condense_ratio must be positive, found {}", c, condense_ratio);
  }
  if (any_mlp) positive("intermediate_size", intermediate_size);
}

}  // namespace sambalm
