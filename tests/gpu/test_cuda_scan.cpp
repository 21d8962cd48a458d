// The CUDA selective scan against the CPU op (ops::cpu::, float, on the same values): forward (y,
// h_last and every checkpoint, all NaN-poisoned; the CUDA chunk_states are the CPU's layout for
// chunk = kCudaScanCheckpoint = 16 whatever chunk the caller passes), the
// reference forward, the decode step (state in place, through slots) and the backward (every
// gradient accumulating into random values; Bm/Cm and dBm/dCm as strided views into one x_proj-like
// row). Odd shapes: B=2, L=333, D=97, N=16 and 8, chunks that do not divide L (64, 50) or exceed it,
// h0 present and absent; both forward strategies (one pass, split over the sequence). Shapes that
// stress the backward's 16-step tiles: L below 16 and not a multiple of 16 or 64, D not a multiple
// of 32 (the channel blocks), N in {1, 5, 16, 17, 64, 256} (sub-tiles of 11 and 2 steps for 64 and
// 256), B = 3. fp32 within 1e-4, bf16 within 2e-2 (relative L2).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "mixer_testing.h"
#include "ops/mamba_ops.h"

namespace sambalm {
namespace {

using namespace testing_gpu;

struct ScanCase {
  int64_t B, L, D, N, chunk;
  bool h0;
};
const ScanCase kCases[] = {
    {2, 333, 97, 16, 64, true},  {2, 333, 97, 16, 50, false}, {2, 333, 97, 8, 1000, true}, {1, 40, 33, 16, 7, true},
    {3, 5, 130, 16, 64, false},  {2, 64, 20, 40, 16, true},  // N = 40: N not a multiple of 4
    {8, 70, 2113, 16, 16, true},  // enough channel blocks to fill the GPU: the one-pass kernel with 5 chunk states
    {2, 19, 128, 16, 64, false}, {2, 17, 128, 16, 64, false},  // the mamba_tiny / hf_mamba_tiny training scans
    {3, 37, 45, 5, 64, true},                                  // L not a multiple of 16, D not of 32, N = 5
    {2, 13, 33, 16, 64, false},                                // L < 16: one partial tile
    {1, 50, 32, 1, 7, true},                                   // N = 1; split chunks of 16
    {2, 70, 20, 17, 16, true},                                 // N = 17
    {1, 40, 40, 64, 64, true},                                 // N = 64: the backward's sub-tiles of 11 steps
    {1, 35, 7, 256, 64, true},                                 // N = 256 (kCudaScanMaxN): sub-tiles of 2 steps
};
// The small cases with 4 chunks or more take the forward's split over the sequence (3 passes).

// One problem's inputs (float values the GPU sees: bf16-rounded for T = bf16; A, Dskip, h0 stay fp32).
struct ScanInputs {
  int64_t ld_bc, b_off, c_off;
  std::vector<float> u, delta, A, bc, Dskip, h0;
  ScanInputs(const ScanCase& c, bool bf) {
    auto r = [&](std::vector<float> v) { return bf ? round_bf16(v) : v; };
    ld_bc = 2 * c.N + 5, b_off = 3, c_off = 3 + c.N;
    u = r(random_vector(c.B * c.L * c.D, 21));
    delta = random_vector(c.B * c.L * c.D, 22);
    for (auto& x : delta) x = 0.1f + 0.09f * x;  // softplus'ed dt: positive, around Mamba's init range
    delta[5] = 3.0f;                             // one fast decay
    delta = r(delta);
    A = random_vector(c.D * c.N, 23);
    for (int64_t d = 0; d < c.D; ++d)
      for (int64_t n = 0; n < c.N; ++n) A[d * c.N + n] = -float(n + 1) * (1.0f + 0.2f * A[d * c.N + n]);
    bc = r(random_vector(c.B * c.L * ld_bc, 24));
    Dskip = random_vector(c.D, 25);
    h0 = random_vector(c.B * c.D * c.N, 26);
  }
  const float* Bm() const { return bc.data() + b_off; }
  const float* Cm() const { return bc.data() + c_off; }
};

std::string tag(const ScanCase& c) {
  return " B" + std::to_string(c.B) + " L" + std::to_string(c.L) + " D" + std::to_string(c.D) + " N" +
         std::to_string(c.N) + " chunk " + std::to_string(c.chunk) + " h0 " + std::to_string(c.h0);
}

template <typename T>
void check_forward(const ScanCase& c) {
  const ScanInputs in(c, !std::is_same_v<T, float>);
  // y and h_last with the caller's chunk; the states the CUDA forward saves are every 16 steps.
  const int64_t ncs = ops::cpu::selective_scan_chunk_states_size(c.B, c.L, c.D, c.N, ops::cuda::kCudaScanCheckpoint);
  std::vector<float> y(c.B * c.L * c.D), h_last(c.B * c.D * c.N), cs(ncs),
      cs_caller(ops::cpu::selective_scan_chunk_states_size(c.B, c.L, c.D, c.N, c.chunk));
  ops::cpu::selective_scan_forward<float>(y.data(), h_last.data(), cs_caller.data(), in.u.data(), in.delta.data(),
                                          in.A.data(), in.Bm(), in.Cm(), in.ld_bc, in.Dskip.data(),
                                          c.h0 ? in.h0.data() : nullptr, c.B, c.L, c.D, c.N, c.chunk);
  std::vector<float> y16(y.size());
  ops::cpu::selective_scan_forward<float>(y16.data(), nullptr, cs.data(), in.u.data(), in.delta.data(), in.A.data(),
                                          in.Bm(), in.Cm(), in.ld_bc, in.Dskip.data(), c.h0 ? in.h0.data() : nullptr,
                                          c.B, c.L, c.D, c.N, ops::cuda::kCudaScanCheckpoint);
  ASSERT_EQ(ops::selective_scan_chunk_states_size<T>(gpu(), c.B, c.L, c.D, c.N, c.chunk), ncs);
  DeviceBuffer<T> d_u(as<T>(in.u)), d_delta(as<T>(in.delta)), d_bc(as<T>(in.bc)), d_y(as<T>(nans(y.size())));
  DeviceBuffer<float> d_A(in.A), d_D(in.Dskip), d_h0(in.h0), d_hl(nans(h_last.size())), d_cs(nans(ncs));
  ops::selective_scan_forward(gpu(), d_y.get(), d_hl.get(), d_cs.get(), d_u.get(), d_delta.get(), d_A.get(),
                              d_bc.get() + in.b_off, d_bc.get() + in.c_off, in.ld_bc, d_D.get(),
                              c.h0 ? d_h0.get() : nullptr, c.B, c.L, c.D, c.N, c.chunk);
  expect_close(d_y, y, tol<T>(), "y" + tag(c));
  expect_close(d_hl, h_last, tol<T>(), "h_last" + tag(c));
  expect_close(d_cs, cs, tol<T>(), "chunk_states" + tag(c));

  // The reference forward: same outputs (no chunk states).
  DeviceBuffer<T> d_y2(as<T>(nans(y.size())));
  DeviceBuffer<float> d_hl2(nans(h_last.size()));
  ops::selective_scan_ref_forward(gpu(), d_y2.get(), d_hl2.get(), d_u.get(), d_delta.get(), d_A.get(),
                                  d_bc.get() + in.b_off, d_bc.get() + in.c_off, in.ld_bc, d_D.get(),
                                  c.h0 ? d_h0.get() : nullptr, c.B, c.L, c.D, c.N);
  expect_close(d_y2, y, tol<T>(), "ref y" + tag(c));
  expect_close(d_hl2, h_last, tol<T>(), "ref h_last" + tag(c));
}

// h0 / h_last through slots: sequence b reads and writes state row slots[b]; other rows stay as they are.
template <typename T>
void check_forward_slots() {
  const ScanCase c{2, 333, 97, 16, 64, true};
  const ScanInputs in(c, !std::is_same_v<T, float>);
  const std::vector<int32_t> slots = {2, 0};
  const int64_t S = 3, DN = c.D * c.N;
  const auto pool = random_vector(S * DN, 27);
  std::vector<float> want = pool, y(c.B * c.L * c.D),
                     cs(ops::cpu::selective_scan_chunk_states_size(c.B, c.L, c.D, c.N, ops::cuda::kCudaScanCheckpoint));
  ops::cpu::selective_scan_forward<float>(y.data(), want.data(), cs.data(), in.u.data(), in.delta.data(), in.A.data(),
                                          in.Bm(), in.Cm(), in.ld_bc, in.Dskip.data(), want.data(), c.B, c.L, c.D, c.N,
                                          ops::cuda::kCudaScanCheckpoint, slots.data());
  DeviceBuffer<T> d_u(as<T>(in.u)), d_delta(as<T>(in.delta)), d_bc(as<T>(in.bc)), d_y(as<T>(nans(y.size())));
  DeviceBuffer<float> d_A(in.A), d_D(in.Dskip), d_pool(pool), d_cs(nans(cs.size()));
  DeviceBuffer<int32_t> d_slots(slots);
  ops::selective_scan_forward(gpu(), d_y.get(), d_pool.get(), d_cs.get(), d_u.get(), d_delta.get(), d_A.get(),
                              d_bc.get() + in.b_off, d_bc.get() + in.c_off, in.ld_bc, d_D.get(), d_pool.get(), c.B, c.L,
                              c.D, c.N, c.chunk, d_slots.get());
  expect_close(d_y, y, tol<T>(), "slots y");
  expect_close(d_pool, want, tol<T>(), "slots state pool (in place)");
  expect_close(d_cs, cs, tol<T>(), "slots chunk_states");
}

template <typename T>
void check_step() {
  const int64_t B = 3, D = 97, N = 16, S = 4, ld_bc = 2 * N + 5;
  const bool bf = !std::is_same_v<T, float>;
  auto r = [&](std::vector<float> v) { return bf ? round_bf16(v) : v; };
  const auto u = r(random_vector(B * D, 31)), bc = r(random_vector(B * ld_bc, 32));
  auto delta = random_vector(B * D, 33);
  for (auto& x : delta) x = 0.1f + 0.09f * x;
  delta = r(delta);
  auto A = random_vector(D * N, 34);
  for (auto& a : A) a = -std::exp(a);
  const auto Dskip = random_vector(D, 35);
  const std::vector<int32_t> slots = {1, 3, 0};
  const auto h = random_vector(S * D * N, 36);
  std::vector<float> y(B * D), want_h = h;
  ops::cpu::selective_scan_step<float>(y.data(), want_h.data(), u.data(), delta.data(), A.data(), bc.data() + 1,
                                       bc.data() + 1 + N, ld_bc, Dskip.data(), B, D, N, slots.data());
  DeviceBuffer<T> d_u(as<T>(u)), d_delta(as<T>(delta)), d_bc(as<T>(bc)), d_y(as<T>(nans(y.size())));
  DeviceBuffer<float> d_A(A), d_D(Dskip), d_h(h);
  DeviceBuffer<int32_t> d_slots(slots);
  ops::selective_scan_step(gpu(), d_y.get(), d_h.get(), d_u.get(), d_delta.get(), d_A.get(), d_bc.get() + 1,
                           d_bc.get() + 1 + N, ld_bc, d_D.get(), B, D, N, d_slots.get());
  expect_close(d_y, y, tol<T>(), "step y");
  expect_close(d_h, want_h, tol<T>(), "step h (in place, slots)");
}

template <typename T>
void check_backward(const ScanCase& c, bool all_grads) {
  const ScanInputs in(c, !std::is_same_v<T, float>);
  auto r = [&](std::vector<float> v) { return std::is_same_v<T, float> ? v : round_bf16(v); };
  const int64_t ncs = ops::selective_scan_chunk_states_size<T>(gpu(), c.B, c.L, c.D, c.N, c.chunk);
  const int64_t BLD = c.B * c.L * c.D;
  const auto dy = r(random_vector(BLD, 41));
  // Accumulators start from random values: every gradient adds.
  auto du = r(random_vector(BLD, 42)), ddelta = r(random_vector(BLD, 43)), dA = random_vector(c.D * c.N, 44),
       dbc = r(random_vector(c.B * c.L * in.ld_bc, 45)), dD = random_vector(c.D, 46),
       dh0 = random_vector(c.B * c.D * c.N, 47);
  const auto dbc0 = dbc, dh00 = dh0;

  // GPU: its own forward's chunk states, then the backward.
  DeviceBuffer<T> d_u(as<T>(in.u)), d_delta(as<T>(in.delta)), d_bc(as<T>(in.bc)), d_y(BLD), d_dy(as<T>(dy));
  DeviceBuffer<float> d_A(in.A), d_D(in.Dskip), d_h0(in.h0), d_cs(ncs);
  ops::selective_scan_forward(gpu(), d_y.get(), static_cast<float*>(nullptr), d_cs.get(), d_u.get(), d_delta.get(),
                              d_A.get(), d_bc.get() + in.b_off, d_bc.get() + in.c_off, in.ld_bc, d_D.get(),
                              c.h0 ? d_h0.get() : nullptr, c.B, c.L, c.D, c.N, c.chunk);
  DeviceBuffer<T> d_du(as<T>(du)), d_ddelta(as<T>(ddelta)), d_dbc(as<T>(dbc));
  DeviceBuffer<float> d_dA(dA), d_dD(dD), d_dh0(dh0);
  const int64_t scratch_n = ops::cuda::selective_scan_backward_scratch_size(gpu(), c.B, c.L, c.D, c.N, c.chunk);
  DeviceBuffer<float> d_scratch(nans(scratch_n));  // the backward must not rely on zeroed scratch
  ops::selective_scan_backward(
      gpu(), d_du.get(), d_ddelta.get(), d_dA.get(), all_grads ? d_dbc.get() + in.b_off : nullptr,
      all_grads ? d_dbc.get() + in.c_off : nullptr, d_dD.get(), all_grads ? d_dh0.get() : nullptr, d_dy.get(),
      d_cs.get(), d_u.get(), d_delta.get(), d_A.get(), d_bc.get() + in.b_off, d_bc.get() + in.c_off, in.ld_bc,
      d_D.get(), c.h0 ? d_h0.get() : nullptr, c.B, c.L, c.D, c.N, c.chunk, d_scratch.get());

  // CPU, on the same values.
  std::vector<float> y(BLD), cs(ops::cpu::selective_scan_chunk_states_size(c.B, c.L, c.D, c.N, c.chunk)),
      scratch(ops::cpu::selective_scan_backward_scratch_size(c.B, c.L, c.D, c.N, c.chunk));
  const float* h0 = c.h0 ? in.h0.data() : nullptr;
  ops::cpu::selective_scan_forward<float>(y.data(), nullptr, cs.data(), in.u.data(), in.delta.data(), in.A.data(),
                                          in.Bm(), in.Cm(), in.ld_bc, in.Dskip.data(), h0, c.B, c.L, c.D, c.N, c.chunk);
  ops::cpu::selective_scan_backward<float>(
      du.data(), ddelta.data(), dA.data(), all_grads ? dbc.data() + in.b_off : nullptr,
      all_grads ? dbc.data() + in.c_off : nullptr, dD.data(), all_grads ? dh0.data() : nullptr, dy.data(), cs.data(),
      in.u.data(), in.delta.data(), in.A.data(), in.Bm(), in.Cm(), in.ld_bc, in.Dskip.data(), h0, c.B, c.L, c.D, c.N,
      c.chunk, scratch.data());
  const std::string t = tag(c) + " all grads " + std::to_string(all_grads);
  expect_close(d_du, du, tol<T>(), "du" + t);
  expect_close(d_ddelta, ddelta, tol<T>(), "ddelta" + t);
  expect_close(d_dA, dA, tol<T>(), "dA" + t);
  expect_close(d_dD, dD, tol<T>(), "dDskip" + t);
  expect_close(d_dh0, all_grads ? dh0 : dh00, tol<T>(), "dh0" + t);
  // dBm | dCm share the strided rows (the columns around them must stay as they were: compared too).
  expect_close(d_dbc, all_grads ? dbc : dbc0, tol<T>(), "dBm/dCm rows" + t);
  // The gradient part alone, so a small error is not hidden by the random starting values.
  if (all_grads) {
    const auto got = to_float(d_dbc.download());
    std::vector<float> g, w;
    for (size_t i = 0; i < got.size(); ++i) g.push_back(got[i] - dbc0[i]), w.push_back(dbc[i] - dbc0[i]);
    EXPECT_LT(rel_error(g, widen(w)), 4 * tol<T>()) << "dBm/dCm increments" << t;
  }
}

TEST(CudaScan, ForwardFp32) {
  SAMBALM_REQUIRE_GPU();
  for (const auto& c : kCases) check_forward<float>(c);
  check_forward_slots<float>();
}
TEST(CudaScan, ForwardBf16) {
  SAMBALM_REQUIRE_GPU();
  for (const auto& c : kCases) check_forward<bf16>(c);
  check_forward_slots<bf16>();
}
TEST(CudaScan, StepFp32) {
  SAMBALM_REQUIRE_GPU();
  check_step<float>();
}
TEST(CudaScan, StepBf16) {
  SAMBALM_REQUIRE_GPU();
  check_step<bf16>();
}
TEST(CudaScan, BackwardFp32) {
  SAMBALM_REQUIRE_GPU();
  for (const auto& c : kCases)
    for (bool all : {true, false}) check_backward<float>(c, all);
}
TEST(CudaScan, BackwardBf16) {
  SAMBALM_REQUIRE_GPU();
  for (const auto& c : kCases)
    for (bool all : {true, false}) check_backward<bf16>(c, all);
}

}  // namespace
}  // namespace sambalm
