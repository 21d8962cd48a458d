// Parameter breakdown and memory estimates; the formulas are in memory_estimate.h.
#include "model/memory_estimate.h"

#include <string>

#include "core/error.h"
#include "model/params.h"

namespace sambalm {

ParamBreakdown param_breakdown(const ModelConfig& cfg) {
  ParamBreakdown b;
  auto layout = cfg.layout();
  for (const auto& s : param_specs(cfg)) {
    const int64_t n = shape_numel(s.shape);
    b.total += n;
    const std::string& name = s.name;
    if (name == "embedding.weight") {
      b.embedding += n;
    } else if (name == "lm_head.weight") {
      b.head += n;
    } else if (name.rfind("final_norm.", 0) == 0 || name.find(".norm.") != std::string::npos) {
      b.norms += n;
    } else {
      // blocks.{i}.{s}.<param>
      size_t i = std::stoul(name.substr(7)), dot = name.find('.', 7);
      size_t s = std::stoul(name.substr(dot + 1));
      switch (layout.at(i).sublayers.at(s).kind) {
        case SublayerKind::Mamba:
          b.mamba += n;
          break;
        case SublayerKind::Attention:
          b.attention += n;
          break;
        case SublayerKind::MLP:
          b.mlp += n;
          break;
      }
    }
  }
  return b;
}

MemoryEstimate estimate_memory(const ModelConfig& cfg, int64_t batch, int64_t seq_len, int64_t context) {
  SAMBALM_CHECK(batch > 0, "batch must be positive, found {}", batch);
  SAMBALM_CHECK(seq_len >= 0 && context >= 0, "sequence length and context must not be negative");
  MemoryEstimate m;
  m.batch = batch;
  m.seq_len = seq_len > 0 ? seq_len : cfg.block_size;
  m.context = context > 0 ? context : cfg.block_size;
  m.params = cfg.num_params();
  m.weights_fp32 = 4 * m.params;
  m.weights_bf16 = 2 * m.params;

  const int64_t d = cfg.n_embd, di = cfg.d_inner(), V = cfg.padded_vocab_size;
  int64_t act_per_token = 2 * d + 2 * V;
  for (const auto& block : cfg.layout()) {
    for (const auto& s : block.sublayers) {
      act_per_token += 2 * d;
      switch (s.kind) {
        case SublayerKind::Mamba:
          m.decode_mamba_per_seq += 4 * ((cfg.d_conv - 1) * di + di * cfg.d_state);
          act_per_token += 9 * di + cfg.mamba_dt_rank() + 2 * cfg.d_state + di * cfg.d_state / 64;
          break;
        case SublayerKind::Attention: {
          const int64_t cap = s.window > 0 ? s.window : m.context;
          m.decode_attention_per_seq += 4 * 2 * cfg.n_query_groups * cfg.head_size * cap;
          const int64_t qkv = (cfg.n_head + 2 * cfg.n_query_groups) * cfg.head_size;
          act_per_token += 2 * qkv + cfg.n_head * cfg.head_size + cfg.n_head;
          break;
        }
        case SublayerKind::MLP:
          act_per_token += 3 * s.mlp_hidden;
          break;
      }
    }
  }
  m.decode_per_seq = m.decode_mamba_per_seq + m.decode_attention_per_seq;
  m.train_weights = 4 * m.params;
  m.train_grads = 4 * m.params;
  m.train_adam = 8 * m.params;
  m.train_activations = 4 * m.batch * m.seq_len * act_per_token;
  m.train_total = m.train_weights + m.train_grads + m.train_adam + m.train_activations;
  return m;
}

}  // namespace sambalm
