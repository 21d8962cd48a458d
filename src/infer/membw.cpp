#include "infer/membw.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <vector>

namespace sambalm {

namespace {
double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Sum of a float range with several independent vector chains (so the loop is bound by loads).
__attribute__((target_clones("arch=haswell", "default"))) float sum_range(const float* p, int64_t n) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += p[i];
  return s;
}
}  // namespace

double read_seconds(const float* p, int64_t n) {
  static volatile float sink = 0;
  const double t0 = now_s();
  float total = 0;
#pragma omp parallel reduction(+ : total)
  {
    const int T = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t lo = n * t / T, hi = n * (t + 1) / T;
    total += sum_range(p + lo, hi - lo);
  }
  const double dt = now_s() - t0;
  sink = sink + total;
  return dt;
}

Bandwidth measure_bandwidth(size_t bytes, int reps) {
  const int64_t n = int64_t(bytes / sizeof(float));
  std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
  // First touch in parallel, as the weights are (pages spread over the threads that use them).
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) a[i] = float(i & 1023), b[i] = 0.0f;
  Bandwidth bw;
  for (int r = 0; r < reps; ++r) {
    bw.read_gbs = std::max(bw.read_gbs, double(bytes) / read_seconds(a.data(), n) / 1e9);
    const double t0 = now_s();
#pragma omp parallel
    {
      const int T = omp_get_num_threads(), t = omp_get_thread_num();
      const int64_t lo = n * t / T, hi = n * (t + 1) / T;
      std::memcpy(b.data() + lo, a.data() + lo, size_t(hi - lo) * sizeof(float));
    }
    const double dt = now_s() - t0;
    bw.memcpy_gbs = std::max(bw.memcpy_gbs, double(bytes) / dt / 1e9);
  }
  return bw;
}

}  // namespace sambalm
