// The mixers of the block stack — Mamba, (sliding-window) attention, SwiGLU MLP, and SambaY's
// differential (cross-)attention and gated memory unit — each written
// once as an explicit forward/backward pair (DESIGN.md: no autograd) for any number of new tokens
// L >= 1 of B sequences, with optional recurrent state in and out:
//   * training forward: no state; the activations saved are what the backward reads;
//   * chunked prefill: the state of each sequence (a slot of the decode-state pool) is read and
//     updated, the chunk being L new tokens at each sequence's own position;
//   * batched decode step: the same with L = 1 for each of B sequences.
// Every piece of arithmetic is an op (ops/ops.h) called with the backend context; buffers are views
// planned in an arena (core/arena.h), never grown here.
//
// A layer reads its parameters through offsets resolved once from the parameter buffer (ParamRef,
// model/params.h); on backward it ADDS into its parameter gradients and into d(input).
// Templates: float (compute), double (gradient checks) and, with the CUDA backend, bf16 (mixed
// precision: bf16 weights and activations, parameter gradients in grad_t<T> = fp32, and the parameters
// that stay fp32 — A_log, D, the dt bias — read from the fp32 master copy `master`; for float and
// double `master` is the parameter buffer itself).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/arena.h"
#include "core/context.h"
#include "core/precision.h"
#include "model/config.h"
#include "model/params.h"

namespace sambalm {

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

// SambaY differential attention: self (own q, k, v over the window or the full causal range) or
// cross (own q; the keys/values of the shared-KV layer, full causal).
struct DiffAttentionDims {
  int64_t d, H, G, hd, window;
  double lambda_init;
  bool cross;
  int64_t width() const { return cross ? H * hd : (H + 2 * G) * hd; }  // its projection: [q | k | v] or [q]
  int64_t shared_width() const { return (H + 2 * G) * hd; }            // the shared-KV layer's projection
};

struct DiffAttentionParams {
  ParamRef q_w, k_w, v_w, q_b, v_b, lq1, lk1, lq2, lk2, subln, proj_w, proj_b;
};

struct GmuParams {
  ParamRef in_w, out_w;
};

// Where one residual sublayer's parameters sit in the flat buffer, and its sizes: resolved once
// from the parameter layout.
struct SublayerParams {
  Sublayer spec;
  ParamRef norm_w, norm_b;
  MambaParams mamba;
  MambaDims mamba_dims{};
  AttentionParams attn;
  AttentionDims attn_dims{};
  MlpParams mlp;
  DiffAttentionParams dattn;
  DiffAttentionDims dattn_dims{};
  GmuParams gmu;
  int64_t gmu_inner = 0;  // GMU: the memory's width (d_inner)
};

// Each parameter's place: its offset in the float buffer, or its packed matrix.
using ParamOffsets = std::map<std::string, ParamRef>;
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

// The recurrent state of the B sequences of a call, for one sublayer: the pool's arrays for this
// sublayer (every slot), the slot of each sequence and the absolute position of its first new token.
// Kernels index the arrays by slot, so the same launches serve any subset of live sequences.
template <typename T>
struct LayerState {
  const int32_t* slots = nullptr;  // [B]
  const int64_t* pos = nullptr;    // [B]
  T* conv = nullptr;               // Mamba: [S, K-1, di]
  stat_t<T>* ssm = nullptr;        // Mamba: [S, di, N]
  T* keys = nullptr;               // attention: [S, G, cap, hs]
  T* values = nullptr;             // attention: [S, G, cap, hs]
  int64_t cap = 0;                 // attention: ring entries per slot
};

int64_t scan_chunk_size();

// ---- Saved activations (views planned in an arena) ---------------------------------------------
template <typename T>
struct MambaActs {
  T *xz = nullptr, *conv_out = nullptr, *xc = nullptr, *xdbl = nullptr, *dt = nullptr, *y = nullptr, *yg = nullptr;
  stat_t<T>* dt_pre = nullptr;  // dt_proj(dt_low) + dt bias, before softplus: fp32 with the fp32 dt bias
  stat_t<T>* chunk_states = nullptr;
};
template <typename T>
struct AttentionActs {
  T *qkv = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *att = nullptr;
  stat_t<T>* lse = nullptr;
};
template <typename T>
struct MlpActs {
  T *gate = nullptr, *up = nullptr, *hidden = nullptr;  // w1 xn, w2 xn, silu(gate) * up
};
template <typename T>
struct DiffAttentionActs {
  T* qkv = nullptr;  // the projection [BL, width()]
  T* a = nullptr;    // differential attention before the sub-norm [BL, H*hd]
  T* an = nullptr;   // (1 - lambda_init) * subln(a): the output projection's input [BL, H*hd]
  stat_t<T>*lse = nullptr, *rstd = nullptr, *lambda = nullptr;  // [BL, H], [BL * H/2], [1]
};
template <typename T>
struct GmuActs {
  T *gate = nullptr, *hidden = nullptr;  // in_proj xn, silu(gate) * memory
};

// Views for B sequences of L tokens. `lse` only when `with_lse` (the training attention saves it);
// chunk_states only when `scan_chunks` (the one-token step of a decode needs none).
template <typename T>
void plan_mamba_acts(const Context& ctx, Arena& a, MambaActs<T>& acts, const MambaDims& m, int64_t B, int64_t L,
                     bool scan_chunks = true);
template <typename T>
void plan_attention_acts(const Context& ctx, Arena& a, AttentionActs<T>& acts, const AttentionDims& m, int64_t B,
                         int64_t L, bool with_lse);
template <typename T>
void plan_mlp_acts(const Context& ctx, Arena& a, MlpActs<T>& acts, int64_t hidden, int64_t B, int64_t L);
template <typename T>
void plan_diff_attention_acts(const Context& ctx, Arena& a, DiffAttentionActs<T>& acts, const DiffAttentionDims& m,
                              int64_t B, int64_t L);
template <typename T>
void plan_gmu_acts(const Context& ctx, Arena& a, GmuActs<T>& acts, int64_t di, int64_t B, int64_t L);

// ---- Backward scratch: each layer's gradient temporaries (the three share one region) ----------
template <typename T>
struct MambaGrads {
  T *dgated = nullptr, *dy = nullptr, *dxz = nullptr, *dxc = nullptr, *ddt = nullptr, *dxdbl = nullptr,
    *ddt_pre = nullptr;
  stat_t<T>*dA = nullptr, *scan = nullptr;
};
template <typename T>
struct AttentionGrads {
  T *datt = nullptr, *dq = nullptr, *dk = nullptr, *dv = nullptr, *dqkv = nullptr;
  stat_t<T>* scratch = nullptr;  // the backend's attention_backward scratch (nullptr when it needs none)
};
template <typename T>
struct MlpGrads {
  T *dhidden = nullptr, *dgate = nullptr, *dup = nullptr;
};
template <typename T>
struct DiffAttentionGrads {
  T *dan = nullptr, *da = nullptr, *dqkv = nullptr;       // [BL, H*hd], [BL, H*hd], [BL, (H+2G)*hd]
  stat_t<T>*dlambda = nullptr, *dlambda_parts = nullptr;  // [1], [B * G/2]
};
template <typename T>
struct GmuGrads {
  T *dhidden = nullptr, *dgate = nullptr;
};
template <typename T>
void plan_diff_attention_grads(const Context& ctx, Arena& a, DiffAttentionGrads<T>& g, const DiffAttentionDims& m,
                               int64_t B, int64_t L);
template <typename T>
void plan_gmu_grads(const Context& ctx, Arena& a, GmuGrads<T>& g, int64_t di, int64_t B, int64_t L);
template <typename T>
void plan_mamba_grads(const Context& ctx, Arena& a, MambaGrads<T>& g, const MambaDims& m, int64_t B, int64_t L);
template <typename T>
void plan_attention_grads(const Context& ctx, Arena& a, AttentionGrads<T>& g, const AttentionDims& m, int64_t B,
                          int64_t L);
template <typename T>
void plan_mlp_grads(const Context& ctx, Arena& a, MlpGrads<T>& g, int64_t hidden, int64_t B, int64_t L);

// ---- The mixers ------------------------------------------------------------------------------
// out[B*L, d] = Mamba(xn). A = -exp(A_log) [di, N] is computed by the caller (neg_exp_forward).
// With `st`: the conv and SSM states of each sequence's slot seed the recurrences and receive the
// final states (L == 1 runs the one-step scan).
template <typename T>
void mamba_forward(const Context& ctx, T* out, const MambaActs<T>& a, const T* xn, const T* params,
                   const stat_t<T>* master, const MambaParams& p, const MambaDims& m, const stat_t<T>* A, int64_t B,
                   int64_t L, const LayerState<T>* st = nullptr);
// Training only (no state). dA is scratch [di, N] for the scan's dA before it maps onto dA_log.
// dy_extra [BL, di] (may be nullptr): a gradient of the scan output y from elsewhere — SambaY's GMUs
// read the y of the memory layer (a.y) as their memory.
template <typename T>
void mamba_backward(const Context& ctx, T* dxn, grad_t<T>* grads, const T* dout, const MambaActs<T>& a, const T* xn,
                    const T* params, const stat_t<T>* master, const MambaParams& p, const MambaDims& m,
                    const stat_t<T>* A, int64_t B, int64_t L, const MambaGrads<T>& g, const T* dy_extra = nullptr);

// cos/sin: RoPE rows; row of (b, t) is (b * cs_batch_rows + t) (cs_batch_rows = 0: one table from
// position 0 shared by the batch, as in training). With `st`: the new keys/values join each sequence's
// cache and the queries also see the cached positions.
template <typename T>
void attention_forward_layer(const Context& ctx, T* out, const AttentionActs<T>& a, const T* xn, const T* params,
                             const AttentionParams& p, const AttentionDims& m, const T* cos, const T* sin,
                             int64_t cs_batch_rows, int64_t B, int64_t L, const LayerState<T>* st = nullptr);
template <typename T>
void attention_backward_layer(const Context& ctx, T* dxn, grad_t<T>* grads, const T* dout, const AttentionActs<T>& a,
                              const T* xn, const T* params, const AttentionParams& p, const AttentionDims& m,
                              const T* cos, const T* sin, int64_t B, int64_t L, const AttentionGrads<T>& g);

template <typename T>
void mlp_forward(const Context& ctx, T* out, const MlpActs<T>& a, const T* xn, const T* params, const MlpParams& p,
                 int64_t d, int64_t hidden, int64_t B, int64_t L);
template <typename T>
void mlp_backward(const Context& ctx, T* dxn, grad_t<T>* grads, const T* dout, const MlpActs<T>& a, const T* xn,
                  const T* params, const MlpParams& p, int64_t d, int64_t hidden, int64_t B, int64_t L,
                  const MlpGrads<T>& g);

// SambaY differential attention. Self: q, k, v from xn; `shared_qkv` unused. Cross: q from xn,
// keys/values from `shared_qkv` [BL, shared_width()] (the shared-KV layer's projection of these tokens).
//   a   = diff_attention(q, k, v, lambda)      (ops::diff_attention_forward)
//   out = proj((1 - lambda_init) * RMSNorm_2hd(a) * subln)
// With `st` (decoding): the queries also see the cached positions of each sequence's slot. A self
// layer's `st` is its own cache, which receives the new keys/values; a cross layer's is the shared-KV
// layer's cache (read only; that layer has already stored these tokens).
template <typename T>
void diff_attention_forward_layer(const Context& ctx, T* out, const DiffAttentionActs<T>& a, const T* xn,
                                  const T* params, const DiffAttentionParams& p, const DiffAttentionDims& m, int64_t B,
                                  int64_t L, const T* shared_qkv, const LayerState<T>* st = nullptr);
// Cross: dk, dv are added into dshared_qkv [BL, shared_width()]. Self: dshared_qkv (may be nullptr) is
// the gradient the cross-attention layers gathered for this layer's keys/values, added to its own.
template <typename T>
void diff_attention_backward_layer(const Context& ctx, T* dxn, grad_t<T>* grads, const T* dout,
                                   const DiffAttentionActs<T>& a, const T* xn, const T* params,
                                   const DiffAttentionParams& p, const DiffAttentionDims& m, int64_t B, int64_t L,
                                   const DiffAttentionGrads<T>& g, const T* shared_qkv, T* dshared_qkv);

// Gated memory unit: out = out_proj(silu(in_proj(xn)) * memory), memory [BL, di].
template <typename T>
void gmu_forward(const Context& ctx, T* out, const GmuActs<T>& a, const T* xn, const T* params, const GmuParams& p,
                 const T* memory, int64_t d, int64_t di, int64_t B, int64_t L);
// dmemory [BL, di] accumulates (every GMU reads the same memory).
template <typename T>
void gmu_backward(const Context& ctx, T* dxn, grad_t<T>* grads, T* dmemory, const T* dout, const GmuActs<T>& a,
                  const T* xn, const T* params, const GmuParams& p, const T* memory, int64_t d, int64_t di, int64_t B,
                  int64_t L, const GmuGrads<T>& g);

}  // namespace sambalm
