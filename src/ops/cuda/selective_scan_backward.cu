// Backward of the selective scan, CUDA (math: cpu/selective_scan_backward.cpp). Per batch b, channel
// d, with a_t[n] = exp(dt_t A[n]) and g_t[n] = dL/dh_t[n]:
//   g_t[n]      = dy_t Cm_t[n] + a_{t+1}[n] g_{t+1}[n]           (g after the last step = 0)
//   dCm_t[n]   += dy_t h_t[n]                 dBm_t[n] += g_t[n] dt_t u_t       (both summed over d)
//   du_t       += dy_t Dskip + dt_t sum_n g_t[n] Bm_t[n]
//   ddelta_t   += sum_n g_t[n] (A[n] a_t[n] h_{t-1}[n] + Bm_t[n] u_t)
//   dA[n]      += sum_{b,t} g_t[n] dt_t a_t[n] h_{t-1}[n]      dDskip += sum_{b,t} dy_t u_t
//   dh0[n]     += a_0[n] g_0[n]
// A simple, correct kernel (the fast one comes from dev/cuda/): one thread per (b, d) channel with
// its N adjoints g in registers walks the chunks from last to first; for each it rescans the chunk's
// states h_t from chunk_states[b, c] (written by the forward) into scratch, then runs the adjoint
// recurrence back in time. du / ddelta / dh0 elements belong to one thread each; dBm / dCm rows sum
// over the channels: a warp (32 channels of one sequence) sums its shares with shuffles and one lane
// adds them to fp32 accumulators in the scratch with atomics, added into dBm / dCm by a last kernel;
// dA and dDskip (fp32 already) take one atomic per thread and state. Atomics make the last bits
// depend on the order of arrival: the results are not bit-reproducible from run to run.
#include <cuda_bf16.h>

#include "ops/cuda/check.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/mixer_common.cuh"
#include "ops/cuda/scan_common.cuh"

namespace sambalm::ops::cuda {

namespace {

constexpr int kThreads = 128;  // channels per block (one sequence per block row: warps never mix b)

template <typename D>
struct ScanBwdArgs {
  D* du;          // nullable
  D* ddelta;      // nullable
  float* dA;      // nullable
  float* dbc;     // [B, L, 2N] fp32 accumulators, nullable (no dBm and no dCm)
  float* dDskip;  // nullable
  float* dh0;     // nullable
  float* hs;      // [clen, N, B*D] scratch
  const D* dy;
  const float* chunk_states;
  const D* u;
  const D* delta;
  const float* A;
  const D* Bm;
  const D* Cm;
  int64_t ld_bc;
  const float* Dskip;
  int64_t B, L, Dn, N, chunk, nch;
};

template <typename D, int MAXN, bool FAST>
__global__ void __launch_bounds__(kThreads) scan_backward_kernel(ScanBwdArgs<D> p) {
  const int64_t b = blockIdx.y, d = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  const bool dvalid = d < p.Dn;
  const int64_t N = p.N, BD = p.B * p.Dn, bd = b * p.Dn + d;
  const int lane = threadIdx.x % 32;
  // Channels past D run the loops with zeros (the warp's shuffles need every lane) and write nothing.
  float A2[MAXN], g[MAXN], dAacc[MAXN];
#pragma unroll
  for (int n = 0; n < MAXN; ++n) {
    A2[n] = dvalid && n < N ? p.A[d * N + n] * (FAST ? kLog2e : 1.f) : 0.f;
    g[n] = 0.f, dAacc[n] = 0.f;
  }
  const float Dd = dvalid ? p.Dskip[d] : 0.f;
  float dD = 0.f;
  auto hs_at = [&](int64_t i, int64_t n) { return p.hs + (i * N + n) * BD + bd; };

  for (int64_t c = p.nch - 1; c >= 0; --c) {
    const int64_t t0 = c * p.chunk, len = p.L - t0 < p.chunk ? p.L - t0 : p.chunk;
    const float* h_start = p.chunk_states + ((b * (p.nch + 1) + c) * p.Dn + d) * N;
    // Rescan the chunk from its saved state, keeping every h_t.
    if (dvalid) {
      float h[MAXN];
#pragma unroll
      for (int n = 0; n < MAXN; ++n) h[n] = n < N ? h_start[n] : 0.f;
      for (int64_t i = 0; i < len; ++i) {
        const int64_t row = b * p.L + t0 + i;
        const float dt = to_f32(p.delta[row * p.Dn + d]), dtu = dt * to_f32(p.u[row * p.Dn + d]);
        const D* Bt = p.Bm + row * p.ld_bc;
#pragma unroll
        for (int n = 0; n < MAXN; ++n) {
          if (n < N) {
            const float a = FAST ? ex2_approx(dt * A2[n]) : expf(dt * A2[n]);
            h[n] = fmaf(a, h[n], dtu * to_f32(Bt[n]));
            *hs_at(i, n) = h[n];
          }
        }
      }
    }
    // The adjoint recurrence, back in time.
    for (int64_t i = len - 1; i >= 0; --i) {
      const int64_t row = b * p.L + t0 + i;
      const float dt = dvalid ? to_f32(p.delta[row * p.Dn + d]) : 0.f;
      const float uu = dvalid ? to_f32(p.u[row * p.Dn + d]) : 0.f;
      const float dyv = dvalid ? to_f32(p.dy[row * p.Dn + d]) : 0.f;
      const float dtu = dt * uu;
      const D* Bt = p.Bm + row * p.ld_bc;
      const D* Ct = p.Cm + row * p.ld_bc;
      float sum_gb = 0.f, sum_dd = 0.f;
#pragma unroll
      for (int n = 0; n < MAXN; ++n) {
        if (n < N) {
          const float Bn = to_f32(Bt[n]), Cn = to_f32(Ct[n]);
          float hi = 0.f, hp = 0.f;
          if (dvalid) hi = *hs_at(i, n), hp = i > 0 ? *hs_at(i - 1, n) : h_start[n];
          const float a = FAST ? ex2_approx(dt * A2[n]) : expf(dt * A2[n]);
          const float gn = fmaf(dyv, Cn, g[n]);
          const float ah = a * hp;
          const float An = FAST ? A2[n] * (1.f / kLog2e) : A2[n];
          sum_gb = fmaf(gn, Bn, sum_gb);
          sum_dd = fmaf(gn, fmaf(An, ah, Bn * uu), sum_dd);
          dAacc[n] = fmaf(gn * dt, ah, dAacc[n]);
          g[n] = a * gn;
          if (p.dbc) {
            const float sB = warp_sum(gn * dtu), sC = warp_sum(dyv * hi);
            if (lane == 0) {
              atomicAdd(p.dbc + row * 2 * N + n, sB);
              atomicAdd(p.dbc + row * 2 * N + N + n, sC);
            }
          }
        }
      }
      if (dvalid) {
        if (p.du) add_f32(p.du + row * p.Dn + d, fmaf(dyv, Dd, dt * sum_gb));
        if (p.ddelta) add_f32(p.ddelta + row * p.Dn + d, sum_dd);
      }
      dD = fmaf(dyv, uu, dD);
    }
  }
  if (!dvalid) return;
#pragma unroll
  for (int n = 0; n < MAXN; ++n) {
    if (n < N) {
      if (p.dh0) p.dh0[bd * N + n] += g[n];
      if (p.dA) atomicAdd(p.dA + d * N + n, dAacc[n]);
    }
  }
  if (p.dDskip) atomicAdd(p.dDskip + d, dD);
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

template <typename D, int MAXN>
void launch_maxn(const Context& ctx, const ScanBwdArgs<D>& a) {
  constexpr bool kFast = sizeof(D) == 2;
  const dim3 grid(blocks_for(a.Dn, kThreads), static_cast<unsigned>(a.B));
  scan_backward_kernel<D, MAXN, kFast><<<grid, kThreads, 0, stream_of(ctx)>>>(a);
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
  const ScanBwdArgs<Dv> a{dev(du),
                          dev(ddelta),
                          dA,
                          dbc,
                          dDskip,
                          dh0,
                          scratch + s.hs,
                          dev(dy),
                          chunk_states,
                          dev(u),
                          dev(delta),
                          A,
                          dev(Bm),
                          dev(Cm),
                          ld_bc,
                          Dskip,
                          B,
                          L,
                          D,
                          N,
                          chunk,
                          (L + chunk - 1) / chunk};
  with_state_capacity<8, 16, 32, 64, kCudaScanMaxN>(N,
                                                    [&](auto cap) { launch_maxn<Dv, decltype(cap)::value>(ctx, a); });
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
