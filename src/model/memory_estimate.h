// Parameter counts by component and memory estimates for inference and training, computed from a
// ModelConfig alone (no weights needed). Used by `sambalm info` and by commands that size buffers
// or warn before running out of memory.
//
// Formulas (bytes; P = parameters, B = batch, T = sequence length, d = n_embd, V = padded vocab):
//   weights            4 P (fp32), 2 P (bf16)
//   decode state / seq 4 * sum over sublayers of: Mamba (d_conv - 1) * d_inner + d_inner * d_state;
//                      attention 2 * n_query_groups * head_size * cap, cap = window (sliding) or
//                      the context length (full attention); SambaY: the same for its self-decoder
//                      attention (window) and its one shared-KV layer (context), nothing for the
//                      cross-decoder (GMU, cross-attention)
//   training           weights 4P + gradients 4P + AdamW moments 8P + activations, with
//   activations        4 * B * T * (2d + 2V + sum over sublayers of (2d + saved(kind)))
//                      saved(Mamba) = 9 d_inner + dt_rank + 2 d_state + d_inner * d_state / 64
//                      saved(attention) = 2 (n_head + 2 n_query_groups) head_size + n_head head_size + n_head
//                      saved(MLP) = 3 hidden
//                      saved(SambaY attention) = (n_head + 2 n_query_groups) head_size + 2 n_head head_size
//                                                + 2 n_head; saved(GMU) = 2 d_inner
//                      (the residual stream and normed input per sublayer; each mixer's saved
//                      intermediates; final norm, logits and their gradient). An estimate: the
//                      trainer's scratch buffers and allocator overhead come on top.
#pragma once

#include <cstdint>

#include "model/config.h"

namespace sambalm {

struct ParamBreakdown {
  int64_t embedding = 0;  // token embedding (= LM head when tied)
  int64_t head = 0;       // untied LM head
  int64_t mamba = 0;      // Mamba mixers
  int64_t attention = 0;  // attention projections
  int64_t mlp = 0;        // SwiGLU MLPs (including abl_mamba MLPs in Mamba slots) and SambaY GMUs
  int64_t norms = 0;      // every norm, final norm included
  int64_t total = 0;
};

ParamBreakdown param_breakdown(const ModelConfig& cfg);

struct MemoryEstimate {
  int64_t params = 0;
  int64_t weights_fp32 = 0, weights_bf16 = 0;
  int64_t decode_mamba_per_seq = 0;      // conv + ssm states
  int64_t decode_attention_per_seq = 0;  // key/value ring buffers
  int64_t decode_per_seq = 0;
  int64_t context = 0;  // length used for full-attention caches
  int64_t batch = 0, seq_len = 0;
  int64_t train_weights = 0, train_grads = 0, train_adam = 0, train_activations = 0, train_total = 0;
};

// Training memory of one process of a data-parallel run of `world` processes (each with the batch
// and length of `m`): the weights and the gradient buffer are whole on every process; with ZeRO
// stage 1 the AdamW moments are sharded, 8 * ceil(P / world) bytes, plus the reduced gradients of the
// shard, 4 * ceil(P / world) (train/data_parallel.h); without it every process holds all 8P.
struct DataParallelMemory {
  int world = 1, zero = 0;
  int64_t weights = 0, grads = 0, grad_shard = 0, adam = 0, activations = 0, total = 0;
};
DataParallelMemory data_parallel_memory(const MemoryEstimate& m, int world, int zero);

// `context`: tokens a full-attention layer's cache holds (0 = cfg.block_size); `batch`, `seq_len`:
// the training step's shape (seq_len 0 = cfg.block_size). Every figure is computed with overflow
// checks: one that would exceed 2^63 bytes throws Error naming the inputs, never wraps around.
MemoryEstimate estimate_memory(const ModelConfig& cfg, int64_t batch = 1, int64_t seq_len = 0, int64_t context = 0);

}  // namespace sambalm
