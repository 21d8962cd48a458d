// Selective scan on the CPU: the sequential reference against the parallel forward (both of its
// strategies) and the backward, at mamba-130m's width. Prints a markdown table of median times.
//   bench_scan [--B 1] [--D 1536] [--N 16] [--chunk 64] [--threads 2] [--reps 5] [--L 64,128,...]
//              [--clock wall|cpu]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "ops/cpu/scan_internal.h"
#include "ops/ops.h"

using namespace sambalm;

namespace {

// Wall-clock time, or with --clock cpu the process CPU time (all threads together): on a shared
// machine the latter shows the work a kernel does when wall times are dominated by other processes.
bool g_cpu_clock = false;

double now_ms() {
  if (g_cpu_clock) {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
  }
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median_ms(int reps, const std::function<void()>& fn) {
  fn();  // warm-up (page faults, thread pool start)
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const double a = now_ms();
    fn();
    t.push_back(now_ms() - a);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> v;
  for (const char* p = s; *p;) {
    v.push_back(std::strtoll(p, const_cast<char**>(&p), 10));
    if (*p == ',') ++p;
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t B = 1, D = 1536, N = 16, chunk = 64;
  int threads = 2, reps = 5;
  std::vector<int64_t> Ls = {64, 128, 256, 512, 1024, 2048, 4096};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--B")
      B = std::atoll(argv[i + 1]);
    else if (k == "--D")
      D = std::atoll(argv[i + 1]);
    else if (k == "--N")
      N = std::atoll(argv[i + 1]);
    else if (k == "--chunk")
      chunk = std::atoll(argv[i + 1]);
    else if (k == "--threads")
      threads = std::atoi(argv[i + 1]);
    else if (k == "--reps")
      reps = std::atoi(argv[i + 1]);
    else if (k == "--L")
      Ls = parse_list(argv[i + 1]);
    else if (k == "--clock")
      g_cpu_clock = std::string(argv[i + 1]) == "cpu";
    else {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
  }
  omp_set_num_threads(threads);
  std::printf("B=%lld D=%lld N=%lld chunk=%lld threads=%d, median of %d runs, ms (%s clock)\n\n", (long long)B,
              (long long)D, (long long)N, (long long)chunk, threads, reps, g_cpu_clock ? "process CPU" : "wall");
  std::printf("| L | reference fwd | parallel fwd (default) | speed-up | sequence-split fwd | backward |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|\n");
  for (int64_t L : Ls) {
    std::mt19937 rng(1);
    std::normal_distribution<float> nd;
    auto randn = [&](size_t n) {
      std::vector<float> v(n);
      for (auto& x : v) x = nd(rng);
      return v;
    };
    auto u = randn(B * L * D), delta = randn(B * L * D), A = randn(D * N), bc = randn(B * L * 2 * N), Dskip = randn(D),
         dy = randn(B * L * D);
    for (auto& x : delta) x = std::log1p(std::exp(x - 2.0f));
    for (int64_t d = 0; d < D; ++d)
      for (int64_t n = 0; n < N; ++n) A[d * N + n] = -float(n + 1) * std::exp(0.1f * A[d * N + n]);
    std::vector<float> y(B * L * D), h(B * D * N), cs(ops::cpu::selective_scan_chunk_states_size(B, L, D, N, chunk));
    std::vector<float> du(u.size()), ddelta(u.size()), dA(A.size()), dbc(bc.size()), dD(D);
    std::vector<float> scratch(ops::cpu::selective_scan_backward_scratch_size(B, L, D, N, chunk));
    const float* Bm = bc.data();
    const float* Cm = bc.data() + N;
    const int64_t ld = 2 * N;
    const double ref = median_ms(reps, [&] {
      ops::cpu::selective_scan_ref_forward(y.data(), h.data(), u.data(), delta.data(), A.data(), Bm, Cm, ld,
                                           Dskip.data(), static_cast<const float*>(nullptr), B, L, D, N);
    });
    auto fwd = [&](ops::cpu::scan::ForwardMode mode) {
      return median_ms(reps, [&] {
        ops::cpu::scan::forward(mode, y.data(), h.data(), cs.data(), u.data(), delta.data(), A.data(), Bm, Cm, ld,
                                Dskip.data(), static_cast<const float*>(nullptr), B, L, D, N, chunk);
      });
    };
    const double par = fwd(ops::cpu::scan::ForwardMode::kAuto);
    const double split = fwd(ops::cpu::scan::ForwardMode::kSequenceSplit);
    fwd(ops::cpu::scan::ForwardMode::kAuto);  // chunk_states for the backward
    const double bwd = median_ms(reps, [&] {
      ops::cpu::selective_scan_backward(du.data(), ddelta.data(), dA.data(), dbc.data(), dbc.data() + N, dD.data(),
                                        static_cast<float*>(nullptr), dy.data(), cs.data(), u.data(), delta.data(),
                                        A.data(), Bm, Cm, ld, Dskip.data(), static_cast<const float*>(nullptr), B, L, D,
                                        N, chunk, scratch.data());
    });
    std::printf("| %lld | %.2f | %.2f | %.1fx | %.2f | %.2f |\n", (long long)L, ref, par, ref / par, split, bwd);
    std::fflush(stdout);
  }
  return 0;
}
