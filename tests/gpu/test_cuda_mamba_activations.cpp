// The Mamba mixer's SiLU gate on CUDA (16-byte vector paths of mamba_activations.cu) against the CPU
// op in double, on the layer's own views: z and dz are the second half of rows of 2D (xz and its
// gradient), y, out and dy dense. D a multiple of 8 (vectors in fp32 and bf16), of 4 only (vectors
// in fp32, the scalar path in bf16), the model's 3072, views shifted by one element (misaligned: the
// scalar path), and each gradient null in turn. out starts NaN (every element must be written); dy
// and dz start random (the backward adds), the x half of the dz rows NaN (it must stay NaN).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "dense_testing.h"
#include "ops/mamba_ops.h"

namespace sambalm {
namespace {

using namespace testing_gpu;

template <typename T>
class CudaMambaActivations : public ::testing::Test {};
using ElementTypes = ::testing::Types<float, bf16>;
TYPED_TEST_SUITE(CudaMambaActivations, ElementTypes);

struct GateCase {
  int64_t rows, D;
  int64_t offset;  // elements every view is shifted by
};

template <typename T>
void check_gate(const GateCase& c, bool want_dy, bool want_dz) {
  const int64_t rows = c.rows, D = c.D, ld = 2 * D, o = c.offset;
  const auto y = random_for<T>(o + rows * D, 21, 2.f), xz = random_for<T>(o + rows * ld, 22, 6.f);
  const auto dout = random_for<T>(o + rows * D, 23), dy0 = random_for<T>(o + rows * D, 24);
  auto dxz0 = random_for<T>(o + rows * ld, 25);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t d = 0; d < D; ++d) dxz0[o + r * ld + d] = NAN;  // x half: not the gate's
  auto d_y = upload<T>(y);
  auto d_xz = upload<T>(xz);
  auto d_dout = upload<T>(dout);
  auto d_out = upload<T>(nan_vector(o + rows * D));
  auto d_dy = upload<T>(dy0);
  auto d_dxz = upload<T>(dxz0);
  ops::silu_gate_forward(gpu(), d_out.get() + o, d_y.get() + o, d_xz.get() + o + D, ld, rows, D);
  ops::silu_gate_backward(gpu(), want_dy ? d_dy.get() + o : nullptr, want_dz ? d_dxz.get() + o + D : nullptr, ld,
                          d_dout.get() + o, d_y.get() + o, d_xz.get() + o + D, ld, rows, D);
  const auto yd = to_double(y), xzd = to_double(xz), gd = to_double(dout);
  std::vector<double> out(o + rows * D, NAN), dy = to_double(dy0), dxz = to_double(dxz0);
  ops::cpu::silu_gate_forward(out.data() + o, yd.data() + o, xzd.data() + o + D, ld, rows, D);
  ops::cpu::silu_gate_backward(want_dy ? dy.data() + o : nullptr, want_dz ? dxz.data() + o + D : nullptr, ld,
                               gd.data() + o, yd.data() + o, xzd.data() + o + D, ld, rows, D);
  const std::string tag = std::string(type_name<T>()) + " rows " + std::to_string(rows) + " D " + std::to_string(D) +
                          " offset " + std::to_string(o) + " dy " + std::to_string(want_dy) + " dz " +
                          std::to_string(want_dz);
  auto tail = [o](std::vector<float> v) { return std::vector<float>(v.begin() + o, v.end()); };
  auto tail_d = [o](const std::vector<double>& v) { return std::vector<double>(v.begin() + o, v.end()); };
  expect_close(tail(fetch(d_out)), tail_d(out), elem_tol<T>(), "gate out " + tag);
  expect_close(tail(fetch(d_dy)), tail_d(dy), elem_tol<T>(), "gate dy " + tag);
  // dz: the z half compared, the x half must still be NaN.
  const auto got = tail(fetch(d_dxz));
  std::vector<float> got_z;
  std::vector<double> want_z;
  int64_t x_written = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t d = 0; d < ld; ++d) {
      const size_t i = size_t(r * ld + d);
      if (d < D) {
        x_written += !std::isnan(got[i]);
      } else {
        got_z.push_back(got[i]);
        want_z.push_back(dxz[o + i]);
      }
    }
  expect_close(got_z, want_z, elem_tol<T>(), "gate dz " + tag);
  EXPECT_EQ(x_written, 0) << "gate backward wrote outside dz: " << tag;
}

TYPED_TEST(CudaMambaActivations, SiluGateOnLayerViews) {
  using T = TypeParam;
  SAMBALM_REQUIRE_GPU();
  const GateCase cases[] = {{37, 264, 0}, {37, 260, 0}, {3, 3072, 0}, {37, 264, 1}, {5, 97, 0}};
  for (const auto& c : cases) {
    check_gate<T>(c, true, true);
    check_gate<T>(c, false, true);
    check_gate<T>(c, true, false);
  }
}

// silu over n values: n a multiple of the vector and not (the last vector partial), and views
// shifted by one element (misaligned: the scalar path).
TYPED_TEST(CudaMambaActivations, SiluVectorTails) {
  using T = TypeParam;
  SAMBALM_REQUIRE_GPU();
  for (int64_t n : {int64_t{8}, int64_t{13}, int64_t{4096}, int64_t{4099}})
    for (int64_t o : {int64_t{0}, int64_t{1}}) {
      const auto x = random_for<T>(o + n, 31, 6.f), g = random_for<T>(o + n, 32), dx0 = random_for<T>(o + n, 33);
      auto d_x = upload<T>(x);
      auto d_g = upload<T>(g);
      auto d_out = upload<T>(nan_vector(o + n));
      auto d_dx = upload<T>(dx0);
      ops::silu_forward(gpu(), d_out.get() + o, d_x.get() + o, n);
      ops::silu_backward(gpu(), d_dx.get() + o, d_g.get() + o, d_x.get() + o, n);
      const auto xd = to_double(x), gd = to_double(g);
      std::vector<double> out(n), dx(dx0.begin() + o, dx0.end());
      ops::cpu::silu_forward(out.data(), xd.data() + o, n);
      ops::cpu::silu_backward(dx.data(), gd.data() + o, xd.data() + o, n);
      const std::string tag = std::string(type_name<T>()) + " n " + std::to_string(n) + " offset " + std::to_string(o);
      const auto got = fetch(d_out), got_dx = fetch(d_dx);
      expect_close(std::vector<float>(got.begin() + o, got.end()), out, elem_tol<T>(), "silu out " + tag);
      expect_close(std::vector<float>(got_dx.begin() + o, got_dx.end()), dx, elem_tol<T>(), "silu dx " + tag);
    }
}

}  // namespace
}  // namespace sambalm
