// Selective scan forward (Mamba-1), bf16 activations, fp32 parameters and state: development file.
//
// The math (matches the project's CPU op, selective_scan_ref_forward + softplus + silu gate):
//   delta[b,t,d] = softplus(dt[b,t,d] + dt_bias[d])                      (torch: x > 20 -> x)
//   h_t[d,n]     = exp(delta_t[d] A[d,n]) h_{t-1}[d,n] + delta_t[d] Bm_t[n] u_t[d]  (h_{-1} = h0 or 0)
//   y_t[d]       = sum_n Cm_t[n] h_t[d,n] + Dskip[d] u_t[d]
//   out_t[d]     = y_t[d] * silu(z_t[d])
//   h_last[b,d,n] = h_{L-1}[d,n]
// Layouts: u, dt, out [B, L, D]; z [B, L, ld_z]; Bm, Cm [B, L] rows of stride ld_bc (views into the
// x_proj output in the model); A [D, N] (= -exp(A_log)); Dskip, dt_bias [D]; h0, h_last [B, D, N].
// N = 16 (Mamba-1's d_state) throughout.
//
// Build: nvcc -O3 -arch=sm_90 -std=c++20 -o selective_scan_forward selective_scan_forward.cu
// Run:   ./selective_scan_forward            check every version, then time every version
//        ./selective_scan_forward 4          check and time version 4 only
//        ./selective_scan_forward --check-only [version]   (for compute-sanitizer)
//        ./selective_scan_forward --chunks 8 6           force version 6's chunk count
//
// Versions:
//   1  one thread per (b, d) channel, 16 states in registers, global loads each step, expf/log1pf.
//   2  tiled: a block owns 32 channels; tiles of 32 steps are staged through shared memory (16-byte
//      loads into registers while the previous tile is scanned), softplus and du = delta*u computed
//      once per element in the tile prologue, the gate in a tile epilogue with 16-byte stores;
//      exp2 on the special-function unit with A pre-scaled by log2(e). One thread per channel.
//   3  as 2, two threads per channel (8 states each; partial y summed with one shuffle).
//   4  as 2, four threads per channel (4 states each; the four partial sums of four steps reduced
//      with a 3-shuffle reduce-scatter); more warps to hide latency and balance the schedulers.
//   5  as 4 with 64-step tiles (half the barriers).
//   6  as 4, chunked over L when (b, d) alone cannot fill the GPU: pass 1 computes each chunk's
//      final state from zero (and the chunk's sum of delta), pass 2 carries the fp32 state across
//      chunks (h_in[c+1] = exp(A sum delta_c) h_in[c] + h_local[c]), pass 3 rescans every chunk
//      from its true initial state and writes the outputs. Pass 1 costs a second round of
//      exponentials on all but the last chunk; it is used only when the grid would be too small.
#include <cstring>
#include <string>

#include "common.h"

constexpr int kN = 16;      // d_state
constexpr int kTileC = 32;  // channels per block in the tiled versions

struct ScanParams {
  bf16* out;
  float* h_last;  // nullable
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
  // 16-byte paths allowed (alignment and strides checked on the host)
  bool vec_x, vec_z, vec_bc;
  // chunking over L (version 6); nchunks == 1 otherwise
  int chunk_len, nchunks;
  float* chunk_state;  // [B, nchunks, D, N]: pass 1 writes local final states, pass 2 turns them into h_in
  float* chunk_dsum;   // [B, nchunks, D]: sum of delta over the chunk
};

// =================================================================================================
// CPU reference, double accumulation.
// =================================================================================================
struct ScanHost {
  int B, L, D;
  int64_t ld_z, ld_bc;
  std::vector<float> u, dt, z, bc, A, Dskip, dt_bias, h0;  // bf16-rounded where the GPU gets bf16
  bool use_h0;
  int64_t b_off, c_off;  // offsets of Bm and Cm inside a row of bc
};

static void scan_reference(const ScanHost& s, std::vector<double>& out, std::vector<double>& h_last) {
  const int B = s.B, L = s.L, D = s.D;
  out.assign(size_t(B) * L * D, 0.0);
  h_last.assign(size_t(B) * D * kN, 0.0);
  for (int b = 0; b < B; ++b)
    for (int d = 0; d < D; ++d) {
      double h[kN];
      for (int n = 0; n < kN; ++n) h[n] = s.use_h0 ? s.h0[(size_t(b) * D + d) * kN + n] : 0.0;
      for (int t = 0; t < L; ++t) {
        const size_t row = size_t(b) * L + t;
        const double x = double(s.dt[row * D + d]) + s.dt_bias[d];
        const double delta = x > 20.0 ? x : std::log1p(std::exp(x));
        const double uu = s.u[row * D + d];
        const float* Bt = s.bc.data() + row * s.ld_bc + s.b_off;
        const float* Ct = s.bc.data() + row * s.ld_bc + s.c_off;
        double y = double(s.Dskip[d]) * uu;
        for (int n = 0; n < kN; ++n) {
          h[n] = std::exp(delta * s.A[size_t(d) * kN + n]) * h[n] + delta * Bt[n] * uu;
          y += Ct[n] * h[n];
        }
        const double zz = s.z[row * s.ld_z + d];
        out[row * D + d] = y * zz / (1.0 + std::exp(-zz));
      }
      for (int n = 0; n < kN; ++n) h_last[(size_t(b) * D + d) * kN + n] = h[n];
    }
}

// =================================================================================================
// Version 1: one thread per channel, straight from global memory.
// =================================================================================================
__global__ void scan_v1_kernel(ScanParams p) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= p.B * p.D) return;
  const int b = idx / p.D, d = idx % p.D;
  float h[kN], A[kN];
#pragma unroll
  for (int n = 0; n < kN; ++n) {
    h[n] = p.h0 ? p.h0[(int64_t(b) * p.D + d) * kN + n] : 0.f;
    A[n] = p.A[d * kN + n];
  }
  const float Dd = p.Dskip[d], bias = p.dt_bias[d];
  for (int t = 0; t < p.L; ++t) {
    const int64_t row = int64_t(b) * p.L + t;
    const float x = __bfloat162float(p.dt[row * p.D + d]) + bias;
    const float delta = x > 20.f ? x : log1pf(expf(x));
    const float uu = __bfloat162float(p.u[row * p.D + d]);
    const float du = delta * uu;
    const bf16* Bt = p.Bm + row * p.ld_bc;
    const bf16* Ct = p.Cm + row * p.ld_bc;
    float y = 0.f;
#pragma unroll
    for (int n = 0; n < kN; ++n) {
      h[n] = expf(delta * A[n]) * h[n] + du * __bfloat162float(Bt[n]);
      y += __bfloat162float(Ct[n]) * h[n];
    }
    const float zz = __bfloat162float(p.z[row * p.ld_z + d]);
    p.out[row * p.D + d] = __float2bfloat16((y + Dd * uu) * (zz / (1.f + expf(-zz))));
  }
  if (p.h_last)
#pragma unroll
    for (int n = 0; n < kN; ++n) p.h_last[(int64_t(b) * p.D + d) * kN + n] = h[n];
}

// =================================================================================================
// Versions 2-6: the tiled kernel.
// =================================================================================================
// softplus(x) = ln 2 * log2(1 + 2^(x log2 e)), x above torch's threshold 20 passes through.
__device__ __forceinline__ float softplus_fast(float x) {
  const float r = kLn2 * lg2_approx(1.f + ex2_approx(x * kLog2e));
  return x > 20.f ? x : r;
}
// silu(z) = z sigmoid(z) = z (1 + tanh(z/2)) / 2: one special-function instruction.
__device__ __forceinline__ float silu_fast(float z) { return z * fmaf(0.5f, tanh_approx(0.5f * z), 0.5f); }

// 8 consecutive bf16 from ptr, zeros where !row_ok or beyond nvalid elements.
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

// Sums the partial y of LANES consecutive steps over the LANES threads of a channel; thread `sub`
// gets the total for step `sub` (a butterfly reduce-scatter: log2(LANES) rounds, LANES-1 shuffles).
template <int LANES>
__device__ __forceinline__ float reduce_scatter(const float (&yp)[LANES], int sub) {
  if constexpr (LANES == 1) {
    return yp[0];
  } else if constexpr (LANES == 2) {
    const float send = sub ? yp[0] : yp[1];
    const float keep = sub ? yp[1] : yp[0];
    return keep + __shfl_xor_sync(0xffffffffu, send, 1);
  } else {
    static_assert(LANES == 4, "LANES in {1, 2, 4}");
    const bool hi = sub & 2;
    const float w0 = (hi ? yp[2] : yp[0]) + __shfl_xor_sync(0xffffffffu, hi ? yp[0] : yp[2], 2);
    const float w1 = (hi ? yp[3] : yp[1]) + __shfl_xor_sync(0xffffffffu, hi ? yp[1] : yp[3], 2);
    const bool odd = sub & 1;
    return (odd ? w1 : w0) + __shfl_xor_sync(0xffffffffu, odd ? w0 : w1, 1);
  }
}

// LANES threads per channel (kN / LANES states each), tiles of TT steps. STATES_ONLY is pass 1 of
// version 6: no z, no C, no output; writes each chunk's final state and sum of delta.
template <int LANES, int TT, bool STATES_ONLY>
__global__ void __launch_bounds__(kTileC* LANES) scan_tiled_kernel(ScanParams p) {
  constexpr int NT = kTileC * LANES;
  constexpr int SPL = kN / LANES;        // states per thread
  constexpr int XCH = TT * kTileC / 8;   // 16-byte chunks in a [TT, kTileC] bf16 tile
  constexpr int XPT = XCH / NT;          // ... per thread
  constexpr int BCH = TT * kN / 8;       // 16-byte chunks in a [TT, kN] bf16 tile
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

  // Registers holding the next tile while the current one is scanned.
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
  // Registers -> shared memory, with the per-element prologue (softplus, du).
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
        // Steps past the end of the chunk get delta = 0 (and B = 0): the state passes unchanged.
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
  // out = (y + Dskip u) * silu(z), 8 channels a thread, 16-byte stores.
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
      const uint4 packed = pack8(o);
      bf16* dst = p.out + (brow + t) * p.D + ch;
      if (p.vec_x && ch + 8 <= p.D) {
        *reinterpret_cast<uint4*>(dst) = packed;
      } else {
        uint16_t tmp[8];
        memcpy(tmp, &packed, 16);
        for (int k = 0; k < 8 && ch + k < p.D; ++k) reinterpret_cast<uint16_t*>(dst)[k] = tmp[k];
      }
    }
  };

  const int ntiles = (t_end - t_begin + TT - 1) / TT;
  load_tile(t_begin);
  for (int it = 0; it < ntiles; ++it) {
    const int t0 = t_begin + it * TT;
    __syncthreads();  // the previous tile's epilogue is done with shared memory
    store_tile(t0);
    __syncthreads();
    if (it + 1 < ntiles) load_tile(t0 + TT);  // in flight during the scan below

#pragma unroll 2
    for (int s0 = 0; s0 < TT; s0 += LANES) {
      float yp[LANES];
#pragma unroll
      for (int j = 0; j < LANES; ++j) {
        const int s = s0 + j;
        const float dl = s_delta[s][cl];
        const float du = s_du[s][cl];
        float bv[SPL], cv[SPL];
#pragma unroll
        for (int k = 0; k < SPL; k += 4) {
          const float4 b4 = *reinterpret_cast<const float4*>(&s_B[s][sub * SPL + k]);
          bv[k] = b4.x, bv[k + 1] = b4.y, bv[k + 2] = b4.z, bv[k + 3] = b4.w;
          if constexpr (!STATES_ONLY) {
            const float4 c4 = *reinterpret_cast<const float4*>(&s_C[s][sub * SPL + k]);
            cv[k] = c4.x, cv[k + 1] = c4.y, cv[k + 2] = c4.z, cv[k + 3] = c4.w;
          }
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

// Pass 2 of version 6: one thread per (b, d, n) walks the chunks in order.
//   h_in[0] = h0 (folded into pass 1 of chunk 0), h_in[c+1] = exp(A sum_c delta) h_in[c] + local[c]
// chunk_state[c] holds local[c] on entry and h_in[c] on exit (c >= 1).
__global__ void scan_chunk_carry_kernel(ScanParams p) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= int64_t(p.B) * p.D * kN) return;
  const int n = idx % kN;
  const int d = (idx / kN) % p.D;
  const int b = idx / (int64_t(kN) * p.D);
  const float A2 = p.A[d * kN + n] * kLog2e;
  float hc = p.chunk_state[((int64_t(b) * p.nchunks) * p.D + d) * kN + n];  // end of chunk 0
  for (int c = 1; c < p.nchunks; ++c) {
    const int64_t base = (int64_t(b) * p.nchunks + c) * p.D + d;
    const bool more = c + 1 < p.nchunks;  // pass 1 skipped the last chunk: nothing to read there
    const float local = more ? p.chunk_state[base * kN + n] : 0.f;
    p.chunk_state[base * kN + n] = hc;
    if (more) hc = fmaf(ex2_approx(A2 * p.chunk_dsum[base]), hc, local);
  }
}

// =================================================================================================
// Launchers
// =================================================================================================
struct ScanWorkspace {
  float* chunk_state = nullptr;
  float* chunk_dsum = nullptr;
  size_t capacity_chunks = 0;  // B * nchunks it was sized for
};

static int g_force_chunks = 0;  // --chunks N (version 6)

template <int LANES, int TT>
static void launch_tiled(ScanParams p) {
  p.chunk_len = p.L;
  p.nchunks = 1;
  dim3 grid((p.D + kTileC - 1) / kTileC, 1, p.B);
  scan_tiled_kernel<LANES, TT, false><<<grid, kTileC * LANES>>>(p);
  CUDA_CHECK_LAUNCH();
}

// Picks the chunk count from a simple model: each pass takes (waves of blocks) x (steps per chunk),
// pass 1 about 0.8 of pass 3; a "wave" is about 3 warps per scheduler (4 per SM).
static int pick_chunks(int B, int L, int D, int num_sms) {
  constexpr int LANES = 4, TT = 32;
  const int warps_per_block = kTileC * LANES / 32;
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

static void launch_chunked(ScanParams p, ScanWorkspace& ws, int nchunks) {
  constexpr int LANES = 4, TT = 32;
  const int len = ((p.L + nchunks - 1) / nchunks + TT - 1) / TT * TT;
  p.chunk_len = len;
  p.nchunks = (p.L + len - 1) / len;
  if (p.nchunks == 1) {
    dim3 grid((p.D + kTileC - 1) / kTileC, 1, p.B);
    scan_tiled_kernel<LANES, TT, false><<<grid, kTileC * LANES>>>(p);
    CUDA_CHECK_LAUNCH();
    return;
  }
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
  scan_tiled_kernel<LANES, TT, true><<<grid1, kTileC * LANES>>>(p);
  CUDA_CHECK_LAUNCH();
  const int64_t n2 = int64_t(p.B) * p.D * kN;
  scan_chunk_carry_kernel<<<(n2 + 255) / 256, 256>>>(p);
  CUDA_CHECK_LAUNCH();
  dim3 grid3((p.D + kTileC - 1) / kTileC, p.nchunks, p.B);
  scan_tiled_kernel<LANES, TT, false><<<grid3, kTileC * LANES>>>(p);
  CUDA_CHECK_LAUNCH();
}

constexpr int kNumVersions = 6;

static void run_version(int version, ScanParams p, ScanWorkspace& ws, int num_sms) {
  p.vec_x = p.D % 8 == 0 && aligned16(p.u) && aligned16(p.dt) && aligned16(p.out);
  p.vec_z = p.ld_z % 8 == 0 && aligned16(p.z);
  p.vec_bc = p.ld_bc % 8 == 0 && aligned16(p.Bm) && aligned16(p.Cm);
  p.chunk_len = p.L;
  p.nchunks = 1;
  switch (version) {
    case 1: {
      const int n = p.B * p.D;
      scan_v1_kernel<<<(n + 127) / 128, 128>>>(p);
      CUDA_CHECK_LAUNCH();
      break;
    }
    case 2: launch_tiled<1, 32>(p); break;
    case 3: launch_tiled<2, 32>(p); break;
    case 4: launch_tiled<4, 32>(p); break;
    case 5: launch_tiled<4, 64>(p); break;
    case 6: launch_chunked(p, ws, g_force_chunks > 0 ? g_force_chunks : pick_chunks(p.B, p.L, p.D, num_sms)); break;
    default: std::fprintf(stderr, "no version %d\n", version); std::exit(2);
  }
}

// =================================================================================================
// Check and timing
// =================================================================================================
static ScanHost make_host_problem(int B, int L, int D, int64_t ld_z, int64_t ld_bc, int64_t b_off, int64_t c_off,
                                  bool use_h0, uint64_t seed) {
  HostRng rng(seed);
  ScanHost s;
  s.B = B, s.L = L, s.D = D, s.ld_z = ld_z, s.ld_bc = ld_bc, s.b_off = b_off, s.c_off = c_off, s.use_h0 = use_h0;
  s.u = host_random_bf(size_t(B) * L * D, rng, -1.f, 1.f);
  s.dt = host_random_bf(size_t(B) * L * D, rng, -1.f, 1.f);
  s.z = host_random_bf(size_t(B) * L * ld_z, rng, -2.f, 2.f);
  s.bc = host_random_bf(size_t(B) * L * ld_bc, rng, -1.f, 1.f);
  s.A.resize(size_t(D) * kN);
  for (int d = 0; d < D; ++d)
    for (int n = 0; n < kN; ++n) s.A[size_t(d) * kN + n] = -float(n + 1) * rng.uniform(0.8f, 1.2f);  // S4D-real-like
  s.Dskip = host_random_f(D, rng, 0.5f, 1.5f);
  s.dt_bias.resize(D);
  for (int d = 0; d < D; ++d) {  // Mamba's init: dt in [1e-3, 1e-1] log-uniform, bias = softplus^-1(dt)
    const double dt0 = std::exp(std::log(1e-3) + rng.uniform(0.f, 1.f) * (std::log(1e-1) - std::log(1e-3)));
    s.dt_bias[d] = float(std::log(std::expm1(dt0)));
  }
  // a few channels with large delta, so the softplus pass-through and fast decay are exercised
  for (int d = 0; d < D; d += 17) s.dt_bias[d] = 19.5f;
  s.h0 = use_h0 ? host_random_f(size_t(B) * D * kN, rng, -1.f, 1.f) : std::vector<float>();
  return s;
}

static bool check_version(int version, int num_sms, int force_chunks, const ScanHost& s, const char* label) {
  std::vector<double> ref_out, ref_h;
  scan_reference(s, ref_out, ref_h);

  bf16* u = device_upload_bf(s.u);
  bf16* dt = device_upload_bf(s.dt);
  bf16* z = device_upload_bf(s.z);
  bf16* bc = device_upload_bf(s.bc);
  float* A = device_upload_f(s.A);
  float* Dskip = device_upload_f(s.Dskip);
  float* dt_bias = device_upload_f(s.dt_bias);
  float* h0 = s.use_h0 ? device_upload_f(s.h0) : nullptr;
  const size_t n_out = size_t(s.B) * s.L * s.D;
  bf16* out = device_alloc<bf16>(n_out);
  float* h_last = device_alloc<float>(size_t(s.B) * s.D * kN);
  device_poison_bf16(out, n_out);
  CUDA_CHECK(cudaMemset(h_last, 0xff, size_t(s.B) * s.D * kN * sizeof(float)));  // NaN

  ScanParams p{};
  p.out = out, p.h_last = h_last, p.u = u, p.dt = dt, p.z = z, p.ld_z = s.ld_z;
  p.Bm = bc + s.b_off, p.Cm = bc + s.c_off, p.ld_bc = s.ld_bc;
  p.A = A, p.Dskip = Dskip, p.dt_bias = dt_bias, p.h0 = h0;
  p.B = s.B, p.L = s.L, p.D = s.D;
  ScanWorkspace ws;
  const int saved = g_force_chunks;
  g_force_chunks = force_chunks;
  run_version(version, p, ws, num_sms);
  g_force_chunks = saved;
  CUDA_CHECK(cudaDeviceSynchronize());

  const ErrorReport eo = compare(device_download_bf(out, n_out), ref_out);
  const ErrorReport eh = compare(device_download_f(h_last, size_t(s.B) * s.D * kN), ref_h);
  // bf16 output: rounding alone gives ~2e-3 relative; the state is fp32 (approximate exp2/lg2).
  const bool ok = eo.ok(1e-2) && eh.ok(1e-3);
  std::printf("check v%d %-44s out rel %.2e (nonfinite %zu)  h_last rel %.2e (nonfinite %zu)  %s\n", version,
              label, eo.rel_l2, eo.nonfinite, eh.rel_l2, eh.nonfinite, ok ? "OK" : "FAIL");
  for (void* ptr : {(void*)u, (void*)dt, (void*)z, (void*)bc, (void*)A, (void*)Dskip, (void*)dt_bias, (void*)h0,
                    (void*)out, (void*)h_last, (void*)ws.chunk_state, (void*)ws.chunk_dsum})
    if (ptr) CUDA_CHECK(cudaFree(ptr));
  return ok;
}

// Returns a bit per version that passed every check (bit v).
static unsigned check_all(int version, int num_sms) {
  unsigned passed = 0;
  // odd shape, scalar paths (D % 8 != 0, odd strides), h0 and h_last
  const ScanHost s1 = make_host_problem(2, 333, 97, 97 + 3, 2 * kN + 5, 3, 3 + kN + 1, true, 1234);
  // aligned shape, 16-byte paths, z a view into a [.., 2D] row, B/C views at the model's offsets
  const ScanHost s2 = make_host_problem(1, 1000, 256, 2 * 256, 128, 96, 112, false, 99);
  for (int v = 1; v <= kNumVersions; ++v) {
    if (version && v != version) continue;
    bool ok = check_version(v, num_sms, 0, s1, "B2 L333 D97 h0, odd strides");
    ok &= check_version(v, num_sms, 0, s2, "B1 L1000 D256 aligned views");
    if (v == 6) {
      ok &= check_version(v, num_sms, 3, s1, "B2 L333 D97 h0, 3 chunks");
      ok &= check_version(v, num_sms, 7, s2, "B1 L1000 D256, 7 chunks");
    }
    if (ok) passed |= 1u << v;
  }
  return passed;
}

struct TimingRow {
  std::string shape;
  int version;
  float ms;
};

static void time_shape(int B, int L, int D, unsigned passed, int num_sms, std::vector<TimingRow>& rows) {
  const size_t n = size_t(B) * L * D;
  bf16* u = device_alloc<bf16>(n);
  bf16* dt = device_alloc<bf16>(n);
  bf16* z = device_alloc<bf16>(n);
  bf16* out = device_alloc<bf16>(n);
  bf16* bc = device_alloc<bf16>(size_t(B) * L * 2 * kN);
  device_fill_uniform_bf16(u, n, 1, -1.f, 1.f);
  device_fill_uniform_bf16(dt, n, 2, -1.f, 1.f);
  device_fill_uniform_bf16(z, n, 3, -2.f, 2.f);
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
  ScanParams p{};
  p.out = out, p.h_last = nullptr, p.u = u, p.dt = dt, p.z = z, p.ld_z = D;
  p.Bm = bc, p.Cm = bc + kN, p.ld_bc = 2 * kN;
  p.A = A, p.Dskip = Dskip, p.dt_bias = dt_bias, p.h0 = nullptr;
  p.B = B, p.L = L, p.D = D;
  ScanWorkspace ws;
  char shape[64];
  std::snprintf(shape, sizeof shape, "B%d L%d D%d N%d", B, L, D, kN);
  for (int v = 1; v <= kNumVersions; ++v) {
    if (!(passed >> v & 1)) continue;  // only versions that passed their checks are timed
    device_poison_bf16(out, n);
    const float ms = time_median_ms([&] { run_version(v, p, ws, num_sms); });
    // every output written at this size too (NaN poison gone)?
    std::vector<bf16> probe(4096);
    CUDA_CHECK(cudaMemcpy(probe.data(), out + n - probe.size(), probe.size() * sizeof(bf16), cudaMemcpyDeviceToHost));
    size_t bad = 0;
    for (auto x : probe) bad += !std::isfinite(host_bf2f(x));
    const double exps = double(n) * kN;
    std::printf("time  v%d %-22s median %8.3f ms   %6.1f G exp2/s  %s\n", v, shape, ms, exps / ms * 1e-6,
                bad ? "UNWRITTEN OUTPUT" : "");
    if (v == 6)
      std::printf("      v6 chunks at this shape: %d\n",
                  g_force_chunks > 0 ? g_force_chunks : pick_chunks(B, L, D, num_sms));
    rows.push_back({shape, v, ms});
  }
  for (void* ptr : {(void*)u, (void*)dt, (void*)z, (void*)out, (void*)bc, (void*)A, (void*)Dskip, (void*)dt_bias,
                    (void*)ws.chunk_state, (void*)ws.chunk_dsum})
    if (ptr) CUDA_CHECK(cudaFree(ptr));
}

int main(int argc, char** argv) {
  int version = 0;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--check-only") check_only = true;
    else if (a == "--chunks" && i + 1 < argc) g_force_chunks = std::atoi(argv[++i]);
    else version = std::atoi(a.c_str());
  }
  int dev = 0;
  CUDA_CHECK(cudaSetDevice(dev));
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  std::printf("device: %s, %d SMs, sm_%d%d\n", prop.name, prop.multiProcessorCount, prop.major, prop.minor);

  const unsigned passed = check_all(version, prop.multiProcessorCount);
  const unsigned wanted = version ? 1u << version : ((1u << (kNumVersions + 1)) - 2);
  const bool ok = passed == wanted;
  std::printf("checks: %s\n", ok ? "all passed" : "FAILED (failing versions are not timed)");
  if (check_only) return ok ? 0 : 1;

  std::vector<TimingRow> rows;
  time_shape(4, 4096, 3072, passed, prop.multiProcessorCount, rows);
  time_shape(1, 65536, 3072, passed, prop.multiProcessorCount, rows);
  std::printf("\n");
  for (const auto& r : rows) std::printf("RESULT|selective_scan_fwd|%s|v%d|%.4f\n", r.shape.c_str(), r.version, r.ms);
  return ok ? 0 : 1;
}
