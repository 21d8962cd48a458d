// Causal depthwise conv1d (+ bias, no activation), CUDA. Math and layouts as cpu/conv1d.cpp: with
// xx = state ++ x along time (state = the K-1 rows before x, [B or slots, K-1, D]; zeros when absent),
//   out[b, t, d] = bias[d] + sum_{j<K} w[d, j] * xx[b, t + j, d]     (xx row t+j = x row t-(K-1)+j)
// Backward (s = t - (K-1) + j, the x row that output t reads through tap j):
//   dx[b, s, d] += sum_j w[d, j] * dout[b, s + (K-1) - j, d]    (terms with s + K-1-j < L)
//   dw[d, j]    += sum_{b,t} dout[b, t, d] * xx[b, t + j, d];   dbias[d] += sum_{b,t} dout[b, t, d]
// causal_conv1d_silu_forward also writes act = silu(out); causal_conv1d_silu_backward is the backward
// with dout = dact * silu'(pre) computed on the fly.
// x rows are ld_x apart (a view into in_proj's output), out and dout are dense [B, L, D].
// All arithmetic in fp32; bf16 values are widened on load and rounded once on store. In the bf16 mode
// dw and dbias are fp32 (the parameter gradients) beside bf16 activations.
//
// Kernels: the forward tiles 8 channels x 16 steps a thread (the development file's version 2); the
// backward for K = 2..4 is one streaming pass for dx, dw and dbias (conv1d_backward.cuh: 16-byte rows,
// the K-1 halo in registers, one fp32 atomic per block, channel and tap for dw/dbias, so their last
// bits may vary from run to run); other K, and bf16 dw/dbias, take the simple kernels below.
#include <cuda_bf16.h>

#include <cstring>
#include <type_traits>

#include "ops/cuda/check.cuh"
#include "ops/cuda/conv1d_backward.cuh"
#include "ops/cuda/conv1d_forward.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/mixer_common.cuh"

namespace sambalm::ops::cuda {

namespace {

using namespace conv_fwd;

// The conv's output gradient at element i: dout, or with pre given dout * silu'(pre) rounded to D (as
// the streaming kernel and a stored gradient round it).
template <typename D>
__device__ __forceinline__ float grad_at(const D* dout, const D* pre, int64_t i) {
  const float g = to_f32(dout[i]);
  return pre ? to_f32(from_f32<D>(conv_bwd::silu_grad(g, to_f32(pre[i])))) : g;
}

// dx: one thread per x element (each is owned by one thread: no atomics).
template <typename D>
__global__ void conv_backward_dx(D* dx, int64_t ld_dx, const D* dout, const D* pre, const D* w, int64_t B, int64_t L,
                                 int64_t Dn, int64_t K) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * L * Dn) return;
  const int64_t d = idx % Dn, s = (idx / Dn) % L, b = idx / (Dn * L);
  float acc = 0.f;
  for (int64_t j = 0; j < K; ++j) {
    const int64_t t = s + (K - 1) - j;
    if (t < L) acc = fmaf(to_f32(w[d * K + j]), grad_at(dout, pre, (b * L + t) * Dn + d), acc);
  }
  add_f32(dx + (b * L + s) * ld_dx + d, acc);
}

// dw, dbias: a block owns 32 channels; its kRowWarps warps take rows (b, t) in turn, each lane sums its
// channel's K taps and bias over them in fp32, the warps' partials meet in shared memory and one
// thread per channel adds the totals (one rounding per output; the order is fixed: deterministic).
constexpr int kRowWarps = 16;
template <typename D, typename G>
__global__ void conv_backward_dw(G* dw, G* dbias, const D* dout, const D* pre, const D* x, int64_t ld_x, const D* state,
                                 int64_t B, int64_t L, int64_t Dn, int64_t K) {
  __shared__ float part[kRowWarps][kCudaConvMaxK + 1][33];
  const int lane = threadIdx.x, warp = threadIdx.y;
  const int64_t d = int64_t(blockIdx.x) * 32 + lane;
  float acc[kCudaConvMaxK + 1];  // taps 0..K-1, then the bias
#pragma unroll
  for (int j = 0; j <= kCudaConvMaxK; ++j) acc[j] = 0.f;
  if (d < Dn) {
    for (int64_t row = warp; row < B * L; row += kRowWarps) {
      const int64_t b = row / L, t = row % L;
      const float g = grad_at(dout, pre, row * Dn + d);
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

// act nullable: given, also act = silu(out).
template <typename T>
void forward(const Context& ctx, T* out, T* act, const T* x, int64_t ld_x, const T* w, const T* bias, const T* state,
             int64_t B, int64_t L, int64_t D, int64_t K, const int32_t* slots) {
  if (B == 0 || L == 0 || D == 0) return;
  using Dv = device_t<T>;
  ConvArgs<Dv> a{dev(out), dev(act), dev(x), ld_x, dev(w), dev(bias), dev(state), slots,
                 B,        L,        D,      K,    false,  false,     false};
  // 16-byte vectors need 16-byte aligned rows: every row start is a multiple of 8 elements apart.
  a.vec_x = ld_x % 8 == 0 && aligned16(x);
  a.vec_state = D % 8 == 0 && aligned16(state);
  a.vec_out = D % 8 == 0 && aligned16(out) && aligned16(act);
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

// pre nullable: given, the gradient of the conv's output is dout * silu'(pre).
template <typename T, typename G>
void backward(const Context& ctx, T* dx, int64_t ld_dx, G* dw, G* dbias, const T* dout, const T* pre, const T* x,
              int64_t ld_x, const T* w, const T* state, int64_t B, int64_t L, int64_t D, int64_t K) {
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
    a.pre = dev(pre);
    a.x = dev(x);
    a.ld_x = ld_x;
    a.w = dev(w);
    a.state = dev(state);
    a.B = B, a.L = L, a.D_ = D;
    // 16-byte vectors need 16-byte aligned rows: every row start a multiple of 16 bytes apart.
    constexpr int64_t V = conv_bwd::Row16<Dv>::V;
    a.vec_dx = ld_dx % V == 0 && aligned16(dx);
    a.vec_x = ld_x % V == 0 && aligned16(x);
    a.vec_dout = D % V == 0 && aligned16(dout) && aligned16(pre);
    a.vec_state = D % V == 0 && aligned16(state);
    if (K == 2) launch_stream<Dv, 2>(ctx, a);
    if (K == 3) launch_stream<Dv, 3>(ctx, a);
    if (K == 4) launch_stream<Dv, 4>(ctx, a);
  } else if (dx) {
    conv_backward_dx<<<blocks_for(B * L * D, 256), 256, 0, stream_of(ctx)>>>(dev(dx), ld_dx, dev(dout), dev(pre),
                                                                             dev(w), B, L, D, K);
    SAMBALM_CUDA_LAUNCH_CHECK();
  }
  if ((dw || dbias) && !(stream && kStreamDw)) {
    const dim3 block(32, kRowWarps);
    conv_backward_dw<<<blocks_for(D, 32), block, 0, stream_of(ctx)>>>(dev(dw), dev(dbias), dev(dout), dev(pre), dev(x),
                                                                      ld_x, dev(state), B, L, D, K);
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
    forward(ctx, out, static_cast<T*>(nullptr), x, ld_x, w, bias, state, B, L, D, K, slots);                          \
  }                                                                                                                   \
  void causal_conv1d_silu_forward(const Context& ctx, T* out, T* act, const T* x, int64_t ld_x, const T* w,           \
                                  const T* bias, const T* state, int64_t B, int64_t L, int64_t D, int64_t K,          \
                                  const int32_t* slots) {                                                             \
    forward(ctx, out, act, x, ld_x, w, bias, state, B, L, D, K, slots);                                               \
  }                                                                                                                   \
  void causal_conv1d_backward(const Context& ctx, T* dx, int64_t ld_dx, T* dw, T* dbias, const T* dout, const T* x,   \
                              int64_t ld_x, const T* w, const T* state, int64_t B, int64_t L, int64_t D, int64_t K) { \
    backward(ctx, dx, ld_dx, dw, dbias, dout, static_cast<const T*>(nullptr), x, ld_x, w, state, B, L, D, K);         \
  }                                                                                                                   \
  void causal_conv1d_silu_backward(const Context& ctx, T* dx, int64_t ld_dx, T* dw, T* dbias, const T* dact,          \
                                   const T* pre, const T* x, int64_t ld_x, const T* w, const T* state, int64_t B,     \
                                   int64_t L, int64_t D, int64_t K) {                                                 \
    backward(ctx, dx, ld_dx, dw, dbias, dact, pre, x, ld_x, w, state, B, L, D, K);                                    \
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
  backward(ctx, dx, ld_dx, dw, dbias, dout, static_cast<const bf16*>(nullptr), x, ld_x, w, state, B, L, D, K);
}
void causal_conv1d_silu_backward(const Context& ctx, bf16* dx, int64_t ld_dx, float* dw, float* dbias, const bf16* dact,
                                 const bf16* pre, const bf16* x, int64_t ld_x, const bf16* w, const bf16* state,
                                 int64_t B, int64_t L, int64_t D, int64_t K) {
  backward(ctx, dx, ld_dx, dw, dbias, dact, pre, x, ld_x, w, state, B, L, D, K);
}

}  // namespace sambalm::ops::cuda
