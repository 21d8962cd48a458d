// Elementwise ops (CUDA): the residual adds, the bf16 copy of fp32 parameters, SwiGLU, softplus,
// A = -exp(A_log) and x *= s (the Mamba mixer's SiLU and SiLU gate: mamba_activations.cu). One
// thread per element in grid-stride loops, scalar loads (no alignment is assumed). Math in fp32 with
// the CPU's formulas in the CPU's order (src/ops/cpu/elementwise.cpp, activations.cpp, neg_exp.cpp);
// forward ops overwrite, backward ops add into their outputs, and a null gradient output is skipped.
#include "ops/cuda/check.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/dense_common.cuh"

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

#define SAMBALM_CUDA_ELEMENTWISE_DEF(T)                                                                      \
  void add_inplace(const Context& ctx, T* y, const T* x, int64_t n) {                                        \
    SAMBALM_LAUNCH_1D(add_inplace_kernel, n, dev(y), dev(x), n);                                             \
  }                                                                                                          \
  void swiglu_forward(const Context& ctx, T* out, const T* a, const T* b, int64_t n) {                       \
    SAMBALM_LAUNCH_1D(swiglu_forward_kernel, n, dev(out), dev(a), dev(b), n);                                \
  }                                                                                                          \
  void swiglu_backward(const Context& ctx, T* da, T* db, const T* dout, const T* a, const T* b, int64_t n) { \
    if (!da && !db) return;                                                                                  \
    SAMBALM_LAUNCH_1D(swiglu_backward_kernel, n, dev(da), dev(db), dev(dout), dev(a), dev(b), n);            \
  }                                                                                                          \
  void softplus_forward(const Context& ctx, T* out, const T* x, int64_t n) {                                 \
    SAMBALM_LAUNCH_1D(softplus_forward_kernel, n, dev(out), dev(x), n);                                      \
  }                                                                                                          \
  void softplus_backward(const Context& ctx, T* dx, const T* dout, const T* x, int64_t n) {                  \
    SAMBALM_LAUNCH_1D(softplus_backward_kernel, n, dev(dx), dev(dout), dev(x), n);                           \
  }                                                                                                          \
  void scale_inplace(const Context& ctx, T* x, int64_t n, double s) {                                        \
    SAMBALM_LAUNCH_1D(scale_kernel, n, dev(x), n, static_cast<float>(s));                                    \
  }
SAMBALM_CUDA_ELEMENTWISE_DEF(float)
SAMBALM_CUDA_ELEMENTWISE_DEF(bf16)
#undef SAMBALM_CUDA_ELEMENTWISE_DEF

void residual_add(const Context& ctx, float* out, const float* x, const float* f, int64_t n) {
  SAMBALM_LAUNCH_1D(residual_add_kernel, n, out, x, f, n);
}
void residual_add(const Context& ctx, float* out, const float* x, const bf16* f, int64_t n) {
  SAMBALM_LAUNCH_1D(residual_add_kernel, n, out, x, dev(f), n);
}
void softplus_forward(const Context& ctx, bf16* out, const float* x, int64_t n) {
  SAMBALM_LAUNCH_1D(softplus_forward_kernel, n, dev(out), x, n);
}
void softplus_backward(const Context& ctx, bf16* dx, const bf16* dout, const float* x, int64_t n) {
  SAMBALM_LAUNCH_1D(softplus_backward_kernel, n, dev(dx), dev(dout), x, n);
}
void convert(const Context& ctx, bf16* out, const float* in, int64_t n) {
  SAMBALM_LAUNCH_1D(convert_kernel, n, dev(out), in, n);
}

void neg_exp_forward(const Context& ctx, float* A, const float* A_log, int64_t n) {
  SAMBALM_LAUNCH_1D(neg_exp_forward_kernel, n, A, A_log, n);
}
void neg_exp_backward(const Context& ctx, float* dA_log, const float* dA, const float* A, int64_t n) {
  SAMBALM_LAUNCH_1D(neg_exp_backward_kernel, n, dA_log, dA, A, n);
}

#undef SAMBALM_LAUNCH_1D

}  // namespace sambalm::ops::cuda
