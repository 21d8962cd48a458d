// Backward of the selective scan, CUDA (math: cpu/selective_scan_backward.cpp). Per batch b, channel
// d, with a_t[n] = exp(dt_t A[n]) and g_t[n] = dL/dh_t[n]:
//   g_t[n]      = dy_t Cm_t[n] + a_{t+1}[n] g_{t+1}[n]           (g after the last step = 0)
//   dCm_t[n]   += dy_t h_t[n]                 dBm_t[n] += g_t[n] dt_t u_t       (both summed over d)
//   du_t       += dy_t Dskip + dt_t sum_n g_t[n] Bm_t[n]
//   ddelta_t   += sum_n g_t[n] (A[n] a_t[n] h_{t-1}[n] + Bm_t[n] u_t)
//   dA[n]      += sum_{b,t} g_t[n] dt_t a_t[n] h_{t-1}[n]      dDskip += sum_{b,t} dy_t u_t
//   dh0[n]     += a_0[n] g_0[n]
// (a_t h_{t-1} is taken from h_{t-1}, not as h_t - dt Bm u: no cancellation.)
//
// The tiled kernel of dev/cuda/selective_scan_backward.cu (versions 2/3), for any N and without the
// gate: a block owns kChan = 32 channels of one sequence, kLanes = 4 threads per channel share its N
// states (NPL each, in registers: the adjoint carry G = a_{t+1} g_{t+1} and dA). It walks the
// sequence in intervals of kCudaScanCheckpoint = 16 steps from last to first; the forward saved the
// state at the start of each (chunk_states, see selective_scan.cu). Per interval:
//   stage   delta, u, dy of the block's channels and the Bm, Cm rows into shared memory (fp32),
//           from registers loaded during the previous interval (Bm, Cm: for N <= 16; larger N
//           loads them here);
//   rescan  from the interval's checkpoint, keeping h_t of the (sub-)tile in SHARED memory;
//   dCm     dCm_t[n] = sum over the block's 32 channels of dy_t h_t[n], in shared memory, then one
//           fp32 atomic per (row, n) per block (one 16-byte atomic per 4 states on sm_90 when
//           N % 4 == 0);
//   reverse the adjoint recurrence back over the tile: g, dA in registers; each thread's share of
//           sum_n g B and sum_n g A a h_{t-1} to shared memory; g dt u over h_t's slot (its last use);
//   dBm     as dCm, over the g dt u slots; du, ddelta, dDskip: one thread per (step, channel) sums
//           the four threads' shares.
// Shared memory holds TS + 1 states of the 32 channels ([TS + 1][32][N] fp32; 16-byte accesses when
// N % 4 == 0): TS = 16 for N <= 47; for larger N the interval is cut into sub-tiles of TS steps,
// each rescanned from the checkpoint (N = 64: 11 steps, N = 256: 2). About 59 KB a block at N = 16.
// Like the old one-thread-per-channel kernel, a grid of B x D/32 blocks: one long sequence (B = 1)
// leaves most of the GPU idle (dev v4/v5's split of the backward over the sequence is not here yet).
// The dBm / dCm atomics go to fp32 accumulators in the scratch ([B, L, 2N], zeroed first), added into
// the caller's (possibly bf16, strided) dBm / dCm by a last kernel; dA and dDskip (fp32 already) take
// one atomic per thread and state at the end. Atomics make the last bits depend on the order of
// arrival: the results are not bit-reproducible from run to run.
// bf16 uses exp2 on the special-function unit with A pre-scaled by log2(e); fp32 uses expf.
#include <cuda_bf16.h>

#include "ops/cuda/check.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/mixer_common.cuh"
#include "ops/cuda/scan_common.cuh"

namespace sambalm::ops::cuda {

namespace {

constexpr int kChan = 32;  // channels per block (one sequence per block)
constexpr int kLanes = 4;  // threads per channel
constexpr int kThreads = kChan * kLanes;
constexpr int kTT = static_cast<int>(kCudaScanCheckpoint);  // steps per interval (checkpoint spacing)
constexpr int kHBudget = 24576;                             // floats of shared memory for the tile's states (96 KiB)
constexpr int kBCPrefetchN = 16;  // N up to which the Bm, Cm rows are prefetched into registers
static_assert(kThreads % kChan == 0, "a thread's (step, channel) items keep one channel");
static_assert(kTT * kChan % kThreads == 0, "an interval's (step, channel) elements split evenly");

// Shared memory layout, in floats.
struct BwdSmem {
  int delta, u, dy, B, C, h, gb, gq, total;
  __host__ __device__ BwdSmem(int N, int TS) {
    delta = 0;                      // [kTT][kChan]
    u = delta + kTT * kChan;        // [kTT][kChan]
    dy = u + kTT * kChan;           // [kTT][kChan]
    B = dy + kTT * kChan;           // [kTT][N]
    C = B + kTT * N;                // [kTT][N]
    h = C + kTT * N;                // [TS + 1][kChan][N]: h before the sub-tile, then h_t (later g dt u)
    gb = h + (TS + 1) * kChan * N;  // [TS][kChan][kLanes]: shares of sum_n g B
    gq = gb + TS * kChan * kLanes;  // [TS][kChan][kLanes]: shares of sum_n g A a h_{t-1}
    total = gq + TS * kChan * kLanes;
  }
};

inline int sub_tile_steps(int64_t N) {
  const int64_t fit = kHBudget / (kChan * N) - 1;
  return static_cast<int>(fit < 1 ? 1 : fit > kTT ? kTT : fit);
}

template <typename D>
struct ScanBwdArgs {
  D* du;          // nullable
  D* ddelta;      // nullable
  float* dA;      // nullable
  float* dbc;     // [B, L, 2N] fp32 accumulators, nullable (no dBm and no dCm)
  float* dDskip;  // nullable
  float* dh0;     // nullable
  const D* dy;
  const float* chunk_states;  // [B, nck + 1, D, N]
  const D* u;
  const D* delta;
  const float* A;
  const D* Bm;
  const D* Cm;
  int64_t ld_bc;
  const float* Dskip;
  int64_t B, L, Dn, N, nck;
  int TS;  // steps of a sub-tile (states kept in shared memory)
};

// A thread's NPL states n0 .. n0 + NPL - 1 of one channel's row in shared memory (states past N read
// as 0 and are not written): 16-byte accesses when N and NPL are multiples of 4 (a quarter warp then
// covers 8 x 16 consecutive bytes: no bank conflicts), else one float at a time.
template <int NPL>
__device__ __forceinline__ void load_states(const float* row, int n0, int N, float (&x)[NPL]) {
  if constexpr (NPL % 4 == 0) {
    if (N % 4 == 0) {
#pragma unroll
      for (int k = 0; k < NPL; k += 4) {
        const float4 q = n0 + k < N ? *reinterpret_cast<const float4*>(row + n0 + k) : make_float4(0.f, 0.f, 0.f, 0.f);
        x[k] = q.x, x[k + 1] = q.y, x[k + 2] = q.z, x[k + 3] = q.w;
      }
      return;
    }
  }
#pragma unroll
  for (int k = 0; k < NPL; ++k) x[k] = n0 + k < N ? row[n0 + k] : 0.f;
}
template <int NPL>
__device__ __forceinline__ void store_states(float* row, int n0, int N, const float (&x)[NPL]) {
  if constexpr (NPL % 4 == 0) {
    if (N % 4 == 0) {
#pragma unroll
      for (int k = 0; k < NPL; k += 4)
        if (n0 + k < N) *reinterpret_cast<float4*>(row + n0 + k) = make_float4(x[k], x[k + 1], x[k + 2], x[k + 3]);
      return;
    }
  }
#pragma unroll
  for (int k = 0; k < NPL; ++k)
    if (n0 + k < N) row[n0 + k] = x[k];
}

// Four consecutive fp32 added to global memory: one vector atomic on sm_90, four scalar ones before.
__device__ __forceinline__ void atomic_add4(float* dst, float4 v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  atomicAdd(reinterpret_cast<float4*>(dst), v);
#else
  atomicAdd(dst, v.x);
  atomicAdd(dst + 1, v.y);
  atomicAdd(dst + 2, v.z);
  atomicAdd(dst + 3, v.w);
#endif
}

// NPL states per thread (N <= kLanes NPL); FAST: exp2 on the SFU (bf16), else expf (fp32).
template <typename D, int NPL, bool FAST>
__global__ void __launch_bounds__(kThreads) scan_backward_kernel(ScanBwdArgs<D> p) {
  extern __shared__ float4 smem4[];  // float4: 16-byte aligned
  float* smem = reinterpret_cast<float*>(smem4);
  const int N = static_cast<int>(p.N), TS = p.TS;
  const BwdSmem off(N, TS);
  float* s_delta = smem + off.delta;
  float* s_u = smem + off.u;
  float* s_dy = smem + off.dy;
  float* s_B = smem + off.B;
  float* s_C = smem + off.C;
  float* s_h = smem + off.h;
  float* s_gb = smem + off.gb;
  float* s_gq = smem + off.gq;

  const int64_t b = blockIdx.y, c0 = int64_t(blockIdx.x) * kChan, L = p.L, Dn = p.Dn;
  const int tid = threadIdx.x, cl = tid / kLanes, sub = tid % kLanes;
  const int64_t d = c0 + cl;
  const bool dvalid = d < Dn;
  // This thread's (step, channel) items: channel ic, steps tid / kChan + k kThreads / kChan.
  const int ic = tid % kChan;
  const int64_t id = c0 + ic;
  const bool ivalid = id < Dn;
  const float Dd = ivalid ? p.Dskip[id] : 0.f;
  constexpr float kAscale = FAST ? 1.f / kLog2e : 1.f;

  float A2[NPL], G[NPL], dAacc[NPL];
#pragma unroll
  for (int k = 0; k < NPL; ++k) {
    const int n = sub * NPL + k;
    A2[k] = dvalid && n < N ? p.A[d * N + n] * (FAST ? kLog2e : 1.f) : 0.f;
    G[k] = 0.f, dAacc[k] = 0.f;
  }
  float dDacc = 0.f;
  auto exp_of = [](float x) { return FAST ? ex2_approx(x) : expf(x); };
  const int n0 = sub * NPL;  // this thread's first state
  // dBm (col 0) or dCm (col N) of the sub-tile's rows: sum over the block's channels of s_h's rows
  // (weighted by dy for dCm), one atomic per (row, state), or per 4 states when N % 4 == 0 and the
  // accumulators are 16-byte aligned. Channels are visited from a step-dependent start, so that the
  // quarter warps' 16-byte reads of neighbouring steps fall in different banks.
  const bool bc4 = N % 4 == 0 && (reinterpret_cast<uintptr_t>(p.dbc) & 15) == 0;
  auto channel_sum = [&](int64_t t0, int s_begin, int slen, bool weighted, int col) {
    if (bc4) {
      const int N4 = N / 4;
      for (int e = tid; e < slen * N4; e += kThreads) {
        const int i = e / N4, n = (e % N4) * 4;
        const float* rows = s_h + (i + 1) * kChan * N + n;
        const float* wts = s_dy + (s_begin + i) * kChan;
        float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 8
        for (int ci = 0; ci < kChan; ++ci) {
          const int c = (ci + i) & (kChan - 1);
          const float4 v = *reinterpret_cast<const float4*>(rows + c * N);
          const float wt = weighted ? wts[c] : 1.f;
          acc.x = fmaf(wt, v.x, acc.x), acc.y = fmaf(wt, v.y, acc.y);
          acc.z = fmaf(wt, v.z, acc.z), acc.w = fmaf(wt, v.w, acc.w);
        }
        atomic_add4(p.dbc + (b * L + t0 + s_begin + i) * 2 * N + col + n, acc);
      }
    } else {
      for (int e = tid; e < slen * N; e += kThreads) {
        const int i = e / N, n = e % N;
        const float* rows = s_h + (i + 1) * kChan * N + n;
        const float* wts = s_dy + (s_begin + i) * kChan;
        float acc = 0.f;
#pragma unroll 8
        for (int c = 0; c < kChan; ++c) acc = fmaf(weighted ? wts[c] : 1.f, rows[c * N], acc);
        atomicAdd(p.dbc + (b * L + t0 + s_begin + i) * 2 * N + col + n, acc);
      }
    }
  };

  // An interval's delta, u, dy (kXPer elements a thread) and, for N <= kBCPrefetchN, its Bm and Cm
  // rows (kBCPer a thread), loaded into registers one interval ahead: the loads of the next (earlier)
  // interval are in flight while this one is computed.
  constexpr int kXPer = kTT * kChan / kThreads;
  constexpr int kBCPer = (kTT * kBCPrefetchN + kThreads - 1) / kThreads;
  const bool bc_in_regs = N <= kBCPrefetchN;
  D r_delta[kXPer], r_u[kXPer], r_dy[kXPer], r_B[kBCPer], r_C[kBCPer];
  auto prefetch = [&](int64_t ck) {
    const int64_t t0 = ck * kTT;
    const int len = static_cast<int>(L - t0 < kTT ? L - t0 : kTT);
#pragma unroll
    for (int q = 0; q < kXPer; ++q) {
      const int e = tid + q * kThreads, r = e / kChan, c = e % kChan;
      const int64_t ch = c0 + c, at = (b * L + t0 + r) * Dn + ch;
      const bool ok = r < len && ch < Dn;
      r_delta[q] = ok ? p.delta[at] : from_f32<D>(0.f);
      r_u[q] = ok ? p.u[at] : from_f32<D>(0.f);
      r_dy[q] = ok ? p.dy[at] : from_f32<D>(0.f);
    }
    if (!bc_in_regs) return;
#pragma unroll
    for (int q = 0; q < kBCPer; ++q) {
      const int e = tid + q * kThreads, r = e / N, n = e % N;
      const bool ok = e < kTT * N && r < len;
      const int64_t at = (b * L + t0 + r) * p.ld_bc + n;
      r_B[q] = ok ? p.Bm[at] : from_f32<D>(0.f);
      r_C[q] = ok ? p.Cm[at] : from_f32<D>(0.f);
    }
  };

  prefetch(p.nck - 1);
  for (int64_t ck = p.nck - 1; ck >= 0; --ck) {
    const int64_t t0 = ck * kTT;
    const int len = static_cast<int>(L - t0 < kTT ? L - t0 : kTT);
    __syncthreads();  // the previous interval is done with shared memory
#pragma unroll
    for (int q = 0; q < kXPer; ++q) {
      const int e = tid + q * kThreads;
      s_delta[e] = to_f32(r_delta[q]), s_u[e] = to_f32(r_u[q]), s_dy[e] = to_f32(r_dy[q]);
    }
    if (bc_in_regs) {
#pragma unroll
      for (int q = 0; q < kBCPer; ++q) {
        const int e = tid + q * kThreads;
        if (e < kTT * N) s_B[e] = to_f32(r_B[q]), s_C[e] = to_f32(r_C[q]);
      }
    } else {
      for (int e = tid; e < kTT * N; e += kThreads) {
        const int r = e / N, n = e % N;
        const int64_t row = b * L + t0 + r;
        s_B[e] = r < len ? to_f32(p.Bm[row * p.ld_bc + n]) : 0.f;
        s_C[e] = r < len ? to_f32(p.Cm[row * p.ld_bc + n]) : 0.f;
      }
    }
    __syncthreads();
    if (ck > 0) prefetch(ck - 1);

    const float* ckpt = p.chunk_states + ((b * (p.nck + 1) + ck) * Dn + d) * N;
    for (int j = (len + TS - 1) / TS - 1; j >= 0; --j) {
      const int s_begin = j * TS, s_end = s_begin + TS < len ? s_begin + TS : len, slen = s_end - s_begin;
      // Rescan from the checkpoint; h_t of the sub-tile's steps (and the state before it) to s_h.
      float h[NPL];
#pragma unroll
      for (int k = 0; k < NPL; ++k) {
        const int n = n0 + k;
        h[k] = dvalid && n < N ? ckpt[n] : 0.f;
      }
      for (int s = 0; s < s_end; ++s) {
        if (s == s_begin) store_states<NPL>(s_h + cl * N, n0, N, h);
        const float dl = s_delta[s * kChan + cl], dlu = dl * s_u[s * kChan + cl];
#pragma unroll
        for (int k = 0; k < NPL; ++k)
          if (n0 + k < N) h[k] = fmaf(exp_of(dl * A2[k]), h[k], dlu * s_B[s * N + n0 + k]);
        if (s >= s_begin) store_states<NPL>(s_h + ((s - s_begin + 1) * kChan + cl) * N, n0, N, h);
      }
      __syncthreads();
      // dCm_t[n] = sum_c dy_t[c] h_t[c][n] (channels past D have dy = 0).
      if (p.dbc) channel_sum(t0, s_begin, slen, true, N);
      __syncthreads();
      // The adjoint recurrence back over the sub-tile.
      for (int s = s_end - 1; s >= s_begin; --s) {
        const int i = s - s_begin;
        const float dl = s_delta[s * kChan + cl], dlu = dl * s_u[s * kChan + cl], dyv = s_dy[s * kChan + cl];
        float hprev[NPL], w[NPL];
        load_states<NPL>(s_h + (i * kChan + cl) * N, n0, N, hprev);
        float gB = 0.f, gAq = 0.f;
#pragma unroll
        for (int k = 0; k < NPL; ++k) {
          const int n = n0 + k;
          w[k] = 0.f;
          if (n < N) {
            const float a = exp_of(dl * A2[k]);
            const float g = fmaf(dyv, s_C[s * N + n], G[k]);
            const float gq = g * (a * hprev[k]);
            gB = fmaf(g, s_B[s * N + n], gB);
            gAq = fmaf(A2[k] * kAscale, gq, gAq);
            dAacc[k] = fmaf(gq, dl, dAacc[k]);
            w[k] = g * dlu;
            G[k] = a * g;
          }
        }
        // Over h_t's slot: read by nobody any more (dCm is done; this thread read it as h_{t-1} of t + 1).
        store_states<NPL>(s_h + ((i + 1) * kChan + cl) * N, n0, N, w);
        s_gb[(i * kChan + cl) * kLanes + sub] = gB;
        s_gq[(i * kChan + cl) * kLanes + sub] = gAq;
      }
      __syncthreads();
      // dBm_t[n] = sum_c g_t[c][n] dt_t[c] u_t[c] (channels past D have g = 0).
      if (p.dbc) channel_sum(t0, s_begin, slen, false, 0);
      // du, ddelta per (step, channel); dDskip's share.
      for (int e = tid; e < slen * kChan; e += kThreads) {
        const int i = e / kChan, s = s_begin + i;  // e % kChan == ic
        if (!ivalid) continue;
        const float* pb = s_gb + (i * kChan + ic) * kLanes;
        const float* pq = s_gq + (i * kChan + ic) * kLanes;
        const float gB = (pb[0] + pb[1]) + (pb[2] + pb[3]), gAq = (pq[0] + pq[1]) + (pq[2] + pq[3]);
        const float dl = s_delta[s * kChan + ic], uu = s_u[s * kChan + ic], dyv = s_dy[s * kChan + ic];
        const int64_t at = (b * L + t0 + s) * Dn + id;
        if (p.du) add_f32(p.du + at, fmaf(dyv, Dd, dl * gB));
        if (p.ddelta) add_f32(p.ddelta + at, fmaf(uu, gB, gAq));
        dDacc = fmaf(dyv, uu, dDacc);
      }
      __syncthreads();  // s_h, s_gb, s_gq consumed before the next sub-tile's rescan
    }
  }
  if (ivalid && p.dDskip) atomicAdd(p.dDskip + id, dDacc);  // kLanes shares per channel
  if (!dvalid) return;
#pragma unroll
  for (int k = 0; k < NPL; ++k) {
    const int n = sub * NPL + k;
    if (n < N) {
      if (p.dh0) p.dh0[(b * Dn + d) * N + n] += G[k];
      if (p.dA) atomicAdd(p.dA + d * N + n, dAacc[k]);
    }
  }
}

// dBm[row, n] += acc[row, n], dCm[row, n] += acc[row, N + n] (rows ld_bc apart in the caller's arrays).
template <typename D>
__global__ void scan_bc_finish(D* dBm, D* dCm, const float* dbc, int64_t ld_bc, int64_t rows, int64_t N) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rows * N) return;
  const int64_t row = idx / N, n = idx % N;
  if (dBm) add_f32(dBm + row * ld_bc + n, dbc[row * 2 * N + n]);
  if (dCm) add_f32(dCm + row * ld_bc + n, dbc[row * 2 * N + N + n]);
}

template <typename D, int NPL>
void launch_npl(const Context& ctx, const ScanBwdArgs<D>& a) {
  constexpr bool kFast = sizeof(D) == 2;
  const size_t smem = sizeof(float) * BwdSmem(static_cast<int>(a.N), a.TS).total;
  auto kernel = scan_backward_kernel<D, NPL, kFast>;
  if (smem > 48 * 1024)
    SAMBALM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const dim3 grid(blocks_for(a.Dn, kChan), static_cast<unsigned>(a.B));
  kernel<<<grid, kThreads, smem, stream_of(ctx)>>>(a);
  SAMBALM_CUDA_LAUNCH_CHECK();
}

template <typename T>
void scan_backward(const Context& ctx, T* du, T* ddelta, float* dA, T* dBm, T* dCm, float* dDskip, float* dh0,
                   const T* dy, const float* chunk_states, const T* u, const T* delta, const float* A, const T* Bm,
                   const T* Cm, int64_t ld_bc, const float* Dskip, int64_t B, int64_t L, int64_t D, int64_t N,
                   int64_t chunk, float* scratch) {
  if (chunk <= 0) raise_not_positive("selective_scan_backward", "chunk", chunk);
  if (N > kCudaScanMaxN) raise_unsupported("selective_scan_backward", "N (d_state)", N, kCudaScanMaxN);
  if (B == 0 || L == 0 || D == 0 || N == 0) return;
  using Dv = device_t<T>;
  const CudaScanBackwardScratch s(B, L, D, N, chunk);
  float* dbc = (dBm || dCm) ? scratch + s.dbc : nullptr;
  if (dbc) SAMBALM_CUDA_CHECK(cudaMemsetAsync(dbc, 0, sizeof(float) * B * L * 2 * N, stream_of(ctx)));
  ScanBwdArgs<Dv> a{};
  a.du = dev(du), a.ddelta = dev(ddelta), a.dA = dA, a.dbc = dbc, a.dDskip = dDskip, a.dh0 = dh0;
  a.dy = dev(dy), a.chunk_states = chunk_states, a.u = dev(u), a.delta = dev(delta), a.A = A;
  a.Bm = dev(Bm), a.Cm = dev(Cm), a.ld_bc = ld_bc, a.Dskip = Dskip;
  a.B = B, a.L = L, a.Dn = D, a.N = N, a.nck = cuda_scan_checkpoints(L), a.TS = sub_tile_steps(N);
  // NPL = capacity / kLanes states per thread.
  with_state_capacity<4, 16, 32, 64, kCudaScanMaxN>(
      N, [&](auto cap) { launch_npl<Dv, decltype(cap)::value / kLanes>(ctx, a); });
  if (dbc) {
    scan_bc_finish<<<blocks_for(B * L * N, 256), 256, 0, stream_of(ctx)>>>(dev(dBm), dev(dCm), dbc, ld_bc, B * L, N);
    SAMBALM_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace

#define SAMBALM_CUDA_SCAN_BWD_DEF(T)                                                                                  \
  void selective_scan_backward(const Context& ctx, T* du, T* ddelta, float* dA, T* dBm, T* dCm, float* dDskip,        \
                               float* dh0, const T* dy, const float* chunk_states, const T* u, const T* delta,        \
                               const float* A, const T* Bm, const T* Cm, int64_t ld_bc, const float* Dskip,           \
                               const float* /*h0: entry 0 of chunk_states*/, int64_t B, int64_t L, int64_t D,         \
                               int64_t N, int64_t chunk, float* scratch) {                                            \
    scan_backward(ctx, du, ddelta, dA, dBm, dCm, dDskip, dh0, dy, chunk_states, u, delta, A, Bm, Cm, ld_bc, Dskip, B, \
                  L, D, N, chunk, scratch);                                                                           \
  }
SAMBALM_CUDA_SCAN_BWD_DEF(float)
SAMBALM_CUDA_SCAN_BWD_DEF(bf16)
#undef SAMBALM_CUDA_SCAN_BWD_DEF

}  // namespace sambalm::ops::cuda
