// SambaY through the command line, like the other models: `generate` (greedy with a fixed seed gives
// the one-pass forward's greedy argmax chain, over 4x the window), `bench`, `train` (the loss goes down,
// samples decode, the trained directory generates), `convert` (round trip through every name set SambaY
// has). fixtures/sambay_tiny (Phi4Flash layout, window 6) and a tiny shape of the phi4miniflash_d32 preset.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

#include "io/model_dir.h"
#include "io/safetensors.h"
#include "io/state_dict.h"
#include "model/model.h"
#include "testing.h"

using namespace sambalm;
namespace fs = std::filesystem;

namespace {

std::string sambay_dir() { return test::fixtures_dir() + "/sambay_tiny"; }

std::string join(const std::vector<int32_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

// The greedy chain of the one-pass forward: each new token is the argmax of the last position's
// logits over the whole sequence so far.
std::vector<int32_t> forward_greedy(const LoadedModel& m, std::vector<int32_t> seq, int64_t n) {
  Model<float> model(m.config, m.params.entries());
  const int64_t V = m.config.padded_vocab_size;
  std::vector<int32_t> out;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t Tn = int64_t(seq.size());
    model.forward(m.params.data(), seq.data(), nullptr, 1, Tn);
    const float* last = model.logits() + (Tn - 1) * V;
    const int32_t next = int32_t(std::max_element(last, last + m.config.vocab_size) - last);
    out.push_back(next);
    seq.push_back(next);
  }
  return out;
}

std::vector<int32_t> generated_ids(const std::string& json_text) {
  auto j = nlohmann::json::parse(json_text);
  return j.at("results").at(0).at("ids").get<std::vector<int32_t>>();
}

const std::string kTinyShape =
    "--model phi4miniflash_d32 --n-layer 4 --n-embd 32 --n-head 4 --n-query-groups 2 --intermediate-size 64 "
    "--local-window 8 ";

std::string write_corpus(const std::string& dir) {
  const char* words[] = {"the", "model", "state", "scan", "window", "of", "and", "a"};
  std::mt19937 g(5);
  std::string s;
  while (s.size() < 20000) s += std::string(words[g() % 8]) + ((g() % 9) ? " " : ".\n");
  std::ofstream(dir + "/corpus.txt") << s;
  return dir + "/corpus.txt";
}

}  // namespace

TEST(SambaYCli, GenerateGreedyIsTheForwardArgmaxChain) {
  REQUIRE_FIXTURES();
  LoadedModel m = load_model(sambay_dir());
  const int64_t window = m.config.local_window;  // 6
  // A prompt longer than the window, then enough new tokens to reach 4 windows: prefill (cross-decoder
  // on the last token only) and steps over the self-decoder's rings and the shared cache.
  const std::vector<int32_t> prompt{5, 17, 99, 3, 64, 8, 23, 41, 77, 12};
  const int64_t n = 4 * window - int64_t(prompt.size()) + 2;
  const auto want = forward_greedy(m, prompt, n);
  std::string out;
  for (const std::string chunk : {"512", "3"}) {
    ASSERT_EQ(test::run_cli("generate -m " + sambay_dir() + " --tokenizer bytes --prompt-ids " + join(prompt) + " -n " +
                                std::to_string(n) + " --seed 7 --ignore-eos --json -q --chunk " + chunk,
                            &out),
              0)
        << out;
    EXPECT_EQ(generated_ids(out), want) << "chunk " << chunk << ": " << out;
  }
  // The fixture's weights settle on one token; random ones of a larger scale give a varied chain.
  ModelConfig c = m.config;
  c.name = "sambay_random";
  c.local_window = 3;
  ParamStore store(param_specs(c));
  test::fill_random_params(store, 21);
  const std::string dir = test::temp_dir("sambay_generate");
  save_model_dir(dir + "/m", c, store);
  LoadedModel r = load_model(dir + "/m");
  const auto chain = forward_greedy(r, {7, 1, 90}, 14);
  EXPECT_GE(std::set<int32_t>(chain.begin(), chain.end()).size(), 4u) << join(chain);
  ASSERT_EQ(test::run_cli("generate -m " + dir + "/m --tokenizer bytes --prompt-ids 7,1,90 -n 14 --seed 7 " +
                              "--ignore-eos --json -q --chunk 2",
                          &out),
            0)
      << out;
  EXPECT_EQ(generated_ids(out), chain) << out;
  // Sampling with a fixed seed is reproducible.
  std::string a, b;
  const std::string sample = "generate -m " + sambay_dir() + " --tokenizer bytes --prompt-ids " + join(prompt) +
                             " -n 12 --temperature 0.9 --seed 3 --ignore-eos --json -q";
  ASSERT_EQ(test::run_cli(sample, &a), 0) << a;
  ASSERT_EQ(test::run_cli(sample, &b), 0) << b;
  EXPECT_EQ(generated_ids(a), generated_ids(b));
}

TEST(SambaYCli, BenchRuns) {
  REQUIRE_FIXTURES();
  const std::string dir = test::temp_dir("sambay_bench");
  std::string out;
  ASSERT_EQ(test::run_cli("bench -m " + sambay_dir() + " --context 16,40 --batch 1,2 --decode-tokens 3 --warmup 1 " +
                              "--json " + dir + "/b.json",
                          &out),
            0)
      << out;
  auto j = nlohmann::json::parse(read_text_file(dir + "/b.json"));
  EXPECT_NE(j.dump().find("decode_tok_s"), std::string::npos) << j.dump();
  EXPECT_NE(j.dump().find("\"cross_decoder\":\"last\""), std::string::npos) << j.dump();  // dump(): compact
  EXPECT_NE(out.find("phi4flash"), std::string::npos) << out;
  // The prefill without the cross-decoder skip, for comparison.
  ASSERT_EQ(test::run_cli("bench -m " + sambay_dir() + " --context 40 --decode-tokens 2 --cross-decoder all --json " +
                              dir + "/all.json",
                          &out),
            0)
      << out;
  EXPECT_NE(nlohmann::json::parse(read_text_file(dir + "/all.json")).dump().find("\"cross_decoder\":\"all\""),
            std::string::npos);
  // Both ways in one process: the prefill without the skip is timed too and the saving printed.
  ASSERT_EQ(test::run_cli("bench -m " + sambay_dir() + " --context 40 --decode-tokens 2 --cross-decoder both --json " +
                              dir + "/both.json",
                          &out),
            0)
      << out;
  EXPECT_NE(out.find("skipping it saves"), std::string::npos) << out;
  auto both = nlohmann::json::parse(read_text_file(dir + "/both.json"));
  EXPECT_GT(both.at("rows").at(0).at("prefill_all_tok_s").get<double>(), 0.0) << both.dump();
  // A context the shared cache cannot hold is refused before any work, naming the option to change.
  EXPECT_EQ(test::run_cli("bench -m " + sambay_dir() + " --context 40 --max-context 41 --decode-tokens 2", &out), 1)
      << out;
  EXPECT_NE(out.find("raise --max-context"), std::string::npos) << out;
  EXPECT_NE(test::run_cli("bench -m " + sambay_dir() + " --context 40 --cross-decoder some", &out), 0) << out;
  EXPECT_NE(out.find("--cross-decoder"), std::string::npos) << out;
}

TEST(SambaYCli, TrainLowersTheLossSamplesAndTheModelGenerates) {
  const std::string dir = test::temp_dir("sambay_train");
  const std::string data = write_corpus(dir);
  std::string out;
  ASSERT_EQ(test::run_cli("train " + kTinyShape + "--tokenizer bytes --data " + data + " --out " + dir +
                              "/r --seq-len 32 --batch 4 --steps 12 --lr 3e-3 --eval-batches 1 --eval-every 6 " +
                              "--sample-every 6 --sample-tokens 8 --log-every 1",
                          &out),
            0)
      << out;
  std::vector<double> losses;
  std::istringstream metrics(read_text_file(dir + "/r/metrics.jsonl"));
  for (std::string line; std::getline(metrics, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) losses.push_back(j["loss"].get<double>());
  }
  ASSERT_EQ(losses.size(), 12u) << out;
  EXPECT_LT(losses.back(), losses.front() - 0.2) << out;
  EXPECT_NE(read_text_file(dir + "/r/samples.txt").find("=== step 12"), std::string::npos);
  ASSERT_EQ(test::run_cli("generate -m " + dir + "/r/model -p \"the model\" -n 6 -q", &out), 0) << out;
}

TEST(SambaYCli, ConvertRoundTripsThroughEveryNameSet) {
  REQUIRE_FIXTURES();
  const std::string dir = test::temp_dir("sambay_convert");
  std::string out;
  // Hugging Face -> sambalm -> lit_gpt -> Hugging Face: the same tensors, bit for bit.
  ASSERT_EQ(test::run_cli("convert " + sambay_dir() + " --out " + dir + "/s", &out), 0) << out;
  ASSERT_EQ(test::run_cli("convert " + dir + "/s --out " + dir + "/lit --to lit_gpt", &out), 0) << out;
  ASSERT_EQ(test::run_cli("convert " + dir + "/lit --out " + dir + "/hf --to hf", &out), 0) << out;
  auto original = read_state_dict(sambay_dir() + "/model.safetensors");
  auto back = read_state_dict(dir + "/hf/model.safetensors");
  ASSERT_EQ(back.size(), original.size());
  for (const auto& [name, t] : original) {
    ASSERT_TRUE(back.count(name)) << name;
    ASSERT_EQ(back.at(name).shape(), t.shape()) << name;
    EXPECT_EQ(std::memcmp(back.at(name).raw(), t.raw(), t.nbytes()), 0) << name;
  }
  auto lit = read_state_dict(dir + "/lit/model.safetensors");
  EXPECT_EQ(lit.size(), read_state_dict(sambay_dir() + "/lit_model.safetensors").size());
  // And bf16: the forward of the converted directory is close to the original's.
  ASSERT_EQ(test::run_cli("convert " + sambay_dir() + " --out " + dir + "/bf16 --to hf --dtype bf16", &out), 0) << out;
  EXPECT_EQ(read_state_dict(dir + "/bf16/model.safetensors").begin()->second.dtype(), DType::BF16);
  ASSERT_EQ(test::run_cli("forward -m " + dir + "/bf16 -i " + sambay_dir() + "/expected.safetensors -o " + dir +
                              "/out.safetensors",
                          &out),
            0)
      << out;
  auto got = read_safetensors(dir + "/out.safetensors");
  auto expected = read_safetensors(sambay_dir() + "/expected.safetensors");
  EXPECT_LT(test::rel_error(got.get("logits"), expected.get("logits")), 5e-2);
}
