// Helpers of the dense/norm/optimizer GPU tests: inputs prepared for an element type (bf16: rounded,
// so the CPU reference sees what the kernel sees), device buffers from float vectors and back, the
// CPU reference in double, and a comparison that names what differs.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "gpu_testing.h"

namespace sambalm::testing_gpu {

template <typename T>
std::vector<T> cast_to(const std::vector<float>& v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else
    return to_bf16(v);
}
template <typename T>
std::vector<float> cast_from(const std::vector<T>& v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else
    return to_f32(v);
}
// The values a kernel of element type T really receives.
template <typename T>
std::vector<float> prep(std::vector<float> v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else
    return round_bf16(v);
}
template <typename T>
std::vector<float> random_for(size_t n, uint32_t seed, float scale = 1.f) {
  return prep<T>(random_vector(n, seed, scale));
}
inline std::vector<float> nan_vector(size_t n) {
  return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}
inline std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

template <typename T>
DeviceBuffer<T> upload(const std::vector<float>& v) {
  return DeviceBuffer<T>(cast_to<T>(v));
}
template <typename T>
std::vector<float> fetch(const DeviceBuffer<T>& b) {
  return cast_from(b.download());
}

// Tolerances (relative, over the whole output): fp32 kernels against the double reference, bf16 ones
// (output rounded to bf16) against the double reference on the bf16-rounded inputs.
template <typename T>
constexpr double elem_tol() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-2;
}
// Reductions over rows or columns (norm statistics, weight gradients, losses): fp32 sums.
template <typename T>
constexpr double reduce_tol() {
  return std::is_same_v<T, float> ? 1e-4 : 1e-2;
}
template <typename T>
const char* type_name() {
  return std::is_same_v<T, float> ? "fp32" : "bf16";
}

inline void expect_close(const std::vector<float>& got, const std::vector<double>& want, double tol,
                         const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const double err = rel_error(got, want);
  size_t worst = 0;
  double worst_d = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = std::isfinite(got[i]) ? std::fabs(got[i] - want[i]) : INFINITY;
    if (d > worst_d) worst_d = d, worst = i;
  }
  EXPECT_LT(err, tol) << what << ": relative error " << err << "; worst element " << worst << " got "
                      << (got.empty() ? 0.f : got[worst]) << " want " << (want.empty() ? 0.0 : want[worst]);
}

}  // namespace sambalm::testing_gpu
