// RMSNorm and LayerNorm (CUDA). One block of kThreads per row for the row statistics and dx (the
// block's threads stride over the row's C values, which stay in L1/L2 between the passes); the
// weight/bias gradients in a second kernel where a block owns 32 columns and sums every row of them
// in a fixed order: deterministic, no atomics, no scratch. Statistics (rstd, mean) are fp32 whatever
// the element type; the row sums are fp32 per thread, then a fixed-order block sum. The bf16 mode's
// block norms read the fp32 residual and fp32 weights, write bf16, and add into the fp32 d(residual)
// and fp32 weight gradients: each kernel takes the types of its arguments separately.
#include "ops/cuda/check.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/dense_common.cuh"

namespace sambalm::ops::cuda {

namespace {

using namespace dense_detail;

// RMSNorm forward, per row x (one block):
//   r = 1 / sqrt(mean_j x_j^2 + eps)   (saved as rstd when rstd != nullptr)
//   out_j = x_j * r * w_j
template <typename O, typename X, typename W>
__global__ void rmsnorm_forward_kernel(O* out, float* rstd, const X* x, const W* weight, int64_t n, int64_t C,
                                       double eps) {
  __shared__ float shared[33];
  for (int64_t row = blockIdx.x; row < n; row += gridDim.x) {
    const X* xr = x + row * C;
    float ss = 0.f;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
      const float v = load(xr + j);
      ss += v * v;
    }
    ss = block_sum(ss, shared);
    const float r = static_cast<float>(1.0 / sqrt(static_cast<double>(ss) / static_cast<double>(C) + eps));
    O* o = out + row * C;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) store(o + j, load(xr + j) * r * load(weight + j));
    if (rstd && threadIdx.x == 0) rstd[row] = r;
  }
}

// RMSNorm backward, dx of one row (one block), g_j = dout_j * w_j:
//   dx_j += r g_j - (r^3 / C) x_j sum_k g_k x_k
template <typename X, typename DO, typename W>
__global__ void rmsnorm_backward_dx_kernel(X* dx, const DO* dout, const X* x, const W* weight, const float* rstd,
                                           int64_t n, int64_t C) {
  __shared__ float shared[33];
  for (int64_t row = blockIdx.x; row < n; row += gridDim.x) {
    const X* xr = x + row * C;
    const DO* gr = dout + row * C;
    float dot = 0.f;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) dot += load(gr + j) * load(weight + j) * load(xr + j);
    dot = block_sum(dot, shared);
    const float r = rstd[row];
    const float a = r;
    const float b = static_cast<float>(double(r) * double(r) * double(r) * double(dot) / double(C));
    X* d = dx + row * C;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x)
      add_to(d + j, a * load(gr + j) * load(weight + j) - b * load(xr + j));
  }
}

// LayerNorm forward, per row x (one block), biased variance as torch:
//   mu = mean_j x_j,  r = 1 / sqrt(mean_j (x_j - mu)^2 + eps)   (saved as mean, rstd when given)
//   out_j = (x_j - mu) r w_j + b_j   (b may be nullptr)
template <typename O, typename X, typename W>
__global__ void layernorm_forward_kernel(O* out, float* mean, float* rstd, const X* x, const W* weight, const W* bias,
                                         int64_t n, int64_t C, double eps) {
  __shared__ float shared[33];
  for (int64_t row = blockIdx.x; row < n; row += gridDim.x) {
    const X* xr = x + row * C;
    float sum = 0.f;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) sum += load(xr + j);
    sum = block_sum(sum, shared);
    const float mu = static_cast<float>(static_cast<double>(sum) / static_cast<double>(C));
    float var = 0.f;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
      const float d = load(xr + j) - mu;
      var += d * d;
    }
    var = block_sum(var, shared);
    const float r = static_cast<float>(1.0 / sqrt(static_cast<double>(var) / static_cast<double>(C) + eps));
    O* o = out + row * C;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
      float y = (load(xr + j) - mu) * r * load(weight + j);
      if (bias) y += load(bias + j);
      store(o + j, y);
    }
    if (threadIdx.x == 0) {
      if (mean) mean[row] = mu;
      if (rstd) rstd[row] = r;
    }
  }
}

// LayerNorm backward, dx of one row (one block), g_j = dout_j w_j, xhat_j = (x_j - mu) r:
//   dx_j += r (g_j - mean_k g_k - xhat_j mean_k g_k xhat_k)
template <typename X, typename DO, typename W>
__global__ void layernorm_backward_dx_kernel(X* dx, const DO* dout, const X* x, const W* weight, const float* mean,
                                             const float* rstd, int64_t n, int64_t C) {
  __shared__ float shared[33];
  for (int64_t row = blockIdx.x; row < n; row += gridDim.x) {
    const X* xr = x + row * C;
    const DO* gr = dout + row * C;
    const float m = mean[row], r = rstd[row];
    float sg = 0.f, sgx = 0.f;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
      const float g = load(gr + j) * load(weight + j);
      sg += g;
      sgx += g * ((load(xr + j) - m) * r);
    }
    sg = block_sum(sg, shared);
    sgx = block_sum(sgx, shared);
    const float mg = static_cast<float>(double(sg) / double(C)), mgx = static_cast<float>(double(sgx) / double(C));
    X* d = dx + row * C;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x)
      add_to(d + j, r * (load(gr + j) * load(weight + j) - mg - (load(xr + j) - m) * r * mgx));
  }
}

// The weight (and bias) gradients of either norm, summed over the n rows:
//   RMSNorm:   dw_j += sum_i dout_ij x_ij r_i
//   LayerNorm: dw_j += sum_i dout_ij (x_ij - mu_i) r_i,   db_j += sum_i dout_ij
// Block (32, kRowWarps) owns 32 columns; warp w sums rows w, w + kRowWarps, ... of its lane's column
// (a row's 32 columns are one coalesced load); the warps' partial sums meet in shared memory in a
// fixed order and one thread per column adds the total: the same bits every run.
constexpr int kRowWarps = 16;

template <typename G, typename DO, typename X>
__global__ void norm_param_grad_kernel(G* dweight, G* dbias, const DO* dout, const X* x, const float* mean,
                                       const float* rstd, int64_t n, int64_t C) {
  __shared__ float part_w[kRowWarps][33];
  __shared__ float part_b[kRowWarps][33];
  const int lane = threadIdx.x, warp = threadIdx.y;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * 32 + lane;
  float sw = 0.f, sb = 0.f;
  if (col < C) {
    for (int64_t i = warp; i < n; i += kRowWarps) {
      const float g = load(dout + i * C + col);
      const float xhat = mean ? (load(x + i * C + col) - mean[i]) * rstd[i] : load(x + i * C + col) * rstd[i];
      sw += g * xhat;
      sb += g;
    }
  }
  part_w[warp][lane] = sw;
  part_b[warp][lane] = sb;
  __syncthreads();
  if (warp == 0 && col < C) {
    float tw = 0.f, tb = 0.f;
#pragma unroll
    for (int w = 0; w < kRowWarps; ++w) tw += part_w[w][lane], tb += part_b[w][lane];
    if (dweight) add_to(dweight + col, tw);
    if (dbias) add_to(dbias + col, tb);
  }
}

template <typename G, typename DO, typename X>
void param_grads(const Context& ctx, G* dweight, G* dbias, const DO* dout, const X* x, const float* mean,
                 const float* rstd, int64_t n, int64_t C) {
  if ((!dweight && !dbias) || n <= 0 || C <= 0) return;
  const dim3 block(32, kRowWarps), grid(static_cast<unsigned>((C + 31) / 32));
  norm_param_grad_kernel<<<grid, block, 0, stream_of(ctx)>>>(dweight, dbias, dout, x, mean, rstd, n, C);
  SAMBALM_CUDA_LAUNCH_CHECK();
}

template <typename O, typename X, typename W>
void rmsnorm_forward_impl(const Context& ctx, O* out, float* rstd, const X* x, const W* weight, int64_t n, int64_t C,
                          double eps) {
  if (n <= 0 || C <= 0) return;
  rmsnorm_forward_kernel<<<row_blocks(n), kThreads, 0, stream_of(ctx)>>>(out, rstd, x, weight, n, C, eps);
  SAMBALM_CUDA_LAUNCH_CHECK();
}

template <typename X, typename G, typename DO, typename W>
void rmsnorm_backward_impl(const Context& ctx, X* dx, G* dweight, const DO* dout, const X* x, const W* weight,
                           const float* rstd, int64_t n, int64_t C) {
  if (n <= 0 || C <= 0) return;
  if (dx) {
    rmsnorm_backward_dx_kernel<<<row_blocks(n), kThreads, 0, stream_of(ctx)>>>(dx, dout, x, weight, rstd, n, C);
    SAMBALM_CUDA_LAUNCH_CHECK();
  }
  param_grads(ctx, dweight, static_cast<G*>(nullptr), dout, x, nullptr, rstd, n, C);
}

template <typename O, typename X, typename W>
void layernorm_forward_impl(const Context& ctx, O* out, float* mean, float* rstd, const X* x, const W* weight,
                            const W* bias, int64_t n, int64_t C, double eps) {
  if (n <= 0 || C <= 0) return;
  layernorm_forward_kernel<<<row_blocks(n), kThreads, 0, stream_of(ctx)>>>(out, mean, rstd, x, weight, bias, n, C, eps);
  SAMBALM_CUDA_LAUNCH_CHECK();
}

template <typename X, typename G, typename DO, typename W>
void layernorm_backward_impl(const Context& ctx, X* dx, G* dweight, G* dbias, const DO* dout, const X* x,
                             const W* weight, const float* mean, const float* rstd, int64_t n, int64_t C) {
  if (n <= 0 || C <= 0) return;
  if (dx) {
    layernorm_backward_dx_kernel<<<row_blocks(n), kThreads, 0, stream_of(ctx)>>>(dx, dout, x, weight, mean, rstd, n, C);
    SAMBALM_CUDA_LAUNCH_CHECK();
  }
  param_grads(ctx, dweight, dbias, dout, x, mean, rstd, n, C);
}

}  // namespace

// One set of bodies per combination of element types: T the normed output and d(output), X the input
// and d(input), W the weights, G the weight gradients.
#define SAMBALM_CUDA_NORMS_DEF(T, X, W, G)                                                                             \
  void rmsnorm_forward(const Context& ctx, T* out, float* rstd, const X* x, const W* weight, int64_t n, int64_t C,     \
                       double eps) {                                                                                   \
    rmsnorm_forward_impl(ctx, dev(out), rstd, dev(x), dev(weight), n, C, eps);                                         \
  }                                                                                                                    \
  void rmsnorm_backward(const Context& ctx, X* dx, G* dweight, const T* dout, const X* x, const W* weight,             \
                        const float* rstd, int64_t n, int64_t C) {                                                     \
    rmsnorm_backward_impl(ctx, dev(dx), dev(dweight), dev(dout), dev(x), dev(weight), rstd, n, C);                     \
  }                                                                                                                    \
  void layernorm_forward(const Context& ctx, T* out, float* mean, float* rstd, const X* x, const W* weight,            \
                         const W* bias, int64_t n, int64_t C, double eps) {                                            \
    layernorm_forward_impl(ctx, dev(out), mean, rstd, dev(x), dev(weight), dev(bias), n, C, eps);                      \
  }                                                                                                                    \
  void layernorm_backward(const Context& ctx, X* dx, G* dweight, G* dbias, const T* dout, const X* x, const W* weight, \
                          const float* mean, const float* rstd, int64_t n, int64_t C) {                                \
    layernorm_backward_impl(ctx, dev(dx), dev(dweight), dev(dbias), dev(dout), dev(x), dev(weight), mean, rstd, n, C); \
  }
SAMBALM_CUDA_NORMS_DEF(float, float, float, float)
SAMBALM_CUDA_NORMS_DEF(bf16, bf16, bf16, bf16)
SAMBALM_CUDA_NORMS_DEF(bf16, float, float, float)
#undef SAMBALM_CUDA_NORMS_DEF

}  // namespace sambalm::ops::cuda
