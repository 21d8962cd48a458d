#include "infer/decode_state.h"

#include <algorithm>

#include "core/error.h"

namespace sambalm {

std::shared_ptr<const DecodeLayout> DecodeLayout::make(const ModelConfig& cfg, int64_t max_context) {
  auto l = std::make_shared<DecodeLayout>();
  l->d_inner = cfg.d_inner();
  l->d_state = cfg.d_state;
  l->d_conv = cfg.d_conv;
  l->n_kv = cfg.n_query_groups;
  l->head_size = cfg.head_size;
  int64_t off = 0;
  for (const auto& block : cfg.layout()) {
    for (const auto& s : block.sublayers) {
      Slot slot;
      slot.kind = s.kind;
      if (s.kind == SublayerKind::Mamba) {
        slot.conv = off;
        off += (cfg.d_conv - 1) * l->d_inner;
        slot.ssm = off;
        off += l->d_inner * cfg.d_state;
      } else if (s.kind == SublayerKind::Attention) {
        slot.window = s.window;
        if (s.window > 0) {
          slot.cap = s.window;
        } else {
          SAMBALM_CHECK(max_context > 0,
                        "decode: model '{}' has a full-attention layer; its cache needs a maximum context (got {})",
                        cfg.name, max_context);
          slot.cap = max_context;
          l->max_context = max_context;
        }
        const int64_t n = l->n_kv * slot.cap * l->head_size;
        slot.k = off;
        off += n;
        slot.v = off;
        off += n;
      }
      l->subs.push_back(slot);
    }
  }
  l->floats = off;
  return l;
}

DecodeState::DecodeState(std::shared_ptr<const DecodeLayout> layout)
    : layout_(std::move(layout)), data_(static_cast<size_t>(layout_->floats), 0.0f) {}

void DecodeState::reset() {
  std::fill(data_.begin(), data_.end(), 0.0f);
  pos_ = 0;
}

}  // namespace sambalm
