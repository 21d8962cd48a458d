// Kernels of the Mamba mixer's SiLU ops (mamba_activations.cu launches them): silu after the conv and
// the gate y * silu(z) before out_proj, forward and backward. Memory-bound: a thread takes 16 bytes
// of a row at a time (8 bf16 or 4 fp32 values; the last, partial vector of a row and misaligned
// views element by element), in a grid-stride loop over (row, vector) items. Math in fp32 with the
// CPU's formulas in the CPU's order (src/ops/cpu/activations.cpp); forward overwrites, backward adds
// (one rounding per element), a null gradient output is skipped. In a header of its own, free of the
// library's host code, so dev/cuda/host_emu can run it on the CPU.
#pragma once

#include "ops/cuda/vec16.cuh"

namespace sambalm::ops::cuda::silu_k {

using vec16::Row16;

__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

// Rows of D values; the item i is (row i / nvr, values (i % nvr) * V ..).
struct Items {
  int64_t rows, D, nvr;
  bool vec;  // every row of every array starts 16-byte aligned
};

template <typename S>
__device__ __forceinline__ void item(const Items& it, int64_t i, int64_t& r, int64_t& c, int& nvalid) {
  constexpr int V = Row16<S>::V;
  r = i / it.nvr;
  c = (i - r * it.nvr) * V;
  nvalid = it.D - c < V ? static_cast<int>(it.D - c) : V;
}

__device__ __forceinline__ int64_t first_item() { return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t item_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// out[r, d] = y[r, d] * z[r, d] * sigmoid(z[r, d]);  z rows ld_z apart, y and out rows D apart.
template <typename S>
__global__ void gate_forward(S* out, const S* y, const S* z, int64_t ld_z, Items it) {
  constexpr int V = Row16<S>::V;
  for (int64_t i = first_item(); i < it.rows * it.nvr; i += item_stride()) {
    int64_t r, c;
    int nv;
    item<S>(it, i, r, c, nv);
    Row16<S> yv, zv, ov;
    yv.load(y + r * it.D + c, nv, it.vec);
    zv.load(z + r * ld_z + c, nv, it.vec);
    float yf[V], zf[V], o[V];
    yv.unpack(yf);
    zv.unpack(zf);
#pragma unroll
    for (int k = 0; k < V; ++k) o[k] = yf[k] * zf[k] * sigmoid(zf[k]);
    ov.pack(o);
    ov.store(out + r * it.D + c, nv, it.vec);
  }
}

// dy += dout * z * s;  dz += dout * y * s * (1 + z (1 - s)),  s = sigmoid(z);  dz rows ld_dz apart.
template <typename S>
__global__ void gate_backward(S* dy, S* dz, int64_t ld_dz, const S* dout, const S* y, const S* z, int64_t ld_z,
                              Items it) {
  constexpr int V = Row16<S>::V;
  for (int64_t i = first_item(); i < it.rows * it.nvr; i += item_stride()) {
    int64_t r, c;
    int nv;
    item<S>(it, i, r, c, nv);
    Row16<S> gv, zv, yv, dyv, dzv;
    gv.load(dout + r * it.D + c, nv, it.vec);
    zv.load(z + r * ld_z + c, nv, it.vec);
    if (dz) {
      yv.load(y + r * it.D + c, nv, it.vec);
      dzv.load(dz + r * ld_dz + c, nv, it.vec);
    }
    if (dy) dyv.load(dy + r * it.D + c, nv, it.vec);
    float g[V], zf[V], s[V];
    gv.unpack(g);
    zv.unpack(zf);
#pragma unroll
    for (int k = 0; k < V; ++k) s[k] = sigmoid(zf[k]);
    if (dy) {
      float a[V];
      dyv.unpack(a);
#pragma unroll
      for (int k = 0; k < V; ++k) a[k] += g[k] * zf[k] * s[k];
      dyv.pack(a);
      dyv.store(dy + r * it.D + c, nv, it.vec);
    }
    if (dz) {
      float a[V], yf[V];
      dzv.unpack(a);
      yv.unpack(yf);
#pragma unroll
      for (int k = 0; k < V; ++k) a[k] += g[k] * yf[k] * s[k] * (1.f + zf[k] * (1.f - s[k]));
      dzv.pack(a);
      dzv.store(dz + r * ld_dz + c, nv, it.vec);
    }
  }
}

// out = x * sigmoid(x)   (one row of n values)
template <typename S>
__global__ void silu_forward(S* out, const S* x, Items it) {
  constexpr int V = Row16<S>::V;
  for (int64_t i = first_item(); i < it.rows * it.nvr; i += item_stride()) {
    int64_t r, c;
    int nv;
    item<S>(it, i, r, c, nv);
    Row16<S> xv, ov;
    xv.load(x + r * it.D + c, nv, it.vec);
    float xf[V], o[V];
    xv.unpack(xf);
#pragma unroll
    for (int k = 0; k < V; ++k) o[k] = xf[k] * sigmoid(xf[k]);
    ov.pack(o);
    ov.store(out + r * it.D + c, nv, it.vec);
  }
}

// dx += dout * s * (1 + x (1 - s)),  s = sigmoid(x)
template <typename S>
__global__ void silu_backward(S* dx, const S* dout, const S* x, Items it) {
  constexpr int V = Row16<S>::V;
  for (int64_t i = first_item(); i < it.rows * it.nvr; i += item_stride()) {
    int64_t r, c;
    int nv;
    item<S>(it, i, r, c, nv);
    Row16<S> xv, gv, dv;
    xv.load(x + r * it.D + c, nv, it.vec);
    gv.load(dout + r * it.D + c, nv, it.vec);
    dv.load(dx + r * it.D + c, nv, it.vec);
    float xf[V], g[V], a[V];
    xv.unpack(xf);
    gv.unpack(g);
    dv.unpack(a);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float s = sigmoid(xf[k]);
      a[k] += g[k] * s * (1.f + xf[k] * (1.f - s));
    }
    dv.pack(a);
    dv.store(dx + r * it.D + c, nv, it.vec);
  }
}

}  // namespace sambalm::ops::cuda::silu_k
