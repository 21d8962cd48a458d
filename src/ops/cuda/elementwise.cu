// Elementwise ops (CUDA): the residual adds, the bf16 copy of fp32 parameters, SwiGLU, softplus,
// A = -exp(A_log) and x *= s (the Mamba mixer's SiLU and SiLU gate: mamba_activations.cu). One thread
// per element in grid-stride loops, scalar loads (no alignment is assumed), except the hot contiguous
// ones of the training step (the residual adds, add_inplace, convert, SwiGLU): when every pointer is
// 16-byte aligned they move eight elements a thread in 16-byte loads and stores (the n % 8 tail one at
// a time), which keeps them at the memory's speed. Math in fp32 with the CPU's formulas in the CPU's
// order (src/ops/cpu/elementwise.cpp, activations.cpp, neg_exp.cpp); forward ops overwrite, backward
// ops add into their outputs, and a null gradient output is skipped.
#include "ops/cuda/check.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/dense_common.cuh"
#include "ops/cuda/vec8.cuh"

namespace sambalm::ops::cuda {

namespace {

using namespace dense_detail;

__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

// y[i] += x[i]
template <typename S>
__global__ void add_inplace_kernel(S* y, const S* x, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) add_to(y + i, load(x + i));
}

// out[i] = x[i] + f[i]   (out may be x: each thread reads its element before it writes it)
template <typename S, typename T>
__global__ void residual_add_kernel(S* out, const S* x, const T* f, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) store(out + i, load(x + i) + load(f + i));
}

// out[i] = bf16(in[i])
__global__ void convert_kernel(__nv_bfloat16* out, const float* in, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) out[i] = __float2bfloat16(in[i]);
}

// s = sigmoid(a);  out = a * s * b
template <typename S>
__global__ void swiglu_forward_kernel(S* out, const S* a, const S* b, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const float ai = load(a + i), s = sigmoid(ai);
    store(out + i, ai * s * load(b + i));
  }
}

// da += dout * b * s * (1 + a (1 - s));  db += dout * a * s
template <typename S>
__global__ void swiglu_backward_kernel(S* da, S* db, const S* dout, const S* a, const S* b, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const float ai = load(a + i), g = load(dout + i), s = sigmoid(ai);
    if (da) add_to(da + i, g * load(b + i) * s * (1.f + ai * (1.f - s)));
    if (db) add_to(db + i, g * ai * s);
  }
}

// ---- eight-wide versions (every pointer 16-byte aligned): chunks of 8 in a grid-stride loop, then the
// n % 8 tail one element a thread. Same formulas, same rounding as the scalar kernels above.

// y[i] += x[i]
template <typename S>
__global__ void add_inplace_vec_kernel(S* y, const S* x, int64_t n) {
  const int64_t n8 = n / 8;
  for (int64_t c = global_index(); c < n8; c += grid_stride()) add8(y + 8 * c, load8(x + 8 * c));
  for (int64_t i = 8 * n8 + global_index(); i < n; i += grid_stride()) add_to(y + i, load(x + i));
}

// out[i] = x[i] + f[i]   (out may be x: each thread reads its chunk before it writes it)
template <typename S, typename T>
__global__ void residual_add_vec_kernel(S* out, const S* x, const T* f, int64_t n) {
  const int64_t n8 = n / 8;
  for (int64_t c = global_index(); c < n8; c += grid_stride()) {
    F8 a = load8(x + 8 * c);
    const F8 b = load8(f + 8 * c);
#pragma unroll
    for (int j = 0; j < 8; ++j) a.v[j] += b.v[j];
    store8(out + 8 * c, a);
  }
  for (int64_t i = 8 * n8 + global_index(); i < n; i += grid_stride()) store(out + i, load(x + i) + load(f + i));
}

// out[i] = bf16(in[i])
__global__ void convert_vec_kernel(__nv_bfloat16* out, const float* in, int64_t n) {
  const int64_t n8 = n / 8;
  for (int64_t c = global_index(); c < n8; c += grid_stride()) store8(out + 8 * c, load8(in + 8 * c));
  for (int64_t i = 8 * n8 + global_index(); i < n; i += grid_stride()) out[i] = __float2bfloat16(in[i]);
}

// s = sigmoid(a);  out = a * s * b
template <typename S>
__global__ void swiglu_forward_vec_kernel(S* out, const S* a, const S* b, int64_t n) {
  const int64_t n8 = n / 8;
  for (int64_t c = global_index(); c < n8; c += grid_stride()) {
    const F8 av = load8(a + 8 * c), bv = load8(b + 8 * c);
    F8 o;
#pragma unroll
    for (int j = 0; j < 8; ++j) o.v[j] = av.v[j] * sigmoid(av.v[j]) * bv.v[j];
    store8(out + 8 * c, o);
  }
  for (int64_t i = 8 * n8 + global_index(); i < n; i += grid_stride()) {
    const float ai = load(a + i), s = sigmoid(ai);
    store(out + i, ai * s * load(b + i));
  }
}

// da += dout * b * s * (1 + a (1 - s));  db += dout * a * s   (a null output is skipped)
template <typename S>
__global__ void swiglu_backward_vec_kernel(S* da, S* db, const S* dout, const S* a, const S* b, int64_t n) {
  const int64_t n8 = n / 8;
  for (int64_t c = global_index(); c < n8; c += grid_stride()) {
    const F8 av = load8(a + 8 * c), g = load8(dout + 8 * c);
    F8 sv;
#pragma unroll
    for (int j = 0; j < 8; ++j) sv.v[j] = sigmoid(av.v[j]);
    if (da) {
      const F8 bv = load8(b + 8 * c);
      F8 d;
#pragma unroll
      for (int j = 0; j < 8; ++j) d.v[j] = g.v[j] * bv.v[j] * sv.v[j] * (1.f + av.v[j] * (1.f - sv.v[j]));
      add8(da + 8 * c, d);
    }
    if (db) {
      F8 d;
#pragma unroll
      for (int j = 0; j < 8; ++j) d.v[j] = g.v[j] * av.v[j] * sv.v[j];
      add8(db + 8 * c, d);
    }
  }
  for (int64_t i = 8 * n8 + global_index(); i < n; i += grid_stride()) {
    const float ai = load(a + i), g = load(dout + i), s = sigmoid(ai);
    if (da) add_to(da + i, g * load(b + i) * s * (1.f + ai * (1.f - s)));
    if (db) add_to(db + i, g * ai * s);
  }
}

// out = x > 20 ? x : log1p(exp(x))   (torch's threshold)
template <typename S, typename X>
__global__ void softplus_forward_kernel(S* out, const X* x, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const float xi = load(x + i);
    store(out + i, xi > 20.f ? xi : log1pf(expf(xi)));
  }
}

// dx += x > 20 ? dout : dout * sigmoid(x)
template <typename S, typename X>
__global__ void softplus_backward_kernel(S* dx, const S* dout, const X* x, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const float xi = load(x + i), g = load(dout + i);
    add_to(dx + i, xi > 20.f ? g : g * sigmoid(xi));
  }
}

// A = -exp(A_log)   (fp32)
__global__ void neg_exp_forward_kernel(float* A, const float* A_log, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) A[i] = -expf(A_log[i]);
}

// dA_log += dA * A   (d(-exp(x))/dx = -exp(x) = A)
__global__ void neg_exp_backward_kernel(float* dA_log, const float* dA, const float* A, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) dA_log[i] += dA[i] * A[i];
}

// x *= c   (c = float(s), as the CPU rounds it)
template <typename S>
__global__ void scale_kernel(S* x, int64_t n, float c) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) store(x + i, load(x + i) * c);
}

}  // namespace

#define SAMBALM_LAUNCH_1D(kernel, n, ...)                                \
  do {                                                                   \
    if ((n) <= 0) return;                                                \
    kernel<<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(__VA_ARGS__); \
    SAMBALM_CUDA_LAUNCH_CHECK();                                         \
  } while (0)

// The eight-wide kernel when every pointer is 16-byte aligned (grid sized for n / 8 chunks), else the
// scalar one.
#define SAMBALM_LAUNCH_VEC(vec_kernel, kernel, n, aligned, ...)                            \
  do {                                                                                     \
    if ((n) <= 0) return;                                                                  \
    if (aligned) {                                                                         \
      vec_kernel<<<blocks_for(((n) + 7) / 8), kThreads, 0, stream_of(ctx)>>>(__VA_ARGS__); \
    } else {                                                                               \
      kernel<<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(__VA_ARGS__);                 \
    }                                                                                      \
    SAMBALM_CUDA_LAUNCH_CHECK();                                                           \
  } while (0)

#define SAMBALM_CUDA_ELEMENTWISE_DEF(T)                                                                               \
  void add_inplace(const Context& ctx, T* y, const T* x, int64_t n) {                                                 \
    SAMBALM_LAUNCH_VEC(add_inplace_vec_kernel, add_inplace_kernel, n, aligned16(y, x), dev(y), dev(x), n);            \
  }                                                                                                                   \
  void swiglu_forward(const Context& ctx, T* out, const T* a, const T* b, int64_t n) {                                \
    SAMBALM_LAUNCH_VEC(swiglu_forward_vec_kernel, swiglu_forward_kernel, n, aligned16(out, a, b), dev(out), dev(a),   \
                       dev(b), n);                                                                                    \
  }                                                                                                                   \
  void swiglu_backward(const Context& ctx, T* da, T* db, const T* dout, const T* a, const T* b, int64_t n) {          \
    if (!da && !db) return;                                                                                           \
    SAMBALM_LAUNCH_VEC(swiglu_backward_vec_kernel, swiglu_backward_kernel, n, aligned16(da, db, dout, a, b), dev(da), \
                       dev(db), dev(dout), dev(a), dev(b), n);                                                        \
  }                                                                                                                   \
  void softplus_forward(const Context& ctx, T* out, const T* x, int64_t n) {                                          \
    SAMBALM_LAUNCH_1D(softplus_forward_kernel, n, dev(out), dev(x), n);                                               \
  }                                                                                                                   \
  void softplus_backward(const Context& ctx, T* dx, const T* dout, const T* x, int64_t n) {                           \
    SAMBALM_LAUNCH_1D(softplus_backward_kernel, n, dev(dx), dev(dout), dev(x), n);                                    \
  }                                                                                                                   \
  void scale_inplace(const Context& ctx, T* x, int64_t n, double s) {                                                 \
    SAMBALM_LAUNCH_1D(scale_kernel, n, dev(x), n, static_cast<float>(s));                                             \
  }
SAMBALM_CUDA_ELEMENTWISE_DEF(float)
SAMBALM_CUDA_ELEMENTWISE_DEF(bf16)
#undef SAMBALM_CUDA_ELEMENTWISE_DEF

void residual_add(const Context& ctx, float* out, const float* x, const float* f, int64_t n) {
  SAMBALM_LAUNCH_VEC(residual_add_vec_kernel, residual_add_kernel, n, aligned16(out, x, f), out, x, f, n);
}
void residual_add(const Context& ctx, float* out, const float* x, const bf16* f, int64_t n) {
  SAMBALM_LAUNCH_VEC(residual_add_vec_kernel, residual_add_kernel, n, aligned16(out, x, f), out, x, dev(f), n);
}
void softplus_forward(const Context& ctx, bf16* out, const float* x, int64_t n) {
  SAMBALM_LAUNCH_1D(softplus_forward_kernel, n, dev(out), x, n);
}
void softplus_backward(const Context& ctx, bf16* dx, const bf16* dout, const float* x, int64_t n) {
  SAMBALM_LAUNCH_1D(softplus_backward_kernel, n, dev(dx), dev(dout), x, n);
}
void convert(const Context& ctx, bf16* out, const float* in, int64_t n) {
  SAMBALM_LAUNCH_VEC(convert_vec_kernel, convert_kernel, n, aligned16(out, in), dev(out), in, n);
}

void neg_exp_forward(const Context& ctx, float* A, const float* A_log, int64_t n) {
  SAMBALM_LAUNCH_1D(neg_exp_forward_kernel, n, A, A_log, n);
}
void neg_exp_backward(const Context& ctx, float* dA_log, const float* dA, const float* A, int64_t n) {
  SAMBALM_LAUNCH_1D(neg_exp_backward_kernel, n, dA_log, dA, A, n);
}

#undef SAMBALM_LAUNCH_1D
#undef SAMBALM_LAUNCH_VEC

}  // namespace sambalm::ops::cuda
