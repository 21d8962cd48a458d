// bf16: the GPU's compute type (1 sign, 8 exponent, 7 mantissa bits: float32's range, 3 significant
// digits), as a plain 16-bit value that host code can name, store and convert without CUDA headers (C++17, like every header the kernels include).
// The CUDA bodies reinterpret it as __nv_bfloat16 (same size and bits). Its statistics type is
// float (core/precision.h): norm statistics, log-sum-exps and the scan state stay in fp32.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/precision.h"

namespace sambalm {

struct bf16 {
  uint16_t bits = 0;

  bf16() = default;
  // Round to nearest even, as __float2bfloat16 does; NaN stays a (quiet) NaN.
  explicit bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
      bits = static_cast<uint16_t>((u >> 16) | 0x0040u);
    } else {
      const uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
      bits = static_cast<uint16_t>((u + rounding) >> 16);
    }
  }
  explicit operator float() const {
    const uint32_t u = static_cast<uint32_t>(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};
static_assert(sizeof(bf16) == 2);

template <>
struct precision<bf16> {
  using stat = float;
};

}  // namespace sambalm
