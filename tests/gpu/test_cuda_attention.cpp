// The CUDA attention against the CPU op (ops::cpu::, float, on the same values): causal attention with
// and without a sliding window (window 1, shorter than T, longer than T), GQA (H=6 over G=2 and G=6,
// MQA G=1), head sizes that leave lanes idle (24, 40) and a full one (128); forward out and lse
// NaN-poisoned; backward dq/dk/dv accumulating (into random values in fp32; the CPU backward takes the GPU's
// own out and lse, so both differentiate the same forward). attention_cached_forward over KV rings
// with slots and positions, window shorter than the ring and full attention.
// fp32 within 1e-4, bf16 within 2e-2 (relative L2).
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "mixer_testing.h"
#include "ops/dense_ops.h"

namespace sambalm {
namespace {

using namespace testing_gpu;

struct AttnCase {
  int64_t B, T, H, G, hs, window;
};
const AttnCase kCases[] = {
    {2, 77, 6, 2, 40, 0},  {2, 77, 6, 2, 40, 16}, {2, 77, 6, 2, 40, 200}, {2, 77, 6, 2, 40, 1},
    {1, 45, 6, 6, 24, 10}, {2, 33, 4, 1, 128, 0}, {1, 50, 2, 2, 64, 7},
};

std::string tag(const AttnCase& c) {
  return " B" + std::to_string(c.B) + " T" + std::to_string(c.T) + " H" + std::to_string(c.H) + " G" +
         std::to_string(c.G) + " hs" + std::to_string(c.hs) + " window " + std::to_string(c.window);
}

template <typename T>
void check(const AttnCase& c) {
  const int64_t nq = c.B * c.H * c.T * c.hs, nkv = c.B * c.G * c.T * c.hs;
  const double scale = 1.0 / std::sqrt(double(c.hs));
  const auto q = seen<T>(random_vector(nq, 51)), k = seen<T>(random_vector(nkv, 52)),
             v = seen<T>(random_vector(nkv, 53));
  std::vector<float> out(nq), lse(c.B * c.H * c.T);
  ops::cpu::attention_forward<float>(out.data(), lse.data(), q.data(), k.data(), v.data(), c.B, c.T, c.H, c.G, c.hs,
                                     c.window, scale);
  DeviceBuffer<T> d_q(as<T>(q)), d_k(as<T>(k)), d_v(as<T>(v)), d_out(as<T>(nans(nq)));
  DeviceBuffer<float> d_lse(nans(lse.size()));
  ops::attention_forward(gpu(), d_out.get(), d_lse.get(), d_q.get(), d_k.get(), d_v.get(), c.B, c.T, c.H, c.G, c.hs,
                         c.window, scale);
  expect_close(d_out, out, tol<T>(), "out" + tag(c));
  {
    // lse: compared absolutely (it is a log; relative L2 over values near 0 would be meaningless).
    const auto got = d_lse.download();
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i)
      worst = std::max(worst, std::isfinite(got[i]) ? std::abs(double(got[i]) - lse[i]) : INFINITY);
    EXPECT_LT(worst, (std::is_same_v<T, float> ? 1e-4 : 2e-2)) << "lse" << tag(c);
  }

  // Backward from the GPU's forward. fp32: the gradients accumulate into random values (the increments
  // are compared too, since the starting values dominate the totals); bf16: they start from zero, so
  // the bf16 rounding of a large total does not hide the gradient. A floor on the norm: with window 1
  // dq and dk are exactly zero (one key, P = 1, dS = dout.v - dout.out = 0) up to rounding noise.
  constexpr bool fp32 = std::is_same_v<T, float>;
  const auto gpu_out = to_float(d_out.download());
  const auto gpu_lse = d_lse.download();
  const auto dout = seen<T>(random_vector(nq, 54));
  auto start = [&](int64_t n, uint32_t seed) { return fp32 ? random_vector(n, seed) : std::vector<float>(n, 0.f); };
  auto dq = start(nq, 55), dk = start(nkv, 56), dv = start(nkv, 57);
  const auto dq0 = dq, dk0 = dk, dv0 = dv;
  DeviceBuffer<T> d_dout(as<T>(dout)), d_dq(as<T>(dq)), d_dk(as<T>(dk)), d_dv(as<T>(dv));
  ops::attention_backward(gpu(), d_dq.get(), d_dk.get(), d_dv.get(), d_dout.get(), d_out.get(), d_lse.get(), d_q.get(),
                          d_k.get(), d_v.get(), c.B, c.T, c.H, c.G, c.hs, c.window, scale);
  ops::cpu::attention_backward<float>(dq.data(), dk.data(), dv.data(), dout.data(), gpu_out.data(), gpu_lse.data(),
                                      q.data(), k.data(), v.data(), c.B, c.T, c.H, c.G, c.hs, c.window, scale);
  auto minus = [](const std::vector<float>& a, const std::vector<float>& b) {
    std::vector<float> r(a.size());
    for (size_t i = 0; i < a.size(); ++i) r[i] = a[i] - b[i];
    return r;
  };
  const struct {
    const char* name;
    const DeviceBuffer<T>& got;
    const std::vector<float>& want;
    const std::vector<float>& base;
  } grads[] = {{"dq", d_dq, dq, dq0}, {"dk", d_dk, dk, dk0}, {"dv", d_dv, dv, dv0}};
  for (const auto& g : grads) {
    const auto got = to_float(g.got.download());
    EXPECT_LT(rel_error_floor(minus(got, g.base), minus(g.want, g.base), 1e-3), tol<T>()) << g.name << tag(c);
    if (fp32) {
      EXPECT_LT(rel_error(got, widen(g.want)), 1e-5) << g.name << " total" << tag(c);
    }
  }
}

// Only dq, or only dk/dv: the others are nullptr and must be left alone.
void check_partial_backward() {
  const AttnCase c{1, 30, 6, 2, 40, 8};
  const int64_t nq = c.B * c.H * c.T * c.hs, nkv = c.B * c.G * c.T * c.hs;
  const double scale = 0.2;
  const auto q = random_vector(nq, 61), k = random_vector(nkv, 62), v = random_vector(nkv, 63),
             dout = random_vector(nq, 64);
  std::vector<float> out(nq), lse(c.B * c.H * c.T), dq(nq, 0.f), dk(nkv, 0.f), dv(nkv, 0.f);
  ops::cpu::attention_forward<float>(out.data(), lse.data(), q.data(), k.data(), v.data(), c.B, c.T, c.H, c.G, c.hs,
                                     c.window, scale);
  ops::cpu::attention_backward<float>(dq.data(), dk.data(), dv.data(), dout.data(), out.data(), lse.data(), q.data(),
                                      k.data(), v.data(), c.B, c.T, c.H, c.G, c.hs, c.window, scale);
  DeviceBuffer<float> d_q(q), d_k(k), d_v(v), d_out(out), d_lse(lse), d_dout(dout);
  DeviceBuffer<float> d_dq(std::vector<float>(nq, 0.f)), d_dk(std::vector<float>(nkv, 0.f)),
      d_dv(std::vector<float>(nkv, 0.f));
  ops::attention_backward(gpu(), d_dq.get(), static_cast<float*>(nullptr), static_cast<float*>(nullptr), d_dout.get(),
                          d_out.get(), d_lse.get(), d_q.get(), d_k.get(), d_v.get(), c.B, c.T, c.H, c.G, c.hs, c.window,
                          scale);
  expect_close(d_dq, dq, 1e-4, "dq only");
  ops::attention_backward(gpu(), static_cast<float*>(nullptr), d_dk.get(), d_dv.get(), d_dout.get(), d_out.get(),
                          d_lse.get(), d_q.get(), d_k.get(), d_v.get(), c.B, c.T, c.H, c.G, c.hs, c.window, scale);
  expect_close(d_dq, dq, 1e-4, "dq untouched by the dk/dv call");
  expect_close(d_dk, dk, 1e-4, "dk");
  expect_close(d_dv, dv, 1e-4, "dv");
}

template <typename T>
void check_cached(int64_t window, int64_t cap) {
  const int64_t B = 3, L = 5, H = 6, G = 2, hs = 40, S = 4;
  const std::vector<int32_t> slots = {2, 0, 3};
  const std::vector<int64_t> pos = {0, 7, 40};
  const double scale = 1.0 / std::sqrt(double(hs));
  const auto q = seen<T>(random_vector(B * H * L * hs, 71)), k_new = seen<T>(random_vector(B * G * L * hs, 72)),
             v_new = seen<T>(random_vector(B * G * L * hs, 73)), k_cache = seen<T>(random_vector(S * G * cap * hs, 74)),
             v_cache = seen<T>(random_vector(S * G * cap * hs, 75));
  std::vector<float> out(B * L * H * hs);
  ops::cpu::attention_cached_forward<float>(out.data(), q.data(), k_new.data(), v_new.data(), k_cache.data(),
                                            v_cache.data(), slots.data(), pos.data(), B, L, H, G, hs, cap, window,
                                            scale);
  DeviceBuffer<T> d_q(as<T>(q)), d_kn(as<T>(k_new)), d_vn(as<T>(v_new)), d_kc(as<T>(k_cache)), d_vc(as<T>(v_cache)),
      d_out(as<T>(nans(out.size())));
  DeviceBuffer<int32_t> d_slots(slots);
  DeviceBuffer<int64_t> d_pos(pos);
  ops::attention_cached_forward(gpu(), d_out.get(), d_q.get(), d_kn.get(), d_vn.get(), d_kc.get(), d_vc.get(),
                                d_slots.get(), d_pos.get(), B, L, H, G, hs, cap, window, scale);
  expect_close(d_out, out, tol<T>(), "cached out window " + std::to_string(window) + " cap " + std::to_string(cap));
}

TEST(CudaAttention, Fp32) {
  SAMBALM_REQUIRE_GPU();
  for (const auto& c : kCases) check<float>(c);
}
TEST(CudaAttention, Bf16) {
  SAMBALM_REQUIRE_GPU();
  for (const auto& c : kCases) check<bf16>(c);
}
TEST(CudaAttention, BackwardNullGradients) {
  SAMBALM_REQUIRE_GPU();
  check_partial_backward();
}
TEST(CudaAttention, CachedForward) {
  SAMBALM_REQUIRE_GPU();
  check_cached<float>(16, 20);  // sliding window, ring longer than the window
  check_cached<float>(0, 48);   // full attention: the ring holds every earlier position
  check_cached<bf16>(16, 20);
  check_cached<bf16>(0, 48);
}

}  // namespace
}  // namespace sambalm
