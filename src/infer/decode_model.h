// DecodeModel: the driver of prefill and decoding. It owns the model's inference plan (Model::
// forward_cached, the one block stack) and a pool of decode states, and turns the calls of the
// generator into stack calls: chunked prefill (L = chunk tokens of one sequence, its state carried
// between chunks) and the batched one-token step (L = 1 for each of B sequences, each at its own
// position). Both give the logits of the one-pass forward (Model::forward) on the whole sequence.
//
// Memory: the stack's buffers are planned at construction for (max_batch, 1) and (1, chunk), the pool
// for `slots` sequences: prefilling a prompt of any length and decoding at any position use the same
// bytes, and no call allocates (a step with more than max_batch sequences re-plans once).
//
// Parameters are not owned: `params` (ParamStore layout) must outlive the DecodeModel, and its states
// must not outlive it. A = -exp(A_log) is computed once at construction; call refresh() after
// changing the parameters.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "infer/decode_state.h"
#include "model/config.h"
#include "model/model.h"
#include "model/params.h"

namespace sambalm {

struct DecodeOptions {
  int64_t chunk = 512;      // prefill chunk (tokens per stack call)
  int64_t max_batch = 1;    // decode batch the buffers are planned for
  int64_t max_context = 0;  // cache size of full-attention layers (0: cfg.block_size)
  int64_t slots = 0;        // decode states the pool holds (0: max_batch)
  bool graphs = true;       // GPU: replay each batch size's decode step as a captured CUDA graph
};

class DecodeModel {
 public:
  DecodeModel(const ModelConfig& cfg, const std::vector<ParamEntry>& entries, const float* params,
              const DecodeOptions& opt = {});
  ~DecodeModel();
  DecodeModel(const DecodeModel&) = delete;
  DecodeModel& operator=(const DecodeModel&) = delete;

  const ModelConfig& config() const { return cfg_; }
  const DecodeOptions& options() const { return opt_; }
  const std::shared_ptr<const DecodeLayout>& layout() const { return pool_->layout(); }
  int64_t vocab() const { return V_; }
  const float* params() const { return params_; }
  // Floats of the parameter buffer (packed matrices are not in it), and all parameters.
  int64_t param_floats() const { return buffer_floats_; }
  int64_t param_count() const { return num_params_; }
  const std::vector<ParamEntry>& entries() const { return entries_; }
  // The formats of the GEMM matrices, e.g. "f32", "bf16+f32" (q8 keeps dt_proj in f32 when its rows
  // are not whole blocks).
  std::string weight_formats() const;
  DecodePool& pool() { return *pool_; }
  // A free slot of the pool at position 0 (Error when all options().slots are in use).
  DecodeState new_state() { return pool_->acquire(); }
  void refresh();
  // SambaY: a prefill that needs only the last logits runs the cross-decoder on the last token alone
  // (default); false runs it on every token (for measuring what the skip saves).
  void set_cross_decoder_skip(bool on) { model_.set_cross_decoder_skip(on); }

  // Consumes tokens[0..n) at positions st.pos() .. st.pos() + n - 1 in chunks of options().chunk.
  // all_logits [n, V] (nullable) receives every position's logits, last_logits [V] (nullable) the
  // last one's. Ids must be in [0, padded vocab) (Error otherwise, state untouched).
  void prefill(DecodeState& st, const int32_t* tokens, int64_t n, float* all_logits, float* last_logits);
  // One token for each of B sequences (each at its own position): logits [B, V].
  void step(DecodeState* const* states, int64_t B, const int32_t* tokens, float* logits);
  // The same by slot ids of this model's pool: what a server or a captured graph calls.
  void step_slots(const int32_t* slots, int64_t B, const int32_t* tokens, float* logits);

  // Bytes of weights a decode step reads per token at batch 1 (the memory-bandwidth bound's numerator):
  // every parameter once, except the embedding table, of which one row (all of it when it is the head).
  int64_t weight_bytes_per_token() const;
  // Bytes of the stack's inference buffers (constant once planned).
  int64_t scratch_bytes() const { return model_.cached_scratch_bytes(); }

 private:

  ModelConfig cfg_;
  DecodeOptions opt_;
  const float* params_;
  Model<float> model_;
  std::unique_ptr<DecodePool> pool_;
  std::vector<ParamEntry> entries_;
  int64_t V_ = 0, num_params_ = 0, buffer_floats_ = 0, weight_bytes_ = 0;
  std::vector<int32_t> step_slots_;  // [max(max_batch, slots)]: the slot ids of a step
  std::vector<int64_t> step_pos_;    // their positions
};

}  // namespace sambalm
