// Causal depthwise conv1d with bias (Mamba's conv1d: PyTorch Conv1d(groups=D, padding=K-1), output
// truncated to the first L steps), plus its backward and the decode-state update.
//
// With xx = state ++ x along time (state = the K-1 rows before x; zeros when absent):
//   out[b, t, d] = bias[d] + sum_{j=0}^{K-1} w[d, j] * xx[b, t + j, d]      (xx row t+j = x row t-(K-1)+j)
// Backward, with s = t - (K-1) + j the x row read by output t through tap j:
//   dx[b, s, d]  += sum_j w[d, j] * dout[b, s + (K-1) - j, d]   (terms with s + K-1-j < L)
//   dw[d, j]     += sum_{b,t} dout[b, t, d] * xx[b, t + j, d]
//   dbias[d]     += sum_{b,t} dout[b, t, d]
// The Mamba layer's conv is followed by a SiLU: causal_conv1d_silu_forward also writes silu(out), and
// causal_conv1d_silu_backward is the backward with dout = dact * silu'(pre) computed row by row (pre:
// the saved conv output).
// Work is split over blocks of channels (the weights are per channel); the inner loops run over
// channels, contiguous in memory, so they vectorise. dw/dbias sum over b and t inside one task, in a
// fixed order, so the result does not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "ops/cpu/cpu_ops.h"

namespace sambalm::ops::cpu {

namespace {

// Below this much work (multiply-adds) a parallel region costs more than it saves.
constexpr int64_t kParallelWork = int64_t(1) << 16;

constexpr int64_t kConvBlock = 64;  // channels per task

// Row r (0 <= r < K-1+L) of xx = state ++ x for batch b, channels from d0; nullptr when it is a zero row.
template <typename T>
inline const T* xx_row(const T* x, int64_t ld_x, const T* state, int64_t b, int64_t r, int64_t L, int64_t D, int64_t K,
                       int64_t d0, const int32_t* slots = nullptr) {
  if (r >= K - 1) return x + (b * L + r - (K - 1)) * ld_x + d0;
  return state ? state + ((slots ? slots[b] : b) * (K - 1) + r) * D + d0 : nullptr;
}

}  // namespace

template <typename T>
void causal_conv1d_forward(T* out, const T* x, int64_t ld_x, const T* w, const T* bias, const T* state, int64_t B,
                           int64_t L, int64_t D, int64_t K, const int32_t* slots) {
  const int64_t nblk = (D + kConvBlock - 1) / kConvBlock;
#pragma omp parallel for collapse(2) schedule(static) if (B * L * D * K >= kParallelWork)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t blk = 0; blk < nblk; ++blk) {
      const int64_t d0 = blk * kConvBlock, nd = std::min(kConvBlock, D - d0);
      for (int64_t t = 0; t < L; ++t) {
        T* o = out + (b * L + t) * D + d0;
        for (int64_t i = 0; i < nd; ++i) o[i] = bias[d0 + i];
        for (int64_t j = 0; j < K; ++j) {
          const T* xr = xx_row(x, ld_x, state, b, t + j, L, D, K, d0, slots);
          if (!xr) continue;
          const T* wj = w + d0 * K + j;
          for (int64_t i = 0; i < nd; ++i) o[i] += wj[i * K] * xr[i];
        }
      }
    }
  }
}

// act = silu(out) = out * sigmoid(out) after the conv: silu_forward's formula (activations.cpp) on the
// stored out, so the same bits as the two ops.
template <typename T>
void causal_conv1d_silu_forward(T* out, T* act, const T* x, int64_t ld_x, const T* w, const T* bias, const T* state,
                                int64_t B, int64_t L, int64_t D, int64_t K, const int32_t* slots) {
  causal_conv1d_forward(out, x, ld_x, w, bias, state, B, L, D, K, slots);
  const int64_t n = B * L * D;
#pragma omp parallel for schedule(static) if (n >= kParallelWork)
  for (int64_t i = 0; i < n; ++i) act[i] = out[i] * (T(1) / (T(1) + std::exp(-out[i])));
}

namespace {

// The backward's loops, with row(b, t, d0, nd, buf) giving dout[b, t, d0 .. d0+nd) (a pointer into
// dout, or buf filled with the values).
template <typename T, typename Row>
void conv_backward_rows(T* dx, int64_t ld_dx, T* dw, T* dbias, Row&& row, const T* x, int64_t ld_x, const T* w,
                        const T* state, int64_t B, int64_t L, int64_t D, int64_t K) {
  const int64_t nblk = (D + kConvBlock - 1) / kConvBlock;
#pragma omp parallel for schedule(static) if (B * L * D * K >= kParallelWork)
  for (int64_t blk = 0; blk < nblk; ++blk) {
    const int64_t d0 = blk * kConvBlock, nd = std::min(kConvBlock, D - d0);
    T buf[kConvBlock];
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < L; ++t) {
        const T* g = row(b, t, d0, nd, buf);
        if (dbias)
          for (int64_t i = 0; i < nd; ++i) dbias[d0 + i] += g[i];
        for (int64_t j = 0; j < K; ++j) {
          const int64_t r = t + j;  // xx row read by tap j
          if (dw) {
            const T* xr = xx_row(x, ld_x, state, b, r, L, D, K, d0);
            if (xr) {
              T* dwj = dw + d0 * K + j;
              for (int64_t i = 0; i < nd; ++i) dwj[i * K] += g[i] * xr[i];
            }
          }
          if (dx && r >= K - 1) {
            T* dxr = dx + (b * L + r - (K - 1)) * ld_dx + d0;
            const T* wj = w + d0 * K + j;
            for (int64_t i = 0; i < nd; ++i) dxr[i] += wj[i * K] * g[i];
          }
        }
      }
    }
  }
}

}  // namespace

template <typename T>
void causal_conv1d_backward(T* dx, int64_t ld_dx, T* dw, T* dbias, const T* dout, const T* x, int64_t ld_x, const T* w,
                            const T* state, int64_t B, int64_t L, int64_t D, int64_t K) {
  auto row = [&](int64_t b, int64_t t, int64_t d0, int64_t, T*) { return dout + (b * L + t) * D + d0; };
  conv_backward_rows(dx, ld_dx, dw, dbias, row, x, ld_x, w, state, B, L, D, K);
}

// dout = dact * silu'(pre) = dact * s * (1 + pre (1 - s)), s = sigmoid(pre): silu_backward's formula
// (activations.cpp), so this equals silu_backward into a zeroed buffer followed by the plain backward.
template <typename T>
void causal_conv1d_silu_backward(T* dx, int64_t ld_dx, T* dw, T* dbias, const T* dact, const T* pre, const T* x,
                                 int64_t ld_x, const T* w, const T* state, int64_t B, int64_t L, int64_t D, int64_t K) {
  auto row = [&](int64_t b, int64_t t, int64_t d0, int64_t nd, T* buf) {
    const T* a = dact + (b * L + t) * D + d0;
    const T* v = pre + (b * L + t) * D + d0;
    for (int64_t i = 0; i < nd; ++i) {
      const T s = T(1) / (T(1) + std::exp(-v[i]));
      buf[i] = a[i] * s * (T(1) + v[i] * (T(1) - s));
    }
    return static_cast<const T*>(buf);
  };
  conv_backward_rows(dx, ld_dx, dw, dbias, row, x, ld_x, w, state, B, L, D, K);
}

// new_state[b, i] = xx[b, L + i] for i < K-1. Rows are copied in increasing i and row L+i >= i, so
// new_state may be the same buffer as state (in-place update while decoding).
template <typename T>
void causal_conv1d_state_update(T* new_state, const T* x, int64_t ld_x, const T* state, int64_t B, int64_t L, int64_t D,
                                int64_t K, const int32_t* slots) {
  // Sequences are independent (each reads and writes only its own slot's rows).
#pragma omp parallel for schedule(static) if (B * (K - 1) * D >= kParallelWork)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t i = 0; i < K - 1; ++i) {
      const T* src = xx_row(x, ld_x, state, b, L + i, L, D, K, 0, slots);
      T* dst = new_state + ((slots ? slots[b] : b) * (K - 1) + i) * D;
      if (src == dst) continue;  // in place with L = 0
      if (src)
        std::copy(src, src + D, dst);
      else
        std::fill(dst, dst + D, T(0));
    }
  }
}

#define SAMBALM_INSTANTIATE(T)                                                                                       \
  template void causal_conv1d_forward<T>(T*, const T*, int64_t, const T*, const T*, const T*, int64_t, int64_t,      \
                                         int64_t, int64_t, const int32_t*);                                          \
  template void causal_conv1d_backward<T>(T*, int64_t, T*, T*, const T*, const T*, int64_t, const T*, const T*,      \
                                          int64_t, int64_t, int64_t, int64_t);                                       \
  template void causal_conv1d_silu_forward<T>(T*, T*, const T*, int64_t, const T*, const T*, const T*, int64_t,      \
                                              int64_t, int64_t, int64_t, const int32_t*);                            \
  template void causal_conv1d_silu_backward<T>(T*, int64_t, T*, T*, const T*, const T*, const T*, int64_t, const T*, \
                                               const T*, int64_t, int64_t, int64_t, int64_t);                        \
  template void causal_conv1d_state_update<T>(T*, const T*, int64_t, const T*, int64_t, int64_t, int64_t, int64_t,   \
                                              const int32_t*);
SAMBALM_INSTANTIATE(float)
SAMBALM_INSTANTIATE(double)
#undef SAMBALM_INSTANTIATE

}  // namespace sambalm::ops::cpu
