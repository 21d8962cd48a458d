// Parameters live in one contiguous float32 buffer with named views (DESIGN.md); gradients and
// optimizer moments are buffers of the same size and layout.
//
// sambalm's own parameter names (also the names in its model.safetensors), in buffer order:
//   embedding.weight            [padded_vocab, d]
//   blocks.{i}.{s}.<...>        block i, residual sublayer s (ModelConfig::layout()):
//     norm.weight [d]  (+ norm.bias [d] for LayerNorm)
//     Mamba:     in_proj.weight [2*di, d] (+ in_proj.bias), conv.weight [di, d_conv], conv.bias [di],
//                x_proj.weight [dt_rank + 2*d_state, di], dt_proj.weight [di, dt_rank],
//                dt_proj.bias [di], A_log [di, d_state], D [di], out_proj.weight [d, di] (+ out_proj.bias)
//     Attention: qkv.weight [(n_head + 2*n_query_groups) * head_size, d] (lit_gpt grouped layout)
//                (+ qkv.bias), proj.weight [d, n_head * head_size] (+ proj.bias)
//     MLP:       w1.weight [hidden, d], w2.weight [hidden, d], w3.weight [d, hidden] (+ biases)
//     SambaY differential attention (DiffAttention; CrossAttention has only q_proj and proj):
//                q_proj.weight [H*hs, d], k_proj.weight [G*hs, d], v_proj.weight [G*hs, d]
//                (+ q_proj.bias, v_proj.bias), lambda_q1, lambda_k1, lambda_q2, lambda_k2 [hs],
//                subln.weight [2*hs], proj.weight [d, H*hs] (+ proj.bias)
//     SambaY GMU: in_proj.weight [di, d], out_proj.weight [d, di]
//   final_norm.weight [d] (+ final_norm.bias)
//   lm_head.weight [padded_vocab, d]   only when the head is not tied to the embedding
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/packed_matrix.h"
#include "core/tensor.h"
#include "model/config.h"

namespace sambalm {

struct ParamSpec {
  std::string name;
  Shape shape;
};

// Every parameter of the model described by `cfg`, in buffer order (see above).
std::vector<ParamSpec> param_specs(const ModelConfig& cfg);

// A parameter kept in a packed format for inference (model/packed_weights.h) has no floats in the
// buffer: `packed` points at its matrix, `offset` is unused and numel() counts its weights.
struct ParamEntry {
  std::string name;
  Shape shape;
  size_t offset;  // in floats from the start of the buffer
  const PackedMatrix* packed = nullptr;
  int64_t numel() const { return shape_numel(shape); }
  int64_t buffer_floats() const { return packed ? 0 : numel(); }
};

class PackedWeights;

// A parameter's place in a buffer of this layout (parameters, gradients, moments alike), resolved
// once by name; `at(buf)` gives the pointer.
// A packed weight (a GEMM matrix kept in bf16, f16, q8 or q4 for inference) has offset -1 and `packed`
// set: the layers multiply by it through linear_forward (model/linear.h).
struct ParamRef {
  int64_t offset = -1;  // -1: absent (optional bias), or packed
  const PackedMatrix* packed = nullptr;
  bool present() const { return offset >= 0 || packed; }
  template <typename T>
  T* at(T* base) const {
    return offset < 0 ? nullptr : base + offset;
  }
  template <typename T>
  const T* at(const T* base) const {
    return offset < 0 ? nullptr : base + offset;
  }
};

class ParamStore {
 public:
  ParamStore() = default;
  explicit ParamStore(const std::vector<ParamSpec>& specs);
  // The parameters named in `packed` are its matrices (no floats in the buffer); the others float32.
  ParamStore(const std::vector<ParamSpec>& specs, std::shared_ptr<const PackedWeights> packed);

  float* data() { return buffer_.data(); }
  const float* data() const { return buffer_.data(); }
  size_t size() const { return buffer_.size(); }
  const std::vector<ParamEntry>& entries() const { return entries_; }

  bool has(const std::string& name) const { return index_.count(name) != 0; }
  const ParamEntry& entry(const std::string& name) const;  // throws Error when absent
  // The float32 values of a parameter; throws Error for a packed one.
  float* get(const std::string& name) { return buffer_.data() + float_entry(name).offset; }
  const float* get(const std::string& name) const { return buffer_.data() + float_entry(name).offset; }
  // The packed matrices (nullptr when every parameter is float32) and the bytes of all parameters.
  const std::shared_ptr<const PackedWeights>& packed() const { return packed_; }
  int64_t bytes() const;
  // A float32 Tensor view of one parameter (shares this store's memory; valid while it lives).
  Tensor view(const std::string& name);

 private:
  const ParamEntry& float_entry(const std::string& name) const;

  std::vector<float> buffer_;
  std::shared_ptr<const PackedWeights> packed_;
  std::vector<ParamEntry> entries_;
  std::map<std::string, size_t> index_;
};

}  // namespace sambalm
