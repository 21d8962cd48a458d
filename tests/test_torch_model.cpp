// torch.save checkpoints used as models: each file of fixtures/pth, loaded as `--model`, gives its
// case's expected logits and loss; `sambalm convert` reads them (and sharded checkpoints) and exports
// them back under the original names bit for bit, with a transformers config for hf.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/file.h"
#include "io/model_dir.h"
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
    auto tokens = test::ids_of(in), targets = test::ids_of(expected.get("targets"));
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

TEST(TorchModel, ConvertCarriesTheTokenizer) {
  // Tokenizer files beside the source weights are copied byte for byte, so the converted directory
  // finds its tokenizer as the source did; a source without them gives a directory without them.
  REQUIRE_FIXTURES();
  const std::string fx = test::fixtures_dir();
  namespace fs = std::filesystem;
  const std::string src = test::temp_dir("convert_tok_src"), dst = test::temp_dir("convert_tok_dst");
  fs::copy_file(fx + "/samba_tiny/model.safetensors", src + "/model.safetensors");
  fs::copy_file(fx + "/samba_tiny/config.json", src + "/config.json");
  fs::copy_file(fx + "/bpe_tiny/tokenizer.json", src + "/tokenizer.json");
  std::string out;
  ASSERT_EQ(test::run_cli("convert " + src + " --out " + dst, &out), 0) << out;
  EXPECT_NE(out.find("copied tokenizer.json"), std::string::npos) << out;
  EXPECT_EQ(read_text_file(dst + "/tokenizer.json"), read_text_file(fx + "/bpe_tiny/tokenizer.json"));
  EXPECT_EQ(load_model(dst).tokenizer_path, dst + "/tokenizer.json");

  const std::string bare = test::temp_dir("convert_tok_none");
  ASSERT_EQ(test::run_cli("convert " + fx + "/samba_tiny --out " + bare, &out), 0) << out;
  EXPECT_FALSE(fs::exists(bare + "/tokenizer.json"));
  EXPECT_EQ(load_model(bare).tokenizer_path, "");
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

// --to hf writes what transformers' MambaForCausalLM.from_pretrained reads: hf weight names and a
// MambaConfig with the fields of a config that transformers itself saved (the hf_mamba_tiny fixture).
// The directory loads back in sambalm with the same config, parameters and logits.
TEST(TorchModel, ConvertToHfWritesATransformersConfig) {
  REQUIRE_FIXTURES();
  const std::string fx = test::fixtures_dir();
  const auto hf_fixture = nlohmann::json::parse(read_text_file(fx + "/hf_mamba_tiny/config.json"));
  for (const std::string name : {"hf_mamba_tiny", "mamba_tiny"}) {
    SCOPED_TRACE(name);
    auto dir = test::temp_dir("tohf");
    std::string out;
    ASSERT_EQ(test::run_cli("convert " + fx + "/" + name + " --to hf --out " + dir, &out), 0) << out;
    EXPECT_NE(out.find("Hugging Face MambaConfig"), std::string::npos) << out;
    const auto cfg = nlohmann::json::parse(read_text_file(dir + "/config.json"));
    LoadedModel ref = load_model(fx + "/" + name);
    // Every architectural field as transformers wrote it for hf_mamba_tiny; mamba_tiny differs only
    // in its depth and its vocabulary (the padded 104 rows: HF does not pad).
    for (const char* key : {"model_type",
                            "architectures",
                            "hidden_size",
                            "state_size",
                            "expand",
                            "conv_kernel",
                            "time_step_rank",
                            "intermediate_size",
                            "use_bias",
                            "use_conv_bias",
                            "layer_norm_epsilon",
                            "residual_in_fp32",
                            "tie_word_embeddings",
                            "pad_vocab_size_multiple",
                            "hidden_act",
                            "bos_token_id",
                            "eos_token_id",
                            "pad_token_id",
                            "dtype",
                            "initializer_range",
                            "time_step_scale",
                            "time_step_min",
                            "time_step_max",
                            "time_step_init_scheme",
                            "time_step_floor",
                            "rescale_prenorm_residual",
                            "use_cache",
                            "use_mambapy"}) {
      ASSERT_TRUE(cfg.contains(key)) << key;
      EXPECT_EQ(cfg.at(key), hf_fixture.at(key)) << key;
    }
    EXPECT_FALSE(cfg.contains("format")) << "not sambalm's own config";
    EXPECT_EQ(cfg.at("num_hidden_layers"), ref.config.n_layer);
    EXPECT_EQ(cfg.at("vocab_size"), name == "mamba_tiny" ? 104 : 100);
    auto st = read_safetensors(dir + "/model.safetensors");
    EXPECT_TRUE(st.has("backbone.embeddings.weight"));
    EXPECT_FALSE(st.has("lm_head.weight")) << "HF omits a tied head";

    LoadedModel back = load_model(dir);
    ModelConfig want = ref.config;
    want.vocab_size = want.padded_vocab_size;  // the one thing an HF config cannot say
    want.padding_multiple = 1;
    EXPECT_EQ(back.config.to_json(), want.to_json());
    ASSERT_EQ(back.params.size(), ref.params.size());
    EXPECT_EQ(std::memcmp(back.params.data(), ref.params.data(), ref.params.size() * sizeof(float)), 0);
    auto expected = read_safetensors(fx + "/" + name + "/expected.safetensors");
    const Tensor& in = expected.get("input_ids");
    auto tokens = test::ids_of(in);
    Model<float> model(back.config, back.params.entries());
    model.forward(back.params.data(), tokens.data(), nullptr, in.dim(0), in.dim(1));
    EXPECT_LT(test::rel_error(model.logits(), expected.get("logits").data<float>(), expected.get("logits").numel()),
              1e-4);
  }
  // bf16 weights say so in the config; a Samba model has no HF form.
  auto dir16 = test::temp_dir("tohf16");
  std::string out;
  ASSERT_EQ(test::run_cli("convert " + fx + "/mamba_tiny --to hf --dtype bf16 --out " + dir16, &out), 0) << out;
  EXPECT_EQ(nlohmann::json::parse(read_text_file(dir16 + "/config.json")).at("dtype"), "bfloat16");
  auto bad = test::temp_dir("tohfsamba");
  EXPECT_NE(test::run_cli("convert " + fx + "/samba_tiny --to hf --out " + bad, &out), 0);
  EXPECT_NE(out.find("pure Mamba"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(bad + "/config.json")) << "no partial output";
}

// Sharded checkpoints through the commands: forward and convert read the index like a single file.
TEST(TorchModel, CommandsReadShardedCheckpoints) {
  REQUIRE_FIXTURES();
  const std::string fx = test::fixtures_dir();
  auto sharded = test::temp_dir("shardcli");
  std::filesystem::copy_file(fx + "/samba_tiny/config.json", sharded + "/config.json");
  test::write_shards(fx + "/samba_tiny/model.safetensors", sharded, 3);
  auto dir = test::temp_dir("shardcliout");
  std::string out;
  ASSERT_EQ(test::run_cli("forward --model " + sharded + " --inputs " + fx + "/samba_tiny/expected.safetensors --out " +
                              dir + "/out.safetensors",
                          &out),
            0)
      << out;
  auto got = read_safetensors(dir + "/out.safetensors");
  auto want = read_safetensors(fx + "/samba_tiny/expected.safetensors");
  EXPECT_LT(test::rel_error(got.get("logits"), want.get("logits")), 1e-4);

  ASSERT_EQ(test::run_cli("convert " + sharded + " --to lit_gpt --out " + dir + "/lit", &out), 0) << out;
  EXPECT_NE(out.find("3 shards (safetensors)"), std::string::npos) << out;
  auto exported = read_safetensors(dir + "/lit/model.safetensors");
  auto original = read_safetensors(fx + "/samba_tiny/model.safetensors");
  ASSERT_EQ(exported.tensors.size(), original.tensors.size());
  for (const auto& [name, t] : original.tensors) {
    ASSERT_TRUE(exported.has(name)) << name;
    EXPECT_EQ(std::memcmp(exported.get(name).raw(), t.raw(), t.nbytes()), 0) << name;
  }
  // A broken index stops the command with the index's message.
  write_file_atomic(sharded + "/model.safetensors.index.json", "{\"weight_map\": {\"x\": \"../model.safetensors\"}}");
  EXPECT_NE(test::run_cli("convert " + sharded + " --out " + dir + "/bad", &out), 0);
  EXPECT_NE(out.find("plain file name"), std::string::npos) << out;
}
