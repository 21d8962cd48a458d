// Device helpers shared by the mixer kernels (conv1d, selective scan, attention): element loads and
// stores in fp32 whatever the storage type, the host-to-device element type map, warp sums.
// Included by .cu files only (C++17, no fmt).
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "core/bf16.h"

namespace sambalm::ops::cuda {

// The device type behind a host element type: sambalm::bf16 has __nv_bfloat16's size and bits.
template <typename T>
struct device_type {
  using type = T;
};
template <>
struct device_type<bf16> {
  using type = __nv_bfloat16;
};
template <typename T>
using device_t = typename device_type<T>::type;

template <typename T>
inline device_t<T>* dev(T* p) {
  return reinterpret_cast<device_t<T>*>(p);
}
template <typename T>
inline const device_t<T>* dev(const T* p) {
  return reinterpret_cast<const device_t<T>*>(p);
}

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename D>
__device__ __forceinline__ D from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
  return __float2bfloat16(x);
}

// *p += v with one rounding to the storage type (the caller owns *p: no other thread touches it).
__device__ __forceinline__ void add_f32(float* p, float v) { *p += v; }
__device__ __forceinline__ void add_f32(__nv_bfloat16* p, float v) { *p = __float2bfloat16(__bfloat162float(*p) + v); }

// Sum over the 32 lanes of a warp; every lane gets the total (all lanes must call it).
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

inline unsigned blocks_for(int64_t n, int64_t per_block) {
  return static_cast<unsigned>((n + per_block - 1) / per_block);
}

}  // namespace sambalm::ops::cuda
