// Causal depthwise conv1d + bias + SiLU backward, bf16 activations, fp32 weights: development file.
//
// The forward (causal_conv1d_forward.cu), with xx = x preceded by the K-1 rows of `state`:
//   pre[b, t, d] = bias[d] + sum_{j<K} w[d, j] * xx[b, t - (K-1) + j, d],   out = silu(pre)
// The backward, given dout [B, L, D] and the saved x (pre is recomputed, not stored):
//   g[b, t, d]   = dout[b, t, d] * silu'(pre[b, t, d]),  silu'(v) = s(v) (1 + v (1 - s(v))), s = sigmoid
//   dbias[d]     = sum_{b, t} g[b, t, d]
//   dw[d, j]     = sum_{b, t} g[b, t, d] * xx[b, t - (K-1) + j, d]
//   dxx[b, r, d] = sum_{j<K, 0 <= r + (K-1) - j < L} w[d, j] * g[b, r + (K-1) - j, d],  r = -(K-1) .. L-1
// dx is dxx at r >= 0 (bf16, rows of stride ld_dx: in the model a view into the in_proj gradient);
// d_state[b, i, d] = dxx[b, i - (K-1), d] (bf16, [B, K-1, D]; written when a state is given and
// d_state is asked for). dweight ([D, K]) and dbias ([D]) are fp32 and overwritten, not accumulated.
//
// Build: nvcc -O3 -arch=sm_90 -std=c++20 -o causal_conv1d_backward causal_conv1d_backward.cu
// Run:   ./causal_conv1d_backward [version] [--check-only]
// (This file includes causal_conv1d_forward.cu, for the forward kernels of the fwd+bwd timing.)
//
// Checks: the double-precision CPU backward is checked against central finite differences of the
// CPU forward on tiny shapes (every x, state, weight and bias element; relative error <= 1e-6).
// GPU versions against the CPU backward: dx and d_state within 1e-2 relative (bf16 outputs),
// dweight and dbias within 1e-3 (fp32 sums of B*L terms); outputs NaN-poisoned first, and the
// columns between D and ld_dx of dx must stay untouched.
//
// Versions:
//   1  plain: one thread per element of dxx (recomputing the K values of g it needs, each from K
//      loads of x), and one thread per channel for dweight/dbias, looping over all of B x L.
//   2  streaming, one pass: a warp owns 256 channels (32 lanes x 8) of one sequence and a run of T
//      steps; the 4 warps of a block take 4 consecutive runs of the same channels. Each lane walks its
//      8 channels down the run and K-1 steps past its end: it recomputes pre and g from x and dout
//      (the next 7 rows of both in flight as cp.async copies into a per-thread ring of 8 slots in
//      shared memory), keeps the last K-1 inputs (bf16, packed) and the last K-1 values of g in
//      registers, so dx[t-(K-1)] is finished at step t and stored then; dweight/dbias accumulate in
//      fp32 registers over the run, are summed over the block's 4 warps in shared memory, and each
//      block writes one partial row; a second small kernel sums the partial rows in a fixed order
//      (deterministic, no atomics).
//   3  as 2 with a 16-slot ring (more rows in flight, fewer blocks per SM).
//   4  as 3 with 4 channels a lane (8-byte accesses, a warp on 128 channels): about half the
//      registers (the weights, window and dweight sums are per channel), so twice the warps per SM.
#define CAUSAL_CONV1D_FORWARD_NO_MAIN
#include "causal_conv1d_forward.cu"

struct BwdParams {
  bf16* dx;             // [B, L] rows of stride ld_dx
  bf16* d_state;        // [B, K-1, D]; nullable
  float* dweight;       // [D, K]
  float* dbias;         // [D]
  float* partial;       // workspace of versions 2-3
  const bf16* dout;     // [B, L, D]
  const bf16* x;        // [B, L] rows of stride ld_x
  const float* w;       // [D, K]
  const float* bias;    // [D]
  const bf16* state;    // [B, K-1, D]; nullable
  int64_t ld_x, ld_dx;
  int B, L, D, K;
  bool vec;             // every access of a lane's channels one aligned vector (see bwd_all_vec)
};

// =================================================================================================
// CPU reference in double, and its finite-difference check.
// =================================================================================================
struct BwdHost {
  int B, L, D, K;
  int64_t ld_x, ld_dx;
  bool use_state;
  std::vector<double> x, w, bias, state, dout;  // x: B*L*ld_x; dout: B*L*D
};
struct BwdGrads {
  std::vector<double> dx, d_state, dw, db;  // dx: [B, L, D] dense
};

static double ref_xx(const BwdHost& s, int b, int r, int d) {
  if (r >= 0) return s.x[(size_t(b) * s.L + r) * s.ld_x + d];
  if (!s.use_state) return 0.0;
  return s.state[(size_t(b) * (s.K - 1) + (s.K - 1) + r) * s.D + d];
}
static double ref_pre(const BwdHost& s, int b, int t, int d) {
  double acc = s.bias[d];
  for (int j = 0; j < s.K; ++j) acc += s.w[size_t(d) * s.K + j] * ref_xx(s, b, t - (s.K - 1) + j, d);
  return acc;
}
// sum over b, t, d of out * dout: the scalar whose gradient the backward computes.
static double ref_loss(const BwdHost& s) {
  double loss = 0;
  for (int b = 0; b < s.B; ++b)
    for (int t = 0; t < s.L; ++t)
      for (int d = 0; d < s.D; ++d) {
        const double v = ref_pre(s, b, t, d);
        loss += v / (1.0 + std::exp(-v)) * s.dout[(size_t(b) * s.L + t) * s.D + d];
      }
  return loss;
}
static void ref_backward(const BwdHost& s, BwdGrads& g) {
  const int K = s.K;
  std::vector<double> gp(size_t(s.B) * s.L * s.D);
  for (int b = 0; b < s.B; ++b)
    for (int t = 0; t < s.L; ++t)
      for (int d = 0; d < s.D; ++d) {
        const double v = ref_pre(s, b, t, d), sg = 1.0 / (1.0 + std::exp(-v));
        const size_t i = (size_t(b) * s.L + t) * s.D + d;
        gp[i] = s.dout[i] * sg * (1.0 + v * (1.0 - sg));
      }
  g.dx.assign(size_t(s.B) * s.L * s.D, 0.0);
  g.d_state.assign(s.use_state ? size_t(s.B) * (K - 1) * s.D : 0, 0.0);
  g.dw.assign(size_t(s.D) * K, 0.0);
  g.db.assign(s.D, 0.0);
  for (int b = 0; b < s.B; ++b)
    for (int t = 0; t < s.L; ++t)
      for (int d = 0; d < s.D; ++d) {
        const double gv = gp[(size_t(b) * s.L + t) * s.D + d];
        g.db[d] += gv;
        for (int j = 0; j < K; ++j) {
          const int r = t - (K - 1) + j;
          g.dw[size_t(d) * K + j] += gv * ref_xx(s, b, r, d);
          const double contrib = s.w[size_t(d) * K + j] * gv;
          if (r >= 0) g.dx[(size_t(b) * s.L + r) * s.D + d] += contrib;
          else if (s.use_state) g.d_state[(size_t(b) * (K - 1) + (K - 1) + r) * s.D + d] += contrib;
        }
      }
}

// Central differences of ref_loss in every input the backward differentiates; returns the largest
// |analytic - numeric| / max(1, |numeric|).
static double finite_difference_error(BwdHost s) {
  BwdGrads g;
  ref_backward(s, g);
  const double h = 1e-6;
  double worst = 0;
  auto probe = [&](std::vector<double>& v, size_t i, double analytic) {
    const double keep = v[i];
    v[i] = keep + h;
    const double up = ref_loss(s);
    v[i] = keep - h;
    const double down = ref_loss(s);
    v[i] = keep;
    const double num = (up - down) / (2 * h);
    worst = std::max(worst, std::fabs(analytic - num) / std::max(1.0, std::fabs(num)));
  };
  for (int b = 0; b < s.B; ++b)
    for (int t = 0; t < s.L; ++t)
      for (int d = 0; d < s.D; ++d)
        probe(s.x, (size_t(b) * s.L + t) * s.ld_x + d, g.dx[(size_t(b) * s.L + t) * s.D + d]);
  for (size_t i = 0; i < g.d_state.size(); ++i) probe(s.state, i, g.d_state[i]);
  for (size_t i = 0; i < g.dw.size(); ++i) probe(s.w, i, g.dw[i]);
  for (size_t i = 0; i < g.db.size(); ++i) probe(s.bias, i, g.db[i]);
  return worst;
}

// =================================================================================================
// Shared device pieces
// =================================================================================================
__device__ __forceinline__ float silu_grad(float v, float dy) {
  const float sg = __fdividef(1.f, 1.f + __expf(-v));
  return dy * sg * fmaf(v, 1.f - sg, 1.f);
}

// =================================================================================================
// Version 1
// =================================================================================================
template <int K>
__device__ float v1_xx(const BwdParams& p, int b, int r, int d) {
  if (r >= 0) return __bfloat162float(p.x[(int64_t(b) * p.L + r) * p.ld_x + d]);
  if (!p.state) return 0.f;
  return __bfloat162float(p.state[(int64_t(b) * (K - 1) + (K - 1) + r) * p.D + d]);
}
template <int K>
__device__ float v1_grad_pre(const BwdParams& p, int b, int t, int d) {
  float acc = p.bias[d];
#pragma unroll
  for (int j = 0; j < K; ++j) acc = fmaf(p.w[d * K + j], v1_xx<K>(p, b, t - (K - 1) + j, d), acc);
  return silu_grad(acc, __bfloat162float(p.dout[(int64_t(b) * p.L + t) * p.D + d]));
}

// One thread per element of dxx (rows -(K-1) .. L-1; the state rows only when d_state is written).
template <int K>
__global__ void conv_bwd_v1_dx_kernel(BwdParams p) {
  const int64_t rows = p.L + K - 1;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= int64_t(p.B) * rows * p.D) return;
  const int d = idx % p.D;
  const int r = int((idx / p.D) % rows) - (K - 1);
  const int b = idx / (int64_t(p.D) * rows);
  const bool to_state = r < 0;
  if (to_state && !(p.state && p.d_state)) return;
  float acc = 0.f;
#pragma unroll
  for (int j = 0; j < K; ++j) {
    const int t = r + (K - 1) - j;
    if (t >= 0 && t < p.L) acc = fmaf(p.w[d * K + j], v1_grad_pre<K>(p, b, t, d), acc);
  }
  if (to_state) p.d_state[(int64_t(b) * (K - 1) + (K - 1) + r) * p.D + d] = __float2bfloat16(acc);
  else p.dx[(int64_t(b) * p.L + r) * p.ld_dx + d] = __float2bfloat16(acc);
}

// One thread per channel: dweight and dbias over every (b, t).
template <int K>
__global__ void conv_bwd_v1_dw_kernel(BwdParams p) {
  const int d = blockIdx.x * blockDim.x + threadIdx.x;
  if (d >= p.D) return;
  float dw[K], db = 0.f;
#pragma unroll
  for (int j = 0; j < K; ++j) dw[j] = 0.f;
  for (int b = 0; b < p.B; ++b)
    for (int t = 0; t < p.L; ++t) {
      const float g = v1_grad_pre<K>(p, b, t, d);
      db += g;
#pragma unroll
      for (int j = 0; j < K; ++j) dw[j] = fmaf(g, v1_xx<K>(p, b, t - (K - 1) + j, d), dw[j]);
    }
#pragma unroll
  for (int j = 0; j < K; ++j) p.dweight[d * K + j] = dw[j];
  p.dbias[d] = db;
}

// =================================================================================================
// Versions 2-4: streaming, one pass, partial sums of dweight/dbias per block.
// =================================================================================================
constexpr int kBwdThreads = 128;
constexpr int kBwdWarps = kBwdThreads / 32;  // warps of a block: consecutive runs, the same channels
constexpr int kBwdMinSteps = 64;             // shortest run when the grid is sized (halo < 5%)

// Row r of xx at channels ch..ch+V-1 (r < 0: the state or zeros), as V packed bf16.
template <int K, int V>
__device__ __forceinline__ bfvec<V> bwd_xx_row(const BwdParams& p, int b, int r, int ch, int nvalid) {
  if (r >= 0) return loadv<V>(p.x + (int64_t(b) * p.L + r) * p.ld_x + ch, nvalid, p.vec);
  if (!p.state) return zerov<V>();
  return loadv<V>(p.state + (int64_t(b) * (K - 1) + (K - 1) + r) * p.D + ch, nvalid, p.vec);
}

// Grid: blockIdx.x = (b * nstrips + strip) * nbc + bc, a strip being 32 x V channels; warp w of the
// block runs chunk bc * 4 + w, steps [chunk * T, min(L, chunk * T + T)). Partial row of the block:
// b * nbc + bc, laid out [K+1][D] (rows k < K: dweight[:, k]; row K: dbias).
template <int K, int S, int V, bool VEC>
__global__ void __launch_bounds__(kBwdThreads) conv_bwd_stream_kernel(BwdParams p, int T, int nbc) {
  static_assert((S & (S - 1)) == 0 && S >= 2, "S: a power of two");
  constexpr int CH = 32 * V;  // channels of a block
  static_assert(size_t(kBwdWarps) * (K + 1) * CH * sizeof(float) <= size_t(2) * S * kBwdThreads * sizeof(bfvec<V>),
                "the reduction reuses the rings");
  extern __shared__ uint4 smem[];  // rings: x [S][kBwdThreads], then dout [S][kBwdThreads] (V-wide)
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int ncv = (p.D + V - 1) / V;
  const int nstrips = (p.D + CH - 1) / CH;
  const int bc = blockIdx.x % nbc;
  const int strip = (blockIdx.x / nbc) % nstrips;
  const int b = blockIdx.x / (nbc * nstrips);
  const int cv = strip * 32 + lane;
  const int ch = cv * V, nvalid = p.D - ch;
  const int t0 = (bc * kBwdWarps + warp) * T, t1 = min(p.L, t0 + T);
  const bool active = cv < ncv && t0 < t1;

  float dw[K][V], db[V];
#pragma unroll
  for (int k = 0; k < V; ++k) {
    db[k] = 0.f;
#pragma unroll
    for (int j = 0; j < K; ++j) dw[j][k] = 0.f;
  }

  if (active) {
    float w[K][V], bias[V];
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const bool ok = k < nvalid;
      bias[k] = ok ? p.bias[ch + k] : 0.f;
#pragma unroll
      for (int j = 0; j < K; ++j) w[j][k] = ok ? p.w[(ch + k) * K + j] : 0.f;
    }
    // xwin[i]: xx row t-(K-1)+i (bf16 is exact, so kept packed); gwin[i]: g at step t-(K-1)+i,
    // zero before the run (those only feed dxx rows below t0, which this run does not write, or
    // rows of the state, where g before step 0 is zero indeed).
    bfvec<V> xwin[K - 1];
    float gwin[K - 1][V];
#pragma unroll
    for (int i = 0; i < K - 1; ++i) {
      xwin[i] = bwd_xx_row<K, V>(p, b, t0 - (K - 1) + i, ch, nvalid);
#pragma unroll
      for (int k = 0; k < V; ++k) gwin[i][k] = 0.f;
    }
    const int tend = t1 + K - 1;       // steps t0 .. tend-1: g up to t1+K-2 finishes dx up to t1-1
    const int tload = min(p.L, tend);  // rows of x and dout that exist
    const bf16* xb = p.x + int64_t(b) * p.L * p.ld_x + ch;
    const bf16* gb = p.dout + int64_t(b) * p.L * p.D + ch;
    bfvec<V>* ring_x = reinterpret_cast<bfvec<V>*>(smem) + threadIdx.x;
    bfvec<V>* ring_g = reinterpret_cast<bfvec<V>*>(smem) + S * kBwdThreads + threadIdx.x;
    auto issue = [&](int t, int slot) {
      if (t >= tload) return;
      const bf16* sx = xb + int64_t(t) * p.ld_x;
      const bf16* sg = gb + int64_t(t) * p.D;
      if (VEC) {
        cp_async_v<V>(ring_x + slot * kBwdThreads, sx);
        cp_async_v<V>(ring_g + slot * kBwdThreads, sg);
      } else {
        ring_x[slot * kBwdThreads] = loadv<V>(sx, nvalid, false);
        ring_g[slot * kBwdThreads] = loadv<V>(sg, nvalid, false);
      }
    };
#pragma unroll
    for (int s = 0; s < S - 1; ++s) {
      issue(t0 + s, s);
      cp_async_commit();
    }
    for (int t = t0; t < tend; ++t) {
      const int i = t - t0;
      cp_async_wait<S - 2>();
      const bool in = t < p.L;
      const bfvec<V> xr = in ? ring_x[(i & (S - 1)) * kBwdThreads] : zerov<V>();
      const bfvec<V> gr = in ? ring_g[(i & (S - 1)) * kBwdThreads] : zerov<V>();
      issue(t + S - 1, (i + S - 1) & (S - 1));  // the slot read one step ago
      cp_async_commit();

      float xf[K][V], dy[V];
#pragma unroll
      for (int j = 0; j < K - 1; ++j) unpackv<V>(xwin[j], xf[j]);
      unpackv<V>(xr, xf[K - 1]);
      unpackv<V>(gr, dy);
      float g[V], dxv[V];
#pragma unroll
      for (int k = 0; k < V; ++k) {
        float v = bias[k];
#pragma unroll
        for (int j = 0; j < K; ++j) v = fmaf(w[j][k], xf[j][k], v);
        g[k] = silu_grad(v, dy[k]);  // dy is 0 past L, so g is too
      }
      if (t < t1) {
#pragma unroll
        for (int k = 0; k < V; ++k) {
          db[k] += g[k];
#pragma unroll
          for (int j = 0; j < K; ++j) dw[j][k] = fmaf(g[k], xf[j][k], dw[j][k]);
        }
      }
      // dxx[t-(K-1)] = sum_j w[j] g[t-j]; g[t-j] = gwin[K-1-j] for j >= 1.
#pragma unroll
      for (int k = 0; k < V; ++k) {
        float a = w[0][k] * g[k];
#pragma unroll
        for (int j = 1; j < K; ++j) a = fmaf(w[j][k], gwin[K - 1 - j][k], a);
        dxv[k] = a;
      }
#pragma unroll
      for (int j = 0; j + 1 < K - 1; ++j) {
        xwin[j] = xwin[j + 1];
#pragma unroll
        for (int k = 0; k < V; ++k) gwin[j][k] = gwin[j + 1][k];
      }
      xwin[K - 2] = xr;
#pragma unroll
      for (int k = 0; k < V; ++k) gwin[K - 2][k] = g[k];

      const int r = t - (K - 1);
      if (r >= t0) {
        storev_stream<V>(p.dx + (int64_t(b) * p.L + r) * p.ld_dx + ch, packv<V>(dxv), nvalid, VEC);
      } else if (r < 0 && t0 == 0 && p.state && p.d_state) {
        storev_stream<V>(p.d_state + (int64_t(b) * (K - 1) + (K - 1) + r) * p.D + ch, packv<V>(dxv), nvalid, VEC);
      }
    }
    cp_async_wait<0>();
  }

  // Sum dweight/dbias over the block's warps (the rings are free now), then one partial row.
  __syncthreads();
  float* red = reinterpret_cast<float*>(smem);  // [kBwdWarps][K+1][CH]
#pragma unroll
  for (int k = 0; k < V; ++k) {
#pragma unroll
    for (int j = 0; j < K; ++j) red[(warp * (K + 1) + j) * CH + lane * V + k] = dw[j][k];
    red[(warp * (K + 1) + K) * CH + lane * V + k] = db[k];
  }
  __syncthreads();
  float* part = p.partial + int64_t(b * nbc + bc) * (K + 1) * p.D;
  for (int e = threadIdx.x; e < (K + 1) * CH; e += kBwdThreads) {
    const int j = e / CH, c = e % CH;
    const int d = strip * CH + c;
    if (d >= p.D) continue;
    float sum = 0.f;
#pragma unroll
    for (int q = 0; q < kBwdWarps; ++q) sum += red[(q * (K + 1) + j) * CH + c];
    part[int64_t(j) * p.D + d] = sum;
  }
}

// dweight/dbias = the sum of the partial rows, in row order.
template <int K>
__global__ void conv_bwd_reduce_kernel(BwdParams p, int rows) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= (K + 1) * p.D) return;
  const int j = e / p.D, d = e % p.D;
  const float* src = p.partial + e;
  const int64_t stride = int64_t(K + 1) * p.D;
  float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;  // 4 loads in flight
  int r = 0;
  for (; r + 4 <= rows; r += 4) {
    s0 += src[(r + 0) * stride];
    s1 += src[(r + 1) * stride];
    s2 += src[(r + 2) * stride];
    s3 += src[(r + 3) * stride];
  }
  for (; r < rows; ++r) s0 += src[r * stride];
  const float sum = (s0 + s1) + (s2 + s3);
  if (j < K) p.dweight[d * K + j] = sum;
  else p.dbias[d] = sum;
}

// Grid of versions 2-4 (channels: of a block) and the size of the partial workspace (floats).
struct BwdGrid {
  int T, nbc, blocks, rows;
};
static BwdGrid bwd_grid(int B, int L, int D, int channels, int blocks_per_sm) {
  static const int num_sms = [] {
    int dev = 0, n = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    return n;
  }();
  const int64_t strips = int64_t(B) * ((D + channels - 1) / channels);
  const int64_t wave = int64_t(num_sms) * blocks_per_sm;
  const int64_t max_nbc = std::max<int64_t>(1, (L + kBwdWarps * kBwdMinSteps - 1) / (kBwdWarps * kBwdMinSteps));
  const int nbc = int(std::clamp<int64_t>(wave / strips, 1, max_nbc));
  BwdGrid g;
  g.T = std::max(1, (L + kBwdWarps * nbc - 1) / (kBwdWarps * nbc));
  g.nbc = nbc;
  g.blocks = int(strips * nbc);
  g.rows = B * nbc;
  return g;
}
static size_t bwd_partial_floats(int B, int L, int D, int K) {
  // The largest grid bwd_grid may pick.
  const int nbc_max = std::max(1, (L + kBwdWarps * kBwdMinSteps - 1) / (kBwdWarps * kBwdMinSteps));
  return size_t(B) * nbc_max * (K + 1) * D;
}

template <int K, int S, int V, bool VEC>
static void run_bwd_stream_t(const BwdParams& p) {
  constexpr size_t smem = size_t(2) * S * kBwdThreads * sizeof(bfvec<V>);
  void (*kernel)(BwdParams, int, int) = conv_bwd_stream_kernel<K, S, V, VEC>;
  static const int occ = [&] {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    int n = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, kBwdThreads, smem));
    return std::max(n, 1);
  }();
  const BwdGrid g = bwd_grid(p.B, p.L, p.D, 32 * V, occ);
  kernel<<<g.blocks, kBwdThreads, smem>>>(p, g.T, g.nbc);
  CUDA_CHECK_LAUNCH();
  const int n = (K + 1) * p.D;
  conv_bwd_reduce_kernel<K><<<(n + 255) / 256, 256>>>(p, g.rows);
  CUDA_CHECK_LAUNCH();
}

// vec: every access of V channels is one aligned V-wide vector.
static bool bwd_all_vec(const BwdParams& p, int V) {
  const uintptr_t mask = uintptr_t(2 * V - 1);
  auto al = [&](const void* q) { return (reinterpret_cast<uintptr_t>(q) & mask) == 0; };
  return p.D % V == 0 && p.ld_x % V == 0 && p.ld_dx % V == 0 && al(p.x) && al(p.dx) && al(p.dout) &&
         (!p.state || al(p.state)) && (!p.d_state || al(p.d_state));
}
template <int K, int S, int V>
static void run_bwd_stream(BwdParams p) {
  p.vec = bwd_all_vec(p, V);
  if (p.vec) run_bwd_stream_t<K, S, V, true>(p);
  else run_bwd_stream_t<K, S, V, false>(p);
}

// =================================================================================================
// Launchers
// =================================================================================================
constexpr int kNumBwdVersions = 4;

template <int K>
static void run_bwd_version_k(int version, const BwdParams& p) {
  switch (version) {
    case 1: {
      const int64_t n = int64_t(p.B) * (p.L + K - 1) * p.D;
      conv_bwd_v1_dx_kernel<K><<<(n + 255) / 256, 256>>>(p);
      CUDA_CHECK_LAUNCH();
      conv_bwd_v1_dw_kernel<K><<<(p.D + 127) / 128, 128>>>(p);
      CUDA_CHECK_LAUNCH();
      break;
    }
    case 2: run_bwd_stream<K, 8, 8>(p); break;
    case 3: run_bwd_stream<K, 16, 8>(p); break;
    case 4: run_bwd_stream<K, 16, 4>(p); break;
    default: std::fprintf(stderr, "no version %d\n", version); std::exit(2);
  }
}

static void run_bwd_version(int version, const BwdParams& p) {
  switch (p.K) {
    case 2: run_bwd_version_k<2>(version, p); break;
    case 3: run_bwd_version_k<3>(version, p); break;
    case 4: run_bwd_version_k<4>(version, p); break;
    default: std::fprintf(stderr, "K=%d not built (2..4)\n", p.K); std::exit(2);
  }
}

// =================================================================================================
// Check and timing
// =================================================================================================
struct BwdProblem {
  BwdHost h;                                      // the inputs in double (bf16-exact where bf16)
  std::vector<float> x, w, bias, state, dout;     // the same values, for upload
};
static BwdProblem make_bwd_problem(int B, int L, int D, int K, int64_t ld_x, int64_t ld_dx, bool use_state,
                                   uint64_t seed) {
  HostRng rng(seed);
  BwdProblem pr;
  pr.x = host_random_bf(size_t(B) * L * ld_x, rng, -2.f, 2.f);
  pr.w = host_random_f(size_t(D) * K, rng, -0.7f, 0.7f);
  pr.bias = host_random_f(D, rng, -0.5f, 0.5f);
  pr.state = use_state ? host_random_bf(size_t(B) * (K - 1) * D, rng, -2.f, 2.f) : std::vector<float>();
  pr.dout = host_random_bf(size_t(B) * L * D, rng, -1.f, 1.f);
  BwdHost& h = pr.h;
  h.B = B, h.L = L, h.D = D, h.K = K, h.ld_x = ld_x, h.ld_dx = ld_dx, h.use_state = use_state;
  auto to_d = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
  h.x = to_d(pr.x), h.w = to_d(pr.w), h.bias = to_d(pr.bias), h.state = to_d(pr.state), h.dout = to_d(pr.dout);
  return pr;
}

static bool check_bwd_version(int version, const BwdProblem& pr, const char* label) {
  const BwdHost& s = pr.h;
  BwdGrads ref;
  ref_backward(s, ref);
  bf16* x = device_upload_bf(pr.x);
  bf16* dout = device_upload_bf(pr.dout);
  float* w = device_upload_f(pr.w);
  float* bias = device_upload_f(pr.bias);
  bf16* state = s.use_state ? device_upload_bf(pr.state) : nullptr;
  const size_t ndx = size_t(s.B) * s.L * s.ld_dx, nst = size_t(s.B) * (s.K - 1) * s.D;
  bf16* dx = device_alloc<bf16>(ndx);
  bf16* d_state = s.use_state ? device_alloc<bf16>(nst) : nullptr;
  float* dweight = device_alloc<float>(size_t(s.D) * s.K);
  float* dbias = device_alloc<float>(s.D);
  float* partial = device_alloc<float>(bwd_partial_floats(s.B, s.L, s.D, s.K));
  device_poison_bf16(dx, ndx);
  if (d_state) device_poison_bf16(d_state, nst);
  CUDA_CHECK(cudaMemset(dweight, 0xff, size_t(s.D) * s.K * sizeof(float)));  // NaN bits
  CUDA_CHECK(cudaMemset(dbias, 0xff, size_t(s.D) * sizeof(float)));
  BwdParams p{};
  p.dx = dx, p.d_state = d_state, p.dweight = dweight, p.dbias = dbias, p.partial = partial;
  p.dout = dout, p.x = x, p.w = w, p.bias = bias, p.state = state;
  p.ld_x = s.ld_x, p.ld_dx = s.ld_dx, p.B = s.B, p.L = s.L, p.D = s.D, p.K = s.K;
  run_bwd_version(version, p);
  CUDA_CHECK(cudaDeviceSynchronize());

  const std::vector<float> dx_all = device_download_bf(dx, ndx);
  std::vector<float> dx_dense(size_t(s.B) * s.L * s.D);
  size_t gap_written = 0;  // elements between D and ld_dx that lost their poison
  for (size_t row = 0; row < size_t(s.B) * s.L; ++row)
    for (int64_t c = 0; c < s.ld_dx; ++c) {
      const float v = dx_all[row * s.ld_dx + c];
      if (c < s.D) dx_dense[row * s.D + c] = v;
      else gap_written += !std::isnan(v);
    }
  bool ok = gap_written == 0;
  const ErrorReport edx = compare(dx_dense, ref.dx);
  const ErrorReport edw = compare(device_download_f(dweight, size_t(s.D) * s.K), ref.dw);
  const ErrorReport edb = compare(device_download_f(dbias, s.D), ref.db);
  ok &= edx.ok(1e-2) && edw.ok(1e-3) && edb.ok(1e-3);
  ErrorReport est;
  if (s.use_state) {
    est = compare(device_download_bf(d_state, nst), ref.d_state);
    ok &= est.ok(1e-2);
  }
  std::printf("check v%d %-38s dx %.1e dstate %.1e dw %.1e db %.1e (nonfinite %zu, gap %zu)  %s\n", version, label,
              edx.rel_l2, est.rel_l2, edw.rel_l2, edb.rel_l2,
              edx.nonfinite + est.nonfinite + edw.nonfinite + edb.nonfinite, gap_written, ok ? "OK" : "FAIL");
  for (void* ptr : {(void*)x, (void*)dout, (void*)w, (void*)bias, (void*)state, (void*)dx, (void*)d_state,
                    (void*)dweight, (void*)dbias, (void*)partial})
    if (ptr) CUDA_CHECK(cudaFree(ptr));
  return ok;
}

static bool check_reference() {
  bool ok = true;
  struct Tiny {
    int B, L, D, K;
    bool state;
  };
  for (const Tiny& t : {Tiny{2, 5, 3, 4, true}, Tiny{1, 6, 2, 3, false}, Tiny{2, 2, 3, 4, true}}) {
    const BwdProblem pr = make_bwd_problem(t.B, t.L, t.D, t.K, t.D + 1, t.D, t.state, 21 + t.L);
    const double e = finite_difference_error(pr.h);
    const bool good = e <= 1e-6;
    std::printf("check reference backward vs finite differences B%d L%d D%d K%d%s: max rel err %.2e  %s\n", t.B,
                t.L, t.D, t.K, t.state ? " state" : "", e, good ? "OK" : "FAIL");
    ok &= good;
  }
  return ok;
}

static unsigned check_bwd_all(int version) {
  const BwdProblem s1 = make_bwd_problem(2, 333, 97, 4, 2 * 97 + 3, 97 + 5, true, 7);  // odd: scalar paths
  const BwdProblem s2 = make_bwd_problem(1, 1000, 256, 4, 2 * 256, 2 * 256, false, 8);  // views, 16-byte paths
  const BwdProblem s3 = make_bwd_problem(3, 45, 64, 4, 64, 64, true, 9);               // state, short L
  const BwdProblem s4 = make_bwd_problem(2, 77, 40, 3, 40, 40, true, 10);              // K = 3
  const BwdProblem s5 = make_bwd_problem(2, 2, 72, 4, 72, 72, true, 13);               // L < K-1
  const BwdProblem s6 = make_bwd_problem(1, 700, 1096, 4, 1096, 1104, true, 14);       // 5 strips, 3 block-runs
  const BwdProblem s7 = make_bwd_problem(2, 200, 61, 3, 67, 61, true, 15);             // K = 3, odd
  unsigned passed = 0;
  for (int v = 1; v <= kNumBwdVersions; ++v) {
    if (version && v != version) continue;
    bool ok = check_bwd_version(v, s1, "B2 L333 D97 K4 state, odd strides");
    ok &= check_bwd_version(v, s2, "B1 L1000 D256 K4 views (ld 2D)");
    ok &= check_bwd_version(v, s3, "B3 L45 D64 K4 state");
    ok &= check_bwd_version(v, s4, "B2 L77 D40 K3 state");
    ok &= check_bwd_version(v, s5, "B2 L2 D72 K4 state");
    ok &= check_bwd_version(v, s6, "B1 L700 D1096 K4 state, ld_dx 1104");
    ok &= check_bwd_version(v, s7, "B2 L200 D61 K3 state, odd stride");
    if (ok) passed |= 1u << v;
  }
  return passed;
}

int main(int argc, char** argv) {
  int version = 0;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--check-only") check_only = true;
    else version = std::atoi(a.c_str());
  }
  CUDA_CHECK(cudaSetDevice(0));
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, sm_%d%d\n", prop.name, prop.multiProcessorCount, prop.major, prop.minor);
  const bool ref_ok = check_reference();
  const unsigned passed = check_bwd_all(version);
  const unsigned wanted = version ? 1u << version : ((1u << (kNumBwdVersions + 1)) - 2);
  const bool ok = ref_ok && passed == wanted;
  std::printf("checks: %s\n", ok ? "all passed" : "FAILED (failing versions are not timed)");
  if (check_only) return ok ? 0 : 1;

  const int B = 4, L = 4096, D = 3072, K = 4;
  const size_t n = size_t(B) * L * D;
  bf16* x = device_alloc<bf16>(n);
  bf16* dout = device_alloc<bf16>(n);
  bf16* out = device_alloc<bf16>(n);
  bf16* dx = device_alloc<bf16>(n);
  device_fill_uniform_bf16(x, n, 11, -2.f, 2.f);
  device_fill_uniform_bf16(dout, n, 13, -1.f, 1.f);
  HostRng rng(12);
  float* w = device_upload_f(host_random_f(size_t(D) * K, rng, -0.7f, 0.7f));
  float* bias = device_upload_f(host_random_f(D, rng, -0.5f, 0.5f));
  float* dweight = device_alloc<float>(size_t(D) * K);
  float* dbias = device_alloc<float>(D);
  float* partial = device_alloc<float>(bwd_partial_floats(B, L, D, K));
  BwdParams p{};
  p.dx = dx, p.d_state = nullptr, p.dweight = dweight, p.dbias = dbias, p.partial = partial;
  p.dout = dout, p.x = x, p.w = w, p.bias = bias, p.state = nullptr;
  p.ld_x = D, p.ld_dx = D, p.B = B, p.L = L, p.D = D, p.K = K;
  ConvParams fp{};
  fp.out = out, fp.x = x, fp.ld_x = D, fp.w = w, fp.bias = bias, fp.state = nullptr;
  fp.B = B, fp.L = L, fp.D = D, fp.K = K;

  // The forward of the fwd+bwd rows: the fastest of the forward file's streaming versions here
  // (each checked first on one odd and one aligned shape).
  int fwd_best = 0;
  float fwd_best_ms = 1e30f;
  for (int fv = 5; fv <= kNumVersions; ++fv) {
    const bool fok = check_version(fv, make_host_problem(2, 333, 97, 4, 2 * 97 + 3, true, 7), "fwd, odd") &&
                     check_version(fv, make_host_problem(3, 450, 256, 4, 256, true, 9), "fwd, aligned");
    if (!fok) continue;
    const float ms = time_median_ms([&] { run_version(fv, fp); });
    std::printf("time  fwd v%d B%d L%d D%d W%d  median %.4f ms\n", fv, B, L, D, K, ms);
    if (ms < fwd_best_ms) fwd_best = fv, fwd_best_ms = ms;
  }
  const double bytes_bwd = 3.0 * n * sizeof(bf16), bytes_fwd = 2.0 * n * sizeof(bf16);
  std::printf("floor at 3.0 TB/s: bwd %.4f ms (x, dout read, dx written: %.0f MB), fwd+bwd %.4f ms (%.0f MB)\n",
              bytes_bwd / 3e9, bytes_bwd * 1e-6, (bytes_bwd + bytes_fwd) / 3e9, (bytes_bwd + bytes_fwd) * 1e-6);

  for (int v = 1; v <= kNumBwdVersions; ++v) {
    if (!(passed >> v & 1)) continue;
    device_poison_bf16(dx, n);
    const float ms = time_median_ms([&] { run_bwd_version(v, p); });
    std::vector<bf16> probe(4096);
    CUDA_CHECK(cudaMemcpy(probe.data(), dx + n - probe.size(), probe.size() * sizeof(bf16), cudaMemcpyDeviceToHost));
    size_t bad = 0;
    for (auto xx : probe) bad += !std::isfinite(host_bf2f(xx));
    std::printf("time  bwd v%d B%d L%d D%d W%d  median %.4f ms  %.2f TB/s (x, dout read once, dx written)%s\n", v, B,
                L, D, K, ms, bytes_bwd / ms * 1e-9, bad ? "  UNWRITTEN OUTPUT" : "");
    std::printf("RESULT|causal_conv1d_bwd|B%d L%d D%d W%d|v%d|%.4f\n", B, L, D, K, v, ms);
    if (fwd_best) {
      const float ms2 = time_median_ms([&] {
        run_version(fwd_best, fp);
        run_bwd_version(v, p);
      });
      std::printf("RESULT|causal_conv1d_fwd_bwd|B%d L%d D%d W%d|fwd v%d + bwd v%d|%.4f\n", B, L, D, K, fwd_best, v,
                  ms2);
    }
  }
  for (void* ptr : {(void*)x, (void*)dout, (void*)out, (void*)dx, (void*)w, (void*)bias, (void*)dweight,
                    (void*)dbias, (void*)partial})
    CUDA_CHECK(cudaFree(ptr));
  return ok ? 0 : 1;
}
