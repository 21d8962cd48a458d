#include "infer/decode_state.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "ops/memory_ops.h"

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

DecodePool::DecodePool(std::shared_ptr<const DecodeLayout> layout, int64_t slots, const Context& ctx, StateType type)
    : layout_(std::move(layout)), ctx_(ctx), type_(type) {
  SAMBALM_CHECK(slots > 0 && slots <= (int64_t(1) << 30), "decode: a pool of {} slots", slots);
  SAMBALM_CHECK(type_ == StateType::F32 || ctx_.device != Device::CPU,
                "decode: bf16 decode states are for the GPU's mixed precision (the CPU decodes in fp32)");
  auto lay = [&]<typename T>(Arena& a, std::vector<LayerState<T>>& layers) {
    layers.assign(layout_->subs.size(), LayerState<T>{});
    for (size_t k = 0; k < layout_->subs.size(); ++k) {
      const auto& s = layout_->subs[k];
      LayerState<T>& st = layers[k];
      if (s.conv_floats) st.conv = a.take<T>(slots * s.conv_floats);
      if (s.ssm_floats) st.ssm = a.take<stat_t<T>>(slots * s.ssm_floats);
      if (s.kv_floats) {
        st.keys = a.take<T>(slots * s.kv_floats);
        st.values = a.take<T>(slots * s.kv_floats);
        st.cap = s.cap;
      }
    }
  };
  auto lay_all = [&](Arena& a) {
    if (type_ == StateType::F32)
      lay(a, layers_);
    else
      lay(a, layers_bf16_);
  };
  Arena count;
  lay_all(count);
  slab_ = on_host() ? Arena(count.bytes()) : ops::arena_on(ctx_, count.bytes());
  lay_all(slab_);
  pos_.assign(static_cast<size_t>(slots), 0);
  free_.reserve(static_cast<size_t>(slots));
  for (int64_t s = slots - 1; s >= 0; --s) free_.push_back(static_cast<int32_t>(s));
}

const std::vector<LayerState<float>>& DecodePool::layers() const {
  SAMBALM_CHECK(type_ == StateType::F32, "decode: the fp32 states of a bf16 pool were asked for");
  return layers_;
}

const std::vector<LayerState<bf16>>& DecodePool::layers_bf16() const {
  SAMBALM_CHECK(type_ == StateType::BF16, "decode: the bf16 states of an fp32 pool were asked for");
  return layers_bf16_;
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
  auto clear = [&]<typename T>(const std::vector<LayerState<T>>& layers) {
    for (size_t k = 0; k < layout_->subs.size(); ++k) {
      const auto& s = layout_->subs[k];
      const LayerState<T>& st = layers[k];
      if (on_host()) {
        if constexpr (std::is_same_v<T, float>) {
          if (s.conv_floats) std::fill_n(st.conv + slot * s.conv_floats, s.conv_floats, 0.0f);
          if (s.ssm_floats) std::fill_n(st.ssm + slot * s.ssm_floats, s.ssm_floats, 0.0f);
          if (s.kv_floats) {
            std::fill_n(st.keys + slot * s.kv_floats, s.kv_floats, 0.0f);
            std::fill_n(st.values + slot * s.kv_floats, s.kv_floats, 0.0f);
          }
        }
        continue;
      }
      if (s.conv_floats) ops::fill_zero(ctx_, st.conv + slot * s.conv_floats, s.conv_floats);
      if (s.ssm_floats) ops::fill_zero(ctx_, st.ssm + slot * s.ssm_floats, s.ssm_floats);
      if (s.kv_floats) {
        ops::fill_zero(ctx_, st.keys + slot * s.kv_floats, s.kv_floats);
        ops::fill_zero(ctx_, st.values + slot * s.kv_floats, s.kv_floats);
      }
    }
  };
  if (type_ == StateType::F32)
    clear(layers_);
  else
    clear(layers_bf16_);
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

namespace {

// Copies n values of a state array (host or device, fp32 or bf16) to / from fp32 values at a host
// address of any alignment (a file buffer): fp32 goes through memcpy or the copy engine as it is.
template <typename T>
void array_out(const Context& ctx, void* dst, const T* src, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    ops::download(ctx, dst, src, static_cast<size_t>(n) * sizeof(float));
  } else {
    std::vector<T> tmp(static_cast<size_t>(n));
    ops::download(ctx, tmp.data(), src, static_cast<size_t>(n) * sizeof(T));
    std::vector<float> f(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) f[i] = static_cast<float>(tmp[i]);
    std::memcpy(dst, f.data(), f.size() * sizeof(float));
  }
}

template <typename T>
void array_in(const Context& ctx, T* dst, const void* src, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    ops::upload(ctx, dst, src, static_cast<size_t>(n) * sizeof(float));
  } else {
    std::vector<float> f(static_cast<size_t>(n));
    std::memcpy(f.data(), src, f.size() * sizeof(float));
    std::vector<T> tmp(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) tmp[i] = T(f[i]);
    ops::upload(ctx, dst, tmp.data(), static_cast<size_t>(n) * sizeof(T));
  }
}

}  // namespace

void DecodeState::copy_out(void* dst) const {
  // Unaligned destinations (a file buffer) are fine: the bytes go through memcpy or the copy engine.
  auto* out = static_cast<char*>(dst);
  const Context& ctx = pool_->ctx_;
  auto walk = [&]<typename T>(const std::vector<LayerState<T>>& layers) {
    for (size_t k = 0; k < layout().subs.size(); ++k) {
      const auto& s = layout().subs[k];
      const LayerState<T>& st = layers[k];
      auto put = [&]<typename U>(const U* base, int64_t n) {
        array_out(ctx, out, base + slot_ * n, n);
        out += n * int64_t(sizeof(float));
      };
      if (s.conv_floats) put(st.conv, s.conv_floats);
      if (s.ssm_floats) put(st.ssm, s.ssm_floats);
      if (s.kv_floats) {
        put(st.keys, s.kv_floats);
        put(st.values, s.kv_floats);
      }
    }
  };
  if (pool_->type_ == StateType::F32)
    walk(pool_->layers_);
  else
    walk(pool_->layers_bf16_);
}

void DecodeState::copy_in(const void* src) {
  const auto* in = static_cast<const char*>(src);
  const Context& ctx = pool_->ctx_;
  auto walk = [&]<typename T>(const std::vector<LayerState<T>>& layers) {
    for (size_t k = 0; k < layout().subs.size(); ++k) {
      const auto& s = layout().subs[k];
      const LayerState<T>& st = layers[k];
      auto get = [&]<typename U>(U* base, int64_t n) {
        array_in(ctx, base + slot_ * n, in, n);
        in += n * int64_t(sizeof(float));
      };
      if (s.conv_floats) get(st.conv, s.conv_floats);
      if (s.ssm_floats) get(st.ssm, s.ssm_floats);
      if (s.kv_floats) {
        get(st.keys, s.kv_floats);
        get(st.values, s.kv_floats);
      }
    }
  };
  if (pool_->type_ == StateType::F32)
    walk(pool_->layers_);
  else
    walk(pool_->layers_bf16_);
}

}  // namespace sambalm
