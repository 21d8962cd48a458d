// Optimizer ops (CUDA): AdamW on fp32 parameters and moments, and the sum of squares behind global
// gradient-norm clipping (scale_inplace, x *= s, is with the elementwise ops in elementwise.cu).
#include <cmath>

#include "ops/cuda/check.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/dense_common.cuh"

namespace sambalm::ops::cuda {

namespace {

using namespace dense_detail;

// One AdamW step (torch.optim.AdamW, as src/ops/cpu/adamw.cpp, with the same fp32 constants, which
// the host rounds from double exactly as the CPU does):
//   p  <- p * (1 - lr wd)
//   m  <- b1 m + (1 - b1) g
//   v  <- b2 v + (1 - b2) g^2
//   p  <- p - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
struct AdamConsts {
  float step_size, bc2_sqrt, eps, b1, b2, c1, c2, decay;
};

__global__ void adamw_kernel(float* params, const float* grads, float* m, float* v, int64_t n, AdamConsts k) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const float g = grads[i];
    float p = params[i] * k.decay;
    const float mi = k.b1 * m[i] + k.c1 * g;
    const float vi = k.b2 * v[i] + k.c2 * g * g;
    m[i] = mi;
    v[i] = vi;
    const float denom = sqrtf(vi) / k.bc2_sqrt + k.eps;
    p -= k.step_size * mi / denom;
    params[i] = p;
  }
}

// *out = sum_i x_i^2 in double, without atomics: kBlocks blocks each add a grid-strided share into
// their slot of a fixed array (double per thread, a fixed-order block sum), then one block adds the
// slots in a fixed order: the same bits every run. The slots are this file's device global, so at
// most one sum_squares may be in flight per GPU (calls on one context are ordered by its stream).
constexpr int kBlocks = 1024;
__device__ double ss_partials[kBlocks];

template <typename S>
__global__ void sum_squares_partial_kernel(const S* x, int64_t n) {
  __shared__ double shared[33];
  double s = 0.0;
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const double xi = static_cast<double>(load(x + i));
    s += xi * xi;
  }
  s = block_sum(s, shared);
  if (threadIdx.x == 0) ss_partials[blockIdx.x] = s;
}

__global__ void sum_squares_total_kernel(double* out, int blocks) {
  __shared__ double shared[33];
  double s = 0.0;
  for (int b = threadIdx.x; b < blocks; b += blockDim.x) s += ss_partials[b];
  s = block_sum(s, shared);
  if (threadIdx.x == 0) *out = s;
}

template <typename S>
void sum_squares_impl(const Context& ctx, double* out, const S* x, int64_t n) {
  const cudaStream_t stream = stream_of(ctx);
  if (n <= 0) {
    SAMBALM_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(double), stream));
    return;
  }
  const int64_t want = (n + kThreads - 1) / kThreads;
  const int blocks = static_cast<int>(want < kBlocks ? want : kBlocks);
  sum_squares_partial_kernel<<<blocks, kThreads, 0, stream>>>(x, n);
  SAMBALM_CUDA_LAUNCH_CHECK();
  sum_squares_total_kernel<<<1, kThreads, 0, stream>>>(out, blocks);
  SAMBALM_CUDA_LAUNCH_CHECK();
}

}  // namespace

void adamw_update(const Context& ctx, float* params, const float* grads, float* m, float* v, int64_t n, double lr,
                  double beta1, double beta2, double eps, double weight_decay, int64_t t) {
  if (n <= 0) return;
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(t));
  AdamConsts k;
  k.step_size = static_cast<float>(lr / bc1);
  k.bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  k.eps = static_cast<float>(eps);
  k.b1 = static_cast<float>(beta1);
  k.b2 = static_cast<float>(beta2);
  k.c1 = static_cast<float>(1.0 - beta1);
  k.c2 = static_cast<float>(1.0 - beta2);
  k.decay = static_cast<float>(1.0 - lr * weight_decay);
  adamw_kernel<<<blocks_for(n), kThreads, 0, stream_of(ctx)>>>(params, grads, m, v, n, k);
  SAMBALM_CUDA_LAUNCH_CHECK();
}

// out is a device pointer (optim_ops.h: it lives where the context's memory does); nothing is
// synchronised: the caller copies the value back when it needs it.
void sum_squares(const Context& ctx, double* out, const float* x, int64_t n) { sum_squares_impl(ctx, out, x, n); }
void sum_squares(const Context& ctx, double* out, const bf16* x, int64_t n) { sum_squares_impl(ctx, out, dev(x), n); }

}  // namespace sambalm::ops::cuda
