// RMSNorm and LayerNorm (CUDA). RMSNorm, the one the models train with, has eight-wide kernels for
// rows of a multiple of 8 values on 16-byte aligned buffers: the forward one warp per row, the
// backward a fixed grid of blocks over the rows that computes dx and sums the fp32 weight gradient
// in registers, then adds it with one atomicAdd per column per block (see the kernels). Otherwise,
// and for LayerNorm: one block of kThreads per row for the row statistics and dx (the
// block's threads stride over the row's C values, which stay in L1/L2 between the passes); the
// weight/bias gradients in a second kernel where a block owns 32 columns and sums every row of them
// in a fixed order: deterministic, no atomics, no scratch. Statistics (rstd, mean) are fp32 whatever
// the element type; the row sums are fp32 per thread, then a fixed-order block sum. The bf16 mode's
// block norms read the fp32 residual and fp32 weights, write bf16, and add into the fp32 d(residual)
// and fp32 weight gradients: each kernel takes the types of its arguments separately.
#include <type_traits>

#include "ops/cuda/check.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/dense_common.cuh"
#include "ops/cuda/vec8.cuh"

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

// ---- RMSNorm, eight-wide (C a multiple of 8, every pointer 16-byte aligned) ----------------------

// Forward, one warp per row (kThreads / 32 rows a block, grid-stride over rows): the lanes stride over
// the row's chunks of eight, the sum of squares meets in a warp sum, and the second pass re-reads the
// row from L1. Same formulas as rmsnorm_forward_kernel.
template <typename O, typename X, typename W>
__global__ void rmsnorm_forward_vec_kernel(O* out, float* rstd, const X* x, const W* weight, int64_t n, int64_t C,
                                           double eps) {
  const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  const int64_t C8 = C / 8;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * warps + (threadIdx.x >> 5); row < n;
       row += static_cast<int64_t>(gridDim.x) * warps) {
    const X* xr = x + row * C;
    float ss = 0.f;
    for (int64_t c = lane; c < C8; c += 32) {
      const F8 v = load8(xr + 8 * c);
#pragma unroll
      for (int j = 0; j < 8; ++j) ss += v.v[j] * v.v[j];
    }
    ss = warp_sum(ss);
    const float r = static_cast<float>(1.0 / sqrt(static_cast<double>(ss) / static_cast<double>(C) + eps));
    O* o = out + row * C;
    for (int64_t c = lane; c < C8; c += 32) {
      const F8 v = load8(xr + 8 * c), w = load8(weight + 8 * c);
      F8 y;
#pragma unroll
      for (int j = 0; j < 8; ++j) y.v[j] = v.v[j] * r * w.v[j];
      store8(o + 8 * c, y);
    }
    if (rstd && lane == 0) rstd[row] = r;
  }
}

// Backward with the fp32 weight gradient fused in: a fixed grid of blocks strides over the rows, each
// thread owning the same NC chunks of eight columns in every row (chunk threadIdx.x + k blockDim.x),
// so it keeps their x, dout of the row in registers between the row's dot product and dx, and sums
// its columns' dweight terms over its rows in registers. At the end one atomicAdd per column per
// block adds the block's sums (the order of those adds between blocks varies run to run: the last
// bits of dweight may too, unlike the scalar path's fixed order).
//   dx_j += r g_j - (r^3 / C) x_j sum_k g_k x_k,   g_j = dout_j w_j   (skipped when dx is null)
//   dw_j += sum_i dout_ij x_ij r_i                                      (skipped when dw is null)
template <int NC, typename X, typename DO, typename W>
__global__ void rmsnorm_backward_vec_kernel(X* dx, float* dweight, const DO* dout, const X* x, const W* weight,
                                            const float* rstd, int64_t n, int64_t C) {
  __shared__ float shared[33];
  const int64_t C8 = C / 8;
  float acc[NC][8];
#pragma unroll
  for (int k = 0; k < NC; ++k)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[k][j] = 0.f;
  for (int64_t row = blockIdx.x; row < n; row += gridDim.x) {
    const X* xr = x + row * C;
    const DO* gr = dout + row * C;
    const float r = rstd[row];
    F8 xv[NC], gv[NC];
    float dot = 0.f;
#pragma unroll
    for (int k = 0; k < NC; ++k) {
      const int64_t c = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
      if (c < C8) {
        xv[k] = load8(xr + 8 * c);
        gv[k] = load8(gr + 8 * c);
        if (dx) {
          const F8 w = load8(weight + 8 * c);
#pragma unroll
          for (int j = 0; j < 8; ++j) dot += gv[k].v[j] * w.v[j] * xv[k].v[j];
        }
        if (dweight) {
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[k][j] += gv[k].v[j] * xv[k].v[j] * r;
        }
      }
    }
    if (dx) {  // the same for every thread of the launch: the block sum's barriers are uniform
      dot = block_sum(dot, shared);
      const float a = r;
      const float b = static_cast<float>(double(r) * double(r) * double(r) * double(dot) / double(C));
      X* d = dx + row * C;
#pragma unroll
      for (int k = 0; k < NC; ++k) {
        const int64_t c = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
        if (c < C8) {
          const F8 w = load8(weight + 8 * c);
          F8 add;
#pragma unroll
          for (int j = 0; j < 8; ++j) add.v[j] = a * gv[k].v[j] * w.v[j] - b * xv[k].v[j];
          add8(d + 8 * c, add);
        }
      }
    }
  }
  if (dweight) {
#pragma unroll
    for (int k = 0; k < NC; ++k) {
      const int64_t c = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
      if (c < C8) {
#pragma unroll
        for (int j = 0; j < 8; ++j) atomicAdd(dweight + 8 * c + j, acc[k][j]);
      }
    }
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
  if (C % 8 == 0 && aligned16(out, x, weight)) {
    constexpr int kRows = kThreads / 32;
    rmsnorm_forward_vec_kernel<<<row_blocks((n + kRows - 1) / kRows), kThreads, 0, stream_of(ctx)>>>(out, rstd, x,
                                                                                                     weight, n, C, eps);
  } else {
    rmsnorm_forward_kernel<<<row_blocks(n), kThreads, 0, stream_of(ctx)>>>(out, rstd, x, weight, n, C, eps);
  }
  SAMBALM_CUDA_LAUNCH_CHECK();
}

// The fused eight-wide backward (fp32 weight gradient) where it applies: C a multiple of 8, at most
// 4 chunks of eight a thread (C <= 8192), every pointer 16-byte aligned. Returns false otherwise.
template <typename X, typename DO, typename W>
bool rmsnorm_backward_vec(const Context& ctx, X* dx, float* dweight, const DO* dout, const X* x, const W* weight,
                          const float* rstd, int64_t n, int64_t C) {
  const int64_t C8 = C / 8;
  if (C % 8 != 0 || C8 > 4 * kThreads || !aligned16(dx, dweight, dout, x, weight)) return false;
  const int threads = static_cast<int>(C8 >= kThreads ? kThreads : (C8 + 31) / 32 * 32);
  const int64_t nc = (C8 + threads - 1) / threads;
  // Enough blocks to keep every SM's memory pipe full; each adds its column sums once at the end.
  int device = 0, sms = 0;
  SAMBALM_CUDA_CHECK(cudaGetDevice(&device));
  SAMBALM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int64_t want = int64_t(sms > 0 ? sms : 1) * (2048 / threads);
  const unsigned grid = static_cast<unsigned>(n < want ? n : want);
  cudaStream_t st = stream_of(ctx);
  if (nc == 1)
    rmsnorm_backward_vec_kernel<1><<<grid, threads, 0, st>>>(dx, dweight, dout, x, weight, rstd, n, C);
  else if (nc == 2)
    rmsnorm_backward_vec_kernel<2><<<grid, threads, 0, st>>>(dx, dweight, dout, x, weight, rstd, n, C);
  else
    rmsnorm_backward_vec_kernel<4><<<grid, threads, 0, st>>>(dx, dweight, dout, x, weight, rstd, n, C);
  SAMBALM_CUDA_LAUNCH_CHECK();
  return true;
}

template <typename X, typename G, typename DO, typename W>
void rmsnorm_backward_impl(const Context& ctx, X* dx, G* dweight, const DO* dout, const X* x, const W* weight,
                           const float* rstd, int64_t n, int64_t C) {
  if (n <= 0 || C <= 0 || (!dx && !dweight)) return;
  if constexpr (std::is_same_v<G, float>) {
    if (rmsnorm_backward_vec(ctx, dx, dweight, dout, x, weight, rstd, n, C)) return;
  }
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
