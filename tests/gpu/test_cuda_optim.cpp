// The CUDA optimizer ops against their CPU twins: AdamW (fp32 parameters and moments, several steps
// so the bias corrections change), the sum of squares (double, on the device, the same bits every
// run) and x *= s, on odd sizes.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

#include "dense_testing.h"
#include "ops/optim_ops.h"

namespace sambalm {
namespace {

using namespace testing_gpu;

const int64_t kSizes[] = {1, 7, 1000 + 3, 300000 + 1, 2100003};

TEST(CudaOptim, AdamwMatchesCpu) {
  SAMBALM_REQUIRE_GPU();
  for (int64_t n : kSizes) {
    for (double wd : {0.0, 0.1}) {
      auto p = random_vector(n, 1), m = random_vector(n, 2, 0.1f), v = random_vector(n, 3, 0.01f);
      for (auto& x : v) x = std::fabs(x);
      DeviceBuffer<float> d_p(p), d_m(m), d_v(v), d_g(n);
      for (int64_t t = 1; t <= 3; ++t) {
        const auto g = random_vector(n, static_cast<uint32_t>(10 + t), 0.5f);
        d_g.upload(g);
        ops::adamw_update(gpu(), d_p.get(), d_g.get(), d_m.get(), d_v.get(), n, 1e-2, 0.9, 0.95, 1e-8, wd, t);
        ops::cpu::adamw_update(p.data(), g.data(), m.data(), v.data(), n, 1e-2, 0.9, 0.95, 1e-8, wd, t);
      }
      // The same fp32 formula on both sides: within a few fp32 roundings.
      const std::string tag = "adamw n=" + std::to_string(n) + " wd=" + std::to_string(wd);
      expect_close(d_p.download(), to_double(p), 1e-6, tag + " params");
      expect_close(d_m.download(), to_double(m), 1e-6, tag + " m");
      expect_close(d_v.download(), to_double(v), 1e-6, tag + " v");
    }
  }
}

template <typename T>
class CudaOptimTyped : public ::testing::Test {};
using ElementTypes = ::testing::Types<float, bf16>;
TYPED_TEST_SUITE(CudaOptimTyped, ElementTypes);

TYPED_TEST(CudaOptimTyped, SumSquares) {
  using T = TypeParam;
  SAMBALM_REQUIRE_GPU();
  for (int64_t n : kSizes) {
    const auto x = random_for<T>(n, 20, 2.f);
    auto d_x = upload<T>(x);
    DeviceBuffer<double> d_out(std::vector<double>{std::nan("")});
    ops::sum_squares(gpu(), d_out.get(), d_x.get(), n);
    const double got = d_out.download()[0];
    double want = 0;
    ops::cpu::sum_squares(&want, x.data(), n);
    // Squares of fp32 values summed in double on both sides: only the order differs.
    EXPECT_NEAR(got, want, 1e-12 * want) << "sum_squares " << type_name<T>() << " n=" << n;
    // A fixed order: the same bits again.
    ops::sum_squares(gpu(), d_out.get(), d_x.get(), n);
    const double again = d_out.download()[0];
    EXPECT_EQ(std::memcmp(&got, &again, sizeof(double)), 0) << "sum_squares " << type_name<T>() << " n=" << n;
  }
  // Nothing to sum: 0, not the NaN that was there.
  DeviceBuffer<double> d_out(std::vector<double>{std::nan("")});
  DeviceBuffer<T> d_x(1);
  ops::sum_squares(gpu(), d_out.get(), d_x.get(), 0);
  EXPECT_EQ(d_out.download()[0], 0.0);
}

TYPED_TEST(CudaOptimTyped, ScaleInplace) {
  using T = TypeParam;
  SAMBALM_REQUIRE_GPU();
  for (int64_t n : kSizes) {
    const auto x = random_for<T>(n, 21, 3.f);
    auto d_x = upload<T>(x);
    ops::scale_inplace(gpu(), d_x.get(), n, 0.3125);
    auto want = to_double(x);
    ops::cpu::scale_inplace(want.data(), n, 0.3125);
    expect_close(fetch(d_x), want, elem_tol<T>(),
                 std::string("scale_inplace ") + type_name<T>() + " n=" + std::to_string(n));
  }
}

}  // namespace
}  // namespace sambalm
