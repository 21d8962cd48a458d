// Helpers of the mixer ops' GPU tests (conv1d, selective scan, attention): inputs in the compute type
// T (float, or bf16 rounded from float), the CPU op run in float on exactly the values the GPU sees,
// and comparisons of a device buffer (converted to float) against it.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "gpu_testing.h"

namespace sambalm::testing_gpu {

template <typename T>
std::vector<T> as(const std::vector<float>& v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else
    return to_bf16(v);
}
template <typename T>
std::vector<float> to_float(const std::vector<T>& v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else
    return to_f32(v);
}
// What the GPU sees of host values stored as T.
template <typename T>
std::vector<float> seen(const std::vector<float>& v) {
  return std::is_same_v<T, float> ? v : round_bf16(v);
}
inline std::vector<double> widen(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }
inline std::vector<float> nans(size_t n) { return std::vector<float>(n, NAN); }

// Relative L2 error of a device buffer against the CPU's values (any NaN fails).
template <typename T>
void expect_close(const DeviceBuffer<T>& got, const std::vector<float>& want, double tol, const std::string& what) {
  const auto g = to_float(got.download());
  ASSERT_EQ(g.size(), want.size()) << what;
  EXPECT_LT(rel_error(g, widen(want)), tol) << what;
}

// ||got - want|| / max(||want||, floor * sqrt(n)): a relative error that stays meaningful where the
// expected values are (near) zero, e.g. gradients that cancel exactly.
inline double rel_error_floor(const std::vector<float>& got, const std::vector<float>& want, double floor) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    const double d = double(got[i]) - want[i];
    num += d * d;
    den += double(want[i]) * want[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), floor * std::sqrt(double(want.size())));
}

// Tolerances: fp32 matches the CPU to rounding; bf16 rounds inputs, outputs and accumulations.
template <typename T>
constexpr double tol() {
  return std::is_same_v<T, float> ? 1e-4 : 2e-2;
}

}  // namespace sambalm::testing_gpu
