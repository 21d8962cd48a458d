// The whole model on the GPU in fp32 (the same kernels as bf16, run in float for exact comparison)
// against the fixtures of the original code: logits, loss and every block's output within 1e-4
// relative, every parameter gradient within 1e-3 (fixtures README tolerances).
#include <gtest/gtest.h>

#include <cmath>

#include "gpu_testing.h"
#include "model/model.h"
#include "ops/memory_ops.h"
#include "testing.h"

namespace sambalm {
namespace {

using namespace testing_gpu;

std::vector<float> download(const float* p, int64_t n) {
  std::vector<float> v(n);
  ops::download(gpu(), v.data(), p, sizeof(float) * n);
  return v;
}

void check_case(const std::string& name, bool has_acts_and_grads) {
  const test::ModelFixture fx = test::load_model_fixture(name);
  const auto& [dir, cfg, sd, params, expected, tokens, targets, B, Tn] = fx;
  const int64_t V = cfg.padded_vocab_size, d = cfg.n_embd;

  const int64_t P = static_cast<int64_t>(params.size());
  DeviceBuffer<float> d_params(std::vector<float>(params.data(), params.data() + P));
  Model<float> model(cfg, params.entries(), gpu());
  const double loss = model.forward(d_params.get(), tokens.data(), targets.data(), B, Tn);
  const Tensor& exp_logits = expected.get("logits");
  ASSERT_EQ(exp_logits.numel(), B * Tn * V);
  EXPECT_LT(test::rel_error(download(model.logits(), B * Tn * V).data(), exp_logits.data<float>(), B * Tn * V), 1e-4)
      << name << " logits";
  const float exp_loss = expected.get("loss").data<float>()[0];
  EXPECT_LT(std::fabs(loss - exp_loss) / std::fabs(exp_loss), 1e-4) << name << " loss " << loss << " vs " << exp_loss;
  if (!has_acts_and_grads) return;
  for (int64_t i = 0; i < cfg.n_layer; ++i) {
    const Tensor& a = expected.get("act." + std::to_string(i));
    ASSERT_EQ(a.numel(), B * Tn * d);
    EXPECT_LT(test::rel_error(download(model.block_output(i), a.numel()).data(), a.data<float>(), a.numel()), 1e-4)
        << name << " act." << i;
  }

  DeviceBuffer<float> d_grads(std::vector<float>(P, 0.f));
  model.backward(d_params.get(), d_grads.get());
  ParamStore grads(param_specs(cfg));
  ops::download(gpu(), grads.data(), d_grads.get(), sizeof(float) * P);
  test::expect_fixture_grads(fx, grads, name);
}

TEST(CudaModelFixtures, SambaTiny) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  check_case("samba_tiny", true);
}
TEST(CudaModelFixtures, SambaTinyGqa) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  check_case("samba_tiny_gqa", true);
}
TEST(CudaModelFixtures, MambaTiny) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  check_case("mamba_tiny", true);
}
TEST(CudaModelFixtures, HfMambaTiny) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  check_case("hf_mamba_tiny", false);
}

}  // namespace
}  // namespace sambalm
