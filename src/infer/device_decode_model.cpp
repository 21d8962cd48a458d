// Prefill and decode steps of the one block stack with the model and the states in a backend's memory.
#include "infer/device_decode_model.h"

#include <algorithm>
#include <cstdio>
#include <type_traits>

#include "core/error.h"
#include "infer/decode_checks.h"
#include "ops/memory_ops.h"

namespace sambalm {

template <typename T>
DeviceDecodeModel<T>::DeviceDecodeModel(const ModelConfig& cfg, const std::vector<ParamEntry>& entries, const T* params,
                                        const S* master, const Context& ctx, const DecodeOptions& opt)
    : cfg_(cfg), opt_(opt), ctx_(ctx), params_(params), master_(master), model_(cfg, entries, ctx) {
  SAMBALM_CHECK(opt_.chunk > 0, "decode: prefill chunk must be positive, got {}", opt_.chunk);
  SAMBALM_CHECK(opt_.max_batch > 0, "decode: max batch must be positive, got {}", opt_.max_batch);
  SAMBALM_CHECK(opt_.slots >= 0, "decode: pool size must not be negative, got {}", opt_.slots);
  if constexpr (std::is_same_v<T, S>) {
    SAMBALM_CHECK(master_ == nullptr || master_ == params_, "decode: an fp32 model has one parameter buffer");
    master_ = params_;
  }
  SAMBALM_CHECK(params_ != nullptr && master_ != nullptr, "decode: no parameters");
  if (opt_.max_context <= 0) opt_.max_context = cfg_.block_size;
  if (opt_.slots == 0) opt_.slots = opt_.max_batch;
  pool_ = std::make_unique<DecodePool>(DecodeLayout::make(cfg_, opt_.max_context), opt_.slots, ctx_,
                                       std::is_same_v<T, bf16> ? StateType::BF16 : StateType::F32);
  V_ = cfg_.padded_vocab_size;
  model_.plan_cached({{opt_.max_batch, 1}, {1, opt_.chunk}});
  step_slots_.assign(static_cast<size_t>(std::max(opt_.max_batch, opt_.slots)), 0);
  step_pos_.assign(step_slots_.size(), 0);
  const int64_t rows = std::max<int64_t>(opt_.chunk, static_cast<int64_t>(step_slots_.size()));
  Arena count;
  count.take<T>(rows * V_);
  logits_arena_ = ops::arena_on(ctx_, count.bytes());
  logits_ = logits_arena_.template take<T>(rows * V_);
  graphs_on_ = opt_.graphs && ops::CapturedWork::supported(ctx_);
  refresh();
}

template <typename T>
DeviceDecodeModel<T>::~DeviceDecodeModel() = default;

template <typename T>
void DeviceDecodeModel<T>::refresh() {
  model_.refresh_constants(master_);
}

template <typename T>
void DeviceDecodeModel<T>::logits_to_host(float* dst, const T* src, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    ops::download(ctx_, dst, src, sizeof(float) * static_cast<size_t>(n));
  } else {
    host_logits_.resize(static_cast<size_t>(n));
    ops::download(ctx_, host_logits_.data(), src, sizeof(T) * static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(host_logits_[i]);
  }
}

template <typename T>
void DeviceDecodeModel<T>::prefill(DecodeState& st, const int32_t* tokens, int64_t n, float* all_logits,
                                   float* last_logits) {
  check_prefill(st, *pool_, tokens, n, V_);
  const int32_t slot = st.slot();
  const auto& layers = pool_->template layers_of<T>();
  for (int64_t t0 = 0; t0 < n; t0 += opt_.chunk) {
    const int64_t C = std::min(opt_.chunk, n - t0), pos = st.pos();
    const bool last = t0 + C == n;
    if (all_logits) {
      model_.forward_cached(params_, master_, tokens + t0, 1, C, &slot, &pos, layers, logits_, true);
      logits_to_host(all_logits + t0 * V_, logits_, C * V_);
      if (last && last_logits) std::copy_n(all_logits + (n - 1) * V_, V_, last_logits);
    } else {
      const bool want = last && last_logits;
      model_.forward_cached(params_, master_, tokens + t0, 1, C, &slot, &pos, layers, want ? logits_ : nullptr, false);
      if (want) logits_to_host(last_logits, logits_, V_);
    }
    st.set_pos(pos + C);
  }
}

template <typename T>
void DeviceDecodeModel<T>::step(DecodeState* const* states, int64_t B, const int32_t* tokens, float* logits) {
  collect_step_slots(states, B, *pool_, step_slots_);
  step_slots(step_slots_.data(), B, tokens, logits);
}

template <typename T>
void DeviceDecodeModel<T>::step_slots(const int32_t* slots, int64_t B, const int32_t* tokens, float* logits) {
  collect_step_positions(slots, B, tokens, V_, *pool_, step_pos_);
  int64_t* positions = pool_->positions();
  model_.stage_cached(tokens, B, 1, slots, step_pos_.data());
  run_step(B);
  if (logits) logits_to_host(logits, logits_, B * V_);
  for (int64_t b = 0; b < B; ++b) positions[slots[b]] = step_pos_[b] + 1;
}

// The step's work from the staged inputs on: captured once per batch size after a first eager step
// (which lets cuBLASLt and the kernels' lazy loading do their one-time host work outside the capture),
// then replayed. A capture that fails (work that synchronises, say) turns graphs off with a note on
// stderr: the steps still run, launched one by one.
template <typename T>
void DeviceDecodeModel<T>::run_step(int64_t B) {
  const auto& layers = pool_->template layers_of<T>();
  auto work = [&] { model_.run_cached(params_, master_, layers, logits_, true); };
  if (!graphs_on_) return work();
  StepGraph& g = graphs_[B];
  if (g.generation != model_.cached_generation()) {
    g.work.reset();
    g.generation = model_.cached_generation();
    g.eager_steps = 0;
  }
  if (g.work.empty()) {
    if (g.eager_steps++ == 0) return work();
    try {
      g.work.capture(ctx_, work);
    } catch (const Error& e) {
      std::fprintf(stderr, "note: decode steps run without CUDA graphs (the capture failed: %s)\n", e.what());
      graphs_on_ = false;
      graphs_.clear();
      return work();
    }
  }
  g.work.replay();
  ++graph_replays_;
}

template class DeviceDecodeModel<float>;
#if SAMBALM_HAVE_CUDA
template class DeviceDecodeModel<bf16>;
#endif

}  // namespace sambalm
