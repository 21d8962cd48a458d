// The library's streaming causal conv1d backward kernel (src/ops/cuda/conv1d_backward.cuh) run on the
// CPU through host_emulation.h, against the library's CPU op (src/ops/cpu/conv1d.cpp, in double) on
// odd shapes: L not a multiple of the runs, D not a multiple of the vector or of the block's
// channels, K = 2, 3, 4, state rows or none, x rows ld_x > D apart, dx rows ld_dx > D apart (the
// columns between stay NaN and must stay NaN), misaligned views (the scalar paths), nullable dx /
// dw / dbias, and several grid shapes (runs per sequence). fp32 within 1e-5, bf16 within 1e-2
// (relative L2; bf16 dx is rounded once per element).
//
//   dev/cuda/host_emu/check_conv_library.sh
//
// Blocks run one after another and a block's threads switch only at __syncthreads, so the float
// atomicAdd below is a plain add, and __shared__ arrays are function statics (one per kernel
// instantiation, shared by the block's threads).
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

inline float atomicAdd(float* p, float v) {
  const float old = *p;
  *p = old + v;
  return old;
}
#undef __shared__
#define __shared__ static

#include "ops/cuda/conv1d_backward.cuh"

namespace sambalm::ops::cpu {
template <typename T>
void causal_conv1d_backward(T* dx, int64_t ld_dx, T* dw, T* dbias, const T* dout, const T* x, int64_t ld_x, const T* w,
                            const T* state, int64_t B, int64_t L, int64_t D, int64_t K);
}

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

template <typename D>
bool run_case(const Case& c, int seed) {
  std::mt19937 rng(seed);
  const double tol = sizeof(D) == 4 ? 1e-5 : 1e-2;
  std::vector<double> xd, wd, gd, sd, dxd, dwd, dbd;
  const auto xbuf = random_values<D>(c.x_offset + c.B * c.L * c.ld_x, rng, 1.f, xd);
  const auto w = random_values<D>(c.D * c.K, rng, 0.7f, wd);
  const auto dout = random_values<D>(c.B * c.L * c.D, rng, 1.f, gd);
  const auto state = random_values<D>(c.B * (c.K - 1) * c.D + 1, rng, 1.f, sd);
  auto dx = random_values<D>(c.B * c.L * c.ld_dx, rng, 1.f, dxd);
  std::vector<double> tmp;
  auto dwf = random_values<float>(c.D * c.K, rng, 1.f, dwd);
  auto dbf = random_values<float>(c.D, rng, 1.f, dbd);
  // Columns D..ld_dx-1 of dx are not the op's: NaN, and they must stay NaN.
  for (int64_t r = 0; r < c.B * c.L; ++r)
    for (int64_t d = c.D; d < c.ld_dx; ++d) dx[r * c.ld_dx + d] = from_float<D>(NAN), dxd[r * c.ld_dx + d] = NAN;

  std::vector<double> want_dx = dxd, want_dw = dwd, want_db = dbd;
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
  a.x = xbuf.data() + c.x_offset;
  a.ld_x = c.ld_x;
  a.w = w.data();
  a.state = c.state ? state.data() : nullptr;
  a.B = c.B, a.L = c.L, a.D_ = c.D;
  constexpr int64_t V = conv_bwd::Row16<D>::V;
  auto al = [](const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; };
  a.vec_dx = c.ld_dx % V == 0 && al(a.dx);
  a.vec_x = c.ld_x % V == 0 && al(a.x);
  a.vec_dout = c.D % V == 0 && al(a.dout);
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
  std::printf("%s %-5s B%ld L%ld D%ld K%ld ld_x %ld%s ld_dx %ld state %d grads %d%d%d runs T=%d x%d blocks %ld: "
              "dx %.2e dw %.2e dbias %.2e pad %ld\n",
              ok ? "ok  " : "FAIL", sizeof(D) == 4 ? "fp32" : "bf16", long(c.B), long(c.L), long(c.D), long(c.K),
              long(c.ld_x), c.x_offset ? " (misaligned)" : "", long(c.ld_dx), int(c.state), int(c.want_dx),
              int(c.want_dw), int(c.want_db), a.T, a.nbc, long(blocks), e_dx, e_dw, e_db, long(pad_bad));
  return ok;
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
    failed += !run_case<float>(c, seed++);
    failed += !run_case<__nv_bfloat16>(c, seed++);
  }
  std::printf("%s: %d failed\n", failed ? "FAIL" : "all passed", failed);
  return failed ? 1 : 0;
}
