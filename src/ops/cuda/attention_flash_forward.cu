// Sliding-window attention forward, bf16 tensor cores (dev/cuda/sliding_window_attention.cu version 2);
// the math and the plan of both directions are at the top of attention_flash.cuh.
#include <algorithm>
#include <atomic>
#include <climits>

#include "ops/cuda/attention_flash.cuh"
#include "ops/cuda/attention_flash.h"

namespace sambalm::ops::cuda {

namespace {

using namespace flash;

// (The explicit minimum of one block an SM is what dev/cuda timed: without it ptxas allocates registers
// differently, 172 instead of 210 at D = 128.)
template <int D, int NW, int BK_ = 64>
__global__ void __launch_bounds__(NW * 32, 1) flash_fwd_kernel(FwdParams p) {
  using C = FwdCfg<D, NW, BK_>;
  constexpr int BQ = C::BQ, BK = C::BK, SD = C::SD, NT = C::NT;
  constexpr int KD = D / 16;   // k16 steps over the head dimension
  constexpr int NK8 = BK / 8;  // n8 tiles of S per warp
  constexpr int ND8 = D / 8;   // n8 tiles of O per warp
  extern __shared__ __align__(16) unsigned char smem_raw[];
  nv_bf16* sQ = reinterpret_cast<nv_bf16*>(smem_raw);
  nv_bf16* sK = sQ + BQ * SD;      // [2][BK][SD]
  nv_bf16* sV = sK + 2 * BK * SD;  // [2][BK][SD]

  const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31, gid = lane >> 2, tig = lane & 3, r8 = lane & 7;
  const int T = p.T, W = p.W;
  const int nqt = (T + BQ - 1) / BQ;
  const int qt = nqt - 1 - int(blockIdx.x);  // the longest bands first
  const int h = blockIdx.y, b = blockIdx.z, g = h / (p.H / p.G);
  const int q0 = qt * BQ, qlast = min(T - 1, q0 + BQ - 1);
  const int kt0 = max(0, q0 - W + 1) / BK, kt1 = qlast / BK, ntiles = kt1 - kt0 + 1;
  const nv_bf16* qg = p.q + (size_t(b) * p.H + h) * T * D;
  const nv_bf16* kg = p.k + (size_t(b) * p.G + g) * T * D;
  const nv_bf16* vg = p.v + (size_t(b) * p.G + g) * T * D;

  load_tile<D, BQ, SD, NT>(sQ, qg, D, q0, T);
  load_tile<D, BK, SD, NT>(sK, kg, D, kt0 * BK, T);
  load_tile<D, BK, SD, NT>(sV, vg, D, kt0 * BK, T);
  cp_async_commit();

  const int wr0 = q0 + w * 16;  // this warp's first query row
  const float sl2 = p.scale * kLog2e;
  uint32_t qf[KD][4];
  float o[ND8][4];
#pragma unroll
  for (int i = 0; i < ND8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // rows gid, gid+8; l is this lane's partial sum

  for (int it = 0; it < ntiles; ++it) {
    const int buf = it & 1;
    if (it + 1 < ntiles) {  // the other buffer was released by the barrier that ended iteration it-1
      load_tile<D, BK, SD, NT>(sK + (buf ^ 1) * BK * SD, kg, D, (kt0 + it + 1) * BK, T);
      load_tile<D, BK, SD, NT>(sV + (buf ^ 1) * BK * SD, vg, D, (kt0 + it + 1) * BK, T);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (it == 0) {
#pragma unroll
      for (int kk = 0; kk < KD; ++kk)
        ldsm_x4(qf[kk], sQ + (w * 16 + r8 + 8 * ((lane >> 3) & 1)) * SD + kk * 16 + 8 * (lane >> 4));
    }
    const int k0 = (kt0 + it) * BK;
    // Does the tile meet this warp's rows' bands at all (rows past T never do useful work)?
    const bool active = wr0 < T && k0 <= wr0 + 15 && k0 + BK - 1 >= wr0 - W + 1;
    if (active) {
      const nv_bf16* sKb = sK + buf * BK * SD;
      const nv_bf16* sVb = sV + buf * BK * SD;
      float s[NK8][4];
#pragma unroll
      for (int i = 0; i < NK8; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < KD; ++kk) {
#pragma unroll
        for (int np = 0; np < BK / 16; ++np) {
          uint32_t kb[4];
          ldsm_x4(kb, sKb + (np * 16 + r8 + 8 * (lane >> 4)) * SD + kk * 16 + 8 * ((lane >> 3) & 1));
          mma_bf16(s[2 * np], qf[kk], kb[0], kb[1]);
          mma_bf16(s[2 * np + 1], qf[kk], kb[2], kb[3]);
        }
      }
      // Mask only where the tile crosses an edge of some row's band, or T.
      const bool need_mask = k0 + BK - 1 > wr0 || k0 < wr0 + 15 - W + 1 || k0 + BK > T;
      if (need_mask) {
#pragma unroll
        for (int nt = 0; nt < NK8; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int row = wr0 + gid + 8 * (e >> 1), key = k0 + nt * 8 + 2 * tig + (e & 1);
            if (!(key <= row && key > row - W && key < T)) s[nt][e] = -INFINITY;
          }
      }
      // Online softmax in base 2 on raw scores: p = 2^(s sl2 - m sl2).
      float mu[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < NK8; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float mnew = fmaxf(m[r], mx);
        mu[r] = mnew == -INFINITY ? 0.f : mnew;               // a row with no visible key yet: weights 0, not NaN
        const float corr = ex2_approx((m[r] - mu[r]) * sl2);  // m = -inf -> 0
        m[r] = mnew;
        l[r] *= corr;
#pragma unroll
        for (int i = 0; i < ND8; ++i) o[i][2 * r] *= corr, o[i][2 * r + 1] *= corr;
      }
#pragma unroll
      for (int nt = 0; nt < NK8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float pe = ex2_approx(fmaf(s[nt][e], sl2, -mu[e >> 1] * sl2));
          s[nt][e] = pe;
          l[e >> 1] += pe;
        }
        // O += P V
#pragma unroll
      for (int j = 0; j < BK / 16; ++j) {
        const uint32_t pa[4] = {pack_bf16(s[2 * j][0], s[2 * j][1]), pack_bf16(s[2 * j][2], s[2 * j][3]),
                                pack_bf16(s[2 * j + 1][0], s[2 * j + 1][1]),
                                pack_bf16(s[2 * j + 1][2], s[2 * j + 1][3])};
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
          uint32_t vb[4];
          ldsm_x4_t(vb, sVb + (j * 16 + r8 + 8 * ((lane >> 3) & 1)) * SD + dp * 16 + 8 * (lane >> 4));
          mma_bf16(o[2 * dp], pa, vb[0], vb[1]);
          mma_bf16(o[2 * dp + 1], pa, vb[2], vb[3]);
        }
      }
    }
    __syncthreads();
  }

  // Epilogue: O / l through this warp's own rows of sQ (read only by this warp, into qf) to 16-byte
  // stores; lse = m scale + log l.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
  const float inv0 = 1.f / l[0], inv1 = 1.f / l[1];
  nv_bf16* sO = sQ + w * 16 * SD;
#pragma unroll
  for (int nt = 0; nt < ND8; ++nt) {
    *reinterpret_cast<uint32_t*>(sO + gid * SD + nt * 8 + 2 * tig) = pack_bf16(o[nt][0] * inv0, o[nt][1] * inv0);
    *reinterpret_cast<uint32_t*>(sO + (gid + 8) * SD + nt * 8 + 2 * tig) = pack_bf16(o[nt][2] * inv1, o[nt][3] * inv1);
  }
  if (tig == 0) {
    float* lse = p.lse + (size_t(b) * p.H + h) * T;
    if (wr0 + gid < T) lse[wr0 + gid] = m[0] * p.scale + logf(l[0]);
    if (wr0 + gid + 8 < T) lse[wr0 + gid + 8] = m[1] * p.scale + logf(l[1]);
  }
  __syncwarp();
  for (int c = lane; c < 16 * (D / 8); c += 32) {
    const int r = c / (D / 8), ch = c % (D / 8), t = wr0 + r;
    if (t < T)
      *reinterpret_cast<uint4*>(p.out + (size_t(b) * T + t) * p.H * D + size_t(h) * D + ch * 8) =
          *reinterpret_cast<const uint4*>(sO + r * SD + ch * 8);
  }
}

template <int D>
void launch_forward(const Context& ctx, const FwdParams& p) {
  using C = FwdCfg<D, kFwdWarps>;
  static std::atomic<uint64_t> done{0};
  allow_smem(flash_fwd_kernel<D, kFwdWarps>, C::smem, ctx.device_index, done);
  const dim3 grid(unsigned((p.T + C::BQ - 1) / C::BQ), unsigned(p.H), unsigned(p.B));
  flash_fwd_kernel<D, kFwdWarps><<<grid, C::NT, C::smem, stream_of(ctx)>>>(p);
  SAMBALM_CUDA_LAUNCH_CHECK();
}

// The most dynamic shared memory a block may opt into on this device (queried once per device): 227 KiB
// on Hopper, 163 KiB on A100, 99 KiB on the sm_86/89 parts that could run the sm_80 code.
size_t smem_optin(int device) {
  static std::atomic<int> cache[64] = {};
  if (device >= 0 && device < 64 && cache[device].load(std::memory_order_relaxed) > 0)
    return size_t(cache[device].load(std::memory_order_relaxed));
  int v = 0;
  SAMBALM_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (device >= 0 && device < 64) cache[device].store(v, std::memory_order_relaxed);
  return size_t(v);
}

}  // namespace

bool flash_attention_takes(const Context& ctx, int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs, double scale,
                           const void* const* ptrs, int nptrs) {
  if (!flash_attention_head_size(hs) || !(scale > 0)) return false;
  const size_t smem = hs == 128 ? std::max(FwdCfg<128, kFwdWarps>::smem, BwdCfg<128, kBwdBQ, kBwdWarps>::smem)
                                : std::max(FwdCfg<64, kFwdWarps>::smem, BwdCfg<64, kBwdBQ, kBwdWarps>::smem);
  if (smem > smem_optin(ctx.device_index)) return false;
  // Grid dimensions y and z (heads, batch) and the kernels' int row indices (T + window < 2^31).
  if (B < 1 || B > 65535 || H < 1 || H > 65535 || G < 1 || H % G != 0 || Tn < 1 || Tn > INT_MAX / 4) return false;
  for (int i = 0; i < nptrs; ++i)
    if (reinterpret_cast<uintptr_t>(ptrs[i]) % 16 != 0) return false;
  return true;
}

void flash_attention_forward(const Context& ctx, bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                             int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t window, double scale) {
  FwdParams p;
  p.q = nv(q), p.k = nv(k), p.v = nv(v), p.out = nv(out), p.lse = lse;
  p.B = int(B), p.T = int(Tn), p.H = int(H), p.G = int(G), p.W = effective_window(window, Tn);
  p.scale = static_cast<float>(scale);
  if (hs == 128)
    launch_forward<128>(ctx, p);
  else
    launch_forward<64>(ctx, p);
}

}  // namespace sambalm::ops::cuda
