// The three mixers of the block stack — Mamba, (sliding-window) attention, SwiGLU MLP — each as an
// explicit forward/backward pair over buffers the model sizes once (DESIGN.md: no autograd).
//
// A layer reads its parameters through a table of pointers resolved once from the parameter
// buffer, saves what its backward needs in its activation struct, and on backward ADDS into its
// parameter gradients and into d(input). Templates: float (compute) and double (gradient checks).
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/params.h"

namespace sambalm {

// Offsets of named parameters in the flat buffer, resolved once; `at(buf)` gives the pointer.
struct ParamRef {
  int64_t offset = -1;  // -1: absent (optional bias)
  template <typename T>
  T* at(T* base) const {
    return offset < 0 ? nullptr : base + offset;
  }
  template <typename T>
  const T* at(const T* base) const {
    return offset < 0 ? nullptr : base + offset;
  }
};

struct MambaDims {
  int64_t d, di, N, K, R;  // model width, inner width, state, conv width, dt rank
  int64_t xdbl() const { return R + 2 * N; }
};

struct MambaParams {
  ParamRef in_proj_w, in_proj_b, conv_w, conv_b, x_proj_w, dt_proj_w, dt_proj_b, A_log, D, out_proj_w, out_proj_b;
};

struct AttentionDims {
  int64_t d, H, G, hs, window, rope_dims;
  int64_t qkv() const { return (H + 2 * G) * hs; }
};

struct AttentionParams {
  ParamRef qkv_w, qkv_b, proj_w, proj_b;
};

struct MlpParams {
  ParamRef w1, b1, w2, b2, w3, b3;
};

// Where one residual sublayer's parameters sit in the flat buffer, and its sizes: resolved once
// from the parameter layout by the training model and by the decoder alike.
struct SublayerParams {
  Sublayer spec;
  ParamRef norm_w, norm_b;
  MambaParams mp;
  MambaDims md{};
  AttentionParams ap;
  AttentionDims ad{};
  MlpParams lp;
};

using ParamOffsets = std::map<std::string, int64_t>;
ParamOffsets param_offsets(const std::vector<ParamEntry>& entries);
// Throws Error when a required parameter is absent; an absent optional one gives an empty ParamRef.
ParamRef param_ref(const ParamOffsets& offsets, const std::string& name, bool required = true);
// The parameters of sublayer `s` of block `block` (names "blocks.{block}.{s}.*", params.h).
SublayerParams resolve_sublayer(const ModelConfig& cfg, const Sublayer& spec, const ParamOffsets& offsets, size_t block,
                                size_t s);

// The whole model's parameters: embedding, head (the embedding itself when tied), final norm, and
// every residual sublayer in layout order with the index of each block's last sublayer.
struct ModelParams {
  ParamRef embed, head, norm_w, norm_b;
  std::vector<SublayerParams> subs;
  std::vector<int64_t> block_last_sub;
};
ModelParams resolve_model(const ModelConfig& cfg, const std::vector<ParamEntry>& entries);

// Saved activations of one Mamba sublayer for (B, T).
template <typename T>
struct MambaActs {
  std::vector<T> xz, conv_out, xc, xdbl, dt_pre, dt, y, yg, chunk_states;
};

template <typename T>
struct AttentionActs {
  std::vector<T> qkv, q, k, v, att, lse;
};

template <typename T>
struct MlpActs {
  std::vector<T> a, b, h;
};

// Scratch shared by all layers' backward passes (sized for the largest layer).
template <typename T>
struct LayerScratch {
  std::vector<T> A;                           // -exp(A_log), [di, N]
  std::vector<T> dA;                          // [di, N]
  std::vector<T> d1, d2, d3, d4, d5, d6, d7;  // generic gradient buffers
  std::vector<T> scan;                        // selective-scan backward scratch
};

int64_t scan_chunk_size();

template <typename T>
void mamba_alloc(MambaActs<T>& a, const MambaDims& m, int64_t B, int64_t Tn);
// out[B*T, d] = Mamba(xn). h0/conv_state (nullable) seed the recurrences for chunked prefill;
// h_last/conv_last (nullable) receive the final states.
template <typename T>
void mamba_forward(T* out, MambaActs<T>& a, const T* xn, const T* params, const MambaParams& p, const MambaDims& m,
                   int64_t B, int64_t Tn, LayerScratch<T>& s, const T* h0 = nullptr, T* h_last = nullptr,
                   const T* conv_state = nullptr, T* conv_last = nullptr);
template <typename T>
void mamba_backward(T* dxn, T* grads, const T* dout, const MambaActs<T>& a, const T* xn, const T* params,
                    const MambaParams& p, const MambaDims& m, int64_t B, int64_t Tn, LayerScratch<T>& s);

template <typename T>
void attention_alloc(AttentionActs<T>& a, const AttentionDims& m, int64_t B, int64_t Tn);
template <typename T>
void attention_forward_layer(T* out, AttentionActs<T>& a, const T* xn, const T* params, const AttentionParams& p,
                             const AttentionDims& m, const T* cos, const T* sin, int64_t B, int64_t Tn);
template <typename T>
void attention_backward_layer(T* dxn, T* grads, const T* dout, const AttentionActs<T>& a, const T* xn, const T* params,
                              const AttentionParams& p, const AttentionDims& m, const T* cos, const T* sin, int64_t B,
                              int64_t Tn, LayerScratch<T>& s);

template <typename T>
void mlp_alloc(MlpActs<T>& a, int64_t hidden, int64_t B, int64_t Tn);
template <typename T>
void mlp_forward(T* out, MlpActs<T>& a, const T* xn, const T* params, const MlpParams& p, int64_t d, int64_t hidden,
                 int64_t B, int64_t Tn);
template <typename T>
void mlp_backward(T* dxn, T* grads, const T* dout, const MlpActs<T>& a, const T* xn, const T* params,
                  const MlpParams& p, int64_t d, int64_t hidden, int64_t B, int64_t Tn, LayerScratch<T>& s);

// Grows v to at least n elements (never shrinks); zero-filled.
template <typename T>
inline T* ensure(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.assign(static_cast<size_t>(n), T(0));
  return v.data();
}
template <typename T>
inline T* zeroed(std::vector<T>& v, int64_t n) {
  T* p = ensure(v, n);
  std::fill(p, p + n, T(0));
  return p;
}

}  // namespace sambalm
