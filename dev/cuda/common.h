// Shared helpers for the kernel development files in dev/cuda/: error checks, bf16 conversion,
// random fills (host and device), a CUDA-event timer (median after warm-ups) and error measures.
// Header-only so that each development file builds with one nvcc command.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

using bf16 = __nv_bfloat16;

#define CUDA_CHECK(call)                                                                            \
  do {                                                                                              \
    cudaError_t err_ = (call);                                                                      \
    if (err_ != cudaSuccess) {                                                                      \
      std::fprintf(stderr, "CUDA error at %s:%d: %s: %s\n", __FILE__, __LINE__, #call,              \
                   cudaGetErrorString(err_));                                                       \
      std::exit(1);                                                                                 \
    }                                                                                               \
  } while (0)

// After every launch: catches bad launch configurations at once (asynchronous faults show up at the
// next synchronising call, which is checked too).
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

// ---- bf16 on the host (round to nearest even, NaN kept) --------------------------------------
inline uint16_t host_f2bf_bits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40);  // quiet NaN
  const uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
  return uint16_t((x + rounding) >> 16);
}
inline float host_bf_bits2f(uint16_t h) {
  const uint32_t x = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}
inline bf16 host_f2bf(float f) {
  const uint16_t b = host_f2bf_bits(f);
  bf16 r;
  std::memcpy(&r, &b, 2);
  return r;
}
inline float host_bf2f(bf16 h) {
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return host_bf_bits2f(b);
}
// Round a float through bf16 (what the GPU sees when the host uploads bf16 data).
inline float host_round_bf(float f) { return host_bf_bits2f(host_f2bf_bits(f)); }

// ---- random numbers ----------------------------------------------------------------------------
// splitmix64: small, fast, good enough for test data; the same formula runs on the device.
__host__ __device__ inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
__host__ __device__ inline float uniform01(uint64_t seed, uint64_t i) {
  return float(splitmix64(seed * 0x2545f4914f6cdd1dull + i) >> 40) * (1.0f / 16777216.0f);
}

struct HostRng {
  uint64_t seed, i = 0;
  explicit HostRng(uint64_t s) : seed(s) {}
  float uniform(float lo, float hi) { return lo + (hi - lo) * uniform01(seed, i++); }
};

// Host vectors of values already rounded to bf16, so the CPU reference sees exactly the GPU's inputs.
inline std::vector<float> host_random_bf(size_t n, HostRng& rng, float lo, float hi) {
  std::vector<float> v(n);
  for (auto& x : v) x = host_round_bf(rng.uniform(lo, hi));
  return v;
}
inline std::vector<float> host_random_f(size_t n, HostRng& rng, float lo, float hi) {
  std::vector<float> v(n);
  for (auto& x : v) x = rng.uniform(lo, hi);
  return v;
}

__global__ void fill_uniform_bf16_kernel(bf16* p, size_t n, uint64_t seed, float lo, float hi) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = __float2bfloat16(lo + (hi - lo) * uniform01(seed, i));
}
__global__ void fill_bits16_kernel(uint16_t* p, size_t n, uint16_t bits) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = bits;
}
inline void device_fill_uniform_bf16(bf16* p, size_t n, uint64_t seed, float lo, float hi) {
  fill_uniform_bf16_kernel<<<1024, 256>>>(p, n, seed, lo, hi);
  CUDA_CHECK_LAUNCH();
}
// Poison a bf16 buffer with NaN so that an element the kernel fails to write shows up in the check.
inline void device_poison_bf16(bf16* p, size_t n) {
  fill_bits16_kernel<<<1024, 256>>>(reinterpret_cast<uint16_t*>(p), n, 0x7fc1);
  CUDA_CHECK_LAUNCH();
}

// ---- device buffers ----------------------------------------------------------------------------
template <typename T>
T* device_alloc(size_t n) {
  T* p = nullptr;
  CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)));
  return p;
}
inline bf16* device_upload_bf(const std::vector<float>& v) {
  std::vector<bf16> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = host_f2bf(v[i]);
  bf16* d = device_alloc<bf16>(v.size());
  CUDA_CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(bf16), cudaMemcpyHostToDevice));
  return d;
}
inline float* device_upload_f(const std::vector<float>& v) {
  float* d = device_alloc<float>(v.size());
  CUDA_CHECK(cudaMemcpy(d, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice));
  return d;
}
inline std::vector<float> device_download_bf(const bf16* d, size_t n) {
  std::vector<bf16> h(n);
  CUDA_CHECK(cudaMemcpy(h.data(), d, n * sizeof(bf16), cudaMemcpyDeviceToHost));
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = host_bf2f(h[i]);
  return v;
}
inline std::vector<float> device_download_f(const float* d, size_t n) {
  std::vector<float> v(n);
  CUDA_CHECK(cudaMemcpy(v.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost));
  return v;
}

// ---- error measures ----------------------------------------------------------------------------
struct ErrorReport {
  double rel_l2 = 0;      // ||got - ref|| / ||ref||
  double max_abs = 0;     // max |got - ref|
  size_t nonfinite = 0;   // NaN/Inf in got (unwritten elements are NaN-poisoned)
  bool ok(double tol) const { return nonfinite == 0 && rel_l2 <= tol; }
};
inline ErrorReport compare(const std::vector<float>& got, const std::vector<double>& ref) {
  ErrorReport r;
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) {
      ++r.nonfinite;
      continue;
    }
    const double e = double(got[i]) - ref[i];
    num += e * e;
    den += ref[i] * ref[i];
    r.max_abs = std::max(r.max_abs, std::fabs(e));
  }
  r.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return r;
}

// ---- timing ------------------------------------------------------------------------------------
// Median of `reps` CUDA-event timings of f() after `warmup` untimed calls. A call slower than
// `slow_ms` cuts the repetitions to 5 (the naive versions at the long shapes).
template <typename F>
float time_median_ms(F&& f, int warmup = 5, int reps = 20, float slow_ms = 20.f) {
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < warmup; ++i) {
    CUDA_CHECK(cudaEventRecord(start));
    f();
    CUDA_CHECK(cudaEventRecord(stop));
    CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    if (ms > slow_ms) {
      reps = std::min(reps, 5);
      break;
    }
  }
  std::vector<float> times;
  for (int i = 0; i < reps; ++i) {
    CUDA_CHECK(cudaEventRecord(start));
    f();
    CUDA_CHECK(cudaEventRecord(stop));
    CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms);
  }
  CUDA_CHECK(cudaEventDestroy(start));
  CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(times.begin(), times.end());
  const size_t m = times.size();
  return m % 2 ? times[m / 2] : 0.5f * (times[m / 2 - 1] + times[m / 2]);
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// ---- fast approximate functions on the special-function units ----------------------------------
__device__ __forceinline__ float ex2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float lg2_approx(float x) {
  float y;
  asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float tanh_approx(float x) {
  float y;
  asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// 8 bf16 packed in 16 bytes <-> 8 floats.
__device__ __forceinline__ void unpack8(const uint4& v, float (&f)[8]) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}
__device__ __forceinline__ uint4 pack8(const float (&f)[8]) {
  uint32_t w[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const __nv_bfloat162 p = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);  // .x = low half
    std::memcpy(&w[i], &p, 4);
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}
