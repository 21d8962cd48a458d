// DecodeState: everything one sequence carries from token to token, and nothing that grows with it.
//
// Per residual sublayer of the model (ModelConfig::layout()):
//   Mamba      conv  [K-1, d_inner]    the last K-1 inputs of the causal depthwise convolution
//              ssm   [d_inner, N]      the selective-scan state h
//   Attention  k, v  [G, cap, hs]      ring buffers of keys (after RoPE) and values;
//                                      the entry of absolute position p lives in slot p % cap
//   MLP        nothing
// with cap = window for sliding-window layers and cap = max_context for full-attention layers.
// The ring holds positions max(0, pos - cap) .. pos - 1; which ones is implied by `pos` alone, so no
// position array is needed. Sliding-window and Mamba layers make the state O(1) in the context
// length; a full-attention layer makes it O(max_context) and decoding past max_context an error.
//
// All states live in one float buffer sized once at construction: bytes() never depends on pos.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"

namespace sambalm {

// Where each sublayer's state sits in the buffer; shared by all states of one model.
struct DecodeLayout {
  struct Slot {
    SublayerKind kind = SublayerKind::MLP;
    int64_t window = 0;                           // attention: keys per query including itself (<= 0: full causal)
    int64_t cap = 0;                              // attention: ring entries
    int64_t conv = -1, ssm = -1, k = -1, v = -1;  // float offsets into the buffer (-1: none)
  };
  std::vector<Slot> subs;  // one per residual sublayer, in layout order
  int64_t floats = 0;      // buffer size
  int64_t d_inner = 0, d_state = 0, d_conv = 0, n_kv = 0, head_size = 0;
  int64_t max_context = 0;  // 0: unbounded (no full-attention layer)

  // max_context bounds full-attention layers' caches (ignored when the model has none).
  static std::shared_ptr<const DecodeLayout> make(const ModelConfig& cfg, int64_t max_context);
};

class DecodeState {
 public:
  explicit DecodeState(std::shared_ptr<const DecodeLayout> layout);

  const DecodeLayout& layout() const { return *layout_; }
  const std::shared_ptr<const DecodeLayout>& layout_ptr() const { return layout_; }
  // Tokens consumed so far = absolute position of the next token.
  int64_t pos() const { return pos_; }
  void set_pos(int64_t p) { pos_ = p; }
  // Back to an empty context (zero states, pos 0), keeping the buffer.
  void reset();

  float* conv(size_t sub) { return data_.data() + layout_->subs[sub].conv; }
  float* ssm(size_t sub) { return data_.data() + layout_->subs[sub].ssm; }
  float* keys(size_t sub) { return data_.data() + layout_->subs[sub].k; }
  float* values(size_t sub) { return data_.data() + layout_->subs[sub].v; }
  float* data() { return data_.data(); }
  const float* data() const { return data_.data(); }
  int64_t floats() const { return layout_->floats; }
  int64_t bytes() const { return layout_->floats * int64_t(sizeof(float)); }

 private:
  std::shared_ptr<const DecodeLayout> layout_;
  std::vector<float> data_;
  int64_t pos_ = 0;
};

}  // namespace sambalm
