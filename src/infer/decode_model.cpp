// Prefill and decode steps as calls of the one block stack (Model::forward_cached) over the pool.
#include "infer/decode_model.h"

#include <algorithm>
#include <map>
#include <string>

#include "core/error.h"
#include "infer/decode_checks.h"

namespace sambalm {

DecodeModel::DecodeModel(const ModelConfig& cfg, const std::vector<ParamEntry>& entries, const float* params,
                         const DecodeOptions& opt)
    : cfg_(cfg), opt_(opt), params_(params), model_(cfg, entries) {
  SAMBALM_CHECK(opt_.chunk > 0, "decode: prefill chunk must be positive, got {}", opt_.chunk);
  SAMBALM_CHECK(opt_.max_batch > 0, "decode: max batch must be positive, got {}", opt_.max_batch);
  SAMBALM_CHECK(opt_.slots >= 0, "decode: pool size must not be negative, got {}", opt_.slots);
  if (opt_.max_context <= 0) opt_.max_context = cfg_.block_size;
  if (opt_.slots == 0) opt_.slots = opt_.max_batch;
  pool_ = std::make_unique<DecodePool>(DecodeLayout::make(cfg_, opt_.max_context), opt_.slots);
  entries_ = entries;
  for (auto& e : entries) {
    num_params_ += e.numel();
    buffer_floats_ += e.buffer_floats();
    const int64_t bytes = e.packed ? e.packed->bytes() : e.numel() * int64_t(sizeof(float));
    weight_bytes_ += bytes;
    // The untied embedding: one row per token.
    if (!cfg_.tied_embeddings && e.name == "embedding.weight") weight_bytes_ -= bytes - bytes / e.shape[0];
  }
  V_ = cfg_.padded_vocab_size;
  model_.plan_cached({{opt_.max_batch, 1}, {1, opt_.chunk}});
  step_slots_.assign(static_cast<size_t>(std::max(opt_.max_batch, opt_.slots)), 0);
  step_pos_.assign(step_slots_.size(), 0);
  refresh();
}

DecodeModel::~DecodeModel() = default;

void DecodeModel::refresh() { model_.refresh_constants(params_); }

int64_t DecodeModel::weight_bytes_per_token() const { return weight_bytes_; }

std::string DecodeModel::weight_formats() const {
  std::map<std::string, int64_t> count;
  for (const auto& e : entries_)
    if (e.shape.size() == 2 && e.name.size() > 7 && e.name.compare(e.name.size() - 7, 7, ".weight") == 0 &&
        e.name.find("conv.") == std::string::npos)
      count[e.packed ? matrix_format_name(e.packed->format) : "f32"] += 1;
  std::string out;
  for (const auto& [f, n] : count) out += (out.empty() ? "" : "+") + f;
  return out;
}

void DecodeModel::prefill(DecodeState& st, const int32_t* tokens, int64_t n, float* all_logits, float* last_logits) {
  check_prefill(st, *pool_, tokens, n, V_);
  const int32_t slot = st.slot();
  for (int64_t t0 = 0; t0 < n; t0 += opt_.chunk) {
    const int64_t C = std::min(opt_.chunk, n - t0), pos = st.pos();
    const bool last = t0 + C == n;
    if (all_logits) {
      model_.forward_cached(params_, tokens + t0, 1, C, &slot, &pos, pool_->layers(), all_logits + t0 * V_, true);
      if (last && last_logits) std::copy_n(all_logits + (n - 1) * V_, V_, last_logits);
    } else {
      model_.forward_cached(params_, tokens + t0, 1, C, &slot, &pos, pool_->layers(), last ? last_logits : nullptr,
                            false);
    }
    st.set_pos(pos + C);
  }
}

void DecodeModel::step(DecodeState* const* states, int64_t B, const int32_t* tokens, float* logits) {
  collect_step_slots(states, B, *pool_, step_slots_);
  step_slots(step_slots_.data(), B, tokens, logits);
}

void DecodeModel::step_slots(const int32_t* slots, int64_t B, const int32_t* tokens, float* logits) {
  collect_step_positions(slots, B, tokens, V_, *pool_, step_pos_);
  int64_t* positions = pool_->positions();
  model_.forward_cached(params_, tokens, B, 1, slots, step_pos_.data(), pool_->layers(), logits, true);
  for (int64_t b = 0; b < B; ++b) positions[slots[b]] = step_pos_[b] + 1;
}

}  // namespace sambalm
