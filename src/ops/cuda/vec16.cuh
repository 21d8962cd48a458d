// 16 bytes of a row as one vector (8 bf16 or 4 fp32 values), widened to fp32 for the math and
// narrowed back once: what the memory-bound Mamba kernels (conv1d backward, the SiLU and gate ops)
// load and store. Partial vectors (the last channels of a row) and misaligned views take a scalar
// path. C++17, no fmt: the host emulation (dev/cuda/host_emu) compiles it too.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "ops/cuda/mixer_common.cuh"

namespace sambalm::ops::cuda::vec16 {

using cuda::from_f32;
using cuda::to_f32;

// 16 bytes of a row: V = 16 / sizeof(D) consecutive channels. Loads and stores take the number of
// valid channels (the rest read as zero, are not written) and whether the address is 16-byte aligned.
template <typename D>
struct Row16 {
  static constexpr int V = 16 / static_cast<int>(sizeof(D));
  uint4 v;
  __device__ __forceinline__ void zero() { v = make_uint4(0u, 0u, 0u, 0u); }
  __device__ __forceinline__ void load(const D* p, int nvalid, bool vec) {
    zero();
    if (nvalid <= 0) return;
    if (vec && nvalid >= V) {
      v = __ldg(reinterpret_cast<const uint4*>(p));
      return;
    }
    D tmp[V];
    memcpy(tmp, &v, 16);
#pragma unroll
    for (int k = 0; k < V; ++k)
      if (k < nvalid) tmp[k] = p[k];
    memcpy(&v, tmp, 16);
  }
  __device__ __forceinline__ void unpack(float (&f)[V]) const {
    D tmp[V];
    memcpy(tmp, &v, 16);
#pragma unroll
    for (int k = 0; k < V; ++k) f[k] = to_f32(tmp[k]);
  }
  __device__ __forceinline__ void pack(const float (&f)[V]) {
    D tmp[V];
#pragma unroll
    for (int k = 0; k < V; ++k) tmp[k] = from_f32<D>(f[k]);
    memcpy(&v, tmp, 16);
  }
  __device__ __forceinline__ void store(D* p, int nvalid, bool vec) const {
    if (nvalid <= 0) return;
    if (vec && nvalid >= V) {
      *reinterpret_cast<uint4*>(p) = v;
      return;
    }
    D tmp[V];
    memcpy(tmp, &v, 16);
#pragma unroll
    for (int k = 0; k < V; ++k)
      if (k < nvalid) p[k] = tmp[k];
  }
};

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace sambalm::ops::cuda::vec16
