// Causal depthwise conv1d (+ bias, no activation), CUDA. Math and layouts as cpu/conv1d.cpp: with
// xx = state ++ x along time (state = the K-1 rows before x, [B or slots, K-1, D]; zeros when absent),
//   out[b, t, d] = bias[d] + sum_{j<K} w[d, j] * xx[b, t + j, d]     (xx row t+j = x row t-(K-1)+j)
// Backward (s = t - (K-1) + j, the x row that output t reads through tap j):
//   dx[b, s, d] += sum_j w[d, j] * dout[b, s + (K-1) - j, d]    (terms with s + K-1-j < L)
//   dw[d, j]    += sum_{b,t} dout[b, t, d] * xx[b, t + j, d];   dbias[d] += sum_{b,t} dout[b, t, d]
// x rows are ld_x apart (a view into in_proj's output), out and dout are dense [B, L, D].
// All arithmetic in fp32; bf16 values are widened on load and rounded once on store. In the bf16 mode
// dw and dbias are fp32 (the parameter gradients) beside bf16 activations.
#include <cuda_bf16.h>

#include <cstring>
#include <type_traits>

#include "ops/cuda/check.cuh"
#include "ops/cuda/conv1d_backward.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/mixer_common.cuh"

namespace sambalm::ops::cuda {

namespace {

// 8 consecutive elements as one or two 16-byte vectors (the tiled forward keeps its rows this way).
template <typename D>
struct Vec8;
template <>
struct Vec8<__nv_bfloat16> {
  uint4 v;
  __device__ __forceinline__ void zero() { v = make_uint4(0, 0, 0, 0); }
  __device__ __forceinline__ void load(const __nv_bfloat16* p, int nvalid, bool vec) {
    zero();
    if (nvalid <= 0) return;
    if (vec && nvalid >= 8) {
      v = __ldg(reinterpret_cast<const uint4*>(p));
      return;
    }
    uint16_t tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const uint16_t* q = reinterpret_cast<const uint16_t*>(p);
#pragma unroll
    for (int k = 0; k < 8; ++k)
      if (k < nvalid) tmp[k] = q[k];
    memcpy(&v, tmp, 16);
  }
  __device__ __forceinline__ void unpack(float (&f)[8]) const {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      f[2 * i] = __uint_as_float(w[i] << 16);
      f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
  }
};
template <>
struct Vec8<float> {
  float4 a, b;
  __device__ __forceinline__ void zero() { a = b = make_float4(0.f, 0.f, 0.f, 0.f); }
  __device__ __forceinline__ void load(const float* p, int nvalid, bool vec) {
    zero();
    if (nvalid <= 0) return;
    if (vec && nvalid >= 8) {
      a = __ldg(reinterpret_cast<const float4*>(p));
      b = __ldg(reinterpret_cast<const float4*>(p) + 1);
      return;
    }
    float t[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int k = 0; k < 8; ++k)
      if (k < nvalid) t[k] = p[k];
    a = make_float4(t[0], t[1], t[2], t[3]);
    b = make_float4(t[4], t[5], t[6], t[7]);
  }
  __device__ __forceinline__ void unpack(float (&f)[8]) const {
    f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
  }
};

template <typename D>
struct ConvArgs {
  D* out;
  const D* x;
  int64_t ld_x;
  const D* w;
  const D* bias;
  const D* state;  // nullable
  const int32_t* slots;
  int64_t B, L, D_, K;
  bool vec_x, vec_state;
};

__device__ __forceinline__ int64_t state_row(const int32_t* slots, int64_t b) { return slots ? slots[b] : b; }

// Forward, the development file's version 2 (dev/cuda/causal_conv1d_forward.cu) without the fused
// SiLU: a thread owns 8 channels x TT steps, issues the loads of the K-1+TT rows it reads before the
// first use, and slides the K-tap window in registers.
template <typename D, int K, int TT>
__global__ void __launch_bounds__(128) conv_forward_tiled(ConvArgs<D> p) {
  const int64_t nc8 = (p.D_ + 7) / 8, ntb = (p.L + TT - 1) / TT;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= p.B * ntb * nc8) return;
  const int64_t c8 = idx % nc8, tb = (idx / nc8) % ntb, b = idx / (nc8 * ntb);
  const int64_t ch = c8 * 8, t0 = tb * TT;
  const int nvalid = static_cast<int>(p.D_ - ch < 8 ? p.D_ - ch : 8);

  float w[K][8], bias[8];
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const bool ok = k < nvalid;
    bias[k] = ok ? to_f32(p.bias[ch + k]) : 0.f;
#pragma unroll
    for (int j = 0; j < K; ++j) w[j][k] = ok ? to_f32(p.w[(ch + k) * K + j]) : 0.f;
  }
  Vec8<D> rows[TT + K - 1];
#pragma unroll
  for (int i = 0; i < TT + K - 1; ++i) {
    const int64_t r = t0 - (K - 1) + i;  // x row; negative rows come from the state
    if (r >= 0) {
      if (r < p.L)
        rows[i].load(p.x + (b * p.L + r) * p.ld_x + ch, nvalid, p.vec_x);
      else
        rows[i].zero();
    } else if (p.state) {
      rows[i].load(p.state + (state_row(p.slots, b) * (K - 1) + (K - 1) + r) * p.D_ + ch, nvalid, p.vec_state);
    } else {
      rows[i].zero();
    }
  }
#pragma unroll
  for (int s = 0; s < TT; ++s) {
    const int64_t t = t0 + s;
    if (t >= p.L) break;
    float acc[8];
#pragma unroll
    for (int k = 0; k < 8; ++k) acc[k] = bias[k];
#pragma unroll
    for (int j = 0; j < K; ++j) {
      float f[8];
      rows[s + j].unpack(f);
#pragma unroll
      for (int k = 0; k < 8; ++k) acc[k] = fmaf(w[j][k], f[k], acc[k]);
    }
    D* dst = p.out + (b * p.L + t) * p.D_ + ch;
#pragma unroll
    for (int k = 0; k < 8; ++k)
      if (k < nvalid) dst[k] = from_f32<D>(acc[k]);
  }
}

// Forward for any K: one thread per output element.
template <typename D>
__global__ void conv_forward_simple(ConvArgs<D> p) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= p.B * p.L * p.D_) return;
  const int64_t d = idx % p.D_, t = (idx / p.D_) % p.L, b = idx / (p.D_ * p.L);
  float acc = to_f32(p.bias[d]);
  for (int64_t j = 0; j < p.K; ++j) {
    const int64_t r = t - (p.K - 1) + j;
    float xv = 0.f;
    if (r >= 0)
      xv = to_f32(p.x[(b * p.L + r) * p.ld_x + d]);
    else if (p.state)
      xv = to_f32(p.state[(state_row(p.slots, b) * (p.K - 1) + (p.K - 1) + r) * p.D_ + d]);
    acc = fmaf(to_f32(p.w[d * p.K + j]), xv, acc);
  }
  p.out[idx] = from_f32<D>(acc);
}

// dx: one thread per x element (each is owned by one thread: no atomics).
template <typename D>
__global__ void conv_backward_dx(D* dx, int64_t ld_dx, const D* dout, const D* w, int64_t B, int64_t L, int64_t Dn,
                                 int64_t K) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * L * Dn) return;
  const int64_t d = idx % Dn, s = (idx / Dn) % L, b = idx / (Dn * L);
  float acc = 0.f;
  for (int64_t j = 0; j < K; ++j) {
    const int64_t t = s + (K - 1) - j;
    if (t < L) acc = fmaf(to_f32(w[d * K + j]), to_f32(dout[(b * L + t) * Dn + d]), acc);
  }
  add_f32(dx + (b * L + s) * ld_dx + d, acc);
}

// dw, dbias: a block owns 32 channels; its kRowWarps warps take rows (b, t) in turn, each lane sums its
// channel's K taps and bias over them in fp32, the warps' partials meet in shared memory and one
// thread per channel adds the totals (one rounding per output; the order is fixed: deterministic).
constexpr int kRowWarps = 16;
template <typename D, typename G>
__global__ void conv_backward_dw(G* dw, G* dbias, const D* dout, const D* x, int64_t ld_x, const D* state, int64_t B,
                                 int64_t L, int64_t Dn, int64_t K) {
  __shared__ float part[kRowWarps][kCudaConvMaxK + 1][33];
  const int lane = threadIdx.x, warp = threadIdx.y;
  const int64_t d = int64_t(blockIdx.x) * 32 + lane;
  float acc[kCudaConvMaxK + 1];  // taps 0..K-1, then the bias
#pragma unroll
  for (int j = 0; j <= kCudaConvMaxK; ++j) acc[j] = 0.f;
  if (d < Dn) {
    for (int64_t row = warp; row < B * L; row += kRowWarps) {
      const int64_t b = row / L, t = row % L;
      const float g = to_f32(dout[row * Dn + d]);
      acc[kCudaConvMaxK] += g;
#pragma unroll
      for (int j = 0; j < kCudaConvMaxK; ++j) {
        if (j >= K) break;
        const int64_t r = t - (K - 1) + j;
        float xv = 0.f;
        if (r >= 0)
          xv = to_f32(x[(b * L + r) * ld_x + d]);
        else if (state)
          xv = to_f32(state[(b * (K - 1) + (K - 1) + r) * Dn + d]);
        acc[j] = fmaf(g, xv, acc[j]);
      }
    }
  }
#pragma unroll
  for (int j = 0; j <= kCudaConvMaxK; ++j) part[warp][j][lane] = acc[j];
  __syncthreads();
  if (d >= Dn) return;
  // Warp w finishes tap w (warp K: the bias).
  for (int j = warp; j <= K; j += kRowWarps) {
    const int slot = j == K ? kCudaConvMaxK : j;
    float total = 0.f;
    for (int w = 0; w < kRowWarps; ++w) total += part[w][slot][lane];
    if (j < K) {
      if (dw) add_f32(dw + d * K + j, total);
    } else if (dbias) {
      add_f32(dbias + d, total);
    }
  }
}

// new_state[slot(b), i] = xx[b, L + i] for i < K-1. One thread per (b, d) walks i upwards, so an
// in-place update (new_state == state, row L+i >= i read before it is overwritten) is safe.
template <typename D>
__global__ void conv_state_update(D* new_state, const D* x, int64_t ld_x, const D* state, const int32_t* slots,
                                  int64_t B, int64_t L, int64_t Dn, int64_t K) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * Dn) return;
  const int64_t d = idx % Dn, b = idx / Dn, sb = state_row(slots, b);
  for (int64_t i = 0; i < K - 1; ++i) {
    const int64_t r = L + i;  // xx row
    D v = from_f32<D>(0.f);
    if (r >= K - 1)
      v = x[(b * L + r - (K - 1)) * ld_x + d];
    else if (state)
      v = state[(sb * (K - 1) + r) * Dn + d];
    new_state[(sb * (K - 1) + i) * Dn + d] = v;
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <typename D, int K>
void launch_tiled(const Context& ctx, const ConvArgs<D>& a) {
  constexpr int TT = sizeof(D) == 2 ? 16 : 8;  // fp32 rows take twice the registers
  const int64_t n = a.B * ((a.L + TT - 1) / TT) * ((a.D_ + 7) / 8);
  conv_forward_tiled<D, K, TT><<<blocks_for(n, 128), 128, 0, stream_of(ctx)>>>(a);
}

template <typename T>
void forward(const Context& ctx, T* out, const T* x, int64_t ld_x, const T* w, const T* bias, const T* state, int64_t B,
             int64_t L, int64_t D, int64_t K, const int32_t* slots) {
  if (B == 0 || L == 0 || D == 0) return;
  using Dv = device_t<T>;
  ConvArgs<Dv> a{dev(out), dev(x), ld_x, dev(w), dev(bias), dev(state), slots, B, L, D, K, false, false};
  // 16-byte vectors need 16-byte aligned rows: every row start is a multiple of 8 elements apart.
  a.vec_x = ld_x % 8 == 0 && aligned16(x);
  a.vec_state = D % 8 == 0 && aligned16(state);
  switch (K) {
    case 2:
      launch_tiled<Dv, 2>(ctx, a);
      break;
    case 3:
      launch_tiled<Dv, 3>(ctx, a);
      break;
    case 4:
      launch_tiled<Dv, 4>(ctx, a);
      break;
    default:
      conv_forward_simple<Dv><<<blocks_for(B * L * D, 256), 256, 0, stream_of(ctx)>>>(a);
  }
  SAMBALM_CUDA_LAUNCH_CHECK();
}

// The streaming backward (conv1d_backward.cuh) for K = 2..4. dw/dbias only when they are fp32 (the
// kernel adds block totals with fp32 atomics); `want_dw` false leaves them to conv_backward_dw.
template <typename Dv, int K>
void launch_stream(const Context& ctx, conv_bwd::Args<Dv> a) {
  constexpr int U = 4;  // steps whose loads are in flight together
  void (*kernel)(conv_bwd::Args<Dv>) = conv_bwd::conv_backward_stream<Dv, K, U>;
  static const int occupancy = [&] {
    int n = 0;
    SAMBALM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, conv_bwd::kThreads, 0));
    return n > 1 ? n : 1;
  }();
  int device = 0, sms = 0;
  SAMBALM_CUDA_CHECK(cudaGetDevice(&device));
  SAMBALM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  int64_t blocks = 0;
  conv_bwd::size_grid(a.B, a.L, a.D_, 32 * conv_bwd::Row16<Dv>::V, int64_t(sms) * occupancy, a.T, a.nbc, blocks);
  kernel<<<static_cast<unsigned>(blocks), conv_bwd::kThreads, 0, stream_of(ctx)>>>(a);
  SAMBALM_CUDA_LAUNCH_CHECK();
}

inline float* fp32_or_null(float* p) { return p; }
inline float* fp32_or_null(bf16*) { return nullptr; }

template <typename T, typename G>
void backward(const Context& ctx, T* dx, int64_t ld_dx, G* dw, G* dbias, const T* dout, const T* x, int64_t ld_x,
              const T* w, const T* state, int64_t B, int64_t L, int64_t D, int64_t K) {
  if (B == 0 || L == 0 || D == 0) return;
  if (K > kCudaConvMaxK && (dw || dbias)) raise_unsupported("causal_conv1d_backward", "K", K, kCudaConvMaxK);
  using Dv = device_t<T>;
  // fp32 parameter gradients are reduced by the streaming kernel; bf16 ones (the all-bf16 overload,
  // tests only) by conv_backward_dw, which rounds each total once.
  constexpr bool kStreamDw = std::is_same_v<G, float>;
  const bool stream = K >= 2 && K <= 4;
  if (stream && (dx || (kStreamDw && (dw || dbias)))) {
    conv_bwd::Args<Dv> a{};
    a.dx = dev(dx);
    a.ld_dx = ld_dx;
    a.dw = kStreamDw ? fp32_or_null(dw) : nullptr;
    a.dbias = kStreamDw ? fp32_or_null(dbias) : nullptr;
    a.dout = dev(dout);
    a.x = dev(x);
    a.ld_x = ld_x;
    a.w = dev(w);
    a.state = dev(state);
    a.B = B, a.L = L, a.D_ = D;
    // 16-byte vectors need 16-byte aligned rows: every row start a multiple of 16 bytes apart.
    constexpr int64_t V = conv_bwd::Row16<Dv>::V;
    a.vec_dx = ld_dx % V == 0 && aligned16(dx);
    a.vec_x = ld_x % V == 0 && aligned16(x);
    a.vec_dout = D % V == 0 && aligned16(dout);
    a.vec_state = D % V == 0 && aligned16(state);
    if (K == 2) launch_stream<Dv, 2>(ctx, a);
    if (K == 3) launch_stream<Dv, 3>(ctx, a);
    if (K == 4) launch_stream<Dv, 4>(ctx, a);
  } else if (dx) {
    conv_backward_dx<<<blocks_for(B * L * D, 256), 256, 0, stream_of(ctx)>>>(dev(dx), ld_dx, dev(dout), dev(w), B, L, D,
                                                                             K);
    SAMBALM_CUDA_LAUNCH_CHECK();
  }
  if ((dw || dbias) && !(stream && kStreamDw)) {
    const dim3 block(32, kRowWarps);
    conv_backward_dw<<<blocks_for(D, 32), block, 0, stream_of(ctx)>>>(dev(dw), dev(dbias), dev(dout), dev(x), ld_x,
                                                                      dev(state), B, L, D, K);
    SAMBALM_CUDA_LAUNCH_CHECK();
  }
}

template <typename T>
void state_update(const Context& ctx, T* new_state, const T* x, int64_t ld_x, const T* state, int64_t B, int64_t L,
                  int64_t D, int64_t K, const int32_t* slots) {
  if (B == 0 || D == 0 || K <= 1) return;
  conv_state_update<<<blocks_for(B * D, 256), 256, 0, stream_of(ctx)>>>(dev(new_state), dev(x), ld_x, dev(state), slots,
                                                                        B, L, D, K);
  SAMBALM_CUDA_LAUNCH_CHECK();
}

}  // namespace

#define SAMBALM_CUDA_CONV_DEF(T)                                                                                      \
  void causal_conv1d_forward(const Context& ctx, T* out, const T* x, int64_t ld_x, const T* w, const T* bias,         \
                             const T* state, int64_t B, int64_t L, int64_t D, int64_t K, const int32_t* slots) {      \
    forward(ctx, out, x, ld_x, w, bias, state, B, L, D, K, slots);                                                    \
  }                                                                                                                   \
  void causal_conv1d_backward(const Context& ctx, T* dx, int64_t ld_dx, T* dw, T* dbias, const T* dout, const T* x,   \
                              int64_t ld_x, const T* w, const T* state, int64_t B, int64_t L, int64_t D, int64_t K) { \
    backward(ctx, dx, ld_dx, dw, dbias, dout, x, ld_x, w, state, B, L, D, K);                                         \
  }                                                                                                                   \
  void causal_conv1d_state_update(const Context& ctx, T* new_state, const T* x, int64_t ld_x, const T* state,         \
                                  int64_t B, int64_t L, int64_t D, int64_t K, const int32_t* slots) {                 \
    state_update(ctx, new_state, x, ld_x, state, B, L, D, K, slots);                                                  \
  }
SAMBALM_CUDA_CONV_DEF(float)
SAMBALM_CUDA_CONV_DEF(bf16)
#undef SAMBALM_CUDA_CONV_DEF

void causal_conv1d_backward(const Context& ctx, bf16* dx, int64_t ld_dx, float* dw, float* dbias, const bf16* dout,
                            const bf16* x, int64_t ld_x, const bf16* w, const bf16* state, int64_t B, int64_t L,
                            int64_t D, int64_t K) {
  backward(ctx, dx, ld_dx, dw, dbias, dout, x, ld_x, w, state, B, L, D, K);
}

}  // namespace sambalm::ops::cuda
