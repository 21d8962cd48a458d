// The CUDA attention against the CPU op (ops::cpu::, float, on the same values): causal attention with
// and without a sliding window (window 1, shorter than T, longer than T), GQA (H=6 over G=2 and G=6,
// MQA G=1), head sizes that leave lanes idle (24, 40) and a full one (128); forward out and lse
// NaN-poisoned; backward dq/dk/dv accumulating (into random values in fp32; the CPU backward takes the GPU's
// own out and lse, so both differentiate the same forward). attention_cached_forward over KV rings
// with slots and positions, window shorter than the ring and full attention.
// fp32 within 1e-4, bf16 within 2e-2 (relative L2). The bf16 tensor-core kernels (head sizes 64 and 128)
// have their own cases below (FlashBf16*), against a double reference with the development file's
// tolerances.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
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
  const int64_t nscratch = ops::attention_backward_scratch_size<T>(gpu(), c.B, c.T, c.H, c.G, c.hs);
  DeviceBuffer<float> d_scratch(nans(std::max<int64_t>(nscratch, 1)));
  ops::attention_backward(gpu(), d_dq.get(), d_dk.get(), d_dv.get(), d_dout.get(), d_out.get(), d_lse.get(), d_q.get(),
                          d_k.get(), d_v.get(), c.B, c.T, c.H, c.G, c.hs, c.window, scale,
                          nscratch > 0 ? d_scratch.get() : nullptr);
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
                          scale, nullptr);
  expect_close(d_dq, dq, 1e-4, "dq only");
  ops::attention_backward(gpu(), static_cast<float*>(nullptr), d_dk.get(), d_dv.get(), d_dout.get(), d_out.get(),
                          d_lse.get(), d_q.get(), d_k.get(), d_v.get(), c.B, c.T, c.H, c.G, c.hs, c.window, scale,
                          nullptr);
  expect_close(d_dq, dq, 1e-4, "dq untouched by the dk/dv call");
  expect_close(d_dk, dk, 1e-4, "dk");
  expect_close(d_dv, dv, 1e-4, "dv");
}

template <typename T>
void check_cached(int64_t window, int64_t cap, int64_t hs = 40) {
  const int64_t B = 3, L = 5, H = 6, G = 2, S = 4;
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
  expect_close(
      d_out, out, tol<T>(),
      "cached out window " + std::to_string(window) + " cap " + std::to_string(cap) + " hs " + std::to_string(hs));
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
  // The head sizes of the tensor-core training kernels: decoding keeps its own kernel.
  check_cached<bf16>(16, 20, 64);
  check_cached<bf16>(0, 48, 128);
}

// ---- The bf16 tensor-core path (attention_flash_*.cu: head sizes 64, 128) -------------------------
// Against the CPU op in double on the bf16-rounded inputs, the GPU backward fed with the GPU's own forward
// (as in training). Tolerances of dev/cuda/sliding_window_attention.cu, where these kernels were
// developed: relative L2 1e-2 for bf16 outputs and gradients, 1e-5 for lse (fp32). Sequence lengths are
// not multiples of the kernels' 64-query / 128-key tiles; windows shorter than T, longer, one tile, 1,
// and <= 0 (full causal); GQA (H=4 over G=2), MQA (G=1) and H = G. out and lse are NaN-poisoned, and so
// is the backward's scratch (its contents on entry must not matter). The gradients accumulate: from
// zero, or (`accumulate`) into random values of the gradients' own size, where the increment is checked.
struct FlashCase {
  int64_t B, T, H, G, hs, window;
  bool accumulate;
};
const FlashCase kFlashCases[] = {
    {2, 77, 4, 2, 64, 0, false},    {1, 133, 4, 2, 128, 40, true}, {2, 100, 4, 1, 64, 300, true},
    {1, 200, 4, 4, 128, -1, false}, {1, 129, 4, 2, 128, 1, false}, {2, 65, 4, 1, 128, 64, true},
    {1, 190, 2, 2, 64, 17, true},   {3, 31, 4, 2, 64, 16, false},  {1, 300, 4, 2, 128, 150, false},
    {2, 1, 4, 1, 128, 5, true},     {1, 16, 4, 2, 64, 0, false},   {1, 257, 4, 2, 64, 128, true},
};

std::string tag(const FlashCase& c) {
  return tag(AttnCase{c.B, c.T, c.H, c.G, c.hs, c.window}) + (c.accumulate ? " accumulate" : "");
}

std::vector<double> to_double(const std::vector<float>& v) { return widen(v); }

double rel_l2(const std::vector<float>& got, const std::vector<double>& want, double floor = 0) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    const double d = double(got[i]) - want[i];
    num += d * d;
    den += want[i] * want[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), floor * std::sqrt(double(want.size())));
}

double rms(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return v.empty() ? 0 : std::sqrt(s / double(v.size()));
}

// Inputs rounded to bf16 (what the GPU sees) and the double reference computed from them.
struct FlashProblem {
  FlashCase c;
  int64_t nq, nkv;
  double scale;
  std::vector<float> q, k, v, dout;
  std::vector<double> out, lse, dq, dk, dv;  // reference outputs and gradients (from zero)

  explicit FlashProblem(const FlashCase& fc, uint32_t seed = 81)
      : c(fc), nq(fc.B * fc.H * fc.T * fc.hs), nkv(fc.B * fc.G * fc.T * fc.hs), scale(1.0 / std::sqrt(double(fc.hs))) {
    q = round_bf16(random_vector(nq, seed));
    k = round_bf16(random_vector(nkv, seed + 1));
    v = round_bf16(random_vector(nkv, seed + 2));
    dout = round_bf16(random_vector(nq, seed + 3));
    const auto qd = to_double(q), kd = to_double(k), vd = to_double(v), dd = to_double(dout);
    out.assign(nq, 0.0);
    lse.assign(c.B * c.H * c.T, 0.0);
    ops::cpu::attention_forward<double>(out.data(), lse.data(), qd.data(), kd.data(), vd.data(), c.B, c.T, c.H, c.G,
                                        c.hs, c.window, scale);
    dq.assign(nq, 0.0);
    dk.assign(nkv, 0.0);
    dv.assign(nkv, 0.0);
    ops::cpu::attention_backward<double>(dq.data(), dk.data(), dv.data(), dd.data(), out.data(), lse.data(), qd.data(),
                                         kd.data(), vd.data(), c.B, c.T, c.H, c.G, c.hs, c.window, scale);
  }
};

int64_t flash_scratch(const FlashCase& c) {
  return ops::attention_backward_scratch_size<bf16>(gpu(), c.B, c.T, c.H, c.G, c.hs);
}

void check_flash(const FlashCase& c) {
  const FlashProblem pr(c);
  DeviceBuffer<bf16> d_q(to_bf16(pr.q)), d_k(to_bf16(pr.k)), d_v(to_bf16(pr.v)), d_out(to_bf16(nans(pr.nq)));
  DeviceBuffer<float> d_lse(nans(pr.lse.size()));
  ops::attention_forward(gpu(), d_out.get(), d_lse.get(), d_q.get(), d_k.get(), d_v.get(), c.B, c.T, c.H, c.G, c.hs,
                         c.window, pr.scale);
  EXPECT_LT(rel_l2(to_f32(d_out.download()), pr.out), 1e-2) << "out" << tag(c);
  EXPECT_LT(rel_l2(d_lse.download(), pr.lse), 1e-5) << "lse" << tag(c);

  // Starting gradients: zero, or random with the size of the increment (so that the increment is not
  // lost in the rounding of the total to bf16).
  auto start = [&](const std::vector<double>& want, uint32_t seed) {
    if (!c.accumulate) return std::vector<float>(want.size(), 0.f);
    return round_bf16(random_vector(want.size(), seed, float(std::sqrt(3.0) * rms(want))));
  };
  const auto dq0 = start(pr.dq, 91), dk0 = start(pr.dk, 92), dv0 = start(pr.dv, 93);
  DeviceBuffer<bf16> d_dout(to_bf16(pr.dout)), d_dq(to_bf16(dq0)), d_dk(to_bf16(dk0)), d_dv(to_bf16(dv0));
  const int64_t nscratch = flash_scratch(c);
  ASSERT_GT(nscratch, 0) << tag(c);
  DeviceBuffer<float> d_scratch(nans(nscratch));
  ops::attention_backward(gpu(), d_dq.get(), d_dk.get(), d_dv.get(), d_dout.get(), d_out.get(), d_lse.get(), d_q.get(),
                          d_k.get(), d_v.get(), c.B, c.T, c.H, c.G, c.hs, c.window, pr.scale, d_scratch.get());
  const struct {
    const char* name;
    const DeviceBuffer<bf16>& got;
    const std::vector<float>& base;
    const std::vector<double>& want;
  } grads[] = {{"dq", d_dq, dq0, pr.dq}, {"dk", d_dk, dk0, pr.dk}, {"dv", d_dv, dv0, pr.dv}};
  for (const auto& g : grads) {
    auto got = to_f32(g.got.download());
    for (size_t i = 0; i < got.size(); ++i) got[i] -= g.base[i];
    // The floor: with window 1, dq and dk are exactly zero (one key, P = 1, dS = 0) up to rounding noise.
    EXPECT_LT(rel_l2(got, g.want, 1e-3), 1e-2) << g.name << tag(c);
  }
}

TEST(CudaAttention, FlashBf16) {
  SAMBALM_REQUIRE_GPU();
  for (const auto& c : kFlashCases) check_flash(c);
}

// dq only, or dk and dv only (the others nullptr, left alone), each the same as from the full call.
TEST(CudaAttention, FlashBf16NullGradients) {
  SAMBALM_REQUIRE_GPU();
  const FlashCase c{2, 150, 4, 2, 128, 70, false};
  const FlashProblem pr(c);
  DeviceBuffer<bf16> d_q(to_bf16(pr.q)), d_k(to_bf16(pr.k)), d_v(to_bf16(pr.v)), d_out(to_bf16(nans(pr.nq))),
      d_dout(to_bf16(pr.dout));
  DeviceBuffer<float> d_lse(nans(pr.lse.size())), d_scratch(nans(flash_scratch(c)));
  ops::attention_forward(gpu(), d_out.get(), d_lse.get(), d_q.get(), d_k.get(), d_v.get(), c.B, c.T, c.H, c.G, c.hs,
                         c.window, pr.scale);
  DeviceBuffer<bf16> d_dq(to_bf16(std::vector<float>(pr.nq, 0.f))), d_dk(to_bf16(std::vector<float>(pr.nkv, 0.f))),
      d_dv(to_bf16(std::vector<float>(pr.nkv, 0.f)));
  bf16* none = nullptr;
  ops::attention_backward(gpu(), d_dq.get(), none, none, d_dout.get(), d_out.get(), d_lse.get(), d_q.get(), d_k.get(),
                          d_v.get(), c.B, c.T, c.H, c.G, c.hs, c.window, pr.scale, d_scratch.get());
  EXPECT_LT(rel_l2(to_f32(d_dq.download()), pr.dq), 1e-2) << "dq only";
  const auto dq_after = to_f32(d_dq.download());
  ops::attention_backward(gpu(), none, d_dk.get(), d_dv.get(), d_dout.get(), d_out.get(), d_lse.get(), d_q.get(),
                          d_k.get(), d_v.get(), c.B, c.T, c.H, c.G, c.hs, c.window, pr.scale, d_scratch.get());
  EXPECT_EQ(to_f32(d_dq.download()), dq_after) << "dq untouched by the dk/dv call";
  EXPECT_LT(rel_l2(to_f32(d_dk.download()), pr.dk), 1e-2) << "dk";
  EXPECT_LT(rel_l2(to_f32(d_dv.download()), pr.dv), 1e-2) << "dv";
}

// The bf16 backward without its scratch is an error naming what it needs, not a crash.
TEST(CudaAttention, FlashBf16NeedsScratch) {
  SAMBALM_REQUIRE_GPU();
  const FlashCase c{1, 40, 2, 2, 64, 0, false};
  const FlashProblem pr(c);
  DeviceBuffer<bf16> d_q(to_bf16(pr.q)), d_k(to_bf16(pr.k)), d_v(to_bf16(pr.v)), d_out(to_bf16(pr.q)),
      d_dout(to_bf16(pr.dout)), d_dq(to_bf16(pr.q));
  DeviceBuffer<float> d_lse(std::vector<float>(pr.lse.size(), 0.f));
  bf16* none = nullptr;
  EXPECT_THROW(ops::attention_backward(gpu(), d_dq.get(), none, none, d_dout.get(), d_out.get(), d_lse.get(), d_q.get(),
                                       d_k.get(), d_v.get(), c.B, c.T, c.H, c.G, c.hs, c.window, pr.scale, nullptr),
               Error);
}

// Rows that are not 16-byte aligned (a view one element into a buffer) cannot take the tensor-core
// path (cp.async, vector loads): the op falls back to the warp-per-row kernels, still correct.
TEST(CudaAttention, FlashBf16MisalignedFallsBack) {
  SAMBALM_REQUIRE_GPU();
  const FlashCase c{1, 70, 4, 2, 64, 20, false};
  const FlashProblem pr(c);
  auto shifted = [](const std::vector<float>& v) {
    std::vector<float> r(v.size() + 1, 0.f);
    std::copy(v.begin(), v.end(), r.begin() + 1);
    return to_bf16(r);
  };
  DeviceBuffer<bf16> d_q(shifted(pr.q)), d_k(shifted(pr.k)), d_v(shifted(pr.v)), d_out(shifted(nans(pr.nq))),
      d_dout(shifted(pr.dout)), d_dq(shifted(std::vector<float>(pr.nq, 0.f))),
      d_dk(shifted(std::vector<float>(pr.nkv, 0.f))), d_dv(shifted(std::vector<float>(pr.nkv, 0.f)));
  DeviceBuffer<float> d_lse(nans(pr.lse.size())), d_scratch(nans(flash_scratch(c)));
  ops::attention_forward(gpu(), d_out.get() + 1, d_lse.get(), d_q.get() + 1, d_k.get() + 1, d_v.get() + 1, c.B, c.T,
                         c.H, c.G, c.hs, c.window, pr.scale);
  ops::attention_backward(gpu(), d_dq.get() + 1, d_dk.get() + 1, d_dv.get() + 1, d_dout.get() + 1, d_out.get() + 1,
                          d_lse.get(), d_q.get() + 1, d_k.get() + 1, d_v.get() + 1, c.B, c.T, c.H, c.G, c.hs, c.window,
                          pr.scale, d_scratch.get());
  auto tail = [](const DeviceBuffer<bf16>& b) {
    const auto all = to_f32(b.download());
    return std::vector<float>(all.begin() + 1, all.end());
  };
  EXPECT_LT(rel_l2(tail(d_out), pr.out), 1e-2) << "out";
  EXPECT_LT(rel_l2(d_lse.download(), pr.lse), 1e-5) << "lse";
  EXPECT_LT(rel_l2(tail(d_dq), pr.dq), 1e-2) << "dq";
  EXPECT_LT(rel_l2(tail(d_dk), pr.dk), 1e-2) << "dk";
  EXPECT_LT(rel_l2(tail(d_dv), pr.dv), 1e-2) << "dv";
}

// Only the bf16 tensor-core backward asks for scratch: fp32 and the other head sizes need none.
TEST(CudaAttention, BackwardScratchSize) {
  SAMBALM_REQUIRE_GPU();
  EXPECT_EQ(ops::attention_backward_scratch_size<bf16>(gpu(), 2, 100, 4, 2, 128), 2 * 4 * 100 * 129);
  EXPECT_EQ(ops::attention_backward_scratch_size<bf16>(gpu(), 2, 100, 4, 2, 64), 2 * 4 * 100 * 65);
  EXPECT_EQ(ops::attention_backward_scratch_size<bf16>(gpu(), 2, 100, 4, 2, 40), 0);
  EXPECT_EQ(ops::attention_backward_scratch_size<float>(gpu(), 2, 100, 4, 2, 128), 0);
}

}  // namespace
}  // namespace sambalm
