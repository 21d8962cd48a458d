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

// Sum of a float range read as 8 concurrent streams (its eighths, side by side) with independent
// vector chains: like the decode GEMV, which streams several weight rows at once, the loop keeps
// enough loads in flight to be bound by memory rather than by the latency of one stream.
__attribute__((target_clones("arch=haswell", "default"))) float sum_range(const float* p, int64_t n) {
  constexpr int kStreams = 8;
  const int64_t m = n / kStreams;
  const float *p0 = p, *p1 = p + m, *p2 = p + 2 * m, *p3 = p + 3 * m, *p4 = p + 4 * m, *p5 = p + 5 * m, *p6 = p + 6 * m,
              *p7 = p + 7 * m;
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < m; ++i) s += ((p0[i] + p1[i]) + (p2[i] + p3[i])) + ((p4[i] + p5[i]) + (p6[i] + p7[i]));
  for (int64_t i = kStreams * m; i < n; ++i) s += p[i];
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
