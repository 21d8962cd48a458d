// The library's CUDA selective scan (src/ops/cuda/selective_scan.cu and selective_scan_backward.cu),
// run on the CPU through host_emulation.h, against the CPU ops (ops::cpu::, float) on the same
// values: forward (y, h_last, the 16-step checkpoints against the CPU's chunk_states for chunk 16)
// and backward (every gradient accumulating into random values; the increments compared too), for
// float and bf16, on odd shapes, both forward strategies (one pass; split over the sequence, forced
// with EMU_SMS), all outputs and the nullable ones left out. Built and run by check_library_scan.sh.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "core/bf16.h"
#include "core/context.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/cuda/cuda_ops.h"

namespace sambalm::ops::cuda {
void raise_cuda_error(int code, const char* call, const char*, int) {
  std::fprintf(stderr, "cuda error %d in %s\n", code, call);
  std::abort();
}
}  // namespace sambalm::ops::cuda

using namespace sambalm;

namespace {

struct Case {
  int64_t B, L, D, N, chunk;
  bool h0;
};

std::vector<float> rnd(size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(g);
  return v;
}

template <typename T>
std::vector<float> seen(std::vector<float> v) {  // the values the device sees
  if constexpr (!std::is_same_v<T, float>)
    for (auto& x : v) x = float(bf16(x));
  return v;
}
template <typename T>
std::vector<T> as(const std::vector<float>& v) {
  std::vector<T> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = T(v[i]);
  return r;
}
template <typename T>
std::vector<float> back(const std::vector<T>& v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = float(v[i]);
  return r;
}

int failures = 0;

// Relative L2 error (with a floor on the norm); NaN counts as a failure.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, double tol, const std::string& what) {
  double num = 0, den = 0;
  size_t bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) ++bad;
    const double d = double(got[i]) - want[i];
    num += d * d, den += double(want[i]) * want[i];
  }
  const double rel = std::sqrt(num) / std::max(std::sqrt(den), 1e-6 * std::sqrt(double(want.size())));
  const bool ok = bad == 0 && rel <= tol && got.size() == want.size();
  if (!ok) ++failures;
  std::printf("  %-40s rel %.2e nonfinite %zu (tol %.0e) %s\n", what.c_str(), rel, bad, tol, ok ? "ok" : "FAIL");
}

std::vector<float> minus(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> r(a.size());
  for (size_t i = 0; i < a.size(); ++i) r[i] = a[i] - b[i];
  return r;
}

template <typename T>
void check(const Case& c, bool all) {
  const bool bf = !std::is_same_v<T, float>;
  const double tol = bf ? 2e-2 : 1e-4;
  const int64_t B = c.B, L = c.L, D = c.D, N = c.N, BLD = B * L * D, ld_bc = 2 * N + 5, b_off = 3, c_off = 3 + N;
  const Context ctx{};
  auto u = seen<T>(rnd(BLD, 21)), bc = seen<T>(rnd(B * L * ld_bc, 24)), dy = seen<T>(rnd(BLD, 41));
  auto delta = rnd(BLD, 22);
  for (auto& x : delta) x = 0.1f + 0.09f * x;
  delta[5] = 3.f;
  delta = seen<T>(delta);
  auto A = rnd(D * N, 23);
  for (int64_t d = 0; d < D; ++d)
    for (int64_t n = 0; n < N; ++n) A[d * N + n] = -float(n % 16 + 1) * (1.f + 0.2f * A[d * N + n]);
  const auto Dskip = rnd(D, 25), h0v = rnd(B * D * N, 26);
  const float* h0 = c.h0 ? h0v.data() : nullptr;
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s B%lld L%lld D%lld N%lld chunk %lld h0 %d all %d", bf ? "bf16" : "fp32",
                (long long)B, (long long)L, (long long)D, (long long)N, (long long)c.chunk, c.h0, all);
  const std::string tag = buf;
  std::printf("%s\n", tag.c_str());

  // CPU forward with the caller's chunk (y, h_last, the backward's states) and with chunk 16 (the CUDA layout).
  std::vector<float> y(BLD), hl(B * D * N), cs(ops::cpu::selective_scan_chunk_states_size(B, L, D, N, c.chunk)),
      cs16(ops::cpu::selective_scan_chunk_states_size(B, L, D, N, 16)), y16(BLD);
  ops::cpu::selective_scan_forward<float>(y.data(), hl.data(), cs.data(), u.data(), delta.data(), A.data(),
                                          bc.data() + b_off, bc.data() + c_off, ld_bc, Dskip.data(), h0, B, L, D, N,
                                          c.chunk);
  ops::cpu::selective_scan_forward<float>(y16.data(), nullptr, cs16.data(), u.data(), delta.data(), A.data(),
                                          bc.data() + b_off, bc.data() + c_off, ld_bc, Dskip.data(), h0, B, L, D, N,
                                          16);
  // "Device" forward (emulated CUDA), outputs NaN-poisoned.
  const int64_t ncs = ops::cuda::selective_scan_chunk_states_size(ctx, B, L, D, N, c.chunk);
  if (ncs != int64_t(cs16.size())) ++failures, std::printf("  chunk_states size %lld FAIL\n", (long long)ncs);
  const float nan = std::nanf("");
  auto tu = as<T>(u), tdelta = as<T>(delta), tbc = as<T>(bc), tdy = as<T>(dy);
  std::vector<T> ty(BLD, T(nan));
  std::vector<float> thl(B * D * N, nan), tcs(ncs, nan);
  ops::cuda::selective_scan_forward(ctx, ty.data(), thl.data(), tcs.data(), tu.data(), tdelta.data(), A.data(),
                                    tbc.data() + b_off, tbc.data() + c_off, ld_bc, Dskip.data(), h0, B, L, D, N,
                                    c.chunk, nullptr);
  expect_close(back(ty), y, tol, "fwd y");
  expect_close(thl, hl, tol, "fwd h_last");
  expect_close(tcs, cs16, tol, "fwd checkpoints (CPU chunk 16)");

  // Backward: accumulators start random.
  auto du = seen<T>(rnd(BLD, 42)), ddelta = seen<T>(rnd(BLD, 43)), dA = rnd(D * N, 44),
       dbc = seen<T>(rnd(B * L * ld_bc, 45)), dD = rnd(D, 46), dh0 = rnd(B * D * N, 47);
  const auto du0 = du, ddelta0 = ddelta, dA0 = dA, dbc0 = dbc, dD0 = dD, dh00 = dh0;
  auto tdu = as<T>(du), tddelta = as<T>(ddelta), tdbc = as<T>(dbc);
  std::vector<float> tdA = dA, tdD = dD, tdh0 = dh0;
  std::vector<float> scratch(ops::cuda::selective_scan_backward_scratch_size(ctx, B, L, D, N, c.chunk), nan);
  ops::cuda::selective_scan_backward(ctx, all ? tdu.data() : nullptr, tddelta.data(), tdA.data(),
                                     all ? tdbc.data() + b_off : nullptr, all ? tdbc.data() + c_off : nullptr,
                                     tdD.data(), all ? tdh0.data() : nullptr, tdy.data(), tcs.data(), tu.data(),
                                     tdelta.data(), A.data(), tbc.data() + b_off, tbc.data() + c_off, ld_bc,
                                     Dskip.data(), h0, B, L, D, N, c.chunk, scratch.data());
  std::vector<float> cscr(ops::cpu::selective_scan_backward_scratch_size(B, L, D, N, c.chunk));
  ops::cpu::selective_scan_backward<float>(all ? du.data() : nullptr, ddelta.data(), dA.data(),
                                           all ? dbc.data() + b_off : nullptr, all ? dbc.data() + c_off : nullptr,
                                           dD.data(), all ? dh0.data() : nullptr, dy.data(), cs.data(), u.data(),
                                           delta.data(), A.data(), bc.data() + b_off, bc.data() + c_off, ld_bc,
                                           Dskip.data(), h0, B, L, D, N, c.chunk, cscr.data());
  const auto gdu = back(tdu), gdd = back(tddelta), gdbc = back(tdbc);
  expect_close(gdu, du, tol, "bwd du");
  expect_close(gdd, ddelta, tol, "bwd ddelta");
  expect_close(tdA, dA, tol, "bwd dA");
  expect_close(tdD, dD, tol, "bwd dDskip");
  expect_close(tdh0, dh0, tol, "bwd dh0");
  expect_close(gdbc, dbc, tol, "bwd dBm/dCm rows (and the columns around)");
  // The increments alone (a small error is not hidden by the starting values).
  if (all) expect_close(minus(gdu, du0), minus(du, du0), 4 * tol, "bwd du increment");
  expect_close(minus(gdd, ddelta0), minus(ddelta, ddelta0), 4 * tol, "bwd ddelta increment");
  expect_close(minus(tdA, dA0), minus(dA, dA0), 4 * tol, "bwd dA increment");
  expect_close(minus(tdD, dD0), minus(dD, dD0), 4 * tol, "bwd dDskip increment");
  if (all) {
    expect_close(minus(gdbc, dbc0), minus(dbc, dbc0), 4 * tol, "bwd dBm/dCm increment");
    if (c.h0) expect_close(minus(tdh0, dh00), minus(dh0, dh00), 4 * tol, "bwd dh0 increment");
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  const Case cases[] = {
      {3, 37, 45, 5, 64, true},    // L not a multiple of 16, D not of 32, N = 5, B = 3
      {2, 13, 33, 16, 64, false},  // L < 16, one partial tile
      {1, 50, 32, 1, 7, true},     // N = 1; chunk 7: split chunks of 16 (4 of them)
      {2, 70, 20, 17, 16, true},   // N = 17
      {1, 40, 40, 64, 64, true},   // N = 64: sub-tiles of 11 steps
      {2, 333, 97, 16, 50, true},  // the GPU tests' shape, 21 tiles, split chunks of 64 not dividing L
      {1, 35, 7, 256, 64, true},   // N = 256 (kCudaScanMaxN): sub-tiles of 2 steps
      {1, 64, 32, 16, 64, false},  // exact multiples
  };
  for (const char* sms : {"132", "1"}) {  // 132: small grids take the forward's split; 1: the one-pass kernel
    setenv("EMU_SMS", sms, 1);
    std::printf("== EMU_SMS=%s\n", sms);
    for (const auto& c : cases) {
      if (quick && c.N > 64) continue;
      for (bool all : {true, false}) {
        check<float>(c, all);
        check<bf16>(c, all);
      }
    }
  }
  std::printf("%s (%d failures)\n", failures ? "FAILED" : "all passed", failures);
  return failures ? 1 : 0;
}
