// The library's Mamba memory-bound kernels run on the CPU through host_emulation.h against the
// library's CPU ops (in double, on the values the kernel sees).
//
// The streaming causal conv1d backward, plain and with the SiLU's backward fused (src/ops/cuda/
// conv1d_backward.cuh against causal_conv1d_backward / causal_conv1d_silu_backward of
// src/ops/cpu/conv1d.cpp) on odd shapes: L not a multiple of the runs, D not a multiple of the vector or of the block's
// channels, K = 2, 3, 4, state rows or none, x rows ld_x > D apart, dx rows ld_dx > D apart (the
// columns between stay NaN and must stay NaN), misaligned views (the scalar paths), nullable dx /
// dw / dbias, and several grid shapes (runs per sequence). fp32 within 1e-5, bf16 within 1e-2
// (relative L2; bf16 dx is rounded once per element).
//
// The SiLU ops (src/ops/cuda/silu_kernels.cuh against src/ops/cpu/activations.cpp): silu forward and
// backward over n values (n a multiple of the vector or not, misaligned views), the gate forward and
// backward over rows with z / dz views ld > D apart (aligned: the vector path; odd: the scalar one),
// dy or dz null; grids smaller than the work (the grid-stride loop). Forward outputs NaN-poisoned;
// backward outputs random (they accumulate) with NaN in the columns between D and ld_dz, which must
// stay NaN. Same tolerances.
//
//   dev/cuda/host_emu/check_mamba_library.sh
//
// host_emulation.h (included first by the script) makes atomics plain adds, __shared__ arrays function
// statics (one per kernel instantiation, shared by the block's threads) and shuffles warp exchanges.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#ifndef __CUDACC__
inline float4 __ldg(const float4* p) { return *p; }
#endif

#include "ops/cuda/conv1d_backward.cuh"
#include "ops/cuda/conv1d_forward.cuh"
#include "ops/cuda/silu_kernels.cuh"

namespace sambalm::ops::cpu {
template <typename T>
void silu_forward(T* out, const T* x, int64_t n);
template <typename T>
void silu_backward(T* dx, const T* dout, const T* x, int64_t n);
template <typename T>
void silu_gate_forward(T* out, const T* y, const T* z, int64_t ld_z, int64_t rows, int64_t D);
template <typename T>
void silu_gate_backward(T* dy, T* dz, int64_t ld_dz, const T* dout, const T* y, const T* z, int64_t ld_z, int64_t rows,
                        int64_t D);
template <typename T>
void causal_conv1d_backward(T* dx, int64_t ld_dx, T* dw, T* dbias, const T* dout, const T* x, int64_t ld_x, const T* w,
                            const T* state, int64_t B, int64_t L, int64_t D, int64_t K);
template <typename T>
void causal_conv1d_forward(T* out, const T* x, int64_t ld_x, const T* w, const T* bias, const T* state, int64_t B,
                           int64_t L, int64_t D, int64_t K, const int32_t* slots);
template <typename T>
void causal_conv1d_silu_forward(T* out, T* act, const T* x, int64_t ld_x, const T* w, const T* bias, const T* state,
                                int64_t B, int64_t L, int64_t D, int64_t K, const int32_t* slots);
template <typename T>
void causal_conv1d_silu_backward(T* dx, int64_t ld_dx, T* dw, T* dbias, const T* dact, const T* pre, const T* x,
                                 int64_t ld_x, const T* w, const T* state, int64_t B, int64_t L, int64_t D, int64_t K);
}  // namespace sambalm::ops::cpu

using namespace sambalm::ops::cuda;

namespace {

struct Case {
  int64_t B, L, D, K, ld_x, ld_dx;
  bool state;
  int x_offset;  // elements: a nonzero offset misaligns the x view (scalar path)
  bool want_dx, want_dw, want_db;
  int64_t resident;  // the "one wave" the grid is sized for: changes the run length
};

float to_float(float v) { return v; }
float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename D>
D from_float(float v);
template <>
float from_float<float>(float v) {
  return v;
}
template <>
__nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16(v);
}

double rel_l2(const std::vector<double>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = got[i] - want[i];
    num += d * d;
    den += want[i] * want[i];
  }
  if (std::isnan(num)) return INFINITY;
  return std::sqrt(num / (den > 0 ? den : 1));
}

template <typename S>
std::vector<double> widen_all(const std::vector<S>& v, size_t from = 0) {
  std::vector<double> r;
  for (size_t i = from; i < v.size(); ++i) r.push_back(to_float(v[i]));
  return r;
}

template <typename D, int K>
void launch(const conv_bwd::Args<D>& a, int64_t blocks) {
  emu::launch([&] { conv_bwd::conv_backward_stream<D, K, 4>(a); }, dim3(unsigned(blocks)), dim3(conv_bwd::kThreads));
}

// Values of type D (the kernel's), returned also as doubles rounded to D (the reference's inputs).
template <typename D>
std::vector<D> random_values(size_t n, std::mt19937& rng, float scale, std::vector<double>& as_double) {
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<D> v(n);
  as_double.resize(n);
  for (size_t i = 0; i < n; ++i) {
    v[i] = from_float<D>(u(rng));
    as_double[i] = to_float(v[i]);
  }
  return v;
}

// silu: the conv + SiLU backward (pre given; the reference causal_conv1d_silu_backward).
template <typename D>
bool run_case(const Case& c, int seed, bool silu) {
  std::mt19937 rng(seed);
  const double tol = sizeof(D) == 4 ? 1e-5 : 1e-2;
  std::vector<double> xd, wd, gd, sd, dxd, dwd, dbd;
  const auto xbuf = random_values<D>(c.x_offset + c.B * c.L * c.ld_x, rng, 1.f, xd);
  const auto w = random_values<D>(c.D * c.K, rng, 0.7f, wd);
  const auto dout = random_values<D>(c.B * c.L * c.D, rng, 1.f, gd);
  std::vector<double> pd;
  const auto pre = random_values<D>(c.B * c.L * c.D, rng, 4.f, pd);
  const auto state = random_values<D>(c.B * (c.K - 1) * c.D + 1, rng, 1.f, sd);
  auto dx = random_values<D>(c.B * c.L * c.ld_dx, rng, 1.f, dxd);
  std::vector<double> tmp;
  auto dwf = random_values<float>(c.D * c.K, rng, 1.f, dwd);
  auto dbf = random_values<float>(c.D, rng, 1.f, dbd);
  // Columns D..ld_dx-1 of dx are not the op's: NaN, and they must stay NaN.
  for (int64_t r = 0; r < c.B * c.L; ++r)
    for (int64_t d = c.D; d < c.ld_dx; ++d) dx[r * c.ld_dx + d] = from_float<D>(NAN), dxd[r * c.ld_dx + d] = NAN;

  std::vector<double> want_dx = dxd, want_dw = dwd, want_db = dbd;
  if (silu)
    sambalm::ops::cpu::causal_conv1d_silu_backward<double>(
        c.want_dx ? want_dx.data() : nullptr, c.ld_dx, c.want_dw ? want_dw.data() : nullptr,
        c.want_db ? want_db.data() : nullptr, gd.data(), pd.data(), xd.data() + c.x_offset, c.ld_x, wd.data(),
        c.state ? sd.data() : nullptr, c.B, c.L, c.D, c.K);
  else
    sambalm::ops::cpu::causal_conv1d_backward<double>(
        c.want_dx ? want_dx.data() : nullptr, c.ld_dx, c.want_dw ? want_dw.data() : nullptr,
        c.want_db ? want_db.data() : nullptr, gd.data(), xd.data() + c.x_offset, c.ld_x, wd.data(),
        c.state ? sd.data() : nullptr, c.B, c.L, c.D, c.K);

  conv_bwd::Args<D> a{};
  a.dx = c.want_dx ? dx.data() : nullptr;
  a.ld_dx = c.ld_dx;
  a.dw = c.want_dw ? dwf.data() : nullptr;
  a.dbias = c.want_db ? dbf.data() : nullptr;
  a.dout = dout.data();
  a.pre = silu ? pre.data() : nullptr;
  a.x = xbuf.data() + c.x_offset;
  a.ld_x = c.ld_x;
  a.w = w.data();
  a.state = c.state ? state.data() : nullptr;
  a.B = c.B, a.L = c.L, a.D_ = c.D;
  constexpr int64_t V = conv_bwd::Row16<D>::V;
  auto al = [](const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; };
  a.vec_dx = c.ld_dx % V == 0 && al(a.dx);
  a.vec_x = c.ld_x % V == 0 && al(a.x);
  a.vec_dout = c.D % V == 0 && al(a.dout) && al(a.pre);
  a.vec_state = c.D % V == 0 && al(a.state);
  int64_t blocks = 0;
  conv_bwd::size_grid(c.B, c.L, c.D, 32 * int(V), c.resident, a.T, a.nbc, blocks);
  if (c.K == 2) launch<D, 2>(a, blocks);
  if (c.K == 3) launch<D, 3>(a, blocks);
  if (c.K == 4) launch<D, 4>(a, blocks);

  std::vector<double> got_dx(dx.size()), got_dw(dwf.begin(), dwf.end()), got_db(dbf.begin(), dbf.end());
  int64_t pad_bad = 0;
  for (size_t i = 0; i < dx.size(); ++i) {
    got_dx[i] = to_float(dx[i]);
    const int64_t col = int64_t(i) % c.ld_dx;
    if (col >= c.D) {
      pad_bad += !std::isnan(got_dx[i]);
      got_dx[i] = want_dx[i] = 0;
    }
  }
  const double e_dx = rel_l2(got_dx, want_dx), e_dw = rel_l2(got_dw, want_dw), e_db = rel_l2(got_db, want_db);
  const bool ok = e_dx <= tol && e_dw <= tol && e_db <= tol && pad_bad == 0;
  std::printf(
      "%s %-5s %s B%ld L%ld D%ld K%ld ld_x %ld%s ld_dx %ld state %d grads %d%d%d runs T=%d x%d blocks %ld: "
      "dx %.2e dw %.2e dbias %.2e pad %ld\n",
      ok ? "ok  " : "FAIL", sizeof(D) == 4 ? "fp32" : "bf16", silu ? "conv+silu" : "conv     ", long(c.B), long(c.L),
      long(c.D), long(c.K), long(c.ld_x), c.x_offset ? " (misaligned)" : "", long(c.ld_dx), int(c.state),
      int(c.want_dx), int(c.want_dw), int(c.want_db), a.T, a.nbc, long(blocks), e_dx, e_dw, e_db, long(pad_bad));
  return ok;
}

// ---- conv forward (+ SiLU) ---------------------------------------------------------------------------

struct FwdCase {
  int64_t B, L, D, K, ld_x;
  bool state, slots;
  int offset;  // elements the x view and the outputs are shifted by (nonzero: misaligned)
};

template <typename D, int K>
void launch_fwd(const conv_fwd::ConvArgs<D>& a) {
  constexpr int TT = sizeof(D) == 2 ? 16 : 8;  // as conv1d.cu's launch_tiled
  const int64_t n = a.B * ((a.L + TT - 1) / TT) * ((a.D_ + 7) / 8);
  emu::launch([&] { conv_fwd::conv_forward_tiled<D, K, TT>(a); }, dim3(unsigned((n + 127) / 128)), dim3(128));
}

template <typename D>
bool run_fwd_case(const FwdCase& c, int seed, bool silu) {
  std::mt19937 rng(seed);
  const double tol = sizeof(D) == 4 ? 1e-5 : 1e-2;
  const int64_t o = c.offset, n = c.B * c.L * c.D, nslots = 4;
  std::vector<double> xd, wd, bd, sd;
  const auto x = random_values<D>(o + c.B * c.L * c.ld_x, rng, 1.f, xd);
  const auto w = random_values<D>(c.D * c.K, rng, 0.7f, wd);
  const auto bias = random_values<D>(c.D, rng, 0.5f, bd);
  const auto state = random_values<D>(nslots * (c.K - 1) * c.D + 1, rng, 1.f, sd);
  const std::vector<int32_t> slots = {3, 1, 2, 0};
  std::vector<double> want(n), want_act(n);
  sambalm::ops::cpu::causal_conv1d_silu_forward<double>(want.data(), want_act.data(), xd.data() + o, c.ld_x, wd.data(),
                                                        bd.data(), c.state ? sd.data() : nullptr, c.B, c.L, c.D, c.K,
                                                        c.slots ? slots.data() : nullptr);
  std::vector<D> out(o + n, from_float<D>(NAN)), act(o + n, from_float<D>(NAN));
  conv_fwd::ConvArgs<D> a{};
  a.out = out.data() + o;
  a.act = silu ? act.data() + o : nullptr;
  a.x = x.data() + o;
  a.ld_x = c.ld_x;
  a.w = w.data();
  a.bias = bias.data();
  a.state = c.state ? state.data() : nullptr;
  a.slots = c.slots ? slots.data() : nullptr;
  a.B = c.B, a.L = c.L, a.D_ = c.D, a.K = c.K;
  auto al = [](const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; };
  a.vec_x = c.ld_x % 8 == 0 && al(a.x);  // as conv1d.cu's forward()
  a.vec_state = c.D % 8 == 0 && al(a.state);
  a.vec_out = c.D % 8 == 0 && al(a.out) && al(a.act);
  if (c.K == 2) launch_fwd<D, 2>(a);
  if (c.K == 3) launch_fwd<D, 3>(a);
  if (c.K == 4) launch_fwd<D, 4>(a);
  if (c.K > 4) emu::launch([&] { conv_fwd::conv_forward_simple<D>(a); }, dim3(unsigned((n + 255) / 256)), dim3(256));
  // The kernel activates out as stored (rounded to D): so does the reference here.
  std::vector<double> got = widen_all(out, o), got_act = widen_all(act, o), want_act_stored(n);
  for (int64_t i = 0; i < n; ++i) {
    const double v = to_float(from_float<D>(float(want[i])));
    want_act_stored[i] = v / (1.0 + std::exp(-v));
  }
  const double e = rel_l2(got, want), e_act = silu ? rel_l2(got_act, want_act_stored) : 0.0;
  const bool ok = e <= tol && e_act <= tol;
  std::printf(
      "%s %-5s %s B%ld L%ld D%ld K%ld ld_x %ld offset %ld state %d slots %d vec x/out %d%d: out %.2e act %.2e\n",
      ok ? "ok  " : "FAIL", sizeof(D) == 4 ? "fp32" : "bf16", silu ? "fwd+silu" : "fwd     ", long(c.B), long(c.L),
      long(c.D), long(c.K), long(c.ld_x), long(o), int(c.state), int(c.slots), int(a.vec_x), int(a.vec_out), e, e_act);
  return ok;
}

// ---- SiLU ops ---------------------------------------------------------------------------------------

struct SiluCase {
  int64_t rows, D, ld_z, ld_dz;
  int offset;  // elements added to every base pointer: nonzero misaligns the views
  bool want_dy, want_dz;
  unsigned blocks;  // grid (a grid-stride loop covers the rest)
};

template <typename S>
silu_k::Items silu_items(int64_t rows, int64_t D, std::initializer_list<const void*> ptrs,
                         std::initializer_list<int64_t> strides) {
  constexpr int64_t V = vec16::Row16<S>::V;
  silu_k::Items it{rows, D, (D + V - 1) / V, rows == 1 || D % V == 0};
  for (const void* p : ptrs) it.vec = it.vec && (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
  for (int64_t ld : strides) it.vec = it.vec && (rows == 1 || ld % V == 0);
  return it;
}

// Errors over the first D columns of rows ld apart; counts columns >= D that are not NaN.
double rows_error(const std::vector<double>& got, const std::vector<double>& want, int64_t rows, int64_t D, int64_t ld,
                  int64_t& pad_bad) {
  std::vector<double> g, w;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t d = 0; d < ld; ++d) {
      const size_t i = size_t(r * ld + d);
      if (d < D) {
        g.push_back(got[i]);
        w.push_back(want[i]);
      } else {
        pad_bad += !std::isnan(got[i]);
      }
    }
  return rel_l2(g, w);
}

template <typename S>
bool run_silu_case(const SiluCase& c, int seed) {
  std::mt19937 rng(seed);
  const double tol = sizeof(S) == 4 ? 1e-5 : 1e-2;
  const int64_t rows = c.rows, D = c.D, o = c.offset;
  std::vector<double> yd, zd, gd, dyd, dzd, ud;
  // Buffers hold `o` leading elements; the views start there.
  const auto y = random_values<S>(o + rows * D, rng, 2.f, yd);
  const auto z = random_values<S>(o + rows * c.ld_z, rng, 4.f, zd);
  const auto g = random_values<S>(o + rows * D, rng, 1.f, gd);
  auto dy = random_values<S>(o + rows * D, rng, 1.f, dyd);
  auto dz = random_values<S>(o + rows * c.ld_dz, rng, 1.f, dzd);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t d = D; d < c.ld_dz; ++d) dz[o + r * c.ld_dz + d] = from_float<S>(NAN), dzd[o + r * c.ld_dz + d] = NAN;
  std::vector<S> out(o + rows * D, from_float<S>(NAN));
  bool ok = true;
  int64_t pad_bad = 0;
  auto launch_grid = [&](auto f) { emu::launch(f, dim3(c.blocks), dim3(64)); };

  // Gate forward.
  {
    std::vector<double> want(rows * D);
    sambalm::ops::cpu::silu_gate_forward<double>(want.data(), yd.data() + o, zd.data() + o, c.ld_z, rows, D);
    const auto it = silu_items<S>(rows, D, {out.data() + o, y.data() + o, z.data() + o}, {c.ld_z});
    launch_grid([&] { silu_k::gate_forward<S>(out.data() + o, y.data() + o, z.data() + o, c.ld_z, it); });
    const double e = rel_l2(widen_all(out, o), want);
    ok = ok && e <= tol;
    std::printf("%s %-5s gate fwd  rows %ld D %ld ld_z %ld offset %d vec %d grid %u: %.2e\n",
                e <= tol ? "ok  " : "FAIL", sizeof(S) == 4 ? "fp32" : "bf16", long(rows), long(D), long(c.ld_z), o,
                int(it.vec), c.blocks, e);
  }
  // Gate backward.
  {
    std::vector<double> want_dy(dyd.begin() + o, dyd.end()), want_dz(dzd.begin() + o, dzd.end());
    sambalm::ops::cpu::silu_gate_backward<double>(c.want_dy ? want_dy.data() : nullptr,
                                                  c.want_dz ? want_dz.data() : nullptr, c.ld_dz, gd.data() + o,
                                                  yd.data() + o, zd.data() + o, c.ld_z, rows, D);
    S* pdy = c.want_dy ? dy.data() + o : nullptr;
    S* pdz = c.want_dz ? dz.data() + o : nullptr;
    const auto it = silu_items<S>(rows, D, {pdy, pdz, g.data() + o, y.data() + o, z.data() + o}, {c.ld_dz, c.ld_z});
    launch_grid(
        [&] { silu_k::gate_backward<S>(pdy, pdz, c.ld_dz, g.data() + o, y.data() + o, z.data() + o, c.ld_z, it); });
    int64_t pad = 0;
    const double e_dy = rel_l2(widen_all(dy, o), want_dy);
    const double e_dz = rows_error(widen_all(dz, o), want_dz, rows, D, c.ld_dz, pad);
    const bool good = e_dy <= tol && e_dz <= tol && pad == 0;
    ok = ok && good;
    pad_bad += pad;
    std::printf(
        "%s %-5s gate bwd  rows %ld D %ld ld_z %ld ld_dz %ld offset %d dy %d dz %d vec %d: dy %.2e dz %.2e "
        "pad %ld\n",
        good ? "ok  " : "FAIL", sizeof(S) == 4 ? "fp32" : "bf16", long(rows), long(D), long(c.ld_z), long(c.ld_dz), o,
        int(c.want_dy), int(c.want_dz), int(it.vec), e_dy, e_dz, long(pad));
  }
  // SiLU forward and backward over n = rows * D values (y as x, g as dout, dy as dx).
  {
    const int64_t n = rows * D;
    std::vector<double> want(n), want_dx(dyd.begin() + o, dyd.end());
    std::vector<S> dx(dy);
    for (int64_t i = 0; i < n; ++i) want_dx[i] = to_float(dx[o + i]);
    std::fill(out.begin(), out.end(), from_float<S>(NAN));
    sambalm::ops::cpu::silu_forward<double>(want.data(), yd.data() + o, n);
    sambalm::ops::cpu::silu_backward<double>(want_dx.data(), gd.data() + o, yd.data() + o, n);
    const auto itf = silu_items<S>(1, n, {out.data() + o, y.data() + o}, {});
    launch_grid([&] { silu_k::silu_forward<S>(out.data() + o, y.data() + o, itf); });
    const auto itb = silu_items<S>(1, n, {dx.data() + o, g.data() + o, y.data() + o}, {});
    launch_grid([&] { silu_k::silu_backward<S>(dx.data() + o, g.data() + o, y.data() + o, itb); });
    const double e_f = rel_l2(widen_all(out, o), want), e_b = rel_l2(widen_all(dx, o), want_dx);
    const bool good = e_f <= tol && e_b <= tol;
    ok = ok && good;
    std::printf("%s %-5s silu      n %ld offset %d vec %d: fwd %.2e bwd %.2e\n", good ? "ok  " : "FAIL",
                sizeof(S) == 4 ? "fp32" : "bf16", long(n), o, int(itf.vec), e_f, e_b);
  }
  return ok && pad_bad == 0;
}

}  // namespace

int main() {
  const Case cases[] = {
      // B, L, D, K, ld_x, ld_dx, state, x_offset, dx, dw, db, resident
      {3, 333, 97, 4, 2 * 97 + 3, 97 + 5, true, 0, true, true, true, 1000},  // odd everything
      {3, 333, 97, 4, 2 * 97 + 3, 97 + 5, true, 0, true, true, true, 1},     // one run a sequence
      {2, 1000, 264, 4, 2 * 264, 264 + 8, true, 0, true, true, true, 1000},  // vector paths, D % 256 != 0
      {2, 1000, 264, 4, 2 * 264, 264 + 8, true, 3, true, true, true, 40},    // misaligned x view
      {3, 2, 40, 4, 40, 41, true, 0, true, true, true, 1000},                // L < K-1
      {2, 77, 40, 3, 43, 40, true, 0, true, true, true, 1000},               // K = 3
      {2, 300, 300, 2, 600, 304, false, 0, true, true, true, 3},             // K = 2, no state
      {1, 257, 256, 4, 512, 512, false, 0, true, false, false, 1000},        // dx only
      {1, 257, 256, 4, 512, 512, true, 0, false, true, false, 1000},         // dw only
      {1, 257, 256, 4, 512, 512, true, 0, false, false, true, 1000},         // dbias only
      {3, 129, 520, 4, 2 * 520, 520, true, 0, true, true, true, 24},         // a Mamba layer's shape, scaled
  };
  int failed = 0, seed = 1;
  for (const Case& c : cases) {
    for (bool silu : {false, true}) {
      failed += !run_case<float>(c, seed++, silu);
      failed += !run_case<__nv_bfloat16>(c, seed++, silu);
    }
  }
  const FwdCase fwd_cases[] = {
      // B, L, D, K, ld_x, state, slots, offset
      {3, 333, 97, 4, 2 * 97 + 3, true, false, 0},  // odd everything: scalar paths
      {3, 100, 264, 4, 2 * 264, true, true, 0},     // aligned: 16-byte loads and stores; slots
      {3, 100, 264, 4, 2 * 264, false, false, 1},   // misaligned views
      {3, 2, 40, 4, 80, true, false, 0},            // L < K-1
      {2, 77, 40, 3, 43, true, false, 0},           // K = 3
      {2, 50, 264, 2, 528, false, false, 0},        // K = 2
      {2, 50, 33, 6, 35, true, false, 0},           // K = 6: the one-thread-per-output kernel
  };
  for (const FwdCase& c : fwd_cases)
    for (bool silu : {false, true}) {
      failed += !run_fwd_case<float>(c, seed++, silu);
      failed += !run_fwd_case<__nv_bfloat16>(c, seed++, silu);
    }
  const SiluCase silu_cases[] = {
      // rows, D, ld_z, ld_dz, offset, dy, dz, blocks
      {3, 264, 528, 528, 0, true, true, 4},           // the model's views: z and dz inside xz rows of 2D
      {3, 264, 528, 528, 0, true, true, 100},         // more blocks than items
      {5, 97, 2 * 97 + 3, 97 + 5, 0, true, true, 3},  // odd D and strides: scalar path
      {2, 264, 528, 530, 0, true, false, 4},          // dz null; misaligned dz stride
      {2, 264, 528, 528, 1, false, true, 4},          // dy null; every view misaligned by one element
      {1, 1001, 1001, 1001, 0, true, true, 2},        // one row: a partial last vector
      {7, 8, 16, 16, 0, true, true, 1},               // one vector a row (bf16)
  };
  for (const SiluCase& c : silu_cases) {
    failed += !run_silu_case<float>(c, seed++);
    failed += !run_silu_case<__nv_bfloat16>(c, seed++);
  }
  std::printf("%s: %d failed\n", failed ? "FAIL" : "all passed", failed);
  return failed ? 1 : 0;
}
