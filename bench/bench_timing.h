// Timing shared by the tokenizer benchmarks (bench_spm, bench_tokenizer): best of N runs by wall-clock
// time and by CPU time of the process (on a shared, loaded machine the CPU figure is the steadier one),
// and one row of their Markdown table.
#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace sambalm::bench {

inline double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

struct Timing {
  double wall = 1e30, cpu = 1e30;
  uint64_t tokens = 0;
};

// Runs f (which returns the tokens it made) `runs` times; keeps the least wall and CPU time of any run.
template <typename F>
Timing best_of(int runs, F&& f) {
  Timing t;
  for (int r = 0; r < runs; ++r) {
    double c0 = cpu_seconds();
    auto w0 = std::chrono::steady_clock::now();
    t.tokens = f();
    t.wall = std::min(t.wall, std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count());
    t.cpu = std::min(t.cpu, cpu_seconds() - c0);
  }
  return t;
}

// | name | tokens | wall s | tokens/s (wall) | MB/s (wall) | CPU s | tokens/s per CPU s |, for `mb` MB of input.
inline void print_timing_row(const std::string& name, const Timing& t, double mb) {
  std::printf("| %s | %llu | %.3f | %.2f M | %.1f | %.3f | %.2f M |\n", name.c_str(), (unsigned long long)t.tokens,
              t.wall, double(t.tokens) / t.wall / 1e6, mb / t.wall, t.cpu, double(t.tokens) / t.cpu / 1e6);
}

}  // namespace sambalm::bench
