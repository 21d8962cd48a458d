// Selective scan backward (Mamba-1), bf16 activations, fp32 parameters, state and reductions:
// development file. Same semantics and layouts as selective_scan_forward.cu.
//
// Forward (per batch b and channel d; n = 0..N-1, N = 16):
//   x_t      = dt_t + dt_bias                      delta_t = softplus(x_t)   (torch: x > 20 -> x)
//   a_t[n]   = exp(delta_t A[n])
//   h_t[n]   = a_t[n] h_{t-1}[n] + delta_t Bm_t[n] u_t              (h_{-1} = h0 or 0)
//   y_t      = sum_n Cm_t[n] h_t[n] + Dskip u_t
//   out_t    = y_t silu(z_t)
//
// Backward, given dout (dL/dout). With sig = sigmoid(z_t):
//   dy_t     = dout_t silu(z_t)
//   dz_t     = dout_t y_t sig (1 + z_t (1 - sig))                   (d silu / dz)
//   g_t[n]   = dL/dh_t[n] = dy_t Cm_t[n] + a_{t+1}[n] g_{t+1}[n]     (g_{L-1} = dy_{L-1} Cm_{L-1}: no dh_last)
//   q_t[n]   = a_t[n] h_{t-1}[n]                                     (= h_t - delta_t Bm_t u_t, but
//                                                                      computed from h_{t-1}: no cancellation)
//   du_t     = dy_t Dskip + delta_t sum_n g_t[n] Bm_t[n]
//   ddelta_t = u_t sum_n g_t[n] Bm_t[n] + sum_n A[n] g_t[n] q_t[n]
//   ddt_t    = ddelta_t sigmoid(x_t)   (x_t > 20: ddelta_t)           sigmoid(x) = 1 - exp(-softplus(x))
//   dA[n]       = sum_{b,t} g_t[n] delta_t q_t[n]
//   dDskip      = sum_{b,t} dy_t u_t
//   ddt_bias    = sum_{b,t} ddt_t
//   dBm_t[n]    = sum_d g_t[n] delta_t u_t                           (per (b, t); reduced over channels)
//   dCm_t[n]    = sum_d dy_t h_t[n]
//   dh0[n]      = a_0[n] g_0[n]
// The gradient of A_log (A = -exp(A_log)) is dA_log = dA * A, elementwise, on the host side.
//
// What the forward keeps: the fp32 state at every checkpoint, every CK steps (CK = the backward's tile,
// 32), ckpt[b, c, d, n] = h_{c CK - 1} (h0 or 0 for c = 0), [B, ceil(L / CK), D, N] fp32. That is
// B L D N / CK * 4 bytes = the size of one bf16 [B, L, D] tensor. The backward walks the tiles from
// last to first; for each it rescans the tile forward from its checkpoint, keeping h_t of the tile in
// shared memory, then runs the reverse recurrence over the tile with g carried in registers between
// tiles. So it needs two exponentials per (t, d, n): one in the rescan, one in the reverse (a_t).
//
// Outputs and precision: du, ddt, dz bf16 (elementwise per (b, t, d)); dA [D, N], dDskip [D],
// ddt_bias [D] fp32 summed over batch and time; dBm, dCm fp32 [B, L] rows of stride ld_dbc (views, as
// Bm, Cm are views into the x_proj output): they are sums over all D channels, accumulated with fp32
// atomics across channel blocks, which need fp32 storage (rounding each partial to bf16 would lose
// the sum); the model rounds them to bf16 where they feed the x_proj backward GEMM. All reduced
// outputs are zeroed by the launcher (the model would accumulate into its gradient buffers instead).
// dh0 [B, D, N] fp32 when h0 is given.
//
// Build: nvcc -O3 -arch=sm_90 -std=c++20 -o selective_scan_backward selective_scan_backward.cu
// Run:   ./selective_scan_backward            check every version, then time every version
//        ./selective_scan_backward 2          check and time version 2 only
//        ./selective_scan_backward --check-only [version]   (for compute-sanitizer)
//        ./selective_scan_backward --chunks 8 4            force versions 4-5's chunk count
//
// Versions (backward; the forward used for the checkpoints is the forward file's v4/v6 with
// checkpoint writes added):
//   1  one thread per (b, d) channel, 16 states in registers; per checkpoint interval it rescans
//      into a local-memory buffer of h_t, then walks it backwards; global loads every step; scalar
//      fp32 atomics for every dBm/dCm element. Obviously right, slow: not timed at the large shapes.
//   2  tiled, 4 threads per channel (4 states each), 32 channels a block, tiles of 32 steps staged
//      through shared memory (16-byte loads into registers while the previous tile is processed),
//      h_t of the tile in shared memory, dBm/dCm of the tile reduced over the block's channels in
//      shared memory and added with one (vector) atomic per element per block.
//   3  as 2 with 16-step tiles (checkpoints every 16 steps): half the shared memory, twice the
//      blocks per SM, twice the checkpoint bytes.
//   4  as 2, chunked over L when (b, d) alone cannot fill the GPU: pass 1 runs each chunk but the
//      first backwards from a zero carry and keeps the carry a g at its start and its sum of delta;
//      pass 2 carries across chunks (carry_{c-1} = exp(A sum delta_c) carry_c + local_c); pass 3 is
//      version 2 on every chunk from its true carry. Pass 1 costs one more exponential per element
//      on all but the first chunk, so the chunk count comes from a cost model (--chunks N forces it).
//   5  as 4 with version 3's 16-step tiles.
//   6  as 3 with the dBm/dCm channel sums spread over every thread (two threads per (t, 4 states),
//      each summing every other channel, one shuffle) and two accumulators per thread.
//   7  as 5 with version 6's channel sums.
//
// Thresholds (relative L2 against the double-precision reference): du, ddt, dz (bf16) 1e-2; dA,
// dDskip, ddt_bias, dBm, dCm (fp32 sums) 5e-3; dh0 2e-3; the forward's out 1e-2, h_last and the
// checkpoints 1e-3. The reference backward itself is checked against central finite differences of
// the reference forward on a tiny shape (1e-6).
#include <cstring>
#include <string>

#include "common.h"

constexpr int kN = 16;      // d_state
constexpr int kTileC = 32;  // channels per block in the tiled versions
constexpr int kLanes = 4;   // threads per channel in the tiled versions
constexpr int kV1MaxCk = 64;

// =================================================================================================
// Parameters
// =================================================================================================
struct FwdParams {
  bf16* out;
  float* h_last;  // nullable
  float* ckpt;    // nullable: [B, nck, D, N], ckpt[b, c] = state before step c * ck_len
  int ck_len, nck;
  const bf16* u;
  const bf16* dt;
  const bf16* z;
  int64_t ld_z;
  const bf16* Bm;
  const bf16* Cm;
  int64_t ld_bc;
  const float* A;
  const float* Dskip;
  const float* dt_bias;
  const float* h0;  // nullable
  int B, L, D;
  bool vec_x, vec_z, vec_bc;
  // chunking over L (the forward file's version 6); nchunks == 1 otherwise
  int chunk_len, nchunks;
  float* chunk_state;
  float* chunk_dsum;
};

struct BwdParams {
  // outputs
  bf16* du;   // [B, L, D]
  bf16* ddt;  // [B, L, D]
  bf16* dz;   // [B, L] rows of stride ld_dz
  int64_t ld_dz;
  float* dA;        // [D, N]   (+=)
  float* dDskip;    // [D]      (+=)
  float* ddt_bias;  // [D]   (+=)
  float* dBm;       // [B, L] rows of stride ld_dbc (+=)
  float* dCm;
  int64_t ld_dbc;
  float* dh0;  // [B, D, N], written when h0 != nullptr
  // inputs
  const bf16* dout;  // [B, L, D]
  const bf16* u;
  const bf16* dt;
  const bf16* z;
  int64_t ld_z;
  const bf16* Bm;
  const bf16* Cm;
  int64_t ld_bc;
  const float* A;
  const float* Dskip;
  const float* dt_bias;
  const float* h0;    // nullable
  const float* ckpt;  // [B, nck, D, N] from the forward
  int ck_len, nck;
  int B, L, D;
  bool vec_x, vec_z, vec_bc, vec_dbc;
  // chunking over L (versions 4, 5); nchunks == 1 otherwise
  int chunk_len, nchunks;
  float* chunk_G;     // [B, nchunks, D, N]: pass 1 writes each chunk's carry from zero, pass 2 the true carry
  float* chunk_dsum;  // [B, nchunks, D]: sum of delta over the chunk
};

// =================================================================================================
// CPU reference, double precision throughout (inputs already rounded to what the GPU sees).
// =================================================================================================
struct RefProblem {
  int B, L, D;
  bool use_h0;
  std::vector<double> u, dt, z, Bm, Cm, A, Dskip, dt_bias, h0, dout;  // Bm, Cm dense [B, L, N]
};
struct RefGrads {
  std::vector<double> du, ddt, dz, dA, dDskip, ddt_bias, dBm, dCm, dh0;
};

static double softplus_ref(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }

// out [B, L, D], h_last [B, D, N], ckpt [B, nck, D, N] (state before step c * ck)
static void ref_forward(const RefProblem& p, int ck, std::vector<double>& out, std::vector<double>& h_last,
                        std::vector<double>* ckpt) {
  const int B = p.B, L = p.L, D = p.D, nck = (L + ck - 1) / ck;
  out.assign(size_t(B) * L * D, 0.0);
  h_last.assign(size_t(B) * D * kN, 0.0);
  if (ckpt) ckpt->assign(size_t(B) * nck * D * kN, 0.0);
  for (int b = 0; b < B; ++b)
    for (int d = 0; d < D; ++d) {
      double h[kN];
      for (int n = 0; n < kN; ++n) h[n] = p.use_h0 ? p.h0[(size_t(b) * D + d) * kN + n] : 0.0;
      for (int t = 0; t < L; ++t) {
        if (ckpt && t % ck == 0)
          for (int n = 0; n < kN; ++n) (*ckpt)[((size_t(b) * nck + t / ck) * D + d) * kN + n] = h[n];
        const size_t row = size_t(b) * L + t;
        const double delta = softplus_ref(p.dt[row * D + d] + p.dt_bias[d]);
        const double uu = p.u[row * D + d];
        double y = p.Dskip[d] * uu;
        for (int n = 0; n < kN; ++n) {
          h[n] = std::exp(delta * p.A[size_t(d) * kN + n]) * h[n] + delta * p.Bm[row * kN + n] * uu;
          y += p.Cm[row * kN + n] * h[n];
        }
        const double zz = p.z[row * D + d];
        out[row * D + d] = y * zz / (1.0 + std::exp(-zz));
      }
      for (int n = 0; n < kN; ++n) h_last[(size_t(b) * D + d) * kN + n] = h[n];
    }
}

static void ref_backward(const RefProblem& p, RefGrads& g) {
  const int B = p.B, L = p.L, D = p.D;
  g.du.assign(size_t(B) * L * D, 0.0);
  g.ddt.assign(size_t(B) * L * D, 0.0);
  g.dz.assign(size_t(B) * L * D, 0.0);
  g.dA.assign(size_t(D) * kN, 0.0);
  g.dDskip.assign(D, 0.0);
  g.ddt_bias.assign(D, 0.0);
  g.dBm.assign(size_t(B) * L * kN, 0.0);
  g.dCm.assign(size_t(B) * L * kN, 0.0);
  g.dh0.assign(size_t(B) * D * kN, 0.0);
  std::vector<double> hs(size_t(L + 1) * kN), ys(L), deltas(L);  // hs[t + 1] = h_t
  for (int b = 0; b < B; ++b)
    for (int d = 0; d < D; ++d) {
      const double* A = p.A.data() + size_t(d) * kN;
      for (int n = 0; n < kN; ++n) hs[n] = p.use_h0 ? p.h0[(size_t(b) * D + d) * kN + n] : 0.0;
      for (int t = 0; t < L; ++t) {  // forward, keeping every state
        const size_t row = size_t(b) * L + t;
        const double delta = softplus_ref(p.dt[row * D + d] + p.dt_bias[d]);
        const double uu = p.u[row * D + d];
        deltas[t] = delta;
        double y = p.Dskip[d] * uu;
        for (int n = 0; n < kN; ++n) {
          const double h = std::exp(delta * A[n]) * hs[size_t(t) * kN + n] + delta * p.Bm[row * kN + n] * uu;
          hs[size_t(t + 1) * kN + n] = h;
          y += p.Cm[row * kN + n] * h;
        }
        ys[t] = y;
      }
      double G[kN] = {};  // a_{t+1} g_{t+1}
      for (int t = L - 1; t >= 0; --t) {
        const size_t row = size_t(b) * L + t;
        const double x = p.dt[row * D + d] + p.dt_bias[d];
        const double delta = deltas[t], uu = p.u[row * D + d], zz = p.z[row * D + d], go = p.dout[row * D + d];
        const double sig = 1.0 / (1.0 + std::exp(-zz));
        const double dy = go * zz * sig;
        g.dz[row * D + d] = go * ys[t] * sig * (1.0 + zz * (1.0 - sig));
        double gB = 0, gAq = 0;
        for (int n = 0; n < kN; ++n) {
          const double gt = G[n] + dy * p.Cm[row * kN + n];
          const double a = std::exp(delta * A[n]);
          const double q = a * hs[size_t(t) * kN + n];
          gB += gt * p.Bm[row * kN + n];
          gAq += A[n] * gt * q;
          g.dA[size_t(d) * kN + n] += gt * delta * q;
          g.dBm[row * kN + n] += gt * delta * uu;
          g.dCm[row * kN + n] += dy * hs[size_t(t + 1) * kN + n];
          G[n] = a * gt;
        }
        g.du[row * D + d] = dy * p.Dskip[d] + delta * gB;
        const double ddelta = uu * gB + gAq;
        const double dx = ddelta * (x > 20.0 ? 1.0 : 1.0 / (1.0 + std::exp(-x)));
        g.ddt[row * D + d] = dx;
        g.ddt_bias[d] += dx;
        g.dDskip[d] += dy * uu;
      }
      for (int n = 0; n < kN; ++n) g.dh0[(size_t(b) * D + d) * kN + n] = G[n];
    }
}

static double ref_loss(const RefProblem& p) {
  std::vector<double> out, hl;
  ref_forward(p, 1 << 30, out, hl, nullptr);
  double s = 0;
  for (size_t i = 0; i < out.size(); ++i) s += out[i] * p.dout[i];
  return s;
}

// The oracle's own check: every gradient of loss = sum(out * dout) against central differences.
static bool check_reference_by_finite_differences() {
  RefProblem p;
  p.B = 2, p.L = 7, p.D = 3, p.use_h0 = true;
  HostRng rng(77);
  auto fill = [&](std::vector<double>& v, size_t n, float lo, float hi) {
    v.resize(n);
    for (auto& x : v) x = rng.uniform(lo, hi);
  };
  const size_t BLD = size_t(p.B) * p.L * p.D, BLN = size_t(p.B) * p.L * kN;
  fill(p.u, BLD, -1, 1), fill(p.dt, BLD, -1, 1), fill(p.z, BLD, -2, 2), fill(p.dout, BLD, -1, 1);
  fill(p.Bm, BLN, -1, 1), fill(p.Cm, BLN, -1, 1), fill(p.Dskip, p.D, 0.5f, 1.5f);
  fill(p.h0, size_t(p.B) * p.D * kN, -1, 1);
  p.A.resize(size_t(p.D) * kN);
  for (int d = 0; d < p.D; ++d)
    for (int n = 0; n < kN; ++n) p.A[size_t(d) * kN + n] = -0.3 * (n + 1) * rng.uniform(0.8f, 1.2f);
  p.dt_bias = {-1.0, 0.3, 21.0};  // the last channel takes softplus's pass-through branch
  RefGrads g;
  ref_backward(p, g);
  bool ok = true;
  auto fd = [&](const char* name, std::vector<double>& x, const std::vector<double>& grad) {
    double num = 0, den = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double x0 = x[i], eps = 1e-6 * std::max(1.0, std::fabs(x0));
      x[i] = x0 + eps;
      const double lp = ref_loss(p);
      x[i] = x0 - eps;
      const double lm = ref_loss(p);
      x[i] = x0;
      const double e = (lp - lm) / (2 * eps) - grad[i];
      num += e * e, den += grad[i] * grad[i];
    }
    const double rel = std::sqrt(num / std::max(den, 1e-300));
    const bool good = rel < 1e-6;
    ok &= good;
    std::printf("reference vs finite differences: %-9s rel %.2e  %s\n", name, rel, good ? "OK" : "FAIL");
  };
  fd("u", p.u, g.du), fd("dt", p.dt, g.ddt), fd("z", p.z, g.dz), fd("A", p.A, g.dA);
  fd("Dskip", p.Dskip, g.dDskip), fd("dt_bias", p.dt_bias, g.ddt_bias), fd("Bm", p.Bm, g.dBm);
  fd("Cm", p.Cm, g.dCm), fd("h0", p.h0, g.dh0);
  return ok;
}

// =================================================================================================
// Device helpers (as in selective_scan_forward.cu)
// =================================================================================================
__device__ __forceinline__ float softplus_fast(float x) {
  const float r = kLn2 * lg2_approx(1.f + ex2_approx(x * kLog2e));
  return x > 20.f ? x : r;
}
__device__ __forceinline__ float silu_fast(float z) { return z * fmaf(0.5f, tanh_approx(0.5f * z), 0.5f); }

__device__ __forceinline__ uint4 load8(const bf16* ptr, bool row_ok, int nvalid, bool vec) {
  uint4 v = make_uint4(0, 0, 0, 0);
  if (row_ok && nvalid > 0) {
    if (vec && nvalid >= 8) {
      v = __ldg(reinterpret_cast<const uint4*>(ptr));
    } else {
      uint16_t tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      const uint16_t* q = reinterpret_cast<const uint16_t*>(ptr);
#pragma unroll
      for (int k = 0; k < 8; ++k)
        if (k < nvalid) tmp[k] = q[k];
      memcpy(&v, tmp, 16);
    }
  }
  return v;
}
// 8 bf16 to ptr (nvalid of them), 16-byte store when allowed.
__device__ __forceinline__ void store8(bf16* ptr, const uint4& v, int nvalid, bool vec) {
  if (vec && nvalid >= 8) {
    *reinterpret_cast<uint4*>(ptr) = v;
  } else {
    uint16_t tmp[8];
    memcpy(tmp, &v, 16);
    for (int k = 0; k < 8 && k < nvalid; ++k) reinterpret_cast<uint16_t*>(ptr)[k] = tmp[k];
  }
}

template <int LANES>
__device__ __forceinline__ float reduce_scatter(const float (&yp)[LANES], int sub) {
  static_assert(LANES == 4, "LANES == 4");
  const bool hi = sub & 2;
  const float w0 = (hi ? yp[2] : yp[0]) + __shfl_xor_sync(0xffffffffu, hi ? yp[0] : yp[2], 2);
  const float w1 = (hi ? yp[3] : yp[1]) + __shfl_xor_sync(0xffffffffu, hi ? yp[1] : yp[3], 2);
  const bool odd = sub & 1;
  return (odd ? w1 : w0) + __shfl_xor_sync(0xffffffffu, odd ? w0 : w1, 1);
}

// 4 consecutive fp32 added to global memory: one vector atomic on sm_90, four scalar ones before.
__device__ __forceinline__ void atomic_add4(float* dst, float4 v, bool vec) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (vec) {
    atomicAdd(reinterpret_cast<float4*>(dst), v);
    return;
  }
#endif
  (void)vec;
  atomicAdd(dst, v.x);
  atomicAdd(dst + 1, v.y);
  atomicAdd(dst + 2, v.z);
  atomicAdd(dst + 3, v.w);
}

// =================================================================================================
// Forward with checkpoints: selective_scan_forward.cu's tiled kernel (LANES 4, TT 32), plus a write
// of the state before every ck_len-th step. Chunked over L as its v6 when B D alone is too small.
// =================================================================================================
template <int TT, bool STATES_ONLY>
__global__ void __launch_bounds__(kTileC* kLanes) fwd_tiled_kernel(FwdParams p) {
  constexpr int LANES = kLanes;
  constexpr int NT = kTileC * LANES;
  constexpr int SPL = kN / LANES;
  constexpr int XCH = TT * kTileC / 8;
  constexpr int XPT = XCH / NT;
  constexpr int BCH = TT * kN / 8;
  constexpr int NBC = STATES_ONLY ? BCH : 2 * BCH;
  constexpr int BPT = (NBC + NT - 1) / NT;
  static_assert(XCH % NT == 0, "tile must split evenly over the threads");

  __shared__ __align__(16) float s_delta[TT][kTileC];
  __shared__ __align__(16) float s_du[TT][kTileC];
  __shared__ __align__(16) float s_B[TT][kN];
  __shared__ __align__(16) float s_C[STATES_ONLY ? 1 : TT][kN];
  __shared__ __align__(16) float s_y[STATES_ONLY ? 1 : TT][kTileC];
  __shared__ __align__(16) bf16 s_u[STATES_ONLY ? 1 : TT][kTileC];
  __shared__ __align__(16) bf16 s_z[STATES_ONLY ? 1 : TT][kTileC];

  const int b = blockIdx.z, chunk = blockIdx.y, c0 = blockIdx.x * kTileC;
  const int tid = threadIdx.x, cl = tid / LANES, sub = tid % LANES;
  const int d = c0 + cl;
  const bool dvalid = d < p.D;
  const int t_begin = chunk * p.chunk_len;
  const int t_end = min(p.L, t_begin + p.chunk_len);
  const int64_t brow = int64_t(b) * p.L;

  float A2[SPL], h[SPL];
#pragma unroll
  for (int k = 0; k < SPL; ++k) {
    const int n = sub * SPL + k;
    A2[k] = dvalid ? p.A[d * kN + n] * kLog2e : 0.f;
    float h_init = 0.f;
    if (dvalid) {
      if (chunk == 0) {
        if (p.h0) h_init = p.h0[(int64_t(b) * p.D + d) * kN + n];
      } else if (!STATES_ONLY) {
        h_init = p.chunk_state[((int64_t(b) * p.nchunks + chunk) * p.D + d) * kN + n];
      }
    }
    h[k] = h_init;
  }
  float dsum = 0.f;
  int next_ck = t_begin;  // chunks start at multiples of 32, so of ck_len

  uint4 r_u[XPT], r_dt[XPT], r_z[XPT], r_bc[BPT];
  auto load_tile = [&](int t0) {
#pragma unroll
    for (int j = 0; j < XPT; ++j) {
      const int q = tid + j * NT, r = q >> 2, c8 = (q & 3) * 8;
      const int t = t0 + r, ch = c0 + c8;
      const bool ok = t < t_end;
      const int64_t row = brow + t;
      r_u[j] = load8(p.u + row * p.D + ch, ok, p.D - ch, p.vec_x);
      r_dt[j] = load8(p.dt + row * p.D + ch, ok, p.D - ch, p.vec_x);
      if (!STATES_ONLY) r_z[j] = load8(p.z + row * p.ld_z + ch, ok, p.D - ch, p.vec_z);
    }
#pragma unroll
    for (int j = 0; j < BPT; ++j) {
      const int i = tid + j * NT;
      if (i < NBC) {
        const bool isC = i >= BCH;
        const int ii = isC ? i - BCH : i, r = ii >> 1, n8 = (ii & 1) * 8;
        const int t = t0 + r;
        r_bc[j] = load8((isC ? p.Cm : p.Bm) + (brow + t) * p.ld_bc + n8, t < t_end, 8, p.vec_bc);
      }
    }
  };
  auto store_tile = [&](int t0) {
#pragma unroll
    for (int j = 0; j < XPT; ++j) {
      const int q = tid + j * NT, r = q >> 2, c8 = (q & 3) * 8;
      const bool ok = t0 + r < t_end;
      float fu[8], fdt[8], dl[8], du[8];
      unpack8(r_u[j], fu);
      unpack8(r_dt[j], fdt);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const int ch = c0 + c8 + k;
        const float bias = ch < p.D ? __ldg(p.dt_bias + ch) : 0.f;
        dl[k] = ok ? softplus_fast(fdt[k] + bias) : 0.f;
        du[k] = dl[k] * fu[k];
      }
      float4* sd = reinterpret_cast<float4*>(&s_delta[r][c8]);
      sd[0] = make_float4(dl[0], dl[1], dl[2], dl[3]);
      sd[1] = make_float4(dl[4], dl[5], dl[6], dl[7]);
      float4* su = reinterpret_cast<float4*>(&s_du[r][c8]);
      su[0] = make_float4(du[0], du[1], du[2], du[3]);
      su[1] = make_float4(du[4], du[5], du[6], du[7]);
      if constexpr (!STATES_ONLY) {
        *reinterpret_cast<uint4*>(&s_u[r][c8]) = r_u[j];
        *reinterpret_cast<uint4*>(&s_z[r][c8]) = r_z[j];
      }
    }
#pragma unroll
    for (int j = 0; j < BPT; ++j) {
      const int i = tid + j * NT;
      if (i < NBC) {
        const bool isC = i >= BCH;
        const int ii = isC ? i - BCH : i, r = ii >> 1, n8 = (ii & 1) * 8;
        float f[8];
        unpack8(r_bc[j], f);
        float* dst = isC ? &s_C[0][0] + r * kN + n8 : &s_B[r][n8];
        reinterpret_cast<float4*>(dst)[0] = make_float4(f[0], f[1], f[2], f[3]);
        reinterpret_cast<float4*>(dst)[1] = make_float4(f[4], f[5], f[6], f[7]);
      }
    }
  };
  auto epilogue = [&](int t0) {
#pragma unroll
    for (int j = 0; j < XPT; ++j) {
      const int q = tid + j * NT, r = q >> 2, c8 = (q & 3) * 8;
      const int t = t0 + r, ch = c0 + c8;
      if (t >= t_end || ch >= p.D) continue;
      float fu[8], fz[8], o[8];
      unpack8(*reinterpret_cast<const uint4*>(&s_u[r][c8]), fu);
      unpack8(*reinterpret_cast<const uint4*>(&s_z[r][c8]), fz);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const float Dd = ch + k < p.D ? __ldg(p.Dskip + ch + k) : 0.f;
        o[k] = fmaf(Dd, fu[k], s_y[r][c8 + k]) * silu_fast(fz[k]);
      }
      store8(p.out + (brow + t) * p.D + ch, pack8(o), p.D - ch, p.vec_x);
    }
  };

  const int ntiles = (t_end - t_begin + TT - 1) / TT;
  load_tile(t_begin);
  for (int it = 0; it < ntiles; ++it) {
    const int t0 = t_begin + it * TT;
    __syncthreads();
    store_tile(t0);
    __syncthreads();
    if (it + 1 < ntiles) load_tile(t0 + TT);

#pragma unroll 2
    for (int s0 = 0; s0 < TT; s0 += LANES) {
      if (!STATES_ONLY && t0 + s0 == next_ck) {  // the state before step next_ck
        if (p.ckpt && dvalid && next_ck < t_end)
          *reinterpret_cast<float4*>(p.ckpt + ((int64_t(b) * p.nck + next_ck / p.ck_len) * p.D + d) * kN + sub * SPL) =
              make_float4(h[0], h[1], h[2], h[3]);
        next_ck += p.ck_len;
      }
      float yp[LANES];
#pragma unroll
      for (int j = 0; j < LANES; ++j) {
        const int s = s0 + j;
        const float dl = s_delta[s][cl];
        const float du = s_du[s][cl];
        float bv[SPL], cv[SPL];
        const float4 b4 = *reinterpret_cast<const float4*>(&s_B[s][sub * SPL]);
        bv[0] = b4.x, bv[1] = b4.y, bv[2] = b4.z, bv[3] = b4.w;
        if constexpr (!STATES_ONLY) {
          const float4 c4 = *reinterpret_cast<const float4*>(&s_C[s][sub * SPL]);
          cv[0] = c4.x, cv[1] = c4.y, cv[2] = c4.z, cv[3] = c4.w;
        }
        float acc = 0.f;
#pragma unroll
        for (int k = 0; k < SPL; ++k) {
          const float a = ex2_approx(dl * A2[k]);
          h[k] = fmaf(a, h[k], du * bv[k]);
          if constexpr (!STATES_ONLY) acc = fmaf(cv[k], h[k], acc);
        }
        yp[j] = acc;
        if constexpr (STATES_ONLY) dsum += dl;
      }
      if constexpr (!STATES_ONLY) s_y[s0 + sub][cl] = reduce_scatter<LANES>(yp, sub);
    }

    if constexpr (!STATES_ONLY) {
      __syncthreads();
      epilogue(t0);
    }
  }

  if (!dvalid) return;
  if constexpr (STATES_ONLY) {
    const int64_t base = (int64_t(b) * p.nchunks + chunk) * p.D + d;
#pragma unroll
    for (int k = 0; k < SPL; ++k) p.chunk_state[base * kN + sub * SPL + k] = h[k];
    if (sub == 0) p.chunk_dsum[base] = dsum;
  } else {
    if (p.h_last && chunk == p.nchunks - 1)
#pragma unroll
      for (int k = 0; k < SPL; ++k) p.h_last[(int64_t(b) * p.D + d) * kN + sub * SPL + k] = h[k];
  }
}

__global__ void fwd_chunk_carry_kernel(FwdParams p) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= int64_t(p.B) * p.D * kN) return;
  const int n = idx % kN;
  const int d = (idx / kN) % p.D;
  const int b = idx / (int64_t(kN) * p.D);
  const float A2 = p.A[d * kN + n] * kLog2e;
  float hc = p.chunk_state[((int64_t(b) * p.nchunks) * p.D + d) * kN + n];
  for (int c = 1; c < p.nchunks; ++c) {
    const int64_t base = (int64_t(b) * p.nchunks + c) * p.D + d;
    const bool more = c + 1 < p.nchunks;
    const float local = more ? p.chunk_state[base * kN + n] : 0.f;
    p.chunk_state[base * kN + n] = hc;
    if (more) hc = fmaf(ex2_approx(A2 * p.chunk_dsum[base]), hc, local);
  }
}

struct FwdWorkspace {
  float* chunk_state = nullptr;
  float* chunk_dsum = nullptr;
  size_t capacity_chunks = 0;
  ~FwdWorkspace() {
    if (chunk_state) cudaFree(chunk_state);
    if (chunk_dsum) cudaFree(chunk_dsum);
  }
};

// The forward file's chunk-count model (version 6).
static int pick_fwd_chunks(int B, int L, int D, int num_sms) {
  constexpr int TT = 32;
  const int warps_per_block = kTileC * kLanes / 32;
  const double slots = double(num_sms) * 4 * 3 / warps_per_block;
  const int base = B * ((D + kTileC - 1) / kTileC);
  int best = 1;
  double best_cost = 1e300;
  for (int c = 1; c <= 64; ++c) {
    const int len = ((L + c - 1) / c + TT - 1) / TT * TT;
    const int nch = (L + len - 1) / len;
    if (nch != c) continue;
    const double cost = double(len) * (std::ceil(base * nch / slots) + 0.8 * std::ceil(base * (nch - 1) / slots));
    if (cost < best_cost * 0.97) best_cost = cost, best = c;
  }
  return best;
}

// Forward writing out, h_last and the checkpoints every ck_len steps (ck_len divides 32, the tile and
// the granularity of the chunk length, and is a multiple of 4, the step group of the scan loop).
static void run_forward(FwdParams p, FwdWorkspace& ws, int num_sms) {
  constexpr int TT = 32;
  p.vec_x = p.D % 8 == 0 && aligned16(p.u) && aligned16(p.dt) && aligned16(p.out);
  p.vec_z = p.ld_z % 8 == 0 && aligned16(p.z);
  p.vec_bc = p.ld_bc % 8 == 0 && aligned16(p.Bm) && aligned16(p.Cm);
  if (p.ck_len <= 0 || TT % p.ck_len != 0 || p.ck_len % kLanes != 0) {
    std::fprintf(stderr, "checkpoint interval %d must divide %d and be a multiple of %d\n", p.ck_len, TT, kLanes);
    std::exit(2);
  }
  p.nck = (p.L + p.ck_len - 1) / p.ck_len;
  const int nchunks = pick_fwd_chunks(p.B, p.L, p.D, num_sms);
  const int len = ((p.L + nchunks - 1) / nchunks + TT - 1) / TT * TT;
  p.chunk_len = len;
  p.nchunks = (p.L + len - 1) / len;
  dim3 grid((p.D + kTileC - 1) / kTileC, p.nchunks, p.B);
  if (p.nchunks > 1) {
    const size_t need = size_t(p.B) * p.nchunks;
    if (need > ws.capacity_chunks) {
      if (ws.chunk_state) CUDA_CHECK(cudaFree(ws.chunk_state));
      if (ws.chunk_dsum) CUDA_CHECK(cudaFree(ws.chunk_dsum));
      ws.chunk_state = device_alloc<float>(need * p.D * kN);
      ws.chunk_dsum = device_alloc<float>(need * p.D);
      ws.capacity_chunks = need;
    }
    p.chunk_state = ws.chunk_state;
    p.chunk_dsum = ws.chunk_dsum;
    dim3 grid1((p.D + kTileC - 1) / kTileC, p.nchunks - 1, p.B);
    fwd_tiled_kernel<TT, true><<<grid1, kTileC * kLanes>>>(p);
    CUDA_CHECK_LAUNCH();
    const int64_t n2 = int64_t(p.B) * p.D * kN;
    fwd_chunk_carry_kernel<<<(n2 + 255) / 256, 256>>>(p);
    CUDA_CHECK_LAUNCH();
  }
  fwd_tiled_kernel<TT, false><<<grid, kTileC * kLanes>>>(p);
  CUDA_CHECK_LAUNCH();
}

// =================================================================================================
// Backward version 1: one thread per (b, d) channel, global loads every step.
// =================================================================================================
__global__ void bwd_v1_kernel(BwdParams p) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= p.B * p.D) return;
  const int b = idx / p.D, d = idx % p.D;
  float A[kN], G[kN], dA[kN];
  for (int n = 0; n < kN; ++n) A[n] = p.A[d * kN + n], G[n] = 0.f, dA[n] = 0.f;
  const float Dd = p.Dskip[d], bias = p.dt_bias[d];
  float dD = 0.f, dbias = 0.f;
  float hs[kV1MaxCk + 1][kN];  // hs[s + 1] = h after step t0 + s; hs[0] = the checkpoint
  float ys[kV1MaxCk], deltas[kV1MaxCk];
  for (int c = p.nck - 1; c >= 0; --c) {
    const int t0 = c * p.ck_len, t1 = min(p.L, t0 + p.ck_len);
    for (int n = 0; n < kN; ++n) hs[0][n] = p.ckpt[((int64_t(b) * p.nck + c) * p.D + d) * kN + n];
    for (int t = t0; t < t1; ++t) {  // rescan the interval from its checkpoint
      const int s = t - t0;
      const int64_t row = int64_t(b) * p.L + t;
      const float x = __bfloat162float(p.dt[row * p.D + d]) + bias;
      const float delta = x > 20.f ? x : log1pf(expf(x));
      const float uu = __bfloat162float(p.u[row * p.D + d]);
      float y = Dd * uu;
      for (int n = 0; n < kN; ++n) {
        const float h = expf(delta * A[n]) * hs[s][n] + delta * __bfloat162float(p.Bm[row * p.ld_bc + n]) * uu;
        hs[s + 1][n] = h;
        y += __bfloat162float(p.Cm[row * p.ld_bc + n]) * h;
      }
      ys[s] = y;
      deltas[s] = delta;
    }
    for (int t = t1 - 1; t >= t0; --t) {  // the adjoint recurrence, backwards
      const int s = t - t0;
      const int64_t row = int64_t(b) * p.L + t;
      const float x = __bfloat162float(p.dt[row * p.D + d]) + bias;
      const float delta = deltas[s];
      const float uu = __bfloat162float(p.u[row * p.D + d]);
      const float zz = __bfloat162float(p.z[row * p.ld_z + d]);
      const float go = __bfloat162float(p.dout[row * p.D + d]);
      const float sig = 1.f / (1.f + expf(-zz));
      const float dy = go * zz * sig;
      p.dz[row * p.ld_dz + d] = __float2bfloat16(go * ys[s] * sig * (1.f + zz * (1.f - sig)));
      float gB = 0.f, gAq = 0.f;
      for (int n = 0; n < kN; ++n) {
        const float g = G[n] + dy * __bfloat162float(p.Cm[row * p.ld_bc + n]);
        const float a = expf(delta * A[n]);
        const float q = a * hs[s][n];
        gB += g * __bfloat162float(p.Bm[row * p.ld_bc + n]);
        gAq += A[n] * g * q;
        dA[n] += g * delta * q;
        atomicAdd(p.dBm + row * p.ld_dbc + n, g * delta * uu);
        atomicAdd(p.dCm + row * p.ld_dbc + n, dy * hs[s + 1][n]);
        G[n] = a * g;
      }
      p.du[row * p.D + d] = __float2bfloat16(dy * Dd + delta * gB);
      const float dx = (uu * gB + gAq) * (x > 20.f ? 1.f : 1.f / (1.f + expf(-x)));
      p.ddt[row * p.D + d] = __float2bfloat16(dx);
      dbias += dx;
      dD += dy * uu;
    }
  }
  if (p.h0)
    for (int n = 0; n < kN; ++n) p.dh0[(int64_t(b) * p.D + d) * kN + n] = G[n];
  for (int n = 0; n < kN; ++n) atomicAdd(p.dA + d * kN + n, dA[n]);
  atomicAdd(p.dDskip + d, dD);
  atomicAdd(p.ddt_bias + d, dbias);
}

// =================================================================================================
// Backward versions 2-3: the tiled kernel. A block owns kTileC channels of one sequence and walks
// its tiles of TT steps from last to first; checkpoints every TT steps (ck_len == TT).
// Per tile: (1) registers -> shared memory with the prologue (delta, dy = dout silu(z)) and the
// next (earlier) tile's loads issued; (2) rescan from the checkpoint, h_t -> shared memory, y_t
// reduced over the channel's 4 threads; (3) dz, and dCm_t[n] = sum_d dy h_t[n] over the block's
// channels (one vector atomic per (t, 4 states)); (4) the reverse recurrence: g in registers, du and
// ddt per step (two 4-lane reduce-scatters), dA in registers, g delta u -> shared memory over h_t;
// (5) du, ddt rows out, dBm_t[n] = sum_d g delta u.
// =================================================================================================
template <int TT>
struct BwdSmem {
  static constexpr int kH = (TT + 1) * kTileC * kN;  // s_h[TT + 1][kTileC][kN]
  static constexpr int kRow = TT * kTileC;           // one [TT][kTileC] fp32 array
  static constexpr int kBC = TT * kN;
  static constexpr int kFloats = kH + 5 * kRow + 2 * kBC;  // h, delta, u, dy, y|du_o+ddt_o, z+dout, B, C
  static constexpr size_t kBytes = size_t(kFloats) * 4;
};

template <int TT, bool SPLIT>
__global__ void __launch_bounds__(kTileC* kLanes) bwd_tiled_kernel(BwdParams p) {
  constexpr int LANES = kLanes;
  constexpr int NT = kTileC * LANES;
  constexpr int SPL = kN / LANES;  // 4 states a thread
  constexpr int XCH = TT * kTileC / 8;
  constexpr int XPT = (XCH + NT - 1) / NT;
  constexpr int BCH = TT * kN / 8;
  constexpr int NBC = 2 * BCH;
  constexpr int BPT = (NBC + NT - 1) / NT;
  static_assert(SPL == 4 && TT % LANES == 0, "4 states a thread, step groups of 4");
  using S = BwdSmem<TT>;

  extern __shared__ __align__(16) float smem[];
  float(*s_h)[kTileC][kN] = reinterpret_cast<float(*)[kTileC][kN]>(smem);
  float(*s_delta)[kTileC] = reinterpret_cast<float(*)[kTileC]>(smem + S::kH);
  float(*s_u)[kTileC] = reinterpret_cast<float(*)[kTileC]>(smem + S::kH + S::kRow);
  float(*s_dy)[kTileC] = reinterpret_cast<float(*)[kTileC]>(smem + S::kH + 2 * S::kRow);
  float(*s_y)[kTileC] = reinterpret_cast<float(*)[kTileC]>(smem + S::kH + 3 * S::kRow);
  // du and ddt of the tile (bf16) reuse s_y's space: y is consumed before the reverse pass starts.
  bf16(*s_duo)[kTileC] = reinterpret_cast<bf16(*)[kTileC]>(smem + S::kH + 3 * S::kRow);
  bf16(*s_ddto)[kTileC] = reinterpret_cast<bf16(*)[kTileC]>(smem + S::kH + 3 * S::kRow + S::kRow / 2);
  bf16(*s_z)[kTileC] = reinterpret_cast<bf16(*)[kTileC]>(smem + S::kH + 4 * S::kRow);
  bf16(*s_dout)[kTileC] = reinterpret_cast<bf16(*)[kTileC]>(smem + S::kH + 4 * S::kRow + S::kRow / 2);
  float(*s_B)[kN] = reinterpret_cast<float(*)[kN]>(smem + S::kH + 5 * S::kRow);
  float(*s_C)[kN] = reinterpret_cast<float(*)[kN]>(smem + S::kH + 5 * S::kRow + S::kBC);

  const int b = blockIdx.z, chunk = blockIdx.y, c0 = blockIdx.x * kTileC;
  const int tid = threadIdx.x, cl = tid / LANES, sub = tid % LANES;
  const int d = c0 + cl;
  const bool dvalid = d < p.D;
  const int64_t brow = int64_t(b) * p.L;
  const int t_begin = chunk * p.chunk_len;  // chunk_len: a multiple of TT
  const int t_end = min(p.L, t_begin + p.chunk_len);

  float A2[SPL], Ar[SPL], G[SPL], dAacc[SPL];
#pragma unroll
  for (int k = 0; k < SPL; ++k) {
    Ar[k] = dvalid ? p.A[d * kN + sub * SPL + k] : 0.f;
    A2[k] = Ar[k] * kLog2e;
    // the carry a_{t_end} g_{t_end} from the chunks after this one (pass 2), zero after the end
    G[k] = dvalid && chunk + 1 < p.nchunks
               ? p.chunk_G[((int64_t(b) * p.nchunks + chunk) * p.D + d) * kN + sub * SPL + k]
               : 0.f;
    dAacc[k] = 0.f;
  }
  const float Dd = dvalid ? p.Dskip[d] : 0.f;
  float dDacc = 0.f, dbacc = 0.f;

  uint4 r_u[XPT], r_dt[XPT], r_z[XPT], r_go[XPT], r_bc[BPT];
  float4 r_ck;
  auto load_tile = [&](int t0) {
#pragma unroll
    for (int j = 0; j < XPT; ++j) {
      const int q = tid + j * NT, r = q >> 2, c8 = (q & 3) * 8;
      const int t = t0 + r, ch = c0 + c8;
      const bool ok = q < XCH && t < t_end;
      const int64_t row = brow + t;
      r_u[j] = load8(p.u + row * p.D + ch, ok, p.D - ch, p.vec_x);
      r_dt[j] = load8(p.dt + row * p.D + ch, ok, p.D - ch, p.vec_x);
      r_go[j] = load8(p.dout + row * p.D + ch, ok, p.D - ch, p.vec_x);
      r_z[j] = load8(p.z + row * p.ld_z + ch, ok, p.D - ch, p.vec_z);
    }
#pragma unroll
    for (int j = 0; j < BPT; ++j) {
      const int i = tid + j * NT;
      if (i < NBC) {
        const bool isC = i >= BCH;
        const int ii = isC ? i - BCH : i, r = ii >> 1, n8 = (ii & 1) * 8;
        const int t = t0 + r;
        r_bc[j] = load8((isC ? p.Cm : p.Bm) + (brow + t) * p.ld_bc + n8, t < t_end, 8, p.vec_bc);
      }
    }
    r_ck = dvalid
               ? *reinterpret_cast<const float4*>(p.ckpt + ((int64_t(b) * p.nck + t0 / TT) * p.D + d) * kN + sub * SPL)
               : make_float4(0.f, 0.f, 0.f, 0.f);
  };
  auto store_tile = [&](int t0) {
#pragma unroll
    for (int j = 0; j < XPT; ++j) {
      const int q = tid + j * NT, r = q >> 2, c8 = (q & 3) * 8;
      if (q >= XCH) continue;
      const bool ok = t0 + r < t_end;
      float fu[8], fdt[8], fz[8], fgo[8], dl[8], dy[8];
      unpack8(r_u[j], fu);
      unpack8(r_dt[j], fdt);
      unpack8(r_z[j], fz);
      unpack8(r_go[j], fgo);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const int ch = c0 + c8 + k;
        const float bias = ch < p.D ? __ldg(p.dt_bias + ch) : 0.f;
        // Steps past the end: delta = 0 (state unchanged), dout = 0 (so g stays 0).
        dl[k] = ok ? softplus_fast(fdt[k] + bias) : 0.f;
        dy[k] = fgo[k] * silu_fast(fz[k]);
      }
      float4* sd = reinterpret_cast<float4*>(&s_delta[r][c8]);
      sd[0] = make_float4(dl[0], dl[1], dl[2], dl[3]);
      sd[1] = make_float4(dl[4], dl[5], dl[6], dl[7]);
      float4* su = reinterpret_cast<float4*>(&s_u[r][c8]);
      su[0] = make_float4(fu[0], fu[1], fu[2], fu[3]);
      su[1] = make_float4(fu[4], fu[5], fu[6], fu[7]);
      float4* sy = reinterpret_cast<float4*>(&s_dy[r][c8]);
      sy[0] = make_float4(dy[0], dy[1], dy[2], dy[3]);
      sy[1] = make_float4(dy[4], dy[5], dy[6], dy[7]);
      *reinterpret_cast<uint4*>(&s_z[r][c8]) = r_z[j];
      *reinterpret_cast<uint4*>(&s_dout[r][c8]) = r_go[j];
    }
#pragma unroll
    for (int j = 0; j < BPT; ++j) {
      const int i = tid + j * NT;
      if (i < NBC) {
        const bool isC = i >= BCH;
        const int ii = isC ? i - BCH : i, r = ii >> 1, n8 = (ii & 1) * 8;
        float f[8];
        unpack8(r_bc[j], f);
        float* dst = isC ? &s_C[r][n8] : &s_B[r][n8];
        reinterpret_cast<float4*>(dst)[0] = make_float4(f[0], f[1], f[2], f[3]);
        reinterpret_cast<float4*>(dst)[1] = make_float4(f[4], f[5], f[6], f[7]);
      }
    }
    *reinterpret_cast<float4*>(&s_h[0][cl][sub * SPL]) = r_ck;  // h_{t0 - 1}: only this thread reads it
  };
  // sum over the block's channels of w[cl] * s_h[s + 1][cl][n..n+3] (w = dy: dCm) or of s_h (dBm),
  // one vector atomic per (t, 4 states). Channels are visited in a rotated order (cl + s) so that
  // the threads of a quarter warp hit different banks.
  auto channel_sum = [&](int t0, float* dst_base, bool weighted) {
    if constexpr (SPLIT) {
      // Versions 6-7: every thread busy (with 16-step tiles, two threads per (t, 4 states), each
      // summing every other channel, then one shuffle) and two accumulators for shorter chains.
      constexpr int ITEMS = TT * 4;
      constexpr int NS = ITEMS >= NT ? 1 : NT / ITEMS;
      static_assert(ITEMS * NS % NT == 0 && kTileC % (2 * NS) == 0, "items split evenly");
      for (int idx = tid; idx < ITEMS * NS; idx += NT) {
        const int w = idx / NS, part = idx % NS;
        const int s = w >> 2, n4 = (w & 3) * 4;
        float4 a0 = make_float4(0.f, 0.f, 0.f, 0.f), a1 = a0;
#pragma unroll
        for (int j = 0; j < kTileC / (2 * NS); ++j) {
          const int i = part + j * 2 * NS;
          const int ca = (i + s) & (kTileC - 1), cb = (i + NS + s) & (kTileC - 1);
          const float4 ha = *reinterpret_cast<const float4*>(&s_h[s + 1][ca][n4]);
          const float4 hb = *reinterpret_cast<const float4*>(&s_h[s + 1][cb][n4]);
          const float wa = weighted ? s_dy[s][ca] : 1.f, wb = weighted ? s_dy[s][cb] : 1.f;
          a0.x = fmaf(wa, ha.x, a0.x), a0.y = fmaf(wa, ha.y, a0.y), a0.z = fmaf(wa, ha.z, a0.z);
          a0.w = fmaf(wa, ha.w, a0.w);
          a1.x = fmaf(wb, hb.x, a1.x), a1.y = fmaf(wb, hb.y, a1.y), a1.z = fmaf(wb, hb.z, a1.z);
          a1.w = fmaf(wb, hb.w, a1.w);
        }
        float4 acc = make_float4(a0.x + a1.x, a0.y + a1.y, a0.z + a1.z, a0.w + a1.w);
        if constexpr (NS == 2) {  // the two parts of an item are neighbouring lanes
          acc.x += __shfl_xor_sync(0xffffffffu, acc.x, 1);
          acc.y += __shfl_xor_sync(0xffffffffu, acc.y, 1);
          acc.z += __shfl_xor_sync(0xffffffffu, acc.z, 1);
          acc.w += __shfl_xor_sync(0xffffffffu, acc.w, 1);
        }
        const int t = t0 + s;
        if (part == 0 && t < t_end) atomic_add4(dst_base + (brow + t) * p.ld_dbc + n4, acc, p.vec_dbc);
      }
    } else {
      for (int w = tid; w < TT * 4; w += NT) {
        const int s = w >> 2, n4 = (w & 3) * 4;
        float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 8
        for (int i = 0; i < kTileC; ++i) {
          const int c = (i + s) & (kTileC - 1);
          const float4 hv = *reinterpret_cast<const float4*>(&s_h[s + 1][c][n4]);
          const float wt = weighted ? s_dy[s][c] : 1.f;
          acc.x = fmaf(wt, hv.x, acc.x);
          acc.y = fmaf(wt, hv.y, acc.y);
          acc.z = fmaf(wt, hv.z, acc.z);
          acc.w = fmaf(wt, hv.w, acc.w);
        }
        const int t = t0 + s;
        if (t < t_end) atomic_add4(dst_base + (brow + t) * p.ld_dbc + n4, acc, p.vec_dbc);
      }
    }
  };

  const int ntiles = (t_end - t_begin + TT - 1) / TT;
  load_tile(t_begin + (ntiles - 1) * TT);
  for (int it = ntiles - 1; it >= 0; --it) {
    const int t0 = t_begin + it * TT;
    __syncthreads();  // the previous tile's epilogue is done with shared memory
    store_tile(t0);
    float h[SPL] = {r_ck.x, r_ck.y, r_ck.z, r_ck.w};
    __syncthreads();
    if (it > 0) load_tile(t0 - TT);  // in flight during the passes below
    // (2) rescan
#pragma unroll 2
    for (int s0 = 0; s0 < TT; s0 += LANES) {
      float yp[LANES];
#pragma unroll
      for (int j = 0; j < LANES; ++j) {
        const int s = s0 + j;
        const float dl = s_delta[s][cl];
        const float du = dl * s_u[s][cl];
        const float4 b4 = *reinterpret_cast<const float4*>(&s_B[s][sub * SPL]);
        const float4 c4 = *reinterpret_cast<const float4*>(&s_C[s][sub * SPL]);
        const float bv[SPL] = {b4.x, b4.y, b4.z, b4.w}, cv[SPL] = {c4.x, c4.y, c4.z, c4.w};
        float acc = 0.f;
#pragma unroll
        for (int k = 0; k < SPL; ++k) {
          h[k] = fmaf(ex2_approx(dl * A2[k]), h[k], du * bv[k]);
          acc = fmaf(cv[k], h[k], acc);
        }
        *reinterpret_cast<float4*>(&s_h[s + 1][cl][sub * SPL]) = make_float4(h[0], h[1], h[2], h[3]);
        yp[j] = acc;
      }
      s_y[s0 + sub][cl] = reduce_scatter<LANES>(yp, sub);
    }
    __syncthreads();

    // (3) dz = dout y silu'(z), 8 channels a thread; dCm
#pragma unroll
    for (int j = 0; j < XPT; ++j) {
      const int q = tid + j * NT, r = q >> 2, c8 = (q & 3) * 8;
      const int t = t0 + r, ch = c0 + c8;
      if (q >= XCH || t >= t_end || ch >= p.D) continue;
      float fz[8], fgo[8], o[8];
      unpack8(*reinterpret_cast<const uint4*>(&s_z[r][c8]), fz);
      unpack8(*reinterpret_cast<const uint4*>(&s_dout[r][c8]), fgo);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const float Dk = ch + k < p.D ? __ldg(p.Dskip + ch + k) : 0.f;
        const float y = fmaf(Dk, s_u[r][c8 + k], s_y[r][c8 + k]);
        const float sig = fmaf(0.5f, tanh_approx(0.5f * fz[k]), 0.5f);
        o[k] = fgo[k] * y * sig * fmaf(fz[k], 1.f - sig, 1.f);
      }
      store8(p.dz + (brow + t) * p.ld_dz + ch, pack8(o), p.D - ch, p.vec_z);
    }
    channel_sum(t0, p.dCm, true);
    __syncthreads();  // s_y and s_h[1..TT] consumed

    // (4) reverse recurrence over the tile
#pragma unroll 1
    for (int s0 = TT - LANES; s0 >= 0; s0 -= LANES) {
      float gBp[LANES], gAqp[LANES];
#pragma unroll
      for (int j = LANES - 1; j >= 0; --j) {
        const int s = s0 + j;
        const float dl = s_delta[s][cl];
        const float dlu = dl * s_u[s][cl];
        const float dyv = s_dy[s][cl];
        const float4 b4 = *reinterpret_cast<const float4*>(&s_B[s][sub * SPL]);
        const float4 c4 = *reinterpret_cast<const float4*>(&s_C[s][sub * SPL]);
        const float4 hp4 = *reinterpret_cast<const float4*>(&s_h[s][cl][sub * SPL]);
        const float bv[SPL] = {b4.x, b4.y, b4.z, b4.w}, cv[SPL] = {c4.x, c4.y, c4.z, c4.w};
        const float hp[SPL] = {hp4.x, hp4.y, hp4.z, hp4.w};
        float gB = 0.f, gAq = 0.f, wv[SPL];
#pragma unroll
        for (int k = 0; k < SPL; ++k) {
          const float a = ex2_approx(dl * A2[k]);
          const float g = fmaf(dyv, cv[k], G[k]);
          const float gq = g * (a * hp[k]);
          gB = fmaf(g, bv[k], gB);
          gAq = fmaf(Ar[k], gq, gAq);
          dAacc[k] = fmaf(gq, dl, dAacc[k]);
          wv[k] = g * dlu;
          G[k] = a * g;
        }
        // slot s + 1 held h_t: read by this thread only (as h_{t-1} of step t + 1, done) and by dCm
        *reinterpret_cast<float4*>(&s_h[s + 1][cl][sub * SPL]) = make_float4(wv[0], wv[1], wv[2], wv[3]);
        gBp[j] = gB;
        gAqp[j] = gAq;
      }
      const float gBs = reduce_scatter<LANES>(gBp, sub);
      const float gAqs = reduce_scatter<LANES>(gAqp, sub);
      const int s = s0 + sub;
      const float dl = s_delta[s][cl], uu = s_u[s][cl], dyv = s_dy[s][cl];
      const float du = fmaf(dyv, Dd, dl * gBs);
      const float sg = 1.f - ex2_approx(-dl * kLog2e);  // sigmoid(x) = 1 - exp(-softplus(x))
      const float ddt = fmaf(uu, gBs, gAqs) * sg;
      dDacc = fmaf(dyv, uu, dDacc);  // zero past the end (dy = 0)
      dbacc += ddt;                  // zero past the end (g = 0, delta = 0)
      s_duo[s][cl] = __float2bfloat16(du);
      s_ddto[s][cl] = __float2bfloat16(ddt);
    }
    __syncthreads();

    // (5) du, ddt rows; dBm
#pragma unroll
    for (int j = 0; j < XPT; ++j) {
      const int q = tid + j * NT, r = q >> 2, c8 = (q & 3) * 8;
      const int t = t0 + r, ch = c0 + c8;
      if (q >= XCH || t >= t_end || ch >= p.D) continue;
      store8(p.du + (brow + t) * p.D + ch, *reinterpret_cast<const uint4*>(&s_duo[r][c8]), p.D - ch, p.vec_x);
      store8(p.ddt + (brow + t) * p.D + ch, *reinterpret_cast<const uint4*>(&s_ddto[r][c8]), p.D - ch, p.vec_x);
    }
    channel_sum(t0, p.dBm, false);
  }

  // per-channel sums over the 4 threads of a channel, then one atomic per block and channel
  dDacc += __shfl_xor_sync(0xffffffffu, dDacc, 1);
  dDacc += __shfl_xor_sync(0xffffffffu, dDacc, 2);
  dbacc += __shfl_xor_sync(0xffffffffu, dbacc, 1);
  dbacc += __shfl_xor_sync(0xffffffffu, dbacc, 2);
  if (!dvalid) return;
  if (p.h0 && chunk == 0)
    *reinterpret_cast<float4*>(p.dh0 + (int64_t(b) * p.D + d) * kN + sub * SPL) = make_float4(G[0], G[1], G[2], G[3]);
  atomic_add4(p.dA + d * kN + sub * SPL, make_float4(dAacc[0], dAacc[1], dAacc[2], dAacc[3]), true);
  if (sub == 0) {
    atomicAdd(p.dDskip + d, dDacc);
    atomicAdd(p.ddt_bias + d, dbacc);
  }
}

// Pass 1 of versions 4-5: for every chunk but the first, the carry a g at its start when nothing
// flows in from its end (g_t = dy_t Cm_t + a_{t+1} g_{t+1}, reversed over the chunk from zero), and
// the chunk's sum of delta. One exponential per (t, d, n); no states, no u, no B.
template <int TT>
__global__ void __launch_bounds__(kTileC* kLanes) bwd_chunk_local_kernel(BwdParams p) {
  constexpr int LANES = kLanes;
  constexpr int NT = kTileC * LANES;
  constexpr int SPL = kN / LANES;
  constexpr int XCH = TT * kTileC / 8;
  constexpr int XPT = (XCH + NT - 1) / NT;
  constexpr int CCH = TT * kN / 8;
  constexpr int CPT = (CCH + NT - 1) / NT;
  __shared__ __align__(16) float s_delta[TT][kTileC];
  __shared__ __align__(16) float s_dy[TT][kTileC];
  __shared__ __align__(16) float s_C[TT][kN];

  const int b = blockIdx.z, chunk = blockIdx.y + 1, c0 = blockIdx.x * kTileC;
  const int tid = threadIdx.x, cl = tid / LANES, sub = tid % LANES;
  const int d = c0 + cl;
  const bool dvalid = d < p.D;
  const int64_t brow = int64_t(b) * p.L;
  const int t_begin = chunk * p.chunk_len;
  const int t_end = min(p.L, t_begin + p.chunk_len);

  float A2[SPL], G[SPL];
#pragma unroll
  for (int k = 0; k < SPL; ++k) {
    A2[k] = dvalid ? p.A[d * kN + sub * SPL + k] * kLog2e : 0.f;
    G[k] = 0.f;
  }
  float dsum = 0.f;

  uint4 r_dt[XPT], r_z[XPT], r_go[XPT], r_c[CPT];
  auto load_tile = [&](int t0) {
#pragma unroll
    for (int j = 0; j < XPT; ++j) {
      const int q = tid + j * NT, r = q >> 2, c8 = (q & 3) * 8;
      const int t = t0 + r, ch = c0 + c8;
      const bool ok = q < XCH && t < t_end;
      const int64_t row = brow + t;
      r_dt[j] = load8(p.dt + row * p.D + ch, ok, p.D - ch, p.vec_x);
      r_go[j] = load8(p.dout + row * p.D + ch, ok, p.D - ch, p.vec_x);
      r_z[j] = load8(p.z + row * p.ld_z + ch, ok, p.D - ch, p.vec_z);
    }
#pragma unroll
    for (int j = 0; j < CPT; ++j) {
      const int i = tid + j * NT, r = i >> 1, n8 = (i & 1) * 8;
      const int t = t0 + r;
      r_c[j] = load8(p.Cm + (brow + t) * p.ld_bc + n8, i < CCH && t < t_end, 8, p.vec_bc);
    }
  };
  auto store_tile = [&](int t0) {
#pragma unroll
    for (int j = 0; j < XPT; ++j) {
      const int q = tid + j * NT, r = q >> 2, c8 = (q & 3) * 8;
      if (q >= XCH) continue;
      const bool ok = t0 + r < t_end;
      float fdt[8], fz[8], fgo[8], dl[8], dy[8];
      unpack8(r_dt[j], fdt);
      unpack8(r_z[j], fz);
      unpack8(r_go[j], fgo);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const int ch = c0 + c8 + k;
        const float bias = ch < p.D ? __ldg(p.dt_bias + ch) : 0.f;
        dl[k] = ok ? softplus_fast(fdt[k] + bias) : 0.f;
        dy[k] = fgo[k] * silu_fast(fz[k]);
      }
      float4* sd = reinterpret_cast<float4*>(&s_delta[r][c8]);
      sd[0] = make_float4(dl[0], dl[1], dl[2], dl[3]);
      sd[1] = make_float4(dl[4], dl[5], dl[6], dl[7]);
      float4* sy = reinterpret_cast<float4*>(&s_dy[r][c8]);
      sy[0] = make_float4(dy[0], dy[1], dy[2], dy[3]);
      sy[1] = make_float4(dy[4], dy[5], dy[6], dy[7]);
    }
#pragma unroll
    for (int j = 0; j < CPT; ++j) {
      const int i = tid + j * NT, r = i >> 1, n8 = (i & 1) * 8;
      if (i >= CCH) continue;
      float f[8];
      unpack8(r_c[j], f);
      reinterpret_cast<float4*>(&s_C[r][n8])[0] = make_float4(f[0], f[1], f[2], f[3]);
      reinterpret_cast<float4*>(&s_C[r][n8])[1] = make_float4(f[4], f[5], f[6], f[7]);
    }
  };

  const int ntiles = (t_end - t_begin + TT - 1) / TT;
  load_tile(t_begin + (ntiles - 1) * TT);
  for (int it = ntiles - 1; it >= 0; --it) {
    const int t0 = t_begin + it * TT;
    __syncthreads();
    store_tile(t0);
    __syncthreads();
    if (it > 0) load_tile(t0 - TT);
#pragma unroll 4
    for (int s = TT - 1; s >= 0; --s) {
      const float dl = s_delta[s][cl], dyv = s_dy[s][cl];
      const float4 c4 = *reinterpret_cast<const float4*>(&s_C[s][sub * SPL]);
      const float cv[SPL] = {c4.x, c4.y, c4.z, c4.w};
#pragma unroll
      for (int k = 0; k < SPL; ++k) G[k] = ex2_approx(dl * A2[k]) * fmaf(dyv, cv[k], G[k]);
      dsum += dl;
    }
  }
  if (!dvalid) return;
  const int64_t base = (int64_t(b) * p.nchunks + chunk) * p.D + d;
  *reinterpret_cast<float4*>(p.chunk_G + base * kN + sub * SPL) = make_float4(G[0], G[1], G[2], G[3]);
  if (sub == 0) p.chunk_dsum[base] = dsum;
}

// Pass 2 of versions 4-5: one thread per (b, d, n) walks the chunks from last to first.
//   carry into the end of chunk nchunks-1 = 0; carry into the end of chunk c-1 = exp(A dsum_c) carry_c + local_c
// chunk_G[c] holds local_c on entry (c >= 1) and the carry into the end of chunk c on exit.
__global__ void bwd_chunk_carry_kernel(BwdParams p) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= int64_t(p.B) * p.D * kN) return;
  const int n = idx % kN;
  const int d = (idx / kN) % p.D;
  const int b = idx / (int64_t(kN) * p.D);
  const float A2 = p.A[d * kN + n] * kLog2e;
  float gc = 0.f;
  for (int c = p.nchunks - 1; c >= 1; --c) {
    const int64_t base = (int64_t(b) * p.nchunks + c) * p.D + d;
    const float local = p.chunk_G[base * kN + n];
    p.chunk_G[base * kN + n] = gc;
    gc = fmaf(ex2_approx(A2 * p.chunk_dsum[base]), gc, local);
  }
  p.chunk_G[(int64_t(b) * p.nchunks * p.D + d) * kN + n] = gc;
}

// =================================================================================================
// Launchers
// =================================================================================================
constexpr int kNumVersions = 7;

// The checkpoint interval each version needs from the forward.
static int version_ck(int version) { return version <= 2 || version == 4 ? 32 : 16; }
static bool version_chunked(int version) { return version == 4 || version == 5 || version == 7; }
static int version_tt(int version) { return version_ck(version); }

struct BwdWorkspace {
  float* chunk_G = nullptr;
  float* chunk_dsum = nullptr;
  size_t capacity_chunks = 0;
  ~BwdWorkspace() {
    if (chunk_G) cudaFree(chunk_G);
    if (chunk_dsum) cudaFree(chunk_dsum);
  }
};

static int g_force_bwd_chunks = 0;  // --chunks N (versions 4, 5)

// The chunk count for versions 4-5, from the forward's kind of model: the time of each pass is (waves
// of blocks) x (steps per chunk); a wave is the blocks that fit on the GPU at once (shared memory
// bounds v4 to 2 blocks per SM, v5 to 4); pass 1 costs about 0.4 of pass 3 (one exponential
// instead of two and much less else) and fits 6 blocks per SM.
static int pick_bwd_chunks(int tt, int B, int L, int D, int num_sms) {
  const double slots3 = double(num_sms) * (tt == 32 ? 2 : 4), slots1 = double(num_sms) * 6;
  const int base = B * ((D + kTileC - 1) / kTileC);
  int best = 1;
  double best_cost = 1e300;
  for (int c = 1; c <= 64; ++c) {
    const int len = ((L + c - 1) / c + tt - 1) / tt * tt;
    const int nch = (L + len - 1) / len;
    if (nch != c) continue;
    const double cost = double(len) * (std::ceil(base * nch / slots3) + 0.4 * std::ceil(base * (nch - 1) / slots1));
    if (cost < best_cost * 0.97) best_cost = cost, best = c;
  }
  return best;
}

// nchunks 1: one pass. More: pass 1 (local carries), pass 2 (true carries), pass 3 (everything).
template <int TT, bool SPLIT>
static void launch_bwd_tiled(BwdParams p, BwdWorkspace& ws, int nchunks) {
  static bool configured = false;
  if (!configured) {
    CUDA_CHECK(cudaFuncSetAttribute(bwd_tiled_kernel<TT, SPLIT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(BwdSmem<TT>::kBytes)));
    configured = true;
  }
  const int len = ((p.L + nchunks - 1) / nchunks + TT - 1) / TT * TT;
  p.chunk_len = len;
  p.nchunks = (p.L + len - 1) / len;
  if (p.nchunks > 1) {
    const size_t need = size_t(p.B) * p.nchunks;
    if (need > ws.capacity_chunks) {
      if (ws.chunk_G) CUDA_CHECK(cudaFree(ws.chunk_G));
      if (ws.chunk_dsum) CUDA_CHECK(cudaFree(ws.chunk_dsum));
      ws.chunk_G = device_alloc<float>(need * p.D * kN);
      ws.chunk_dsum = device_alloc<float>(need * p.D);
      ws.capacity_chunks = need;
    }
    p.chunk_G = ws.chunk_G;
    p.chunk_dsum = ws.chunk_dsum;
    dim3 grid1((p.D + kTileC - 1) / kTileC, p.nchunks - 1, p.B);
    bwd_chunk_local_kernel<TT><<<grid1, kTileC * kLanes>>>(p);
    CUDA_CHECK_LAUNCH();
    const int64_t n2 = int64_t(p.B) * p.D * kN;
    bwd_chunk_carry_kernel<<<(n2 + 255) / 256, 256>>>(p);
    CUDA_CHECK_LAUNCH();
  }
  dim3 grid((p.D + kTileC - 1) / kTileC, p.nchunks, p.B);
  bwd_tiled_kernel<TT, SPLIT><<<grid, kTileC * kLanes, BwdSmem<TT>::kBytes>>>(p);
  CUDA_CHECK_LAUNCH();
}

// Zeroes the reduced outputs (the model would accumulate into gradient buffers) and runs the version.
static void run_backward(int version, BwdParams p, BwdWorkspace& ws, int num_sms) {
  p.vec_x =
      p.D % 8 == 0 && aligned16(p.u) && aligned16(p.dt) && aligned16(p.dout) && aligned16(p.du) && aligned16(p.ddt);
  p.vec_z = p.ld_z % 8 == 0 && p.ld_dz % 8 == 0 && aligned16(p.z) && aligned16(p.dz);
  p.vec_bc = p.ld_bc % 8 == 0 && aligned16(p.Bm) && aligned16(p.Cm);
  p.vec_dbc = p.ld_dbc % 4 == 0 && aligned16(p.dBm) && aligned16(p.dCm);
  if (!aligned16(p.dA) || !aligned16(p.ckpt) || (p.dh0 && !aligned16(p.dh0))) {
    std::fprintf(stderr, "dA, ckpt and dh0 must be 16-byte aligned\n");
    std::exit(2);
  }
  p.nck = (p.L + p.ck_len - 1) / p.ck_len;
  CUDA_CHECK(cudaMemsetAsync(p.dA, 0, size_t(p.D) * kN * sizeof(float)));
  CUDA_CHECK(cudaMemsetAsync(p.dDskip, 0, size_t(p.D) * sizeof(float)));
  CUDA_CHECK(cudaMemsetAsync(p.ddt_bias, 0, size_t(p.D) * sizeof(float)));
  const size_t pitch = size_t(p.ld_dbc) * sizeof(float), rows = size_t(p.B) * p.L;
  CUDA_CHECK(cudaMemset2DAsync(p.dBm, pitch, 0, kN * sizeof(float), rows));
  CUDA_CHECK(cudaMemset2DAsync(p.dCm, pitch, 0, kN * sizeof(float), rows));
  switch (version) {
    case 1: {
      if (p.ck_len > kV1MaxCk) {
        std::fprintf(stderr, "v1: checkpoint interval %d > %d\n", p.ck_len, kV1MaxCk);
        std::exit(2);
      }
      const int n = p.B * p.D;
      bwd_v1_kernel<<<(n + 127) / 128, 128>>>(p);
      CUDA_CHECK_LAUNCH();
      break;
    }
    case 2:
    case 3:
    case 4:
    case 5:
    case 6:
    case 7: {
      if (p.ck_len != version_ck(version)) {
        std::fprintf(stderr, "v%d needs checkpoints every %d steps, got %d\n", version, version_ck(version), p.ck_len);
        std::exit(2);
      }
      const int tt = version_tt(version);
      const int nch = !version_chunked(version) ? 1
                      : g_force_bwd_chunks > 0  ? g_force_bwd_chunks
                                                : pick_bwd_chunks(tt, p.B, p.L, p.D, num_sms);
      if (version >= 6)
        launch_bwd_tiled<16, true>(p, ws, nch);
      else if (tt == 32)
        launch_bwd_tiled<32, false>(p, ws, nch);
      else
        launch_bwd_tiled<16, false>(p, ws, nch);
      break;
    }
    default:
      std::fprintf(stderr, "no version %d\n", version);
      std::exit(2);
  }
}

// =================================================================================================
// Check and timing
// =================================================================================================
struct ScanHost {
  int B, L, D;
  int64_t ld_z, ld_bc, b_off, c_off;
  bool use_h0;
  std::vector<float> u, dt, z, bc, A, Dskip, dt_bias, h0, dout;  // bf16-rounded where the GPU gets bf16
};

static ScanHost make_host_problem(int B, int L, int D, int64_t ld_z, int64_t ld_bc, int64_t b_off, int64_t c_off,
                                  bool use_h0, uint64_t seed) {
  HostRng rng(seed);
  ScanHost s;
  s.B = B, s.L = L, s.D = D, s.ld_z = ld_z, s.ld_bc = ld_bc, s.b_off = b_off, s.c_off = c_off, s.use_h0 = use_h0;
  s.u = host_random_bf(size_t(B) * L * D, rng, -1.f, 1.f);
  s.dt = host_random_bf(size_t(B) * L * D, rng, -1.f, 1.f);
  s.z = host_random_bf(size_t(B) * L * ld_z, rng, -2.f, 2.f);
  s.bc = host_random_bf(size_t(B) * L * ld_bc, rng, -1.f, 1.f);
  s.dout = host_random_bf(size_t(B) * L * D, rng, -1.f, 1.f);
  s.A.resize(size_t(D) * kN);
  for (int d = 0; d < D; ++d)
    for (int n = 0; n < kN; ++n) s.A[size_t(d) * kN + n] = -float(n + 1) * rng.uniform(0.8f, 1.2f);
  s.Dskip = host_random_f(D, rng, 0.5f, 1.5f);
  s.dt_bias.resize(D);
  for (int d = 0; d < D; ++d) {
    const double dt0 = std::exp(std::log(1e-3) + rng.uniform(0.f, 1.f) * (std::log(1e-1) - std::log(1e-3)));
    s.dt_bias[d] = float(std::log(std::expm1(dt0)));
  }
  for (int d = 0; d < D; d += 17) s.dt_bias[d] = 19.5f;  // softplus pass-through and fast decay
  s.h0 = use_h0 ? host_random_f(size_t(B) * D * kN, rng, -1.f, 1.f) : std::vector<float>();
  return s;
}

static RefProblem to_ref(const ScanHost& s) {
  RefProblem p;
  p.B = s.B, p.L = s.L, p.D = s.D, p.use_h0 = s.use_h0;
  auto cp = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
  p.u = cp(s.u), p.dt = cp(s.dt), p.dout = cp(s.dout), p.A = cp(s.A), p.Dskip = cp(s.Dskip);
  p.dt_bias = cp(s.dt_bias), p.h0 = cp(s.h0);
  const size_t rows = size_t(s.B) * s.L;
  p.z.resize(rows * s.D);
  p.Bm.resize(rows * kN);
  p.Cm.resize(rows * kN);
  for (size_t r = 0; r < rows; ++r) {
    for (int d = 0; d < s.D; ++d) p.z[r * s.D + d] = s.z[r * s.ld_z + d];
    for (int n = 0; n < kN; ++n) {
      p.Bm[r * kN + n] = s.bc[r * s.ld_bc + s.b_off + n];
      p.Cm[r * kN + n] = s.bc[r * s.ld_bc + s.c_off + n];
    }
  }
  return p;
}

// Columns [off, off + width) of `rows` rows of stride ld.
static std::vector<float> gather_cols(const std::vector<float>& v, size_t rows, int64_t ld, int64_t off, int width) {
  std::vector<float> r(rows * width);
  for (size_t i = 0; i < rows; ++i)
    for (int j = 0; j < width; ++j) r[i * width + j] = v[i * ld + off + j];
  return r;
}

struct Layout {  // output views
  int64_t ld_dz, ld_dbc, db_off, dc_off;
};

static bool report(const char* name, const ErrorReport& e, double tol, bool& all) {
  const bool ok = e.ok(tol);
  all &= ok;
  std::printf("  %-8s rel %.2e max_abs %.2e nonfinite %zu (tol %.0e) %s\n", name, e.rel_l2, e.max_abs, e.nonfinite, tol,
              ok ? "OK" : "FAIL");
  return ok;
}

static bool check_version(int version, int num_sms, const ScanHost& s, const Layout& lay, const char* label,
                          int force_chunks = 0) {
  const int ck = version_ck(version);
  const RefProblem rp = to_ref(s);
  std::vector<double> ref_out, ref_hl, ref_ck;
  ref_forward(rp, ck, ref_out, ref_hl, &ref_ck);
  RefGrads rg;
  ref_backward(rp, rg);

  const int B = s.B, L = s.L, D = s.D, nck = (L + ck - 1) / ck;
  const size_t BLD = size_t(B) * L * D, rows = size_t(B) * L;
  bf16* u = device_upload_bf(s.u);
  bf16* dt = device_upload_bf(s.dt);
  bf16* z = device_upload_bf(s.z);
  bf16* bc = device_upload_bf(s.bc);
  bf16* dout = device_upload_bf(s.dout);
  float* A = device_upload_f(s.A);
  float* Dskip = device_upload_f(s.Dskip);
  float* dt_bias = device_upload_f(s.dt_bias);
  float* h0 = s.use_h0 ? device_upload_f(s.h0) : nullptr;
  bf16* out = device_alloc<bf16>(BLD);
  float* h_last = device_alloc<float>(size_t(B) * D * kN);
  float* ckpt = device_alloc<float>(size_t(B) * nck * D * kN);
  bf16* du = device_alloc<bf16>(BLD);
  bf16* ddt = device_alloc<bf16>(BLD);
  bf16* dz = device_alloc<bf16>(rows * lay.ld_dz);
  float* dA = device_alloc<float>(size_t(D) * kN);
  float* dD = device_alloc<float>(D);
  float* dbias = device_alloc<float>(D);
  float* dbc = device_alloc<float>(rows * lay.ld_dbc);
  float* dh0 = device_alloc<float>(size_t(B) * D * kN);
  // NaN everywhere, so an element left unwritten fails (the launcher zeroes the reduced outputs).
  device_poison_bf16(out, BLD);
  device_poison_bf16(du, BLD);
  device_poison_bf16(ddt, BLD);
  device_poison_bf16(dz, rows * lay.ld_dz);
  for (auto [ptr, n] : {std::pair<float*, size_t>{h_last, size_t(B) * D * kN},
                        {ckpt, size_t(B) * nck * D * kN},
                        {dA, size_t(D) * kN},
                        {dD, size_t(D)},
                        {dbias, size_t(D)},
                        {dbc, rows * lay.ld_dbc},
                        {dh0, size_t(B) * D * kN}})
    CUDA_CHECK(cudaMemset(ptr, 0xff, n * sizeof(float)));

  FwdParams fp{};
  fp.out = out, fp.h_last = h_last, fp.ckpt = ckpt, fp.ck_len = ck;
  fp.u = u, fp.dt = dt, fp.z = z, fp.ld_z = s.ld_z, fp.Bm = bc + s.b_off, fp.Cm = bc + s.c_off, fp.ld_bc = s.ld_bc;
  fp.A = A, fp.Dskip = Dskip, fp.dt_bias = dt_bias, fp.h0 = h0, fp.B = B, fp.L = L, fp.D = D;
  FwdWorkspace ws;
  run_forward(fp, ws, num_sms);
  CUDA_CHECK(cudaDeviceSynchronize());

  BwdParams bp{};
  bp.du = du, bp.ddt = ddt, bp.dz = dz, bp.ld_dz = lay.ld_dz, bp.dA = dA, bp.dDskip = dD, bp.ddt_bias = dbias;
  bp.dBm = dbc + lay.db_off, bp.dCm = dbc + lay.dc_off, bp.ld_dbc = lay.ld_dbc, bp.dh0 = h0 ? dh0 : nullptr;
  bp.dout = dout, bp.u = u, bp.dt = dt, bp.z = z, bp.ld_z = s.ld_z, bp.Bm = bc + s.b_off, bp.Cm = bc + s.c_off;
  bp.ld_bc = s.ld_bc, bp.A = A, bp.Dskip = Dskip, bp.dt_bias = dt_bias, bp.h0 = h0, bp.ckpt = ckpt, bp.ck_len = ck;
  bp.B = B, bp.L = L, bp.D = D;
  BwdWorkspace bws;
  const int saved = g_force_bwd_chunks;
  g_force_bwd_chunks = force_chunks;
  run_backward(version, bp, bws, num_sms);
  g_force_bwd_chunks = saved;
  CUDA_CHECK(cudaDeviceSynchronize());

  std::printf("check v%d %s", version, label);
  if (version_chunked(version))
    std::printf(" (%d chunks)", force_chunks ? force_chunks : pick_bwd_chunks(version_tt(version), B, L, D, num_sms));
  std::printf("\n");
  bool ok = true;
  report("out", compare(device_download_bf(out, BLD), ref_out), 1e-2, ok);
  report("h_last", compare(device_download_f(h_last, size_t(B) * D * kN), ref_hl), 1e-3, ok);
  report("ckpt", compare(device_download_f(ckpt, size_t(B) * nck * D * kN), ref_ck), 1e-3, ok);
  report("du", compare(device_download_bf(du, BLD), rg.du), 1e-2, ok);
  report("ddt", compare(device_download_bf(ddt, BLD), rg.ddt), 1e-2, ok);
  report("dz", compare(gather_cols(device_download_bf(dz, rows * lay.ld_dz), rows, lay.ld_dz, 0, D), rg.dz), 1e-2, ok);
  report("dA", compare(device_download_f(dA, size_t(D) * kN), rg.dA), 5e-3, ok);
  report("dDskip", compare(device_download_f(dD, D), rg.dDskip), 5e-3, ok);
  report("ddt_bias", compare(device_download_f(dbias, D), rg.ddt_bias), 5e-3, ok);
  const std::vector<float> hdbc = device_download_f(dbc, rows * lay.ld_dbc);
  report("dBm", compare(gather_cols(hdbc, rows, lay.ld_dbc, lay.db_off, kN), rg.dBm), 5e-3, ok);
  report("dCm", compare(gather_cols(hdbc, rows, lay.ld_dbc, lay.dc_off, kN), rg.dCm), 5e-3, ok);
  if (s.use_h0) report("dh0", compare(device_download_f(dh0, size_t(B) * D * kN), rg.dh0), 2e-3, ok);
  std::printf("  => %s\n", ok ? "OK" : "FAIL");
  for (void* ptr : {(void*)u,       (void*)dt, (void*)z,   (void*)bc,     (void*)dout, (void*)A,  (void*)Dskip,
                    (void*)dt_bias, (void*)h0, (void*)out, (void*)h_last, (void*)ckpt, (void*)du, (void*)ddt,
                    (void*)dz,      (void*)dA, (void*)dD,  (void*)dbias,  (void*)dbc,  (void*)dh0})
    if (ptr) CUDA_CHECK(cudaFree(ptr));
  return ok;
}

// Returns a bit per version that passed every check (bit v); bit 0: the reference's own check.
static unsigned check_all(int version, int num_sms) {
  unsigned passed = check_reference_by_finite_differences() ? 1u : 0u;
  // odd shape, scalar paths (D % 8 != 0, odd strides, dBm/dCm at odd offsets), h0 / dh0, 11 checkpoints
  const ScanHost s1 = make_host_problem(2, 333, 97, 97 + 3, 2 * kN + 5, 3, 3 + kN + 1, true, 1234);
  const Layout l1{97 + 5, 2 * kN + 7, 1, 1 + kN + 3};
  // aligned shape, 16-byte paths, z and dz views into [.., 2D] rows, B/C and dB/dC at the model's offsets
  const ScanHost s2 = make_host_problem(1, 1000, 256, 2 * 256, 128, 96, 112, false, 99);
  const Layout l2{2 * 256, 48, 16, 32};
  // a short sequence (one partial tile) with h0, and 3 batches
  const ScanHost s3 = make_host_problem(3, 13, 40, 40, 2 * kN, 0, kN, true, 7);
  const Layout l3{40, 2 * kN, 0, kN};
  for (int v = 1; v <= kNumVersions; ++v) {
    if (version && v != version) continue;
    bool ok = check_version(v, num_sms, s1, l1, "B2 L333 D97 h0, odd strides and offsets");
    ok &= check_version(v, num_sms, s2, l2, "B1 L1000 D256 aligned views");
    ok &= check_version(v, num_sms, s3, l3, "B3 L13 D40 h0");
    if (version_chunked(v)) {  // chunk counts forced: carries across 3 and 7 chunks, partial last chunk
      ok &= check_version(v, num_sms, s1, l1, "B2 L333 D97 h0, odd strides", 3);
      ok &= check_version(v, num_sms, s2, l2, "B1 L1000 D256 aligned", 7);
    }
    if (ok) passed |= 1u << v;
  }
  return passed;
}

struct TimingRow {
  std::string kernel, shape, version;
  float ms;
};

static void time_shape(int B, int L, int D, unsigned passed, int num_sms, std::vector<TimingRow>& rows) {
  const size_t n = size_t(B) * L * D;
  bf16* u = device_alloc<bf16>(n);
  bf16* dt = device_alloc<bf16>(n);
  bf16* z = device_alloc<bf16>(n);
  bf16* dout = device_alloc<bf16>(n);
  bf16* out = device_alloc<bf16>(n);
  bf16* du = device_alloc<bf16>(n);
  bf16* ddt = device_alloc<bf16>(n);
  bf16* dz = device_alloc<bf16>(n);
  bf16* bc = device_alloc<bf16>(size_t(B) * L * 2 * kN);
  float* dbc = device_alloc<float>(size_t(B) * L * 2 * kN);
  float* dA = device_alloc<float>(size_t(D) * kN);
  float* dD = device_alloc<float>(D);
  float* dbias = device_alloc<float>(D);
  const int min_ck = 16;
  float* ckpt = device_alloc<float>(size_t(B) * ((L + min_ck - 1) / min_ck) * D * kN);
  device_fill_uniform_bf16(u, n, 1, -1.f, 1.f);
  device_fill_uniform_bf16(dt, n, 2, -1.f, 1.f);
  device_fill_uniform_bf16(z, n, 3, -2.f, 2.f);
  device_fill_uniform_bf16(dout, n, 6, -1.f, 1.f);
  device_fill_uniform_bf16(bc, size_t(B) * L * 2 * kN, 4, -1.f, 1.f);
  HostRng rng(5);
  std::vector<float> hA(size_t(D) * kN), hDs = host_random_f(D, rng, 0.5f, 1.5f), hbias(D);
  for (int d = 0; d < D; ++d) {
    for (int nn = 0; nn < kN; ++nn) hA[size_t(d) * kN + nn] = -float(nn + 1) * rng.uniform(0.8f, 1.2f);
    hbias[d] = float(std::log(std::expm1(std::exp(std::log(1e-3) + rng.uniform(0.f, 1.f) * std::log(100.0)))));
  }
  float* A = device_upload_f(hA);
  float* Dskip = device_upload_f(hDs);
  float* dt_bias = device_upload_f(hbias);

  FwdParams fp{};
  fp.out = out, fp.h_last = nullptr, fp.ckpt = ckpt;
  fp.u = u, fp.dt = dt, fp.z = z, fp.ld_z = D, fp.Bm = bc, fp.Cm = bc + kN, fp.ld_bc = 2 * kN;
  fp.A = A, fp.Dskip = Dskip, fp.dt_bias = dt_bias, fp.h0 = nullptr, fp.B = B, fp.L = L, fp.D = D;
  BwdParams bp{};
  bp.du = du, bp.ddt = ddt, bp.dz = dz, bp.ld_dz = D, bp.dA = dA, bp.dDskip = dD, bp.ddt_bias = dbias;
  bp.dBm = dbc, bp.dCm = dbc + kN, bp.ld_dbc = 2 * kN, bp.dh0 = nullptr;
  bp.dout = dout, bp.u = u, bp.dt = dt, bp.z = z, bp.ld_z = D, bp.Bm = bc, bp.Cm = bc + kN, bp.ld_bc = 2 * kN;
  bp.A = A, bp.Dskip = Dskip, bp.dt_bias = dt_bias, bp.h0 = nullptr, bp.ckpt = ckpt;
  bp.B = B, bp.L = L, bp.D = D;
  FwdWorkspace ws;
  BwdWorkspace bws;
  char shape[64];
  std::snprintf(shape, sizeof shape, "B%d L%d D%d N%d", B, L, D, kN);

  for (int ck : {32, 16}) {
    fp.ck_len = ck;
    const float ms = time_median_ms([&] { run_forward(fp, ws, num_sms); });
    std::printf("time  fwd+ckpt%-2d %-22s median %8.3f ms  (fwd chunks %d)\n", ck, shape, ms,
                pick_fwd_chunks(B, L, D, num_sms));
    rows.push_back({"selective_scan_fwd_ckpt", shape, "ck" + std::to_string(ck), ms});
  }
  for (int v = 2; v <= kNumVersions; ++v) {  // v1 is far too slow here (scalar atomics for dBm/dCm)
    if (!(passed >> v & 1)) continue;
    fp.ck_len = bp.ck_len = version_ck(v);
    run_forward(fp, ws, num_sms);
    device_poison_bf16(du, n);
    const float ms_b = time_median_ms([&] { run_backward(v, bp, bws, num_sms); });
    std::vector<bf16> probe(4096);
    CUDA_CHECK(cudaMemcpy(probe.data(), du, probe.size() * sizeof(bf16), cudaMemcpyDeviceToHost));
    size_t bad = 0;
    for (auto x : probe) bad += !std::isfinite(host_bf2f(x));
    const float ms_fb = time_median_ms([&] {
      run_forward(fp, ws, num_sms);
      run_backward(v, bp, bws, num_sms);
    });
    const double exps = double(n) * kN * 2;
    std::printf("time  v%d bwd     %-22s median %8.3f ms   %6.1f G exp2/s  %s\n", v, shape, ms_b, exps / ms_b * 1e-6,
                bad ? "UNWRITTEN OUTPUT" : "");
    std::printf("time  v%d fwd+bwd %-22s median %8.3f ms\n", v, shape, ms_fb);
    if (version_chunked(v))
      std::printf("      v%d backward chunks at this shape: %d\n", v,
                  g_force_bwd_chunks > 0 ? g_force_bwd_chunks : pick_bwd_chunks(version_tt(v), B, L, D, num_sms));
    rows.push_back({"selective_scan_bwd", shape, "v" + std::to_string(v), ms_b});
    rows.push_back({"selective_scan_fwd_bwd", shape, "v" + std::to_string(v), ms_fb});
  }
  for (void* ptr :
       {(void*)u, (void*)dt, (void*)z, (void*)dout, (void*)out, (void*)du, (void*)ddt, (void*)dz, (void*)bc, (void*)dbc,
        (void*)dA, (void*)dD, (void*)dbias, (void*)ckpt, (void*)A, (void*)Dskip, (void*)dt_bias})
    CUDA_CHECK(cudaFree(ptr));
}

int main(int argc, char** argv) {
  int version = 0;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--check-only")
      check_only = true;
    else if (a == "--chunks" && i + 1 < argc)
      g_force_bwd_chunks = std::atoi(argv[++i]);
    else
      version = std::atoi(a.c_str());
  }
  int dev = 0;
  CUDA_CHECK(cudaSetDevice(dev));
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  std::printf("device: %s, %d SMs, sm_%d%d\n", prop.name, prop.multiProcessorCount, prop.major, prop.minor);

  const unsigned passed = check_all(version, prop.multiProcessorCount);
  const unsigned wanted = 1u | (version ? 1u << version : ((1u << (kNumVersions + 1)) - 2));
  const bool ok = passed == wanted;
  std::printf("checks: %s\n", ok ? "all passed" : "FAILED (failing versions are not timed)");
  if (check_only) return ok ? 0 : 1;

  std::vector<TimingRow> rows;
  time_shape(4, 4096, 3072, passed, prop.multiProcessorCount, rows);
  time_shape(1, 65536, 3072, passed, prop.multiProcessorCount, rows);
  std::printf("\n");
  for (const auto& r : rows)
    std::printf("RESULT|%s|%s|%s|%.4f\n", r.kernel.c_str(), r.shape.c_str(), r.version.c_str(), r.ms);
  return ok ? 0 : 1;
}
