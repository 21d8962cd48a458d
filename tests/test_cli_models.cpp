// What a first-time user meets around model arguments and inputs: `info` of a preset with a
// contradicting --config, of a config-only directory and of an absurd config; `convert` messages
// that name the option to use and the config it writes for mamba_ssm; `tokenize` errors that name
// the input rather than the tokenizer; help texts that agree with the program.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/model_dir.h"
#include "io/safetensors.h"
#include "model/weights.h"
#include "testing.h"

namespace sambalm {
namespace {

namespace fs = std::filesystem;

void write(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

TEST(CliModels, InfoRefusesAPresetWithAnotherConfig) {
  std::string log;
  EXPECT_EQ(test::run_cli("info Samba_421M --config mamba-130m", &log), 1);
  EXPECT_NE(log.find("--config"), std::string::npos) << log;
  EXPECT_NE(log.find("is a preset"), std::string::npos) << log;
  const std::string dir = test::temp_dir("info_cfg");
  write(dir + "/config.json", ModelConfig::from_preset("mamba-130m").to_json().dump());
  EXPECT_EQ(test::run_cli("info " + dir + "/config.json --config Samba_421M", &log), 1);
  EXPECT_NE(log.find("is a config file already"), std::string::npos) << log;
}

TEST(CliModels, InfoOfAConfigOnlyDirectoryReadsNoWeights) {
  const std::string dir = test::temp_dir("info_cfgonly");
  write(dir + "/config.json", ModelConfig::from_preset("mamba-130m").to_json().dump());
  std::string log;
  ASSERT_EQ(test::run_cli("info " + dir, &log), 0) << log;
  EXPECT_NE(log.find("parameters"), std::string::npos) << log;
}

TEST(CliModels, InfoRefusesAbsurdConfigSizesAtOnce) {
  const std::string dir = test::temp_dir("info_huge");
  nlohmann::json j = ModelConfig::from_preset("mamba-130m").to_json();
  j["n_layer"] = 10000000;
  write(dir + "/config.json", j.dump());
  std::string log;
  EXPECT_EQ(test::run_cli("info " + dir + "/config.json", &log), 1);
  // The message names the key, the value and the limit.
  for (const char* want : {"n_layer", "10000000", "4096"}) EXPECT_NE(log.find(want), std::string::npos) << log;
  j["n_layer"] = 2;
  j["vocab_size"] = int64_t(1) << 40;
  j["padded_vocab_size"] = int64_t(1) << 40;
  write(dir + "/config.json", j.dump());
  EXPECT_EQ(test::run_cli("info " + dir + "/config.json", &log), 1);
  for (const char* want : {"vocab_size", "1099511627776"}) EXPECT_NE(log.find(want), std::string::npos) << log;
}

// A random tiny Mamba LM saved as a bare safetensors file (no config beside it) and as a directory.
struct TinyMamba {
  std::string dir = test::temp_dir("convert_cli");
  ModelConfig cfg;
  TinyMamba() {
    cfg = ModelConfig::from_preset("mamba-130m");
    cfg.name = "tiny_mamba";
    cfg.n_layer = 2;
    cfg.n_embd = 16;
    cfg.vocab_size = 50;
    cfg.padding_multiple = 8;
    cfg.padded_vocab_size = 56;
    ParamStore p(param_specs(cfg));
    test::fill_random_params(p, 1);
    save_model_dir(dir + "/model", cfg, p);
    fs::create_directories(dir + "/bare");
    fs::copy_file(dir + "/model/model.safetensors", dir + "/bare/w.safetensors");
  }
};

TEST(CliModels, ConvertNamesTheOptionsToUse) {
  TinyMamba m;
  std::string log;
  EXPECT_EQ(test::run_cli("convert " + m.dir + "/bare/w.safetensors --out " + m.dir + "/o", &log), 1);
  EXPECT_NE(log.find("--config"), std::string::npos) << log;
  EXPECT_EQ(test::run_cli("convert " + m.dir + "/model --out " + m.dir + "/o --to gguf", &log), 2);
  EXPECT_NE(log.find("--to: must be one of sambalm, lit_gpt, mamba_ssm or hf, got 'gguf'"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(m.dir + "/o"));
}

TEST(CliModels, ConvertToMambaSsmWritesTheConfigMambaSsmReads) {
  TinyMamba m;
  std::string log;
  ASSERT_EQ(test::run_cli("convert " + m.dir + "/model --to mamba_ssm --out " + m.dir + "/ms", &log), 0) << log;
  std::ifstream f(m.dir + "/ms/config.json");
  const nlohmann::json j = nlohmann::json::parse(f);
  // Exactly MambaConfig's fields (mamba_ssm builds MambaConfig(**config): any other key fails).
  for (const auto& [k, v] : j.items())
    EXPECT_TRUE(k == "d_model" || k == "n_layer" || k == "vocab_size" || k == "ssm_cfg" || k == "rms_norm" ||
                k == "residual_in_fp32" || k == "fused_add_norm" || k == "pad_vocab_size_multiple" ||
                k == "tie_embeddings")
        << k;
  EXPECT_EQ(j["d_model"], 16);
  EXPECT_EQ(j["n_layer"], 2);
  EXPECT_EQ(j["vocab_size"], 50);
  EXPECT_EQ(j["pad_vocab_size_multiple"], 8);
  EXPECT_EQ(j["ssm_cfg"]["d_state"], m.cfg.d_state);
  // And it reads back as the same model.
  LoadedModel back = load_model(m.dir + "/ms"), ref = load_model(m.dir + "/model");
  EXPECT_EQ(back.config.padded_vocab_size, 56);
  ASSERT_EQ(back.params.size(), ref.params.size());
  for (size_t i = 0; i < ref.params.size(); ++i) ASSERT_EQ(back.params.data()[i], ref.params.data()[i]) << i;
}

TEST(CliModels, TokenizeNamesTheInputOfBadUtf8) {
  REQUIRE_FIXTURES();
  const std::string dir = test::temp_dir("tok_utf8");
  write(dir + "/bad.txt", "hello \xFF world");
  const std::string tj = test::fixtures_dir() + "/bpe_tiny/tokenizer.json";
  std::string log;
  EXPECT_EQ(test::run_cli("tokenize -t " + tj + " --file " + dir + "/bad.txt", &log), 1);
  EXPECT_EQ(log.rfind("error: " + dir + "/bad.txt: text is not valid UTF-8 (byte 0xff at offset 6)", 0), 0u) << log;
  EXPECT_EQ(test::run_cli("tokenize -t " + tj + " < " + dir + "/bad.txt", &log), 1);
  EXPECT_EQ(log.rfind("error: stdin: text is not valid UTF-8 (byte 0xff at offset 6)", 0), 0u) << log;
}

TEST(CliModels, HelpTextsAgreeWithTheProgram) {
  std::string help;
  ASSERT_EQ(test::run_cli("train --help", &help), 0);
  EXPECT_NE(help.find("shard directory"), std::string::npos) << help;
  ASSERT_EQ(test::run_cli("convert --help", &help), 0);
  EXPECT_EQ(help.find("convert state-spaces/"), std::string::npos) << help;
  EXPECT_NE(help.find("MambaLMHeadModel.from_pretrained"), std::string::npos) << help;
}

}  // namespace
}  // namespace sambalm
