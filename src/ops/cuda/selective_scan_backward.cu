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
//   stage   delta, u, dy of the block's channels and the Bm, Cm rows into shared memory (fp32);
//   rescan  from the interval's checkpoint, keeping h_t of the (sub-)tile in SHARED memory;
//   dCm     dCm_t[n] = sum over the block's 32 channels of dy_t h_t[n], in shared memory, then one
//           fp32 atomic per (row, n) per block;
//   reverse the adjoint recurrence back over the tile: g, dA in registers; each thread's share of
//           sum_n g B and sum_n g A a h_{t-1} to shared memory; g dt u over h_t's slot (its last use);
//   dBm     as dCm, over the g dt u slots; du, ddelta, dDskip: one thread per (step, channel) sums
//           the four threads' shares.
// Shared memory holds TS + 1 states of the 32 channels ([TS + 1][32][N] fp32): TS = 16 for N <= 47;
// for larger N the interval is cut into sub-tiles of TS steps, each rescanned from the checkpoint.
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
static_assert(kThreads % kChan == 0, "a thread's (step, channel) items keep one channel");

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

// NPL states per thread (N <= kLanes NPL); FAST: exp2 on the SFU (bf16), else expf (fp32).
template <typename D, int NPL, bool FAST>
__global__ void __launch_bounds__(kThreads) scan_backward_kernel(ScanBwdArgs<D> p) {
  extern __shared__ float smem[];
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

  for (int64_t ck = p.nck - 1; ck >= 0; --ck) {
    const int64_t t0 = ck * kTT;
    const int len = static_cast<int>(L - t0 < kTT ? L - t0 : kTT);
    __syncthreads();  // the previous interval is done with shared memory
    for (int e = tid; e < kTT * kChan; e += kThreads) {
      const int r = e / kChan, c = e % kChan;
      const int64_t ch = c0 + c, row = b * L + t0 + r;
      const bool ok = r < len && ch < Dn;
      s_delta[e] = ok ? to_f32(p.delta[row * Dn + ch]) : 0.f;
      s_u[e] = ok ? to_f32(p.u[row * Dn + ch]) : 0.f;
      s_dy[e] = ok ? to_f32(p.dy[row * Dn + ch]) : 0.f;
    }
    for (int e = tid; e < kTT * N; e += kThreads) {
      const int r = e / N, n = e % N;
      const int64_t row = b * L + t0 + r;
      s_B[e] = r < len ? to_f32(p.Bm[row * p.ld_bc + n]) : 0.f;
      s_C[e] = r < len ? to_f32(p.Cm[row * p.ld_bc + n]) : 0.f;
    }
    __syncthreads();

    const float* ckpt = p.chunk_states + ((b * (p.nck + 1) + ck) * Dn + d) * N;
    for (int j = (len + TS - 1) / TS - 1; j >= 0; --j) {
      const int s_begin = j * TS, s_end = s_begin + TS < len ? s_begin + TS : len, slen = s_end - s_begin;
      // Rescan from the checkpoint; h_t of the sub-tile's steps (and the state before it) to s_h.
      float h[NPL];
#pragma unroll
      for (int k = 0; k < NPL; ++k) {
        const int n = sub * NPL + k;
        h[k] = dvalid && n < N ? ckpt[n] : 0.f;
      }
      for (int s = 0; s < s_end; ++s) {
        if (s == s_begin) {
#pragma unroll
          for (int k = 0; k < NPL; ++k)
            if (sub * NPL + k < N) s_h[cl * N + sub * NPL + k] = h[k];
        }
        const float dl = s_delta[s * kChan + cl], dlu = dl * s_u[s * kChan + cl];
        float* dst = s_h + ((s - s_begin + 1) * kChan + cl) * N;
#pragma unroll
        for (int k = 0; k < NPL; ++k) {
          const int n = sub * NPL + k;
          if (n < N) {
            h[k] = fmaf(exp_of(dl * A2[k]), h[k], dlu * s_B[s * N + n]);
            if (s >= s_begin) dst[n] = h[k];
          }
        }
      }
      __syncthreads();
      // dCm_t[n] = sum_c dy_t[c] h_t[c][n] (channels past D have dy = 0).
      if (p.dbc) {
        for (int e = tid; e < slen * N; e += kThreads) {
          const int i = e / N, n = e % N, s = s_begin + i;
          const float* hrow = s_h + (i + 1) * kChan * N + n;
          float acc = 0.f;
#pragma unroll 8
          for (int c = 0; c < kChan; ++c) acc = fmaf(s_dy[s * kChan + c], hrow[c * N], acc);
          atomicAdd(p.dbc + (b * L + t0 + s) * 2 * N + N + n, acc);
        }
      }
      __syncthreads();
      // The adjoint recurrence back over the sub-tile.
      for (int s = s_end - 1; s >= s_begin; --s) {
        const int i = s - s_begin;
        const float dl = s_delta[s * kChan + cl], dlu = dl * s_u[s * kChan + cl], dyv = s_dy[s * kChan + cl];
        const float* hprev = s_h + (i * kChan + cl) * N;
        float* w = s_h + ((i + 1) * kChan + cl) * N;  // h_t: read by nobody any more (dCm is done)
        float gB = 0.f, gAq = 0.f;
#pragma unroll
        for (int k = 0; k < NPL; ++k) {
          const int n = sub * NPL + k;
          if (n < N) {
            const float a = exp_of(dl * A2[k]);
            const float g = fmaf(dyv, s_C[s * N + n], G[k]);
            const float gq = g * (a * hprev[n]);
            gB = fmaf(g, s_B[s * N + n], gB);
            gAq = fmaf(A2[k] * kAscale, gq, gAq);
            dAacc[k] = fmaf(gq, dl, dAacc[k]);
            w[n] = g * dlu;
            G[k] = a * g;
          }
        }
        s_gb[(i * kChan + cl) * kLanes + sub] = gB;
        s_gq[(i * kChan + cl) * kLanes + sub] = gAq;
      }
      __syncthreads();
      // dBm_t[n] = sum_c g_t[c][n] dt_t[c] u_t[c] (channels past D have g = 0).
      if (p.dbc) {
        for (int e = tid; e < slen * N; e += kThreads) {
          const int i = e / N, n = e % N, s = s_begin + i;
          const float* wrow = s_h + (i + 1) * kChan * N + n;
          float acc = 0.f;
#pragma unroll 8
          for (int c = 0; c < kChan; ++c) acc += wrow[c * N];
          atomicAdd(p.dbc + (b * L + t0 + s) * 2 * N + n, acc);
        }
      }
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
