// Decode states: everything a sequence carries from token to token, and nothing that grows with it,
// kept for S sequences at once in a pool (one slab per backend).
//
// Per residual sublayer of the model (ModelConfig::layout()), per slot:
//   Mamba      conv  [K-1, d_inner]    the last K-1 inputs of the causal depthwise convolution
//              ssm   [d_inner, N]      the selective-scan state h
//   Attention  k, v  [G, cap, hs]      ring buffers of keys (after RoPE) and values;
//                                      the entry of absolute position p lives in p % cap
//   MLP        nothing
//   SambaY     differential attention: k, v [G, cap, hs] like Attention (no RoPE): the self-decoder's
//              sliding windows and the shared-KV layer's full cache (the one state that grows with
//              the context); cross-attention and GMU: nothing (cross-attention reads the shared cache;
//              the GMUs' memory is the memory Mamba layer's output for the current tokens only)
// with cap = window for sliding-window layers and cap = max_context for full-attention layers.
// The ring holds positions max(0, pos - cap) .. pos - 1; which ones is implied by `pos` alone.
//
// The pool lays each sublayer's state out slot-major ([S, ...] per array) so kernels reach a
// sequence's state through its slot id; the slots' positions live in one array [S] that the kernels
// read. A decode step for any subset of live sequences is then the same launches with other slot ids.
// A DecodeState is a handle on one slot (released when the handle dies).
//
// A pool lives in the memory of its context (the host, or a GPU) with the states in the element type of
// the model that runs on it (StateType): fp32 everywhere, or on a GPU in bf16 mixed precision bf16 conv
// states and keys/values beside fp32 scan states (stat_t<bf16>). Positions and slot ids stay on the host
// (the driver hands them to the model per call). The state-file body is fp32 whatever the pool's type.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "core/arena.h"
#include "core/bf16.h"
#include "core/context.h"
#include "model/config.h"
#include "model/layers.h"

namespace sambalm {

// Sizes of one slot's state per sublayer; shared by all states of one model.
struct DecodeLayout {
  struct Sub {
    SublayerKind kind = SublayerKind::MLP;
    int64_t window = 0;                                      // attention: keys per query incl. itself (<= 0: full)
    int64_t cap = 0;                                         // attention: ring entries
    bool shares_kv = false;                                  // SambaY: the shared-KV layer's cache
    int64_t conv_floats = 0, ssm_floats = 0, kv_floats = 0;  // per slot (kv: each of keys and values)
  };
  std::vector<Sub> subs;  // one per residual sublayer, in layout order
  int64_t floats = 0;     // one slot's state
  int64_t d_inner = 0, d_state = 0, d_conv = 0, n_kv = 0, head_size = 0;
  int64_t max_context = 0;  // 0: unbounded (no full-attention layer)

  // max_context bounds full-attention layers' caches (ignored when the model has none).
  static std::shared_ptr<const DecodeLayout> make(const ModelConfig& cfg, int64_t max_context);
};

class DecodeState;

// The element type of a pool's conv states and keys/values (scan states are fp32 in both).
enum class StateType { F32, BF16 };

class DecodePool {
 public:
  // S slots, all free, allocated once (zeroed) in the memory of ctx.
  DecodePool(std::shared_ptr<const DecodeLayout> layout, int64_t slots, const Context& ctx = cpu_context(),
             StateType type = StateType::F32);
  DecodePool(const DecodePool&) = delete;
  DecodePool& operator=(const DecodePool&) = delete;

  const std::shared_ptr<const DecodeLayout>& layout() const { return layout_; }
  int64_t slots() const { return static_cast<int64_t>(pos_.size()); }
  int64_t free_slots() const { return static_cast<int64_t>(free_.size()); }
  int64_t bytes() const { return static_cast<int64_t>(slab_.capacity()); }

  // A free slot, zeroed at position 0 (Error when every slot is taken).
  DecodeState acquire();

  const Context& context() const { return ctx_; }
  StateType type() const { return type_; }
  bool on_host() const { return ctx_.device == Device::CPU; }

  // The arrays of every sublayer over all slots (LayerState without slots/pos), for the model, in the
  // context's memory: layers() of an fp32 pool, layers_bf16() of a bf16 one (Error otherwise).
  const std::vector<LayerState<float>>& layers() const;
  const std::vector<LayerState<bf16>>& layers_bf16() const;
  template <typename T>
  const std::vector<LayerState<T>>& layers_of() const {
    if constexpr (std::is_same_v<T, bf16>)
      return layers_bf16();
    else
      return layers();
  }
  int64_t* positions() { return pos_.data(); }  // [S]
  const int64_t* positions() const { return pos_.data(); }

 private:
  friend class DecodeState;
  void release(int32_t slot);
  void zero(int32_t slot);

  std::shared_ptr<const DecodeLayout> layout_;
  Context ctx_;
  StateType type_ = StateType::F32;
  Arena slab_;
  std::vector<LayerState<float>> layers_;      // an fp32 pool's arrays
  std::vector<LayerState<bf16>> layers_bf16_;  // a bf16 pool's arrays
  std::vector<int64_t> pos_;
  std::vector<int32_t> free_;  // a stack of free slot ids (reserved to S: no allocation on release)
};

// One slot of a pool: a sequence's state. Movable; releases the slot when destroyed.
class DecodeState {
 public:
  DecodeState() = default;
  DecodeState(DecodeState&& o) noexcept;
  DecodeState& operator=(DecodeState&& o) noexcept;
  DecodeState(const DecodeState&) = delete;
  DecodeState& operator=(const DecodeState&) = delete;
  ~DecodeState();

  bool valid() const { return pool_ != nullptr; }
  int32_t slot() const { return slot_; }
  const DecodeLayout& layout() const { return *pool_->layout_; }
  const std::shared_ptr<const DecodeLayout>& layout_ptr() const { return pool_->layout_; }
  const DecodePool* pool() const { return pool_; }
  // Tokens consumed so far = absolute position of the next token.
  int64_t pos() const { return pool_->pos_[slot_]; }
  void set_pos(int64_t p) { pool_->pos_[slot_] = p; }
  // Back to an empty context (zero states, pos 0), keeping the slot.
  void reset() { pool_->zero(slot_); }

  // Host pointers into an fp32 pool on the host (the CPU engine); copy_out / copy_in reach any pool.
  float* conv(size_t sub) { return pool_->layers_[sub].conv + slot_ * layout().subs[sub].conv_floats; }
  float* ssm(size_t sub) { return pool_->layers_[sub].ssm + slot_ * layout().subs[sub].ssm_floats; }
  float* keys(size_t sub) { return pool_->layers_[sub].keys + slot_ * layout().subs[sub].kv_floats; }
  float* values(size_t sub) { return pool_->layers_[sub].values + slot_ * layout().subs[sub].kv_floats; }
  int64_t floats() const { return layout().floats; }
  int64_t bytes() const { return layout().floats * int64_t(sizeof(float)); }
  // The whole state as floats() values in layout order (per sublayer: conv, ssm or keys, values):
  // the decode-state file's body (host memory; a GPU pool's state is copied and, in bf16, converted).
  void copy_out(void* dst) const;
  void copy_in(const void* src);

 private:
  friend class DecodePool;
  DecodeState(DecodePool* pool, int32_t slot) : pool_(pool), slot_(slot) {}
  DecodePool* pool_ = nullptr;
  int32_t slot_ = -1;
};

}  // namespace sambalm
