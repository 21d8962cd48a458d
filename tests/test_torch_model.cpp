// torch.save checkpoints used as models: each file of fixtures/pth, loaded as `--model`, gives its
// case's expected logits and loss; `sambalm convert` reads them and exports them back under the
// original names bit for bit.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "io/state_dict.h"
#include "model/model.h"
#include "model/weights.h"
#include "testing.h"

using namespace sambalm;

namespace {

struct PthCase {
  std::string file, case_name, dtype;
};

std::vector<PthCase> manifest() {
  auto j = nlohmann::json::parse(read_text_file(test::fixtures_dir() + "/pth/manifest.json"));
  std::vector<PthCase> out;
  for (auto& e : j) out.push_back({e.at("file"), e.at("case"), e.at("dtype")});
  return out;
}

// What to pass as the model: the directory for pytorch_model.bin cases (config.json beside it), the
// file plus the case's config.json for a bare .pth.
std::pair<std::string, std::string> model_args(const PthCase& c) {
  std::string path = test::fixtures_dir() + "/pth/" + c.file;
  if (std::filesystem::path(path).filename() == "pytorch_model.bin")
    return {std::filesystem::path(path).parent_path().string(), ""};
  return {path, test::fixtures_dir() + "/" + c.case_name + "/config.json"};
}

std::vector<int32_t> ids_of(const Tensor& t) {
  std::vector<int32_t> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = static_cast<int32_t>(t.data<int64_t>()[i]);
  return v;
}

}  // namespace

TEST(TorchModel, EveryCheckpointGivesTheExpectedLogitsAndLoss) {
  REQUIRE_FIXTURES();
  for (const auto& c : manifest()) {
    SCOPED_TRACE(c.file);
    auto [spec, config] = model_args(c);
    LoadedModel lm = load_model(spec, config);
    auto expected = read_safetensors(test::fixtures_dir() + "/" + c.case_name + "/expected.safetensors");
    const Tensor& in = expected.get("input_ids");
    const int64_t B = in.dim(0), Tn = in.dim(1), V = lm.config.padded_vocab_size;
    auto tokens = ids_of(in), targets = ids_of(expected.get("targets"));
    Model<float> model(lm.config, lm.params.entries());
    double loss = model.forward(lm.params.data(), tokens.data(), targets.data(), B, Tn);
    const Tensor& logits = expected.get("logits");
    ASSERT_EQ(logits.numel(), B * Tn * V);
    double err = test::rel_error(model.logits(), logits.data<float>(), logits.numel());
    float want = expected.get("loss").data<float>()[0];
    if (c.dtype == "BF16") {
      // The fixtures README: bf16 weights computed in float32 differ by 9.6e-3 (logits) and 1.2e-4 (loss).
      EXPECT_LT(err, 2e-2);
      EXPECT_GT(err, 0.0) << "bf16 weights cannot give the float32 logits exactly";
      EXPECT_LT(std::fabs(loss - want), 1e-3);
    } else {
      EXPECT_LT(err, 1e-4);
      EXPECT_LT(std::fabs(loss - want) / std::fabs(want), 1e-4) << loss << " vs " << want;
    }
  }
}

TEST(TorchModel, ForwardCommandAcceptsCheckpoints) {
  REQUIRE_FIXTURES();
  auto dir = test::temp_dir("pthfwd");
  const std::string fx = test::fixtures_dir();
  const std::string pth = fx + "/pth/samba_tiny_fabric_t113.pth";
  std::string out;
  ASSERT_EQ(test::run_cli("forward --model " + pth + " --config " + fx + "/samba_tiny/config.json --inputs " + fx +
                              "/samba_tiny/expected.safetensors --out " + dir + "/out.safetensors",
                          &out),
            0)
      << out;
  auto got = read_safetensors(dir + "/out.safetensors");
  auto want = read_safetensors(fx + "/samba_tiny/expected.safetensors");
  EXPECT_LT(test::rel_error(got.get("logits"), want.get("logits")), 1e-4);
}

TEST(TorchModel, ConvertExportsTheSameBitsUnderTheOriginalNames) {
  REQUIRE_FIXTURES();
  for (const auto& c : manifest()) {
    SCOPED_TRACE(c.file);
    auto [spec, config] = model_args(c);
    const std::string to = c.case_name == "samba_tiny" ? "lit_gpt" : "mamba_ssm";
    const std::string dtype = c.dtype == "BF16" ? "bf16" : "f32";
    auto dir = test::temp_dir("pthconv");
    std::string out;
    ASSERT_EQ(test::run_cli("convert " + spec + (config.empty() ? "" : " --config " + config) + " --to " + to +
                                " --dtype " + dtype + " --out " + dir,
                            &out),
              0)
        << out;
    auto exported = read_safetensors(dir + "/model.safetensors");
    auto original = read_state_dict(test::fixtures_dir() + "/pth/" + c.file);
    ASSERT_EQ(exported.tensors.size(), original.size());
    for (const auto& [name, t] : original) {
      ASSERT_TRUE(exported.has(name)) << name;
      const Tensor& e = exported.get(name);
      ASSERT_EQ(e.dtype(), t.dtype()) << name;
      ASSERT_EQ(e.shape(), t.shape()) << name;
      EXPECT_EQ(std::memcmp(e.raw(), t.raw(), t.nbytes()), 0) << name << " differs";
    }
    // And the exported directory is itself a model (config.json written beside).
    LoadedModel back = load_model(dir);
    LoadedModel ref = load_model(spec, config);
    ASSERT_EQ(back.params.size(), ref.params.size());
    EXPECT_EQ(std::memcmp(back.params.data(), ref.params.data(), ref.params.size() * sizeof(float)), 0);
  }
}

TEST(TorchModel, ConvertWritesASambalmModelDirectory) {
  REQUIRE_FIXTURES();
  const std::string fx = test::fixtures_dir();
  auto dir = test::temp_dir("pthnative");
  std::string out;
  ASSERT_EQ(test::run_cli("convert " + fx + "/pth/mamba_tiny_legacy_t113 --out " + dir, &out), 0) << out;
  auto st = read_safetensors(dir + "/model.safetensors");
  EXPECT_TRUE(st.has("embedding.weight"));
  EXPECT_FALSE(st.has("backbone.embedding.weight"));
  LoadedModel back = load_model(dir), ref = load_model(fx + "/mamba_tiny");
  ASSERT_EQ(back.params.size(), ref.params.size());
  EXPECT_EQ(std::memcmp(back.params.data(), ref.params.data(), ref.params.size() * sizeof(float)), 0);

  // bf16 output: the bf16 rounding of each value.
  auto dir16 = test::temp_dir("pthbf16");
  ASSERT_EQ(test::run_cli("convert " + fx + "/pth/mamba_tiny_t211 --dtype bf16 --out " + dir16, &out), 0) << out;
  auto st16 = read_safetensors(dir16 + "/model.safetensors");
  const Tensor& e16 = st16.get("embedding.weight");
  ASSERT_EQ(e16.dtype(), DType::BF16);
  const float* ref_emb = ref.params.get("embedding.weight");
  for (int64_t i = 0; i < e16.numel(); ++i) ASSERT_EQ(e16.data<uint16_t>()[i], f32_to_bf16(ref_emb[i])) << i;
}

TEST(TorchModel, ConvertErrors) {
  REQUIRE_FIXTURES();
  const std::string fx = test::fixtures_dir();
  auto dir = test::temp_dir("pthbad");
  std::string out;
  // A bare .pth without a config beside it.
  EXPECT_NE(test::run_cli("convert " + fx + "/pth/samba_tiny_fabric_t211.pth --out " + dir, &out), 0);
  EXPECT_NE(out.find("config"), std::string::npos) << out;
  // A config that does not fit the weights.
  EXPECT_NE(test::run_cli("convert " + fx + "/pth/samba_tiny_fabric_t211.pth --config " + fx +
                              "/mamba_tiny/config.json --out " + dir,
                          &out),
            0);
  EXPECT_NE(out.find("samba_tiny_fabric_t211.pth"), std::string::npos) << out;
  // Bad option values.
  EXPECT_NE(test::run_cli("convert " + fx + "/pth/mamba_tiny_t211 --dtype int8 --out " + dir, &out), 0);
  EXPECT_NE(out.find("--dtype"), std::string::npos) << out;
  EXPECT_NE(test::run_cli("convert " + fx + "/pth/mamba_tiny_t211 --to onnx --out " + dir, &out), 0);
  EXPECT_NE(out.find("onnx"), std::string::npos) << out;
  // A Samba model cannot be written under mamba_ssm names.
  EXPECT_NE(test::run_cli("convert " + fx + "/pth/samba_tiny_fabric_t211.pth --config " + fx +
                              "/samba_tiny/config.json --to mamba_ssm --out " + dir,
                          &out),
            0);
  EXPECT_FALSE(std::filesystem::exists(dir + "/model.safetensors")) << "no partial output";
}
