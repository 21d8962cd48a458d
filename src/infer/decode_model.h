// DecodeModel: the block stack run incrementally over DecodeStates — chunked prefill (the parallel
// forward over chunks of the prompt, states carried between chunks) and the batched one-token
// decode step. Both give the logits of the one-pass forward (Model::forward) on the whole sequence.
//
// Memory: scratch is sized once from (chunk, max batch), so prefilling a prompt of any length and
// decoding at any position use the same bytes; a step only allocates when called with a batch
// larger than any before (then never again for that size).
//
// Parameters are not owned: `params` (ParamStore layout) must outlive the DecodeModel. A = -exp(A_log)
// is computed once at construction; call refresh() after changing the parameters.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "infer/decode_state.h"
#include "model/config.h"
#include "model/layers.h"
#include "model/params.h"

namespace sambalm {

struct DecodeOptions {
  int64_t chunk = 512;      // prefill chunk (tokens per parallel forward)
  int64_t max_batch = 1;    // decode batch the scratch is sized for at construction
  int64_t max_context = 0;  // cache size of full-attention layers (0: cfg.block_size)
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
  const std::shared_ptr<const DecodeLayout>& layout() const { return layout_; }
  int64_t vocab() const { return V_; }
  const float* params() const { return params_; }
  int64_t param_floats() const { return num_params_; }
  DecodeState new_state() const { return DecodeState(layout_); }
  void refresh();

  // Consumes tokens[0..n) at positions st.pos() .. st.pos() + n - 1 in chunks of options().chunk.
  // all_logits [n, V] (nullable) receives every position's logits, last_logits [V] (nullable) the
  // last one's. Ids must be in [0, padded vocab) (Error otherwise, state untouched).
  void prefill(DecodeState& st, const int32_t* tokens, int64_t n, float* all_logits, float* last_logits);
  // One token for each of B sequences (each at its own position): logits [B, V].
  void step(DecodeState* const* states, int64_t B, const int32_t* tokens, float* logits);

  // Bytes of weights a decode step reads per token at batch 1 (the memory-bandwidth bound's numerator):
  // every parameter once, except the embedding table, of which one row (all of it when it is the head).
  int64_t weight_bytes_per_token() const;
  // Bytes of scratch currently held (constant once sized).
  int64_t scratch_bytes() const;

 private:
  struct Sub;
  void prefill_chunk(DecodeState& st, const int32_t* tokens, int64_t C, float* all_logits, float* last_logits);
  void norm(float* out, const Sub& s, const float* x, int64_t n);
  void final_norm(float* out, const float* x, int64_t n);
  void ensure_batch(int64_t B);
  void check_ids(const int32_t* tokens, int64_t n, const char* what) const;

  ModelConfig cfg_;
  DecodeOptions opt_;
  const float* params_;
  std::shared_ptr<const DecodeLayout> layout_;
  std::vector<std::unique_ptr<Sub>> subs_;
  ParamRef embed_, head_, norm_f_w_, norm_f_b_;
  int64_t d_ = 0, V_ = 0, batch_cap_ = 0, max_hidden_ = 0, max_qkv_ = 0, max_keys_ = 0, rope_dims_ = 0;
  int64_t num_params_ = 0;

  // Prefill scratch [chunk, ...].
  MambaActs<float> mamba_acts_;
  MlpActs<float> mlp_acts_;
  LayerScratch<float> layer_scratch_;
  std::vector<float> px_, pxn_, pout_, pmean_, prstd_, pqkv_, pq_, pk_, pv_, pkeys_, pvals_, patt_, pcos_, psin_;
  std::vector<float> h_tmp_, conv_tmp_;
  // Step scratch [batch, ...].
  std::vector<float> x_, xn_, out_, big1_, big2_, big3_, conv_out_, xc_, dt_pre_, dt_, y_, yg_, xdbl_, q_, k1_, v1_,
      att_, cos_, sin_;
};

}  // namespace sambalm
