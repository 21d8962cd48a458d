// Sliding-window attention backward, bf16 tensor cores (dev/cuda/sliding_window_attention.cu version 9:
// 8 warps, 128 keys a block, dQ through fp32 atomics into the caller's scratch, then a convert pass);
// the math and the plan of both directions are at the top of attention_flash.cuh.
#include "ops/cuda/attention_flash.cuh"
#include "ops/cuda/attention_flash.h"

namespace sambalm::ops::cuda {

namespace {

using namespace flash;

// Di_t = dout_t . out_t in fp32, one warp per (b, h, t) row.
template <int D>
__global__ void flash_bwd_dot_kernel(BwdParams p) {
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (row >= int64_t(p.B) * p.H * p.T) return;
  const int t = row % p.T, h = (row / p.T) % p.H, b = row / (int64_t(p.T) * p.H);
  const size_t o = (size_t(b) * p.T + t) * p.H * D + size_t(h) * D;
  float acc = 0.f;
  for (int c = lane; c < D / 8; c += 32) {
    float x[8], y[8];
    unpack8(*reinterpret_cast<const uint4*>(p.out + o + c * 8), x);
    unpack8(*reinterpret_cast<const uint4*>(p.dout + o + c * 8), y);
#pragma unroll
    for (int i = 0; i < 8; ++i) acc = fmaf(x[i], y[i], acc);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
  if (lane == 0) p.Di[(size_t(b) * p.H + h) * p.T + t] = acc;
}

__device__ __forceinline__ void atomic_add2(float* p, float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  atomicAdd(reinterpret_cast<float2*>(p), make_float2(a, b));
#else
  atomicAdd(p, a);
  atomicAdd(p + 1, b);
#endif
}

// Part of the backward block's iteration: dS^T (bf16; zeros for an inactive warp) to shared memory with
// keys as rows, then the warps split dQ_tile = dS K into units of 16 query rows x 64 dims and add them
// into the fp32 dq_acc (unscaled: the convert pass scales). Called by the whole block (barrier inside).
template <int D, int BQ, int NW, int NQ8 = BQ / 8>
__device__ __forceinline__ void dq_through_atomics(const BwdParams& p, const float (&dpt)[NQ8][4], nv_bf16* sdS,
                                                   const nv_bf16* sK, int w, int lane, int b, int h, int q0) {
  constexpr int BKV = BwdCfg<D, BQ, NW>::BKV, SD = BwdCfg<D, BQ, NW>::SD, SDS = BwdCfg<D, BQ, NW>::SDS;
  const int gid = lane >> 2, tig = lane & 3, r8 = lane & 7, T = p.T, H = p.H;
#pragma unroll
  for (int nt = 0; nt < NQ8; ++nt) {
    *reinterpret_cast<uint32_t*>(sdS + (w * 16 + gid) * SDS + nt * 8 + 2 * tig) = pack_bf16(dpt[nt][0], dpt[nt][1]);
    *reinterpret_cast<uint32_t*>(sdS + (w * 16 + gid + 8) * SDS + nt * 8 + 2 * tig) = pack_bf16(dpt[nt][2], dpt[nt][3]);
  }
  __syncthreads();
  for (int u = w; u < (BQ / 16) * (D / 64); u += NW) {
    const int rg = u % (BQ / 16), dh = u / (BQ / 16);
    float acc[8][4];
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
#pragma unroll
    for (int j = 0; j < BKV / 16; ++j) {
      uint32_t a[4];
      ldsm_x4_t(a, sdS + (j * 16 + r8 + 8 * (lane >> 4)) * SDS + rg * 16 + 8 * ((lane >> 3) & 1));
#pragma unroll
      for (int dp = 0; dp < 4; ++dp) {
        uint32_t kb[4];
        ldsm_x4_t(kb, sK + (j * 16 + r8 + 8 * ((lane >> 3) & 1)) * SD + dh * 64 + dp * 16 + 8 * (lane >> 4));
        mma_bf16(acc[2 * dp], a, kb[0], kb[1]);
        mma_bf16(acc[2 * dp + 1], a, kb[2], kb[3]);
      }
    }
    const int t0 = q0 + rg * 16 + gid;
    float* dqa = p.dq_acc + ((size_t(b) * H + h) * T) * D + dh * 64 + 2 * tig;
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      if (t0 < T) atomic_add2(dqa + size_t(t0) * D + nt * 8, acc[nt][0], acc[nt][1]);
      if (t0 + 8 < T) atomic_add2(dqa + size_t(t0 + 8) * D + nt * 8, acc[nt][2], acc[nt][3]);
    }
  }
}

template <int D, int BQ, int NW>
__global__ void __launch_bounds__(NW * 32) flash_bwd_kernel(BwdParams p) {
  using C = BwdCfg<D, BQ, NW>;
  constexpr int BKV = C::BKV, SD = C::SD, SDS = C::SDS, NT = C::NT;
  constexpr int KD = D / 16, NQ8 = BQ / 8, ND8 = D / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  nv_bf16* sK = reinterpret_cast<nv_bf16*>(smem_raw);
  nv_bf16* sV = sK + BKV * SD;
  nv_bf16* sQ = sV + BKV * SD;                            // [2][BQ][SD]
  nv_bf16* sdO = sQ + 2 * BQ * SD;                        // [2][BQ][SD]
  nv_bf16* sdS = sdO + 2 * BQ * SD;                       // [BKV][SDS]: dS^T, keys as rows
  float* sL = reinterpret_cast<float*>(sdS + BKV * SDS);  // [2][BQ] lse
  float* sDi = sL + 2 * BQ;                               // [2][BQ] Di

  const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31, gid = lane >> 2, tig = lane & 3, r8 = lane & 7;
  const int T = p.T, W = p.W, H = p.H, qpk = p.H / p.G;
  const int kt = blockIdx.x, g = blockIdx.y, b = blockIdx.z;
  const int k0 = kt * BKV, klast = min(T - 1, k0 + BKV - 1);
  const int qt0 = k0 / BQ, qt1 = min(T - 1, klast + W - 1) / BQ, nq = qt1 - qt0 + 1, niter = qpk * nq;
  const size_t HD = size_t(H) * D;

  load_tile<D, BKV, SD, NT>(sK, p.k + (size_t(b) * p.G + g) * T * D, D, k0, T);
  load_tile<D, BKV, SD, NT>(sV, p.v + (size_t(b) * p.G + g) * T * D, D, k0, T);
  auto issue = [&](int i) {
    const int h = g * qpk + i / nq, q0 = (qt0 + i % nq) * BQ, buf = i & 1;
    load_tile<D, BQ, SD, NT>(sQ + buf * BQ * SD, p.q + (size_t(b) * H + h) * T * D, D, q0, T);
    load_tile<D, BQ, SD, NT>(sdO + buf * BQ * SD, p.dout + size_t(b) * T * HD + size_t(h) * D, HD, q0, T);
    if (tid < BQ) {
      const int t = q0 + tid;
      const size_t so = (size_t(b) * H + h) * T + (t < T ? t : 0);
      cp_async4(sL + buf * BQ + tid, p.lse + so, t < T);
      cp_async4(sDi + buf * BQ + tid, p.Di + so, t < T);
    }
    cp_async_commit();
  };
  issue(0);

  const int kw0 = k0 + w * 16;  // this warp's first key
  const float sl2 = p.scale * kLog2e;
  float dk[ND8][4], dv[ND8][4];
#pragma unroll
  for (int i = 0; i < ND8; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[i][e] = dv[i][e] = 0.f;

  for (int it = 0; it < niter; ++it) {
    const int buf = it & 1, h = g * qpk + it / nq, q0 = (qt0 + it % nq) * BQ;
    if (it + 1 < niter) {
      issue(it + 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const nv_bf16* sQb = sQ + buf * BQ * SD;
    const nv_bf16* sdOb = sdO + buf * BQ * SD;
    const float* sLb = sL + buf * BQ;
    const float* sDib = sDi + buf * BQ;

    float st[NQ8][4], dpt[NQ8][4];  // S^T / P^T, then dP^T / dS^T: 16 keys x BQ queries
#pragma unroll
    for (int i = 0; i < NQ8; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) st[i][e] = dpt[i][e] = 0.f;
    const bool active = kw0 < T && q0 + BQ - 1 >= kw0 && q0 - W + 1 <= kw0 + 15;
    if (active) {
      // S^T = K Q^T
#pragma unroll
      for (int kk = 0; kk < KD; ++kk) {
        uint32_t ka[4];
        ldsm_x4(ka, sK + (w * 16 + r8 + 8 * ((lane >> 3) & 1)) * SD + kk * 16 + 8 * (lane >> 4));
#pragma unroll
        for (int np = 0; np < BQ / 16; ++np) {
          uint32_t qb[4];
          ldsm_x4(qb, sQb + (np * 16 + r8 + 8 * (lane >> 4)) * SD + kk * 16 + 8 * ((lane >> 3) & 1));
          mma_bf16(st[2 * np], ka, qb[0], qb[1]);
          mma_bf16(st[2 * np + 1], ka, qb[2], qb[3]);
        }
      }
      // P^T = exp(S^T scale - lse), 0 where the key is not visible to the query.
      const bool need_mask = q0 < kw0 + 15 || q0 + BQ - W > kw0 || q0 + BQ > T || kw0 + 16 > T;
#pragma unroll
      for (int nt = 0; nt < NQ8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int c = nt * 8 + 2 * tig + (e & 1);
          float pe = ex2_approx(fmaf(st[nt][e], sl2, -sLb[c] * kLog2e));
          if (need_mask) {
            const int key = kw0 + gid + 8 * (e >> 1), q = q0 + c;
            if (!(key <= q && key > q - W && q < T && key < T)) pe = 0.f;
          }
          st[nt][e] = pe;
        }
        // dV += P^T dO
#pragma unroll
      for (int j = 0; j < BQ / 16; ++j) {
        const uint32_t pa[4] = {pack_bf16(st[2 * j][0], st[2 * j][1]), pack_bf16(st[2 * j][2], st[2 * j][3]),
                                pack_bf16(st[2 * j + 1][0], st[2 * j + 1][1]),
                                pack_bf16(st[2 * j + 1][2], st[2 * j + 1][3])};
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
          uint32_t ob[4];
          ldsm_x4_t(ob, sdOb + (j * 16 + r8 + 8 * ((lane >> 3) & 1)) * SD + dp * 16 + 8 * (lane >> 4));
          mma_bf16(dv[2 * dp], pa, ob[0], ob[1]);
          mma_bf16(dv[2 * dp + 1], pa, ob[2], ob[3]);
        }
      }
      // dP^T = V dO^T
#pragma unroll
      for (int kk = 0; kk < KD; ++kk) {
        uint32_t va[4];
        ldsm_x4(va, sV + (w * 16 + r8 + 8 * ((lane >> 3) & 1)) * SD + kk * 16 + 8 * (lane >> 4));
#pragma unroll
        for (int np = 0; np < BQ / 16; ++np) {
          uint32_t ob[4];
          ldsm_x4(ob, sdOb + (np * 16 + r8 + 8 * (lane >> 4)) * SD + kk * 16 + 8 * ((lane >> 3) & 1));
          mma_bf16(dpt[2 * np], va, ob[0], ob[1]);
          mma_bf16(dpt[2 * np + 1], va, ob[2], ob[3]);
        }
      }
      // dS^T = P^T (dP^T - Di)
#pragma unroll
      for (int nt = 0; nt < NQ8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) dpt[nt][e] = st[nt][e] * (dpt[nt][e] - sDib[nt * 8 + 2 * tig + (e & 1)]);
          // dK += dS^T Q
#pragma unroll
      for (int j = 0; j < BQ / 16; ++j) {
        const uint32_t da[4] = {pack_bf16(dpt[2 * j][0], dpt[2 * j][1]), pack_bf16(dpt[2 * j][2], dpt[2 * j][3]),
                                pack_bf16(dpt[2 * j + 1][0], dpt[2 * j + 1][1]),
                                pack_bf16(dpt[2 * j + 1][2], dpt[2 * j + 1][3])};
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
          uint32_t qb[4];
          ldsm_x4_t(qb, sQb + (j * 16 + r8 + 8 * ((lane >> 3) & 1)) * SD + dp * 16 + 8 * (lane >> 4));
          mma_bf16(dk[2 * dp], da, qb[0], qb[1]);
          mma_bf16(dk[2 * dp + 1], da, qb[2], qb[3]);
        }
      }
    }
    dq_through_atomics<D, BQ, NW>(p, dpt, sdS, sK, w, lane, b, h, q0);
    __syncthreads();  // buffers of this iteration and sdS free for reuse
  }

  // Epilogue: dK scale and dV of this warp's 16 keys through its own rows of sK / sV (no other warp
  // reads them after the last barrier), added to dk / dv in bf16 with 16-byte accesses.
  nv_bf16* sdK = sK + w * 16 * SD;
  nv_bf16* sdV = sV + w * 16 * SD;
#pragma unroll
  for (int nt = 0; nt < ND8; ++nt) {
    *reinterpret_cast<uint32_t*>(sdK + gid * SD + nt * 8 + 2 * tig) =
        pack_bf16(dk[nt][0] * p.scale, dk[nt][1] * p.scale);
    *reinterpret_cast<uint32_t*>(sdK + (gid + 8) * SD + nt * 8 + 2 * tig) =
        pack_bf16(dk[nt][2] * p.scale, dk[nt][3] * p.scale);
    *reinterpret_cast<uint32_t*>(sdV + gid * SD + nt * 8 + 2 * tig) = pack_bf16(dv[nt][0], dv[nt][1]);
    *reinterpret_cast<uint32_t*>(sdV + (gid + 8) * SD + nt * 8 + 2 * tig) = pack_bf16(dv[nt][2], dv[nt][3]);
  }
  __syncwarp();
  for (int c = lane; c < 16 * (D / 8); c += 32) {
    const int r = c / (D / 8), ch = c % (D / 8), s = kw0 + r;
    if (s >= T) continue;
    const size_t off = ((size_t(b) * p.G + g) * T + s) * D + ch * 8;
    float a[8], x[8];
    if (p.dk) {
      unpack8(*reinterpret_cast<const uint4*>(p.dk + off), a);
      unpack8(*reinterpret_cast<const uint4*>(sdK + r * SD + ch * 8), x);
#pragma unroll
      for (int i = 0; i < 8; ++i) a[i] += x[i];
      *reinterpret_cast<uint4*>(p.dk + off) = pack8(a);
    }
    if (p.dv) {
      unpack8(*reinterpret_cast<const uint4*>(p.dv + off), a);
      unpack8(*reinterpret_cast<const uint4*>(sdV + r * SD + ch * 8), x);
#pragma unroll
      for (int i = 0; i < 8; ++i) a[i] += x[i];
      *reinterpret_cast<uint4*>(p.dv + off) = pack8(a);
    }
  }
}

// dq += scale * dq_acc, 8 elements a thread.
__global__ void flash_dq_convert_kernel(BwdParams p, size_t n8) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n8; i += size_t(gridDim.x) * blockDim.x) {
    const float4 a = reinterpret_cast<const float4*>(p.dq_acc)[2 * i];
    const float4 c = reinterpret_cast<const float4*>(p.dq_acc)[2 * i + 1];
    float r[8] = {a.x, a.y, a.z, a.w, c.x, c.y, c.z, c.w};
    float old[8];
    unpack8(reinterpret_cast<const uint4*>(p.dq)[i], old);
#pragma unroll
    for (int k = 0; k < 8; ++k) r[k] = fmaf(r[k], p.scale, old[k]);
    reinterpret_cast<uint4*>(p.dq)[i] = pack8(r);
  }
}

template <int D>
void launch_backward(const Context& ctx, const BwdParams& p) {
  using C = BwdCfg<D, kBwdBQ, kBwdWarps>;
  const cudaStream_t st = stream_of(ctx);
  const int64_t qrows = int64_t(p.B) * p.H * p.T;
  flash_bwd_dot_kernel<D><<<unsigned((qrows * 32 + 255) / 256), 256, 0, st>>>(p);
  SAMBALM_CUDA_LAUNCH_CHECK();
  const size_t n = size_t(qrows) * D;
  SAMBALM_CUDA_CHECK(cudaMemsetAsync(p.dq_acc, 0, n * sizeof(float), st));
  static std::atomic<uint64_t> done{0};
  allow_smem(flash_bwd_kernel<D, kBwdBQ, kBwdWarps>, C::smem, ctx.device_index, done);
  const dim3 grid(unsigned((p.T + C::BKV - 1) / C::BKV), unsigned(p.G), unsigned(p.B));
  flash_bwd_kernel<D, kBwdBQ, kBwdWarps><<<grid, C::NT, C::smem, st>>>(p);
  SAMBALM_CUDA_LAUNCH_CHECK();
  if (p.dq) {
    // A grid-stride loop: a few waves of blocks are enough for a copy-bound pass.
    const size_t blocks = (n / 8 + 255) / 256;
    flash_dq_convert_kernel<<<unsigned(blocks < 4096 ? blocks : 4096), 256, 0, st>>>(p, n / 8);
    SAMBALM_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace

void flash_attention_backward(const Context& ctx, bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* out,
                              const float* lse, const bf16* q, const bf16* k, const bf16* v, int64_t B, int64_t Tn,
                              int64_t H, int64_t G, int64_t hs, int64_t window, double scale, float* scratch) {
  if (!dq && !dk && !dv) return;
  if (!scratch) raise_attention_no_scratch(flash_attention_backward_scratch(B, Tn, H, hs));
  BwdParams p;
  p.q = nv(q), p.k = nv(k), p.v = nv(v), p.out = nv(out), p.dout = nv(dout), p.lse = lse;
  p.dq_acc = scratch;                // [B, H, T, hs]
  p.Di = scratch + B * H * Tn * hs;  // [B, H, T] after it
  p.dq = nv(dq), p.dk = nv(dk), p.dv = nv(dv);
  p.B = int(B), p.T = int(Tn), p.H = int(H), p.G = int(G), p.W = effective_window(window, Tn);
  p.scale = static_cast<float>(scale);
  if (hs == 128)
    launch_backward<128>(ctx, p);
  else
    launch_backward<64>(ctx, p);
}

}  // namespace sambalm::ops::cuda
