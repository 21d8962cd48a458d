// dbias[n] += sum_m dout[m, n]   (rows of stride ld; fp32 accumulation whatever the element types: dbias
// may be fp32 beside a bf16 dout, the bf16 mode's parameter gradients)
//
// A block owns 32 columns and 8 warps; warp w sums rows w, w+8, ... of its lane's column (each
// row's 32 columns are one coalesced load), the 8 partial sums meet in shared memory and one thread
// per column adds the total into dbias. Columns beyond N and rows beyond M are skipped.
#include <cuda_bf16.h>

#include "ops/cuda/check.cuh"
#include "ops/cuda/cuda_ops.h"

namespace sambalm::ops::cuda {

namespace {
__device__ inline float to_f32(float x) { return x; }
__device__ inline float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ inline void add_to(float* p, float v) { *p += v; }
__device__ inline void add_to(__nv_bfloat16* p, float v) { *p = __float2bfloat16(__bfloat162float(*p) + v); }

template <typename G, typename T>
__global__ void bias_grad_kernel(G* dbias, const T* dout, int64_t ld, int64_t M, int64_t N) {
  __shared__ float partial[8][33];
  const int lane = threadIdx.x, warp = threadIdx.y;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * 32 + lane;
  float sum = 0.f;
  if (col < N)
    for (int64_t m = warp; m < M; m += 8) sum += to_f32(dout[m * ld + col]);
  partial[warp][lane] = sum;
  __syncthreads();
  if (warp == 0 && col < N) {
    float total = 0.f;
#pragma unroll
    for (int w = 0; w < 8; ++w) total += partial[w][lane];
    add_to(dbias + col, total);
  }
}

template <typename G, typename T>
void launch(const Context& ctx, G* dbias, const T* dout, int64_t ld, int64_t M, int64_t N) {
  if (M == 0 || N == 0) return;
  const dim3 block(32, 8), grid(static_cast<unsigned>((N + 31) / 32));
  bias_grad_kernel<<<grid, block, 0, stream_of(ctx)>>>(dbias, dout, ld, M, N);
  SAMBALM_CUDA_LAUNCH_CHECK();
}
__nv_bfloat16* dev(bf16* p) { return reinterpret_cast<__nv_bfloat16*>(p); }
const __nv_bfloat16* dev(const bf16* p) { return reinterpret_cast<const __nv_bfloat16*>(p); }
}  // namespace

void bias_grad_accumulate(const Context& ctx, float* dbias, const float* dout, int64_t ld, int64_t M, int64_t N) {
  launch(ctx, dbias, dout, ld, M, N);
}
void bias_grad_accumulate(const Context& ctx, bf16* dbias, const bf16* dout, int64_t ld, int64_t M, int64_t N) {
  launch(ctx, dev(dbias), dev(dout), ld, M, N);
}
void bias_grad_accumulate(const Context& ctx, float* dbias, const bf16* dout, int64_t ld, int64_t M, int64_t N) {
  launch(ctx, dbias, dev(dout), ld, M, N);
}

}  // namespace sambalm::ops::cuda
