// Parity with the original code: for every model fixture, logits, loss, each block's output and
// every parameter gradient against the outputs of microsoft/Samba lit_gpt, state-spaces mamba_ssm
// and Hugging Face transformers (float32; fixtures README tolerances: 1e-4 and 1e-3).
#include <cmath>
#include <filesystem>

#include "io/safetensors.h"
#include "model/model.h"
#include "testing.h"

using namespace sambalm;

namespace {

void check_case(const std::string& name, bool has_acts_and_grads) {
  const test::ModelFixture fx = test::load_model_fixture(name);
  const auto& [dir, cfg, sd, params, expected, tokens, targets, B, Tn] = fx;
  const int64_t V = cfg.padded_vocab_size, d = cfg.n_embd;

  Model<float> model(cfg, params.entries());
  double loss = model.forward(params.data(), tokens.data(), targets.data(), B, Tn);
  const Tensor& exp_logits = expected.get("logits");
  ASSERT_EQ(exp_logits.numel(), B * Tn * V);
  EXPECT_LT(test::rel_error(model.logits(), exp_logits.data<float>(), B * Tn * V), 1e-4) << name << " logits";
  float exp_loss = expected.get("loss").data<float>()[0];
  EXPECT_LT(std::fabs(loss - exp_loss) / std::fabs(exp_loss), 1e-4) << name << " loss " << loss << " vs " << exp_loss;
  if (!has_acts_and_grads) return;

  for (int64_t i = 0; i < cfg.n_layer; ++i) {
    const Tensor& a = expected.get("act." + std::to_string(i));
    ASSERT_EQ(a.numel(), B * Tn * d);
    EXPECT_LT(test::rel_error(model.block_output(i), a.data<float>(), a.numel()), 1e-4) << name << " act." << i;
  }

  ParamStore grads(param_specs(cfg));
  model.backward(params.data(), grads.data());
  test::expect_fixture_grads(fx, grads, name);
}

}  // namespace

TEST(ModelFixtures, SambaTiny) {
  REQUIRE_FIXTURES();
  check_case("samba_tiny", true);
}

TEST(ModelFixtures, SambaTinyGqa) {
  REQUIRE_FIXTURES();
  check_case("samba_tiny_gqa", true);
}

TEST(ModelFixtures, MambaTiny) {
  REQUIRE_FIXTURES();
  check_case("mamba_tiny", true);
}

TEST(ModelFixtures, HfMambaTiny) {
  REQUIRE_FIXTURES();
  check_case("hf_mamba_tiny", false);
}

// The same parity through the command line: `sambalm forward` on the fixture's own inputs.
TEST(ModelFixtures, ForwardCommand) {
  REQUIRE_FIXTURES();
  for (std::string name : {"samba_tiny", "mamba_tiny"}) {
    const std::string dir = test::fixtures_dir() + "/" + name;
    const std::string out = test::temp_dir("fwd") + "/out.safetensors";
    std::string log;
    ASSERT_EQ(test::run_cli("forward --model " + dir + " --inputs " + dir + "/expected.safetensors --out " + out +
                                " --acts",
                            &log),
              0)
        << log;
    auto got = read_safetensors(out);
    auto expected = read_safetensors(dir + "/expected.safetensors");
    EXPECT_LT(test::rel_error(got.get("logits"), expected.get("logits")), 1e-4) << name;
    EXPECT_LT(test::rel_error(got.get("loss"), expected.get("loss")), 1e-4) << name;
    EXPECT_LT(test::rel_error(got.get("act.1"), expected.get("act.1")), 1e-4) << name;
  }
}

TEST(ModelFixtures, ForwardCommandErrors) {
  REQUIRE_FIXTURES();
  const std::string dir = test::fixtures_dir() + "/samba_tiny";
  const std::string tmp = test::temp_dir("fwderr");
  // input ids outside the vocabulary
  Tensor ids = Tensor::zeros(DType::I64, {1, 3});
  ids.data<int64_t>()[1] = 100000;
  write_safetensors(tmp + "/bad.safetensors", {{"input_ids", ids}});
  std::string log;
  EXPECT_NE(test::run_cli("forward --model " + dir + " --inputs " + tmp + "/bad.safetensors --out " + tmp + "/o", &log),
            0);
  EXPECT_NE(log.find("outside the vocabulary"), std::string::npos) << log;
  // no input_ids
  write_safetensors(tmp + "/none.safetensors", {{"x", ids}});
  EXPECT_NE(test::run_cli("forward --model " + dir + " --inputs " + tmp + "/none.safetensors --out " + tmp + "/o", &log),
            0);
  EXPECT_NE(log.find("input_ids"), std::string::npos) << log;
  EXPECT_FALSE(std::filesystem::exists(tmp + "/o"));
}
