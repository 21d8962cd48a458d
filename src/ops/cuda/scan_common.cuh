// Shared by the selective scan's forward and backward kernels (selective_scan.cu,
// selective_scan_backward.cu): exp on the special-function unit, and the choice of the kernel instance
// by d_state. Included by .cu files only (C++17, no fmt).
#pragma once

#include <cstdint>
#include <type_traits>

namespace sambalm::ops::cuda {

// bf16 runs take exp(x) as 2^(x log2 e), with A pre-scaled by log2(e) once per channel; fp32 runs use
// expf instead, to match the CPU to rounding.
constexpr float kLog2e = 1.4426950408889634f;

// 2^x on the special-function unit (flushes denormals; 2^-inf = 0).
__device__ __forceinline__ float ex2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// The kernels keep a channel's N states in registers, so each capacity is its own template instance:
// calls launch(std::integral_constant<int, M>{}) once, with the first of the ascending capacities `Ms`
// that holds N, or the last for a larger N (the callers refuse N above kCudaScanMaxN first).
template <int... Ms, typename Launch>
void with_state_capacity(int64_t N, Launch&& launch) {
  constexpr int kCapacities[] = {Ms...};
  constexpr int kLast = kCapacities[sizeof...(Ms) - 1];
  bool done = false;
  auto try_one = [&](auto cap) {
    if (!done && (N <= decltype(cap)::value || decltype(cap)::value == kLast)) {
      launch(cap);
      done = true;
    }
  };
  (try_one(std::integral_constant<int, Ms>{}), ...);
}

}  // namespace sambalm::ops::cuda
