#include "infer/decode_state.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace sambalm {

std::shared_ptr<const DecodeLayout> DecodeLayout::make(const ModelConfig& cfg, int64_t max_context) {
  auto l = std::make_shared<DecodeLayout>();
  l->d_inner = cfg.d_inner();
  l->d_state = cfg.d_state;
  l->d_conv = cfg.d_conv;
  l->n_kv = cfg.n_query_groups;
  l->head_size = cfg.head_size;
  int64_t floats = 0;
  for (const auto& block : cfg.layout()) {
    for (const auto& s : block.sublayers) {
      Sub sub;
      sub.kind = s.kind;
      if (s.kind == SublayerKind::Mamba) {
        sub.conv_floats = (cfg.d_conv - 1) * l->d_inner;
        sub.ssm_floats = l->d_inner * cfg.d_state;
      } else if (s.kind == SublayerKind::Attention || s.kind == SublayerKind::DiffAttention) {
        // SambaY: the self-decoder's windows and the shared-KV layer's full cache, which its
        // cross-attention layers read (they, and the GMUs, keep nothing).
        sub.shares_kv = s.shares_kv;
        sub.window = s.window;
        if (s.window > 0) {
          sub.cap = s.window;
        } else {
          SAMBALM_CHECK(max_context > 0,
                        "decode: model '{}' has a full-attention layer; its cache needs a maximum context (got {})",
                        cfg.name, max_context);
          sub.cap = max_context;
          l->max_context = max_context;
        }
        sub.kv_floats = l->n_kv * sub.cap * l->head_size;
      }
      floats += sub.conv_floats + sub.ssm_floats + 2 * sub.kv_floats;
      l->subs.push_back(sub);
    }
  }
  l->floats = floats;
  return l;
}

DecodePool::DecodePool(std::shared_ptr<const DecodeLayout> layout, int64_t slots) : layout_(std::move(layout)) {
  SAMBALM_CHECK(slots > 0 && slots <= (int64_t(1) << 30), "decode: a pool of {} slots", slots);
  auto lay = [&](Arena& a) {
    layers_.assign(layout_->subs.size(), LayerState<float>{});
    for (size_t k = 0; k < layout_->subs.size(); ++k) {
      const auto& s = layout_->subs[k];
      LayerState<float>& st = layers_[k];
      if (s.conv_floats) st.conv = a.take<float>(slots * s.conv_floats);
      if (s.ssm_floats) st.ssm = a.take<float>(slots * s.ssm_floats);
      if (s.kv_floats) {
        st.keys = a.take<float>(slots * s.kv_floats);
        st.values = a.take<float>(slots * s.kv_floats);
        st.cap = s.cap;
      }
    }
  };
  Arena count;
  lay(count);
  slab_ = Arena(count.bytes());
  lay(slab_);
  pos_.assign(static_cast<size_t>(slots), 0);
  free_.reserve(static_cast<size_t>(slots));
  for (int64_t s = slots - 1; s >= 0; --s) free_.push_back(static_cast<int32_t>(s));
}

DecodeState DecodePool::acquire() {
  SAMBALM_CHECK(!free_.empty(),
                "decode: all {} slots of the decode-state pool are in use (more concurrent sequences than the pool "
                "holds: raise its size)",
                slots());
  const int32_t slot = free_.back();
  free_.pop_back();
  zero(slot);
  return DecodeState(this, slot);
}

void DecodePool::release(int32_t slot) { free_.push_back(slot); }

void DecodePool::zero(int32_t slot) {
  for (size_t k = 0; k < layout_->subs.size(); ++k) {
    const auto& s = layout_->subs[k];
    const LayerState<float>& st = layers_[k];
    if (s.conv_floats) std::fill_n(st.conv + slot * s.conv_floats, s.conv_floats, 0.0f);
    if (s.ssm_floats) std::fill_n(st.ssm + slot * s.ssm_floats, s.ssm_floats, 0.0f);
    if (s.kv_floats) {
      std::fill_n(st.keys + slot * s.kv_floats, s.kv_floats, 0.0f);
      std::fill_n(st.values + slot * s.kv_floats, s.kv_floats, 0.0f);
    }
  }
  pos_[static_cast<size_t>(slot)] = 0;
}

DecodeState::DecodeState(DecodeState&& o) noexcept : pool_(o.pool_), slot_(o.slot_) {
  o.pool_ = nullptr;
  o.slot_ = -1;
}

DecodeState& DecodeState::operator=(DecodeState&& o) noexcept {
  if (this != &o) {
    if (pool_) pool_->release(slot_);
    pool_ = o.pool_;
    slot_ = o.slot_;
    o.pool_ = nullptr;
    o.slot_ = -1;
  }
  return *this;
}

DecodeState::~DecodeState() {
  if (pool_) pool_->release(slot_);
}

void DecodeState::copy_out(void* dst) const {
  auto* out = static_cast<char*>(dst);
  auto put = [&](const float* p, int64_t n) {
    std::memcpy(out, p, static_cast<size_t>(n) * sizeof(float));
    out += n * int64_t(sizeof(float));
  };
  auto& self = const_cast<DecodeState&>(*this);
  for (size_t k = 0; k < layout().subs.size(); ++k) {
    const auto& s = layout().subs[k];
    if (s.conv_floats) put(self.conv(k), s.conv_floats);
    if (s.ssm_floats) put(self.ssm(k), s.ssm_floats);
    if (s.kv_floats) {
      put(self.keys(k), s.kv_floats);
      put(self.values(k), s.kv_floats);
    }
  }
}

void DecodeState::copy_in(const void* src) {
  const auto* in = static_cast<const char*>(src);
  auto get = [&](float* p, int64_t n) {
    std::memcpy(p, in, static_cast<size_t>(n) * sizeof(float));
    in += n * int64_t(sizeof(float));
  };
  for (size_t k = 0; k < layout().subs.size(); ++k) {
    const auto& s = layout().subs[k];
    if (s.conv_floats) get(conv(k), s.conv_floats);
    if (s.ssm_floats) get(ssm(k), s.ssm_floats);
    if (s.kv_floats) {
      get(keys(k), s.kv_floats);
      get(values(k), s.kv_floats);
    }
  }
}

}  // namespace sambalm
