// What the dense, norm and optimizer kernels share: loads and stores that compute in fp32 whatever
// the element type (float, or bf16 as __nv_bfloat16, rounded to nearest even on the way out), the
// host-side cast of sambalm::bf16 pointers to CUDA's type, grid sizes for grid-stride loops and a
// block-wide sum in a fixed order (so a row's reduction gives the same bits every run).
// C++17 and free of fmt: included by .cu files only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/bf16.h"

namespace sambalm::ops::cuda::dense_detail {

// ---- element access: fp32 math inside -----------------------------------------------------------
__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }
// *p += v, the sum rounded once to the element type.
template <typename S>
__device__ __forceinline__ void add_to(S* p, float v) {
  store(p, load(p) + v);
}

// ---- host: our bf16 is CUDA's __nv_bfloat16 (same size and bits) --------------------------------
inline float* dev(float* p) { return p; }
inline const float* dev(const float* p) { return p; }
inline __nv_bfloat16* dev(bf16* p) { return reinterpret_cast<__nv_bfloat16*>(p); }
inline const __nv_bfloat16* dev(const bf16* p) { return reinterpret_cast<const __nv_bfloat16*>(p); }

// ---- launch shapes ------------------------------------------------------------------------------
constexpr int kThreads = 256;         // elementwise kernels and row kernels
constexpr int64_t kMaxBlocks = 8192;  // grid-stride loops cover the rest

// Blocks for a grid-stride loop over n items (n > 0), kThreads each.
inline unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < kMaxBlocks ? b : kMaxBlocks);
}
// Blocks for a loop of one block per row (rows > 0).
inline unsigned row_blocks(int64_t rows, int64_t cap = 65535) { return static_cast<unsigned>(rows < cap ? rows : cap); }

__device__ __forceinline__ int64_t global_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// ---- reductions ---------------------------------------------------------------------------------
template <typename V>
__device__ __forceinline__ V warp_sum(V v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum of v over the block (blockDim.x a multiple of 32, at most 1024), returned to every thread.
// `shared` holds 33 values; the first barrier lets a previous call's readers finish before it is
// written again, so calls may follow one another.
template <typename V>
__device__ V block_sum(V v, V* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    V t = lane < warps ? shared[lane] : V(0);
    t = warp_sum(t);
    if (lane == 0) shared[32] = t;
  }
  __syncthreads();
  return shared[32];
}
__device__ inline float block_max(float v, float* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float t = lane < warps ? shared[lane] : -INFINITY;
    t = warp_max(t);
    if (lane == 0) shared[32] = t;
  }
  __syncthreads();
  return shared[32];
}

}  // namespace sambalm::ops::cuda::dense_detail
