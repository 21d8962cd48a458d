// exp on the special-function unit, shared by the selective scan's forward and backward kernels
// (selective_scan.cu, selective_scan_backward.cu). Included by .cu files only (C++17, no fmt).
#pragma once

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

}  // namespace sambalm::ops::cuda
