// The streaming causal conv1d backward kernel (conv1d.cu launches it). Kept in a header of its own,
// free of the library's host code, so that dev/cuda/host_emu can run it on the CPU against the CPU op
// (dev/cuda/host_emu/check_conv_library.cpp). C++17, no fmt.
//
// With xx = state ++ x along time (K-1 state rows [B, K-1, D] before x, zeros when absent):
//   dx[b, s, d] += sum_j w[d, j] * dout[b, s + (K-1) - j, d]     (terms with s + K-1-j < L)
//   dw[d, j]    += sum_{b,t} dout[b, t, d] * xx[b, t + j, d];   dbias[d] += sum_{b,t} dout[b, t, d]
// With `pre` given (causal_conv1d_silu_backward), dout is dact * silu'(pre), computed as the rows
// arrive (rounded to the element type, as the stored gradient of the unfused ops was).
//
// Work split: a thread owns V channels (one 16-byte vector: 8 bf16 or 4 fp32) of one sequence and a
// run of T steps; a block's 4 warps take 4 consecutive runs of the same 32 x V channels. The thread
// walks t from its run's start to K-1 steps past its end, loading dout row t, x row t and the dx row
// t-(K-1) for U steps at once (all U steps' loads in flight before the first use), keeps the last K-1
// rows of x and dout in registers (as loaded: bf16 is widened on use), finishes dx[t-(K-1)] at step t
// and accumulates dw/dbias over its run in fp32 registers. Each x and dout row is read once, plus
// K-1 halo rows a run. dw/dbias: the 4 warps' sums meet in shared memory and one fp32 atomic per
// (block, channel, tap) adds the block's total (so the summation order, and the last bits of dw and
// dbias, may differ between runs).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "ops/cuda/vec16.cuh"

namespace sambalm::ops::cuda::conv_bwd {

constexpr int kThreads = 128;          // 4 warps: 4 runs of the same channels
constexpr int kWarps = kThreads / 32;  //
constexpr int kMinSteps = 64;          // shortest run when the grid is sized (halo < 5% at K = 4)

using vec16::Row16;

template <typename D>
struct Args {
  D* dx;  // nullable
  int64_t ld_dx;
  float* dw;     // nullable; fp32 (the bf16-gradient overload reduces dw/dbias elsewhere)
  float* dbias;  // nullable
  const D* dout;
  const D* pre;  // nullable: when given, the gradient is dout * silu'(pre) (the conv + SiLU backward)
  const D* x;
  int64_t ld_x;
  const D* w;
  const D* state;  // nullable: zeros
  int64_t B, L, D_;
  int T;    // steps of a warp's run
  int nbc;  // blocks along time per (sequence, strip of channels)
  bool vec_dx, vec_x, vec_dout, vec_state;
};

// dact * silu'(v) = dact * s * (1 + v (1 - s)), s = sigmoid(v): the CPU's silu_backward formula.
__device__ __forceinline__ float silu_grad(float dact, float v) {
  const float s = 1.f / (1.f + expf(-v));
  return dact * s * (1.f + v * (1.f - s));
}

// Grid: blockIdx.x = (b * nstrips + strip) * nbc + bc; warp q of the block runs steps
// [(bc * kWarps + q) * T, +T) of sequence b over channels strip * 32V .. +32V.
template <typename D, int K, int U>
__global__ void __launch_bounds__(kThreads) conv_backward_stream(Args<D> p) {
  using R = Row16<D>;
  constexpr int V = R::V;
  constexpr int CH = 32 * V;  // channels of a block
  __shared__ float red[kWarps][K + 1][CH];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t nstrips = (p.D_ + CH - 1) / CH;
  const int64_t bc = blockIdx.x % p.nbc, strip = (blockIdx.x / p.nbc) % nstrips, b = blockIdx.x / (p.nbc * nstrips);
  const int64_t ch = strip * CH + int64_t(lane) * V;
  const int nvalid = p.D_ - ch < V ? static_cast<int>(p.D_ - ch) : V;  // <= 0: no channel of this lane
  const int64_t t0 = (bc * kWarps + warp) * int64_t(p.T);
  const int64_t t1 = t0 + p.T < p.L ? t0 + p.T : p.L;
  const bool want_dw = p.dw || p.dbias;

  float dw[K][V], db[V];
#pragma unroll
  for (int k = 0; k < V; ++k) {
    db[k] = 0.f;
#pragma unroll
    for (int j = 0; j < K; ++j) dw[j][k] = 0.f;
  }

  if (nvalid > 0 && t0 < t1) {
    float w[K][V];
#pragma unroll
    for (int k = 0; k < V; ++k)
#pragma unroll
      for (int j = 0; j < K; ++j) w[j][k] = k < nvalid ? to_f32(p.w[(ch + k) * K + j]) : 0.f;
    // xwin[i]: xx row of step t0-(K-1)+i (x row, state row or zeros); gwin[i]: dout at that step,
    // zero before the run (it only feeds dx rows before t0, which this run does not write).
    R xwin[K > 1 ? K - 1 : 1], gwin[K > 1 ? K - 1 : 1];
#pragma unroll
    for (int i = 0; i < K - 1; ++i) {
      gwin[i].zero();
      const int64_t r = t0 - (K - 1) + i;
      if (!want_dw)
        xwin[i].zero();
      else if (r >= 0)
        xwin[i].load(p.x + (b * p.L + r) * p.ld_x + ch, nvalid, p.vec_x);
      else if (p.state)
        xwin[i].load(p.state + (b * (K - 1) + (K - 1) + r) * p.D_ + ch, nvalid, p.vec_state);
      else
        xwin[i].zero();
    }
    const int64_t tend = t1 + K - 1;  // steps t0 .. tend-1: dout up to t1+K-2 finishes dx up to t1-1
    for (int64_t tb = t0; tb < tend; tb += U) {
      R gr[U], pr[U], xr[U], dr[U];
      // Every load of the U steps first ...
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int64_t t = tb + u, s = t - (K - 1);
        if (t < p.L && t < tend)
          gr[u].load(p.dout + (b * p.L + t) * p.D_ + ch, nvalid, p.vec_dout);
        else
          gr[u].zero();
        if (p.pre && t < p.L && t < tend)
          pr[u].load(p.pre + (b * p.L + t) * p.D_ + ch, nvalid, p.vec_dout);
        else
          pr[u].zero();
        if (want_dw && t < t1)
          xr[u].load(p.x + (b * p.L + t) * p.ld_x + ch, nvalid, p.vec_x);
        else
          xr[u].zero();
        if (p.dx && s >= t0 && s < t1)
          dr[u].load(p.dx + (b * p.L + s) * p.ld_dx + ch, nvalid, p.vec_dx);
        else
          dr[u].zero();
      }
      // ... then the U steps.
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int64_t t = tb + u, s = t - (K - 1);
        if (t >= tend) break;
        float g[V];
        gr[u].unpack(g);
        if (p.pre) {  // g = dout * silu'(pre), rounded to D as a stored gradient would be
          float v[V];
          pr[u].unpack(v);
#pragma unroll
          for (int k = 0; k < V; ++k) g[k] = silu_grad(g[k], v[k]);
          gr[u].pack(g);
          gr[u].unpack(g);
        }
        if (want_dw && t < t1) {
          float xf[V];
#pragma unroll
          for (int j = 0; j < K; ++j) {
            (j < K - 1 ? xwin[j] : xr[u]).unpack(xf);
#pragma unroll
            for (int k = 0; k < V; ++k) dw[j][k] = fmaf(g[k], xf[k], dw[j][k]);
          }
#pragma unroll
          for (int k = 0; k < V; ++k) db[k] += g[k];
        }
        if (p.dx && s >= t0) {
          // dx[s] += w[0] g[t] + sum_{j >= 1} w[j] g[t - j], g[t - j] = gwin[K-1-j].
          float acc[V], old[V];
#pragma unroll
          for (int k = 0; k < V; ++k) acc[k] = w[0][k] * g[k];
#pragma unroll
          for (int j = 1; j < K; ++j) {
            float gj[V];
            gwin[K - 1 - j].unpack(gj);
#pragma unroll
            for (int k = 0; k < V; ++k) acc[k] = fmaf(w[j][k], gj[k], acc[k]);
          }
          dr[u].unpack(old);
#pragma unroll
          for (int k = 0; k < V; ++k) acc[k] += old[k];
          R out;
          out.pack(acc);
          out.store(p.dx + (b * p.L + s) * p.ld_dx + ch, nvalid, p.vec_dx);
        }
#pragma unroll
        for (int i = 0; i + 1 < K - 1; ++i) {
          xwin[i] = xwin[i + 1];
          gwin[i] = gwin[i + 1];
        }
        if (K > 1) {
          xwin[K > 1 ? K - 2 : 0] = xr[u];
          gwin[K > 1 ? K - 2 : 0] = gr[u];
        }
      }
    }
  }

  if (!want_dw)
    return;  // uniform over the block: no barrier is skipped by some threads only
             // The block's total over its 4 runs, then one atomic per channel and tap.
#pragma unroll
  for (int k = 0; k < V; ++k) {
#pragma unroll
    for (int j = 0; j < K; ++j) red[warp][j][lane * V + k] = dw[j][k];
    red[warp][K][lane * V + k] = db[k];
  }
  __syncthreads();
  for (int e = threadIdx.x; e < (K + 1) * CH; e += kThreads) {
    const int j = e / CH, c = e % CH;
    const int64_t d = strip * CH + c;
    if (d >= p.D_) continue;
    float sum = 0.f;
#pragma unroll
    for (int q = 0; q < kWarps; ++q) sum += red[q][j][c];
    if (j < K) {
      if (p.dw) atomicAdd(p.dw + d * K + j, sum);
    } else if (p.dbias) {
      atomicAdd(p.dbias + d, sum);
    }
  }
}

// Runs per (sequence, strip) so that the grid is about one wave of `resident` blocks, each warp's
// run at least kMinSteps long (or the whole sequence).
inline void size_grid(int64_t B, int64_t L, int64_t D, int channels, int64_t resident, int& T, int& nbc,
                      int64_t& blocks) {
  const int64_t strips = B * ((D + channels - 1) / channels);
  const int64_t max_nbc = (L + kWarps * kMinSteps - 1) / (kWarps * kMinSteps);
  int64_t n = resident / (strips > 0 ? strips : 1);
  if (n > max_nbc) n = max_nbc;
  if (n < 1) n = 1;
  nbc = static_cast<int>(n);
  T = static_cast<int>((L + kWarps * n - 1) / (kWarps * n));
  if (T < 1) T = 1;
  blocks = strips * n;
}

}  // namespace sambalm::ops::cuda::conv_bwd
