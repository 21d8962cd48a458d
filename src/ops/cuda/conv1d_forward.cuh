// The causal conv1d forward kernels (conv1d.cu launches them), with the SiLU of the Mamba layer
// optionally applied in the same pass (act = silu(out), of out as stored). Kept in a header of its
// own, free of the library's host code, so that dev/cuda/host_emu can run them on the CPU against the
// CPU op. C++17, no fmt.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "ops/cuda/mixer_common.cuh"

namespace sambalm::ops::cuda::conv_fwd {

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

// x * sigmoid(x), the CPU's silu_forward formula.
__device__ __forceinline__ float silu(float x) { return x * (1.f / (1.f + expf(-x))); }

// 8 consecutive outputs: 16-byte stores when all 8 exist and the row is 16-byte aligned.
__device__ __forceinline__ void store8(__nv_bfloat16* dst, const float (&v)[8], int nvalid, bool vec) {
  if (vec && nvalid >= 8) {
    uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const __nv_bfloat162 h = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);  // .x the lower address
      memcpy(&w[i], &h, 4);
    }
    *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
    return;
  }
#pragma unroll
  for (int k = 0; k < 8; ++k)
    if (k < nvalid) dst[k] = __float2bfloat16(v[k]);
}
__device__ __forceinline__ void store8(float* dst, const float (&v)[8], int nvalid, bool vec) {
  if (vec && nvalid >= 8) {
    reinterpret_cast<float4*>(dst)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4*>(dst)[1] = make_float4(v[4], v[5], v[6], v[7]);
    return;
  }
#pragma unroll
  for (int k = 0; k < 8; ++k)
    if (k < nvalid) dst[k] = v[k];
}

template <typename D>
struct ConvArgs {
  D* out;
  D* act;  // nullable: silu(out) as well (the value stored in out, rounded, is the one activated)
  const D* x;
  int64_t ld_x;
  const D* w;
  const D* bias;
  const D* state;  // nullable
  const int32_t* slots;
  int64_t B, L, D_, K;
  bool vec_x, vec_state, vec_out;
};

__device__ __forceinline__ int64_t state_row(const int32_t* slots, int64_t b) { return slots ? slots[b] : b; }

// Forward, the development file's version 2 (dev/cuda/causal_conv1d_forward.cu): a thread owns 8 channels x TT steps,
// issues the loads of the K-1+TT rows it reads before the first use, and slides the K-tap window in registers.
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
    store8(p.out + (b * p.L + t) * p.D_ + ch, acc, nvalid, p.vec_out);
    if (p.act) {
#pragma unroll
      for (int k = 0; k < 8; ++k) acc[k] = silu(to_f32(from_f32<D>(acc[k])));
      store8(p.act + (b * p.L + t) * p.D_ + ch, acc, nvalid, p.vec_out);
    }
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
  if (p.act) p.act[idx] = from_f32<D>(silu(to_f32(p.out[idx])));
}

}  // namespace sambalm::ops::cuda::conv_fwd
