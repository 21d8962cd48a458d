// Causal sliding-window attention, bf16 on the tensor cores (FlashAttention-2 over the band), head
// sizes 64 and 128 (attention_flash_forward.cu, attention_flash_backward.cu; this header holds what they
// share: parameters, tile shapes, launch helpers): the winners of dev/cuda/sliding_window_attention.cu (forward version
// 2, backward version 9), measured there on an H100 against a double-precision reference (docs/BENCHMARKS.md).
//
// Layouts as ops/dense_ops.h: q[B, H, T, D], k/v[B, G, T, D] (query head h reads kv head h / (H/G)),
// out[B, T, H*D] (token-major), lse[B, H, T] fp32, dout like out, dq like q, dk/dv like k.
// Window W (effective: W <= 0 or W > T means T): query t sees keys s with t - W < s <= t.
// Forward:  S_ts = scale q_t . k_s (visible s),  lse_t = log sum_s exp(S_ts),  out_t = sum_s exp(S_ts - lse_t) v_s
// Backward (P recomputed from lse, never stored):
//   Di_t = dout_t . out_t,  dP_ts = dout_t . v_s,  dS_ts = P_ts (dP_ts - Di_t)
//   dq_t += scale sum_s dS_ts k_s,  dk_s += scale sum_{h in group, t} dS_ts q_t,  dv_s += sum_{h, t} P_ts dout_t
// bf16 operands, fp32 accumulation and softmax statistics; P and dS are rounded to bf16 before their
// products (relative L2 error against a double reference: out <= 2e-3, lse <= 1e-7, grads <= 3e-3 on
// the dev file's cases).
//
// Forward: a block of 4 warps owns 64 queries of one (b, h), 16 rows a warp with Q in registers; it
// visits only the 64-key tiles that meet the band of its rows (K/V double-buffered with cp.async),
// with an online softmax in base 2, masking only the tiles that cross an edge of the band or T.
// Backward: a block of 8 warps owns 128 keys of one (b, kv head), 16 keys a warp, and works on
// transposed tiles (keys as rows) so that P^T and dS^T are A operands straight from its accumulators:
//   S^T = K Q^T,  P^T = exp2(S^T sl2 - lse2),  dV += P^T dO,  dP^T = V dO^T,  dS^T = P^T (dP^T - Di),
//   dK += dS^T Q
// over the heads of the group and the 64-query tiles of the band; dK and dV stay in registers (a key
// row belongs to one block: no atomics). dQ_tile = dS K goes through shared memory and fp32 atomics
// into the scratch accumulator; a last pass adds scale * it to dq in bf16.
// Included by .cu files only (C++17, no fmt).
#pragma once

#include <cuda_bf16.h>

#include <atomic>
#include <cstdint>

#include "core/bf16.h"
#include "core/context.h"
#include "ops/cuda/check.cuh"
#include "ops/cuda/mma.cuh"

namespace sambalm::ops::cuda::flash {

using namespace tc;

struct FwdParams {
  const nv_bf16 *q, *k, *v;
  nv_bf16* out;
  float* lse;
  int B, T, H, G, W;  // W effective (1..T)
  float scale;
};
struct BwdParams {
  const nv_bf16 *q, *k, *v, *out, *dout;
  const float* lse;
  float* Di;      // [B, H, T] scratch: dout . out
  float* dq_acc;  // [B, H, T, D] fp32 scratch, zeroed first (filled even when dq is nullptr: one kernel)
  nv_bf16 *dq, *dk, *dv;
  int B, T, H, G, W;
  float scale;
};

template <int D, int NW, int BK_ = 64>
struct FwdCfg {
  static constexpr int BQ = 16 * NW, BK = BK_, SD = D + 8, NT = NW * 32;
  static constexpr size_t smem = size_t(BQ + 4 * BK) * SD * sizeof(nv_bf16);  // Q + 2 stages of K and V
};

template <int D, int BQ, int NW_>
struct BwdCfg {
  static constexpr int NW = NW_, BKV = 16 * NW, NT = 32 * NW, SD = D + 8, SDS = BQ + 8;
  // K, V; 2 stages of Q and dO; dS^T; 2 stages of lse and Di.
  static constexpr size_t smem =
      size_t(2 * BKV * SD + 4 * BQ * SD + BKV * SDS) * sizeof(nv_bf16) + 4 * BQ * sizeof(float);
};

constexpr int kFwdWarps = 4;  // forward: 64 queries a block (dev version 2)
constexpr int kBwdWarps = 8;  // backward: 128 keys a block, 64-query tiles (dev version 9)
constexpr int kBwdBQ = 64;

// The kernels need more than the default 48 KiB of dynamic shared memory: the limit is raised once per
// kernel and device (an attribute of the function on the current device).
template <typename K>
inline void allow_smem(K kernel, size_t bytes, int device, std::atomic<uint64_t>& done) {
  const uint64_t bit = device < 64 ? uint64_t(1) << device : 0;
  if (bit && (done.load(std::memory_order_relaxed) & bit)) return;
  SAMBALM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  done.fetch_or(bit, std::memory_order_relaxed);
}

inline int effective_window(int64_t window, int64_t Tn) { return int(window <= 0 || window > Tn ? Tn : window); }

inline const nv_bf16* nv(const bf16* p) { return reinterpret_cast<const nv_bf16*>(p); }
inline nv_bf16* nv(bf16* p) { return reinterpret_cast<nv_bf16*>(p); }

}  // namespace sambalm::ops::cuda::flash
