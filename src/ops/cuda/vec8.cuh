// Eight elements at a time: 16-byte loads and stores of bf16 (one uint4) or fp32 (two float4) with
// fp32 math inside, for the memory-bound dense kernels (elementwise, RoPE, norms). A pointer may take
// the eight-wide path only when it is 16-byte aligned and the chunk starts at a multiple of eight
// elements from it; the host checks that with aligned16() and falls back to the scalar kernels.
// C++17 and free of fmt: included by .cu files only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace sambalm::ops::cuda::dense_detail {

struct F8 {
  float v[8];
};

__device__ __forceinline__ F8 load8(const float* p) {
  const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
  return F8{{a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w}};
}
__device__ __forceinline__ F8 load8(const __nv_bfloat16* p) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
  F8 r;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    r.v[2 * i] = f.x;
    r.v[2 * i + 1] = f.y;
  }
  return r;
}
__device__ __forceinline__ void store8(float* p, const F8& r) {
  reinterpret_cast<float4*>(p)[0] = make_float4(r.v[0], r.v[1], r.v[2], r.v[3]);
  reinterpret_cast<float4*>(p)[1] = make_float4(r.v[4], r.v[5], r.v[6], r.v[7]);
}
// Each element rounded to nearest even, as store() rounds one.
__device__ __forceinline__ void store8(__nv_bfloat16* p, const F8& r) {
  uint4 u;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(r.v[2 * i], r.v[2 * i + 1]);
  *reinterpret_cast<uint4*>(p) = u;
}
// *p += a, each sum rounded once to the element type (as add_to).
template <typename S>
__device__ __forceinline__ void add8(S* p, const F8& a) {
  F8 r = load8(p);
#pragma unroll
  for (int i = 0; i < 8; ++i) r.v[i] += a.v[i];
  store8(p, r);
}

// ---- host ---------------------------------------------------------------------------------------
// True when every non-null pointer is 16-byte aligned.
inline bool aligned16() { return true; }
template <typename P, typename... Rest>
inline bool aligned16(const P* p, const Rest*... rest) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0 && aligned16(rest...);
}

}  // namespace sambalm::ops::cuda::dense_detail
