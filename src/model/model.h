// Model: the block stack, once, for training, chunked prefill and the batched decode step.
//
//   res_0 = embedding[tokens]
//   res_{k+1} = res_k + mixer_k(norm_k(res_k))          one step per residual sublayer k
//   logits = norm_f(res_last) @ head^T                   head = embedding when tied
//   loss = mean cross-entropy over the padded vocabulary
//
// forward()/backward() train: every sublayer keeps its own activations for the backward.
// forward_cached() runs the same stack loop and the same layer functions over B sequences of L new
// tokens that continue from their recurrent states (slots of a decode-state pool): L = chunk for a
// prefill, L = 1 for a decode step. It keeps one set of activations, reused by every sublayer.
//
// Buffers are views into arenas planned from (config, batch, length, backend): a call whose shape fits
// the plan allocates nothing; a larger one re-plans once. Parameters are not owned: calls take the
// flat parameter buffer (ParamStore layout) and the gradient buffer of the same layout.
// T = float for compute, double for gradient checks, and with the CUDA backend bf16 (mixed precision,
// DESIGN.md "Numerics"): T is the type of the working weights, activations and GEMM operands; S =
// stat_t<T> (fp32 beside bf16) that of the residual stream and its gradient, the norms' statistics,
// and the gradient buffer (grad_t<T>). The calls then take two parameter buffers of the same layout:
// the working copy `params` (T) and the fp32 master copy `master` (S), from which the parameters that
// stay fp32 are read: the embedding (it writes the fp32 residual), the norm weights, A_log, D and the
// dt bias. For float and double both are one buffer and the one-buffer calls apply.
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/arena.h"
#include "core/context.h"
#include "model/config.h"
#include "model/layers.h"
#include "model/params.h"

namespace sambalm {

template <typename T>
class Model {
 public:
  using S = stat_t<T>;
  using G = grad_t<T>;
  static constexpr bool kOneType = std::is_same_v<T, S>;  // float, double: params is the master copy

  Model(const ModelConfig& cfg, const std::vector<ParamEntry>& entries, const Context& ctx = cpu_context());
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return cfg_; }
  const Context& context() const { return ctx_; }
  const ModelParams& params() const { return refs_; }

  // ---- Training -----------------------------------------------------------------------------
  // Runs the stack on tokens [B, Tn]. When targets are given, returns the mean loss over the
  // positions whose target is >= 0 and prepares d(loss * loss_scale)/d(logits) for backward();
  // otherwise returns NaN. Token ids must be < padded_vocab_size (checked: throws Error).
  double forward(const T* params, const S* master, const int32_t* tokens, const int32_t* targets, int64_t B, int64_t Tn,
                 double loss_scale = 1.0);
  double forward(const T* params, const int32_t* tokens, const int32_t* targets, int64_t B, int64_t Tn,
                 double loss_scale = 1.0) requires kOneType {
    return forward(params, params, tokens, targets, B, Tn, loss_scale);
  }
  // Adds d(loss * loss_scale)/d(params) into grads (caller zeroes it). Requires a forward with targets.
  void backward(const T* params, const S* master, G* grads);
  void backward(const T* params, T* grads) requires kOneType { backward(params, params, grads); }

  // In the context's memory (ops::download copies them to the host).
  const T* logits() const { return train_.logits; }  // [B*Tn, padded_vocab]
  const S* block_output(int64_t block) const;        // residual after block i, [B*Tn, d]
  int64_t batch() const { return B_; }
  // Bytes the training buffers of a (B, Tn) step take: the plan forward() allocates, computed without
  // allocating (training_memory in model/train_memory.h reports it). train_arena_bytes(): the arena
  // allocated now (0 before the first forward).
  size_t plan_train_bytes(int64_t B, int64_t Tn);
  size_t train_arena_bytes() const { return train_arena_.capacity(); }
  int64_t seq_len() const { return T_; }

  // ---- Prefill and decoding -----------------------------------------------------------------
  // Sizes the inference buffers for calls of up to these shapes (each pair: B sequences of L tokens).
  void plan_cached(const std::vector<std::pair<int64_t, int64_t>>& shapes);
  // A = -exp(A_log) of every Mamba sublayer for forward_cached; call again after the parameters change.
  void refresh_constants(const S* master);
  // B sequences of L new tokens (tokens [B, L]); sequence b continues its state in slot slots[b] at
  // absolute position pos[b]. `layers` holds the pool's arrays of every sublayer (LayerState, slots and
  // pos unset). logits: all_logits ? [B*L, V] : [B, V] (each sequence's last token); nullptr: none.
  // Ids are not checked here (the driver checks them). tokens, slots and pos are host arrays (on a GPU
  // they are uploaded into the plan's buffers); `layers` and logits are in the context's memory.
  // SambaY: the self-decoder and the shared-KV layer run over all L tokens (they fill the caches); the
  // cross-decoder (the sublayers after the shared-KV one) only over each sequence's last token when
  // only those logits are asked for (!all_logits, L > 1) and not at all when none are (logits null),
  // unless set_cross_decoder_skip(false).
  void forward_cached(const T* params, const S* master, const int32_t* tokens, int64_t B, int64_t L,
                      const int32_t* slots, const int64_t* pos, const std::vector<LayerState<T>>& layers, T* logits,
                      bool all_logits);
  void forward_cached(const T* params, const int32_t* tokens, int64_t B, int64_t L, const int32_t* slots,
                      const int64_t* pos, const std::vector<LayerState<T>>& layers, T* logits,
                      bool all_logits) requires kOneType {
    forward_cached(params, params, tokens, B, L, slots, pos, layers, logits, all_logits);
  }
  // forward_cached in two halves, for a caller that captures the second once (ops/captured_work.h) and
  // replays it: stage_cached lays the buffers out for (B, L) and puts the call's tokens, slots and
  // positions where the ops read them (device copies on a GPU); run_cached queues the work, which reads
  // them only there. A capture of run_cached stays valid for later stage_cached calls of the same
  // (B, L) as long as cached_generation() is unchanged (the buffers keep their addresses). On the CPU
  // the host arrays are used in place: they must stay valid until run_cached.
  void stage_cached(const int32_t* tokens, int64_t B, int64_t L, const int32_t* slots, const int64_t* pos);
  void run_cached(const T* params, const S* master, const std::vector<LayerState<T>>& layers, T* logits,
                  bool all_logits);
  int64_t cached_generation() const { return infer_generation_; }
  // SambaY: whether a prefill call that needs only the last logits skips the cross-decoder on the
  // other tokens (default true; false runs it everywhere, for comparison).
  void set_cross_decoder_skip(bool on) { skip_cross_ = on; }
  bool cross_decoder_skip() const { return skip_cross_; }
  // Bytes of the inference arena (constant once planned).
  int64_t cached_scratch_bytes() const { return static_cast<int64_t>(infer_arena_.capacity()); }

 private:
  struct SubBuffers {
    T* xn = nullptr;                            // normed input
    stat_t<T>*mean = nullptr, *rstd = nullptr;  // and its statistics
    MambaActs<T> mamba;
    AttentionActs<T> attn;
    MlpActs<T> mlp;
    DiffAttentionActs<T> dattn;
    GmuActs<T> gmu;
  };
  struct TrainBuffers {
    int32_t *tokens = nullptr, *targets = nullptr;  // in the context's memory
    std::vector<S*> res;                            // nsub + 1 residual streams
    T* f = nullptr;                                 // a sublayer's output before the residual add
    std::vector<SubBuffers> subs;
    T *xf = nullptr, *logits = nullptr, *dlogits = nullptr;
    stat_t<T>*xf_mean = nullptr, *xf_rstd = nullptr;
    S* dres = nullptr;
    T* dres_t = nullptr;  // dres in the compute type, when that differs (bf16)
    T *dxn = nullptr, *dxf = nullptr, *rope_cos = nullptr, *rope_sin = nullptr;
    std::vector<stat_t<T>*> A;  // per sublayer (Mamba only)
    MambaGrads<T> mamba_grads;
    AttentionGrads<T> attn_grads;
    MlpGrads<T> mlp_grads;
    DiffAttentionGrads<T> dattn_grads;
    GmuGrads<T> gmu_grads;
    // SambaY: d(memory) gathered from the GMUs for the memory Mamba layer, and d(shared projection)
    // gathered from the cross-attention layers for the shared-KV layer.
    T *dmemory = nullptr, *dshared_qkv = nullptr;
  };
  struct CachedBuffers {
    S* x = nullptr;  // the residual stream
    T *out = nullptr, *rope_cos = nullptr, *rope_sin = nullptr;
    SubBuffers shared;  // one set for every sublayer
    // SambaY: the memory layer's scan output and the shared-KV layer's projection of the new tokens
    // (the cross-decoder reads them after other sublayers have reused the shared set), and the
    // position of each sequence's last token when the cross-decoder runs on that token alone.
    T *memory = nullptr, *shared_qkv = nullptr;
    int64_t* pos_last = nullptr;
    // On a GPU: the call's tokens, slot ids and positions uploaded from the host (nullptr on the CPU,
    // which reads the caller's arrays).
    int32_t *tokens = nullptr, *slots = nullptr;
    int64_t* pos = nullptr;
  };

  const SublayerParams* first_of(SublayerKind kind) const;
  // out[n, d] = embedding rows of tokens (float32 or packed table).
  void embed(S* out, const int32_t* tokens, const S* master, int64_t n);
  void layout_train(Arena& a, int64_t B, int64_t Tn);
  void layout_cached(Arena& a, int64_t B, int64_t L);
  void use_train_layout(int64_t B, int64_t Tn);
  void use_cached_layout(int64_t B, int64_t L);
  // The block norms read the residual and their weights from the master copy.
  void norm_forward(T* out, stat_t<T>* mean, stat_t<T>* rstd, const S* x, const S* master, const ParamRef& w,
                    const ParamRef& b, int64_t n);
  void norm_backward(S* dx, G* grads, const T* dout, const S* x, const S* master, const ParamRef& w, const ParamRef& b,
                     const stat_t<T>* mean, const stat_t<T>* rstd, int64_t n);
  // The stack loop: residual sublayers over res[k] -> res[k+1] (training: one buffer per k; cached:
  // the same buffer updated in place).
  // Which tokens SambaY's cross-decoder (the sublayers after the shared-KV one) runs on. It keeps no
  // state, so a prefill chunk whose logits nobody reads needs none of it.
  enum class CrossDecoder { All, LastToken, None };
  // LastToken (cached): after the shared-KV sublayer, rows b*L + L-1 of the residual move to row b and
  // the cross-decoder runs with L = 1 at each sequence's last position.
  void run_stack(const T* params, const S* master, int64_t B, int64_t L, const T* cos, const T* sin,
                 int64_t cs_batch_rows, const int32_t* slots, const int64_t* pos,
                 const std::vector<LayerState<T>>* layers, CrossDecoder cross = CrossDecoder::All);

  ModelConfig cfg_;
  Context ctx_;
  ModelParams refs_;
  int64_t d_ = 0, V_ = 0, rope_dims_ = 0, nsub_ = 0, max_mlp_hidden_ = 0;
  int64_t memory_sub_ = -1, shared_kv_sub_ = -1;  // SambaY: the sublayers that keep the memory / the shared KV
  int64_t B_ = 0, T_ = 0;
  bool have_targets_ = false;

  Arena train_arena_;
  int64_t train_B_ = -1, train_T_ = -1;  // shape of the current layout
  TrainBuffers train_;
  Arena infer_arena_;
  int64_t infer_B_ = -1, infer_L_ = -1;
  int64_t infer_generation_ = 0;  // counts the inference arena's (re)allocations
  struct Staged {                 // what stage_cached left for run_cached
    int64_t B = 0, L = 0;
    const int32_t* tokens = nullptr;
    const int32_t* slots = nullptr;
    const int64_t* pos = nullptr;
  } staged_;
  CachedBuffers cached_;
  Arena constants_arena_;
  std::vector<stat_t<T>*> cached_A_;  // per sublayer (Mamba only), for forward_cached
  bool constants_ready_ = false;
  bool skip_cross_ = true;
  bool has_packed_ = false;  // some weights are packed (inference only)
};

}  // namespace sambalm
