// DeviceDecodeModel<T>: prefill and decoding with the model, its parameters and its pool of decode
// states in the memory of a backend context (a GPU, or the host), in the model's element type T: float
// (fp32, exact against the CPU engine) or, on a GPU, bf16 mixed precision (bf16 working weights, conv
// states and keys/values; fp32 master copy, residual stream and scan states).
//
// The same driver as DecodeModel (decode_model.h), with the same checks and the same calls of the one
// block stack (Model::forward_cached): chunked prefill (L = chunk tokens of one sequence, its state
// carried between chunks) and the batched one-token step. The caller's tokens and the returned logits
// are host arrays (fp32 whatever T); the logits are computed on the device and copied back per call.
//
// Parameters are not owned and live in the context's memory: `params` (T, ParamStore layout) and, for
// bf16, the fp32 master copy `master` of the same layout (for float, master == params). They must
// outlive the DecodeModel, and its states must not outlive it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "core/arena.h"
#include "core/context.h"
#include "infer/decode_model.h"
#include "infer/decode_state.h"
#include "model/config.h"
#include "model/model.h"
#include "model/params.h"
#include "ops/captured_work.h"

namespace sambalm {

template <typename T>
class DeviceDecodeModel {
 public:
  using S = stat_t<T>;

  DeviceDecodeModel(const ModelConfig& cfg, const std::vector<ParamEntry>& entries, const T* params, const S* master,
                    const Context& ctx, const DecodeOptions& opt = {});
  ~DeviceDecodeModel();
  DeviceDecodeModel(const DeviceDecodeModel&) = delete;
  DeviceDecodeModel& operator=(const DeviceDecodeModel&) = delete;

  const ModelConfig& config() const { return cfg_; }
  const DecodeOptions& options() const { return opt_; }
  const Context& context() const { return ctx_; }
  const std::shared_ptr<const DecodeLayout>& layout() const { return pool_->layout(); }
  int64_t vocab() const { return V_; }
  DecodePool& pool() { return *pool_; }
  // A free slot of the pool at position 0 (Error when all options().slots are in use).
  DecodeState new_state() { return pool_->acquire(); }
  // A = -exp(A_log) again, after the parameters changed.
  void refresh();

  // As DecodeModel::prefill / step / step_slots; all_logits [n, V], last_logits [V] and logits [B, V]
  // are host arrays.
  void prefill(DecodeState& st, const int32_t* tokens, int64_t n, float* all_logits, float* last_logits);
  void step(DecodeState* const* states, int64_t B, const int32_t* tokens, float* logits);
  void step_slots(const int32_t* slots, int64_t B, const int32_t* tokens, float* logits);

  // Decode steps replayed from a captured graph so far (0 on the CPU or with options().graphs off).
  int64_t graph_replays() const { return graph_replays_; }

 private:
  // One batch size's captured step, valid while the model's inference buffers keep their addresses.
  struct StepGraph {
    ops::CapturedWork work;
    int64_t generation = -1;
    int64_t eager_steps = 0;  // steps run before the capture (the first warms the libraries up)
  };
  void run_step(int64_t B);

  // Host <- the first n values of the device logits, as fp32.
  void logits_to_host(float* dst, const T* src, int64_t n);

  ModelConfig cfg_;
  DecodeOptions opt_;
  Context ctx_;
  const T* params_;
  const S* master_;
  Model<T> model_;
  std::unique_ptr<DecodePool> pool_;
  int64_t V_ = 0;
  Arena logits_arena_;  // the device's logits of one call: [max(chunk, max_batch, slots), V]
  T* logits_ = nullptr;
  std::vector<T> host_logits_;  // staging for bf16 -> fp32
  std::vector<int32_t> step_slots_;
  std::vector<int64_t> step_pos_;
  std::map<int64_t, StepGraph> graphs_;  // by batch size
  bool graphs_on_ = false;
  int64_t graph_replays_ = 0;
};

extern template class DeviceDecodeModel<float>;
#if SAMBALM_HAVE_CUDA
extern template class DeviceDecodeModel<bf16>;
#endif

}  // namespace sambalm
