// Parameter breakdown and memory estimates; the formulas are in memory_estimate.h.
#include "model/memory_estimate.h"

#include <fmt/format.h>

#include <string>
#include <utility>

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
        case SublayerKind::DiffAttention:
        case SublayerKind::CrossAttention:
          b.attention += n;
          break;
        case SublayerKind::MLP:
        case SublayerKind::Gmu:
          b.mlp += n;
          break;
      }
    }
  }
  return b;
}

namespace {

// Sizes computed from a user's batch, length and context: every product and sum is checked, so a huge
// input is refused with what was asked instead of a wrapped (negative or too small) figure.
class Sizes {
 public:
  explicit Sizes(std::string what) : what_(std::move(what)) {}
  int64_t mul(int64_t a, int64_t b) const {
    int64_t r = 0;
    if (__builtin_mul_overflow(a, b, &r)) too_large();
    return r;
  }
  int64_t mul(int64_t a, int64_t b, int64_t c) const { return mul(mul(a, b), c); }
  int64_t add(int64_t a, int64_t b) const {
    int64_t r = 0;
    if (__builtin_add_overflow(a, b, &r)) too_large();
    return r;
  }

 private:
  [[noreturn]] void too_large() const {
    fail("{} is too large to compute: over 2^63 bytes (8 EiB); give smaller values", what_);
  }
  std::string what_;
};

}  // namespace

MemoryEstimate estimate_memory(const ModelConfig& cfg, int64_t batch, int64_t seq_len, int64_t context) {
  SAMBALM_CHECK(batch > 0, "batch must be positive, found {}", batch);
  SAMBALM_CHECK(seq_len >= 0 && context >= 0, "sequence length and context must not be negative");
  MemoryEstimate m;
  m.batch = batch;
  m.seq_len = seq_len > 0 ? seq_len : cfg.block_size;
  m.context = context > 0 ? context : cfg.block_size;
  const Sizes model(fmt::format("the size of model {}", cfg.name));
  const Sizes state(fmt::format("the decode state at context {}", m.context));
  const Sizes train(fmt::format("the training memory for batch {} x seq-len {}", m.batch, m.seq_len));
  m.params = cfg.num_params();
  m.weights_fp32 = model.mul(4, m.params);
  m.weights_bf16 = model.mul(2, m.params);

  const int64_t d = cfg.n_embd, di = cfg.d_inner(), V = cfg.padded_vocab_size;
  int64_t act_per_token = model.add(model.mul(2, d), model.mul(2, V));
  for (const auto& block : cfg.layout()) {
    for (const auto& s : block.sublayers) {
      act_per_token = model.add(act_per_token, model.mul(2, d));
      switch (s.kind) {
        case SublayerKind::Mamba: {
          const int64_t conv_ssm = model.add(model.mul(cfg.d_conv - 1, di), model.mul(di, cfg.d_state));
          m.decode_mamba_per_seq = model.add(m.decode_mamba_per_seq, model.mul(4, conv_ssm));
          int64_t saved = model.add(model.mul(9, di), cfg.mamba_dt_rank());
          saved = model.add(saved, model.add(model.mul(2, cfg.d_state), model.mul(di, cfg.d_state) / 64));
          act_per_token = model.add(act_per_token, saved);
          break;
        }
        case SublayerKind::Attention: {
          const int64_t cap = s.window > 0 ? s.window : m.context;
          const int64_t kv = state.mul(state.mul(8, cfg.n_query_groups), cfg.head_size, cap);
          m.decode_attention_per_seq = state.add(m.decode_attention_per_seq, kv);
          const int64_t qkv = model.mul(model.add(cfg.n_head, model.mul(2, cfg.n_query_groups)), cfg.head_size);
          act_per_token = model.add(
              act_per_token, model.add(model.add(model.mul(2, qkv), model.mul(cfg.n_head, cfg.head_size)), cfg.n_head));
          break;
        }
        case SublayerKind::MLP:
          act_per_token = model.add(act_per_token, model.mul(3, s.mlp_hidden));
          break;
        case SublayerKind::DiffAttention:
        case SublayerKind::CrossAttention: {
          // SambaY's decode state (what its decoding will keep): a key/value window per self-decoder
          // attention layer and one full cache for the shared-KV layer; cross-attention reads that one.
          if (s.kind == SublayerKind::DiffAttention) {
            const int64_t cap = s.shares_kv ? m.context : s.window;
            const int64_t kv = state.mul(state.mul(8, cfg.n_query_groups), cfg.head_size, cap);
            m.decode_attention_per_seq = state.add(m.decode_attention_per_seq, kv);
          }
          const int64_t qkv = model.mul(model.add(cfg.n_head, model.mul(2, cfg.n_query_groups)), cfg.head_size);
          act_per_token = model.add(act_per_token, model.add(model.add(qkv, model.mul(2 * cfg.n_head, cfg.head_size)),
                                                             model.mul(2, cfg.n_head)));
          break;
        }
        case SublayerKind::Gmu:
          act_per_token = model.add(act_per_token, model.mul(2, di));
          break;
      }
    }
  }
  m.decode_per_seq = state.add(m.decode_mamba_per_seq, m.decode_attention_per_seq);
  m.train_weights = m.weights_fp32;
  m.train_grads = m.weights_fp32;
  m.train_adam = model.mul(8, m.params);
  m.train_activations = train.mul(train.mul(4, m.batch), m.seq_len, act_per_token);
  m.train_total = train.add(train.add(m.train_weights, m.train_grads), train.add(m.train_adam, m.train_activations));
  return m;
}

DataParallelMemory data_parallel_memory(const MemoryEstimate& m, int world, int zero) {
  SAMBALM_CHECK(world >= 1 && (zero == 0 || zero == 1), "data-parallel memory: world {} / ZeRO stage {}", world, zero);
  DataParallelMemory d;
  d.world = world, d.zero = zero;
  d.weights = m.train_weights;
  d.grads = m.train_grads;
  d.activations = m.train_activations;
  const int64_t shard = (m.params + world - 1) / world;
  d.adam = zero == 1 ? 8 * shard : m.train_adam;
  d.grad_shard = zero == 1 ? 4 * shard : 0;
  d.total = d.weights + d.grads + d.grad_shard + d.adam + d.activations;  // each below the checked single-process total
  return d;
}

}  // namespace sambalm
