// Host check of the library's memory-bound dense kernels (src/ops/cuda/elementwise.cu, rope.cu,
// norms.cu) against the CPU ops, for machines without a GPU: host_emu/check_dense_on_cpu.sh rewrites
// the library's .cu files and this one for host_emulation.h and links the CPU ops beside them. Odd
// shapes (lengths not a multiple of 8, one-element rows, GQA/MQA, partial rotary, misaligned views)
// reach both the eight-wide paths and the scalar fallbacks; outputs that an op overwrites start as
// NaN, outputs it adds into start random. fp32 within 1e-5 relative, bf16 within 1e-2 (the CPU op run
// in float on the bf16-rounded inputs). Exits non-zero on any mismatch.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/cuda/elementwise.cu"
#include "ops/cuda/norms.cu"
#include "ops/cuda/rope.cu"

namespace sambalm::ops::cuda {
[[noreturn]] void raise_cuda_error(int code, const char* call, const char*, int) {
  std::fprintf(stderr, "cuda error %d in %s\n", code, call);
  std::abort();
}
}  // namespace sambalm::ops::cuda

using sambalm::bf16;
namespace cpu = sambalm::ops::cpu;
namespace gpu = sambalm::ops::cuda;

static sambalm::Context ctx{sambalm::Device::CUDA};
static std::mt19937 rng(7);
static int failures = 0, checks = 0;

static float to_f(float v) { return v; }
static float to_f(bf16 v) { return static_cast<float>(v); }
template <typename T>
static T from_f(float v) {
  return static_cast<T>(v);
}
template <>
bf16 from_f<bf16>(float v) {
  return bf16(v);
}

// Random values already representable in T (so CPU and GPU see the same inputs).
template <typename T>
static std::vector<T> rand_vec(size_t n, float lo = -2.f, float hi = 2.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = from_f<T>(d(rng));
  return v;
}
template <typename T>
static std::vector<T> nan_vec(size_t n) {
  return std::vector<T>(n, from_f<T>(NAN));
}
template <typename T>
static std::vector<float> as_float(const T* p, size_t n) {
  std::vector<float> r(n);
  for (size_t i = 0; i < n; ++i) r[i] = to_f(p[i]);
  return r;
}
template <typename T>
static std::vector<float> as_float(const std::vector<T>& v) {
  return as_float(v.data(), v.size());
}

// got (the kernel's, type T) against want (float); tolerance by T unless given.
template <typename T>
static void expect_close(const char* what, const T* got, const std::vector<float>& want, double tol = -1) {
  if (tol < 0) tol = sizeof(T) == 2 ? 1e-2 : 1e-5;
  ++checks;
  for (size_t i = 0; i < want.size(); ++i) {
    const double g = to_f(got[i]), w = want[i];
    if (!(std::fabs(g - w) <= tol * (1.0 + std::fabs(w)))) {
      std::printf("FAIL %s: [%zu] got %.7g want %.7g\n", what, i, g, w);
      ++failures;
      return;
    }
  }
}

// ---- elementwise ------------------------------------------------------------------------------
// off shifts every buffer by that many elements (off = 1: misaligned views, the scalar kernels).
template <typename T>
static void check_elementwise(int64_t n, int off) {
  char what[96];
  auto a = rand_vec<T>(n + off), b = rand_vec<T>(n + off), g = rand_vec<T>(n + off);
  auto af = as_float(a), bf = as_float(b), gf = as_float(g);
  // swiglu forward (overwrites)
  auto out = nan_vec<T>(n + off);
  gpu::swiglu_forward(ctx, out.data() + off, a.data() + off, b.data() + off, n);
  std::vector<float> want(n);
  cpu::swiglu_forward(want.data(), af.data() + off, bf.data() + off, n);
  std::snprintf(what, sizeof what, "swiglu_forward n=%ld off=%d", long(n), off);
  expect_close(what, out.data() + off, want);
  // swiglu backward (adds), both outputs, then each alone
  for (int mask = 1; mask <= 3; ++mask) {
    auto da = rand_vec<T>(n + off), db = rand_vec<T>(n + off);
    auto daf = as_float(da), dbf = as_float(db);
    gpu::swiglu_backward(ctx, mask & 1 ? da.data() + off : nullptr, mask & 2 ? db.data() + off : nullptr,
                         g.data() + off, a.data() + off, b.data() + off, n);
    cpu::swiglu_backward(mask & 1 ? daf.data() + off : nullptr, mask & 2 ? dbf.data() + off : nullptr, gf.data() + off,
                         af.data() + off, bf.data() + off, n);
    std::snprintf(what, sizeof what, "swiglu_backward da n=%ld off=%d mask=%d", long(n), off, mask);
    expect_close(what, da.data(), daf);
    std::snprintf(what, sizeof what, "swiglu_backward db n=%ld off=%d mask=%d", long(n), off, mask);
    expect_close(what, db.data(), dbf);
  }
  // add_inplace
  {
    auto y = rand_vec<T>(n + off);
    auto yf = as_float(y);
    gpu::add_inplace(ctx, y.data() + off, a.data() + off, n);
    cpu::add_inplace(yf.data() + off, af.data() + off, n);
    std::snprintf(what, sizeof what, "add_inplace n=%ld off=%d", long(n), off);
    expect_close(what, y.data(), yf);
  }
}

// residual_add (fp32 stream plus fp32 or bf16 branch, in place or not) and convert.
static void check_residual(int64_t n, int off) {
  char what[96];
  auto x = rand_vec<float>(n + off), f = rand_vec<float>(n + off);
  auto fb = rand_vec<bf16>(n + off);
  auto fbf = as_float(fb);
  for (int in_place = 0; in_place < 2; ++in_place) {
    std::vector<float> want(n);
    cpu::residual_add(want.data(), x.data() + off, f.data() + off, n);
    auto out = in_place ? x : nan_vec<float>(n + off);
    gpu::residual_add(ctx, out.data() + off, in_place ? out.data() + off : x.data() + off, f.data() + off, n);
    std::snprintf(what, sizeof what, "residual_add f32 n=%ld off=%d in_place=%d", long(n), off, in_place);
    expect_close(what, out.data() + off, want);
    cpu::residual_add(want.data(), x.data() + off, fbf.data() + off, n);
    out = in_place ? x : nan_vec<float>(n + off);
    gpu::residual_add(ctx, out.data() + off, in_place ? out.data() + off : x.data() + off, fb.data() + off, n);
    std::snprintf(what, sizeof what, "residual_add bf16 n=%ld off=%d in_place=%d", long(n), off, in_place);
    expect_close(what, out.data() + off, want, 1e-6);
  }
  auto cb = nan_vec<bf16>(n + off);
  gpu::convert(ctx, cb.data() + off, x.data() + off, n);
  std::vector<float> want(n);
  for (int64_t i = 0; i < n; ++i) want[i] = static_cast<float>(bf16(x[off + i]));
  std::snprintf(what, sizeof what, "convert n=%ld off=%d", long(n), off);
  expect_close(what, cb.data() + off, want, 0.0);
}

// ---- RoPE split ---------------------------------------------------------------------------------
template <typename T>
static void check_rope(int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t rope_dims, int64_t pos0,
                       int64_t cs_batch_rows, int off) {
  char what[160];
  std::snprintf(what, sizeof what, "rope B=%ld T=%ld H=%ld G=%ld hs=%ld rd=%ld pos0=%ld csb=%ld off=%d", long(B),
                long(Tn), long(H), long(G), long(hs), long(rope_dims), long(pos0), long(cs_batch_rows), off);
  const int64_t half = rope_dims / 2, max_pos = (B - 1) * cs_batch_rows + pos0 + Tn;
  std::vector<float> cosf(max_pos * half), sinf(max_pos * half);
  cpu::rope_table(cosf.data(), sinf.data(), max_pos, rope_dims, 10000.0, 1.0);
  std::vector<T> cos(cosf.size() + off), sin(sinf.size() + off);
  for (size_t i = 0; i < cosf.size(); ++i) {
    cos[off + i] = from_f<T>(cosf[i]);
    sin[off + i] = from_f<T>(sinf[i]);
    cosf[i] = to_f(cos[off + i]);
    sinf[i] = to_f(sin[off + i]);
  }
  const int64_t nq = B * H * Tn * hs, nk = B * G * Tn * hs, nqkv = B * Tn * (H + 2 * G) * hs;
  auto qkv = rand_vec<T>(nqkv + off);
  auto qkvf = as_float(qkv);
  auto q = nan_vec<T>(nq + off), k = nan_vec<T>(nk + off), v = nan_vec<T>(nk + off);
  gpu::qkv_split_rope_forward(ctx, q.data() + off, k.data() + off, v.data() + off, qkv.data() + off, cos.data() + off,
                              sin.data() + off, B, Tn, H, G, hs, rope_dims, pos0, cs_batch_rows);
  std::vector<float> qw(nq), kw(nk), vw(nk);
  cpu::qkv_split_rope_forward(qw.data(), kw.data(), vw.data(), qkvf.data() + off, cosf.data(), sinf.data(), B, Tn, H, G,
                              hs, rope_dims, pos0, cs_batch_rows);
  expect_close((std::string(what) + " fwd q").c_str(), q.data() + off, qw);
  expect_close((std::string(what) + " fwd k").c_str(), k.data() + off, kw);
  expect_close((std::string(what) + " fwd v").c_str(), v.data() + off, vw);
  // backward, all gradients, then without dk
  for (int drop_k = 0; drop_k < 2; ++drop_k) {
    auto dq = rand_vec<T>(nq + off), dk = rand_vec<T>(nk + off), dv = rand_vec<T>(nk + off);
    auto dqkv = rand_vec<T>(nqkv + off);
    auto dqf = as_float(dq), dkf = as_float(dk), dvf = as_float(dv), dqkvf = as_float(dqkv);
    gpu::qkv_split_rope_backward(ctx, dqkv.data() + off, dq.data() + off, drop_k ? nullptr : dk.data() + off,
                                 dv.data() + off, cos.data() + off, sin.data() + off, B, Tn, H, G, hs, rope_dims, pos0,
                                 cs_batch_rows);
    cpu::qkv_split_rope_backward(dqkvf.data() + off, dqf.data() + off, drop_k ? nullptr : dkf.data() + off,
                                 dvf.data() + off, cosf.data(), sinf.data(), B, Tn, H, G, hs, rope_dims, pos0,
                                 cs_batch_rows);
    expect_close((std::string(what) + (drop_k ? " bwd (no dk)" : " bwd")).c_str(), dqkv.data(), dqkvf);
  }
}

// ---- RMSNorm ------------------------------------------------------------------------------------
// T: out and dout; X: x and dx; W: weight; G: dweight (the library's three combinations).
template <typename T, typename X, typename W, typename G>
static void check_rmsnorm(int64_t n, int64_t C, int off) {
  char what[128];
  std::snprintf(what, sizeof what, "rmsnorm n=%ld C=%ld off=%d %s", long(n), long(C), off,
                sizeof(T) == 2 ? (sizeof(X) == 2 ? "bf16" : "mixed") : "f32");
  auto x = rand_vec<X>(n * C + off);
  auto w = rand_vec<W>(C + off, 0.5f, 1.5f);
  auto xf = as_float(x), wf = as_float(w);
  auto out = nan_vec<T>(n * C + off);
  std::vector<float> rstd(n + 1, NAN);
  gpu::rmsnorm_forward(ctx, out.data() + off, rstd.data(), x.data() + off, w.data() + off, n, C, 1e-5);
  std::vector<float> ow(n * C), rw(n);
  cpu::rmsnorm_forward(ow.data(), rw.data(), xf.data() + off, wf.data() + off, n, C, 1e-5);
  expect_close((std::string(what) + " fwd out").c_str(), out.data() + off, ow);
  expect_close((std::string(what) + " fwd rstd").c_str(), rstd.data(), rw, 1e-5);
  auto dout = rand_vec<T>(n * C + off);
  auto doutf = as_float(dout);
  for (int mask = 1; mask <= 3; ++mask) {
    auto dx = rand_vec<X>(n * C + off);
    auto dw = rand_vec<G>(C + off);
    auto dxf = as_float(dx), dwf = as_float(dw);
    gpu::rmsnorm_backward(ctx, mask & 1 ? dx.data() + off : nullptr, mask & 2 ? dw.data() + off : nullptr,
                          dout.data() + off, x.data() + off, w.data() + off, rw.data(), n, C);
    cpu::rmsnorm_backward(mask & 1 ? dxf.data() + off : nullptr, mask & 2 ? dwf.data() + off : nullptr,
                          doutf.data() + off, xf.data() + off, wf.data() + off, rw.data(), n, C);
    // dweight sums n rows: relative to the sum of magnitudes, as the GPU tests do.
    expect_close((std::string(what) + " bwd dx mask=" + std::to_string(mask)).c_str(), dx.data(), dxf);
    expect_close((std::string(what) + " bwd dw mask=" + std::to_string(mask)).c_str(), dw.data(), dwf,
                 (sizeof(G) == 2 ? 1e-2 : 1e-5) * std::sqrt(double(n)) * 2);
  }
}

// With --norms-only, just RMSNorm's fp32-weight-gradient shapes; run it with EMU_SMS=1 so that the fused
// backward's fixed grid is small and its blocks loop over several rows each.
int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--norms-only") {
    for (auto [n, C] : std::vector<std::pair<int64_t, int64_t>>{{300, 40}, {77, 16}, {130, 264}, {9, 2056}}) {
      check_rmsnorm<float, float, float, float>(n, C, 0);
      check_rmsnorm<bf16, float, float, float>(n, C, 0);
    }
    std::printf("%d checks, %d failures, %ld launches\n", checks, failures, emu::launches);
    return failures ? 1 : 0;
  }
  for (int64_t n : {1, 7, 8, 9, 64, 1001, 4099})
    for (int off : {0, 1}) {
      check_elementwise<float>(n, off);
      check_elementwise<bf16>(n, off);
      check_residual(n, off);
    }
  // Vector path shapes (hs, half multiples of 8), GQA, MQA, partial rotary, offsets into the table,
  // then shapes that fall back to the scalar kernel.
  for (int off : {0, 1}) {
    check_rope<float>(2, 5, 4, 2, 16, 16, 0, 5, off);
    check_rope<bf16>(2, 5, 4, 2, 16, 16, 0, 5, off);
    check_rope<bf16>(1, 3, 6, 1, 32, 16, 2, 0, off);
    check_rope<float>(3, 7, 3, 3, 64, 32, 1, 9, off);
    check_rope<bf16>(2, 3, 2, 2, 24, 0, 0, 3, off);
    check_rope<bf16>(1, 1, 8, 2, 128, 128, 5, 0, off);
    check_rope<bf16>(2, 3, 4, 2, 12, 8, 0, 3, off);    // hs % 8 != 0: scalar
    check_rope<float>(2, 3, 3, 1, 16, 12, 0, 3, off);  // half % 8 != 0: scalar
  }
  for (int off : {0, 1})
    for (auto [n, C] : std::vector<std::pair<int64_t, int64_t>>{
             {1, 8}, {5, 16}, {33, 1536}, {7, 2056}, {3, 8200}, {4, 12}, {3, 1}, {2, 264}, {300, 40}}) {
      check_rmsnorm<float, float, float, float>(n, C, off);
      check_rmsnorm<bf16, float, float, float>(n, C, off);
      check_rmsnorm<bf16, bf16, bf16, bf16>(n, C, off);
    }
  std::printf("%d checks, %d failures, %ld launches, %ld barriers\n", checks, failures, emu::launches, emu::barriers);
  return failures ? 1 : 0;
}
