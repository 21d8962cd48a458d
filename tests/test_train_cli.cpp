// `sambalm train` and `prepare` as a first-time user meets them: the vocabulary follows the data, a
// mid-run error keeps the work, options that contradict the model are refused, a trained model
// directory is self-contained (name, tokenizer), resumption says what it keeps, samples are safe
// to print, empty inputs are an error.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "io/file.h"
#include "model/weights.h"
#include "testing.h"
#include "train/checkpoint.h"
#include "train/metrics.h"

namespace fs = std::filesystem;

namespace sambalm {
namespace {

std::string write_corpus(const std::string& dir, size_t n = 20000, const std::string& name = "corpus.txt") {
  const char* words[] = {"the", "model", "state", "scan", "window", "of", "and", "a"};
  std::mt19937 g(5);
  std::string s;
  while (s.size() < n) s += std::string(words[g() % 8]) + ((g() % 9) ? " " : ".\n");
  const std::string p = dir + "/" + name;
  std::ofstream(p) << s;
  return p;
}

// A tiny shape, without --vocab-size: the vocabulary is left to the data.
const std::string kShape =
    "--model Samba_421M --n-layer 2 --n-embd 32 --n-head 2 --intermediate-size 64 --local-window 16 ";

std::string run_args(const std::string& data, const std::string& out) {
  return "train " + kShape + "--seq-len 32 --batch 2 --eval-batches 1 --log-every 1 --data " + data + " --out " + out;
}

nlohmann::json config_of(const std::string& model_dir) {
  return nlohmann::json::parse(read_text_file(model_dir + "/config.json"));
}

// A bytes corpus, samples and evaluations every 2 steps, no --vocab-size (this once died at the first
// sample: the model's 32000 ids were decoded by a 256-id tokenizer).
TEST(TrainCli, VocabularyFollowsTheBytesTokenizer) {
  auto dir = test::temp_dir("cli_vocab_bytes");
  auto data = write_corpus(dir);
  std::string out;
  const std::string args = run_args(data, dir + "/r") + " --tokenizer bytes --steps 4 --sample-every 2 --eval-every 2";
  ASSERT_EQ(test::run_cli(args, &out), 0) << out;
  EXPECT_EQ(config_of(dir + "/r/model")["vocab_size"], 256) << out;
  EXPECT_NE(out.find("vocab 256"), std::string::npos) << out;
  EXPECT_NE(read_text_file(dir + "/r/samples.txt").find("=== step 4"), std::string::npos);
  // A larger --vocab-size is the user's choice; samples still decode (only the tokenizer's ids).
  ASSERT_EQ(test::run_cli(run_args(data, dir + "/r2") + " --tokenizer bytes --steps 2 --sample-every 1 --vocab-size "
                                                        "1000 --temperature 5",
                          &out),
            0)
      << out;
  EXPECT_EQ(config_of(dir + "/r2/model")["vocab_size"], 1000);
  // A smaller one is refused, naming the tokenizer's size.
  EXPECT_EQ(test::run_cli(run_args(data, dir + "/r3") + " --tokenizer bytes --steps 2 --vocab-size 100", &out), 1);
  EXPECT_NE(out.find("--vocab-size 256"), std::string::npos) << out;
}

// Shards of a 3000-token BPE: the model gets 3000 ids, and the tokenizer goes with the model.
TEST(TrainCli, VocabularyAndTokenizerFollowBpeShards) {
  REQUIRE_FIXTURES();
  auto dir = test::temp_dir("cli_vocab_bpe");
  auto data = write_corpus(dir);
  const std::string tj = test::fixtures_dir() + "/bpe_tiny/tokenizer.json";
  std::string out;
  ASSERT_EQ(test::run_cli("prepare -q -t " + tj + " --out " + dir + "/shards " + data, &out), 0) << out;
  ASSERT_EQ(test::run_cli(run_args(dir + "/shards", dir + "/r") + " --steps 2 --sample-every 2 --eval-every 1 "
                                                                  "--sample-tokens 8",
                          &out),
            0)
      << out;
  EXPECT_EQ(config_of(dir + "/r/model")["vocab_size"], 3000);
  EXPECT_EQ(read_text_file(dir + "/r/model/tokenizer.json"), read_text_file(tj));
  auto ck = latest_checkpoint(dir + "/r");
  ASSERT_TRUE(ck.has_value());
  EXPECT_TRUE(fs::exists(*ck + "/tokenizer.json"));
  // generate needs no --tokenizer: the prompt is text.
  ASSERT_EQ(test::run_cli("generate -m " + dir + "/r/model -p 'the model' -n 4", &out), 0) << out;
}

TEST(TrainCli, SentencePieceTokenizerGoesWithTheModel) {
  REQUIRE_FIXTURES();
  auto dir = test::temp_dir("cli_sp");
  auto data = write_corpus(dir);
  const std::string sp = test::fixtures_dir() + "/sp_tiny/tokenizer.model";
  std::string out;
  ASSERT_EQ(test::run_cli(run_args(data, dir + "/r") + " --tokenizer " + sp + " --steps 1 --eval-every 0", &out), 0)
      << out;
  EXPECT_EQ(read_text_file(dir + "/r/model/tokenizer.model"), read_text_file(sp));
  ASSERT_EQ(test::run_cli("generate -m " + dir + "/r/model -p 'the model' -n 4", &out), 0) << out;
}

// A model trained on bytes is usable by generate with no flag: the prompt is read as text.
TEST(TrainCli, BytesModelGeneratesWithoutTokenizerFlag) {
  auto dir = test::temp_dir("cli_bytes_gen");
  auto data = write_corpus(dir);
  std::string out;
  ASSERT_EQ(test::run_cli(run_args(data, dir + "/r") + " --tokenizer bytes --steps 2 --eval-every 0", &out), 0) << out;
  for (const std::string& m : {dir + "/r/model", *latest_checkpoint(dir + "/r")}) {
    ASSERT_EQ(test::run_cli("generate -m " + m + " -p 'the model' -n 4 --json", &out), 0) << out;
    // The JSON document is one line; the summary line that follows comes from stderr.
    const size_t at = out.find('{');
    auto j = nlohmann::json::parse(out.substr(at, out.find('\n', at) - at), nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << out;
    // The prompt was encoded as bytes and the output decoded to text.
    const std::vector<int> want = {116, 104, 101, 32, 109, 111, 100, 101, 108};
    EXPECT_EQ(j["results"][0]["prompt_ids"].get<std::vector<int>>(), want) << out;
    EXPECT_TRUE(j["results"][0].contains("text")) << out;
  }
  // The tokenizer can be named by the model directory, too.
  ASSERT_EQ(test::run_cli("tokenize -t " + dir + "/r/model --text ab", &out), 0) << out;
  EXPECT_EQ(out, "97 98\n");
}

// An error in the middle of the run saves a checkpoint first; --resume continues from it.
TEST(TrainCli, ErrorMidRunSavesACheckpoint) {
  auto dir = test::temp_dir("cli_error_save");
  auto data = write_corpus(dir);
  const std::string args = run_args(data, dir + "/r") + " --tokenizer bytes --steps 6 --eval-every 0";
  std::string out;
  setenv("SAMBALM_TEST_FAIL_AT", "3", 1);
  const int rc = test::run_cli(args, &out);
  unsetenv("SAMBALM_TEST_FAIL_AT");
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("saved before stopping on the error"), std::string::npos) << out;
  auto ck = latest_checkpoint(dir + "/r");
  ASSERT_TRUE(ck.has_value()) << out;
  EXPECT_EQ(fs::path(*ck).filename(), "step_00000003");
  ASSERT_EQ(test::run_cli(args + " --resume", &out), 0) << out;
  EXPECT_EQ(read_metrics(dir + "/r/metrics.jsonl").back()["step"], 6);
}

TEST(TrainCli, EvalLengthZeroIsAnError) {
  auto dir = test::temp_dir("cli_eval_len");
  auto data = write_corpus(dir);
  std::string out;
  for (const char* v : {"0", "64,0", "-8", "abc"}) {
    const int rc = test::run_cli(run_args(data, dir + "/r") + " --tokenizer bytes --steps 2 --eval-lengths " + v, &out);
    EXPECT_TRUE(rc >= 1 && rc <= 125) << v << ": " << rc << "\n" << out;
    EXPECT_NE(out.find("--eval-lengths"), std::string::npos) << out;
  }
  EXPECT_FALSE(fs::exists(dir + "/r"));
}

// --init-from fine-tunes the directory's shape; --model does not take trained weights.
TEST(TrainCli, InitFromAndModelDirectoryAreNotIgnored) {
  auto dir = test::temp_dir("cli_init_from");
  auto data = write_corpus(dir);
  std::string out;
  ASSERT_EQ(test::run_cli(run_args(data, dir + "/base") + " --tokenizer bytes --steps 1 --eval-every 0", &out), 0)
      << out;
  const std::string model = dir + "/base/model";
  const std::string common = " --tokenizer bytes --seq-len 32 --batch 2 --steps 1 --eval-every 0 --data " + data;
  // A contradicting shape option is refused, before any run directory exists.
  EXPECT_EQ(
      test::run_cli("train --init-from " + model + " --n-layer 8 --n-embd 64" + common + " --out " + dir + "/a", &out),
      1);
  EXPECT_NE(out.find("--n-layer 8"), std::string::npos) << out;
  EXPECT_NE(out.find("n_layer = 2"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir + "/a"));
  // One that agrees is fine.
  EXPECT_EQ(test::run_cli("train --init-from " + model + " --n-layer 2" + common + " --out " + dir + "/b", &out), 0)
      << out;
  // --model with a trained model directory: refused, pointing at --init-from.
  EXPECT_EQ(test::run_cli("train --model " + model + common + " --out " + dir + "/c", &out), 1);
  EXPECT_NE(out.find("--init-from " + model), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir + "/c"));
  // Its config.json alone is a fresh model of that shape.
  EXPECT_EQ(test::run_cli("train --model " + model + "/config.json" + common + " --out " + dir + "/d", &out), 0) << out;
}

TEST(TrainCli, ModelIsNamedByWhatItIs) {
  auto dir = test::temp_dir("cli_name");
  auto data = write_corpus(dir);
  std::string out;
  ASSERT_EQ(test::run_cli(run_args(data, dir + "/r") + " --tokenizer bytes --steps 1 --eval-every 0", &out), 0) << out;
  EXPECT_NE(out.find("model Samba_421M-custom:"), std::string::npos) << out;
  EXPECT_EQ(config_of(dir + "/r/model")["name"], "Samba_421M-custom");
  ASSERT_EQ(test::run_cli("info " + dir + "/r/model", &out), 0) << out;
  EXPECT_NE(out.find("Samba_421M-custom"), std::string::npos) << out;
  // --name names it.
  ASSERT_EQ(
      test::run_cli(run_args(data, dir + "/n") + " --tokenizer bytes --steps 1 --eval-every 0 --name charlm", &out), 0)
      << out;
  EXPECT_EQ(config_of(dir + "/n/model")["name"], "charlm");
}

// Resumption names the option the user changed, and says what a changed seed or batch does.
TEST(TrainCli, ResumeReportsChangedOptions) {
  auto dir = test::temp_dir("cli_resume");
  auto data = write_corpus(dir);
  const std::string args = run_args(data, dir + "/r") + " --tokenizer bytes --steps 4 --eval-every 0";
  std::string out;
  ASSERT_EQ(test::run_cli(args + " --stop-after 1", &out), 0) << out;
  std::string wider = args;
  wider.replace(wider.find("--n-embd 32"), 11, "--n-embd 48");
  EXPECT_EQ(test::run_cli(wider + " --resume", &out), 1);
  EXPECT_NE(out.find("--n-embd 48"), std::string::npos) << out;
  EXPECT_NE(out.find("n_embd = 32"), std::string::npos) << out;
  EXPECT_EQ(out.find("dt_rank"), std::string::npos) << out;
  // Seed and batch: accepted, with a note each.
  std::string changed = args + " --seed 99 --stop-after 1 --resume";
  changed.replace(changed.find("--batch 2"), 9, "--batch 3");
  ASSERT_EQ(test::run_cli(changed, &out), 0) << out;
  EXPECT_NE(out.find("note: --seed 99 differs from the run's seed 1234"), std::string::npos) << out;
  EXPECT_NE(out.find("note: --batch 3 differs from the checkpoint's 2"), std::string::npos) << out;
}

// Early samples of a model hold control bytes: the terminal and samples.txt get them escaped.
TEST(TrainCli, SamplesEscapeControlBytes) {
  auto dir = test::temp_dir("cli_escape");
  std::string text;
  for (int i = 0; i < 2000; ++i)
    text +=
        "ab\x1b[2J\x07\r\x9b"
        "cd ";
  std::ofstream(dir + "/ctl.txt", std::ios::binary) << text;
  std::string out;
  ASSERT_EQ(test::run_cli(run_args(dir + "/ctl.txt", dir + "/r") +
                              " --tokenizer bytes --steps 1 --eval-every 0 --sample-every 1 --sample-tokens 4",
                          &out),
            0)
      << out;
  const std::string samples = read_text_file(dir + "/r/samples.txt");
  for (const std::string* s : {static_cast<const std::string*>(&out), &samples}) {
    EXPECT_EQ(s->find('\x1b'), std::string::npos) << *s;
    EXPECT_EQ(s->find('\x07'), std::string::npos) << *s;
    EXPECT_EQ(s->find('\x9b'), std::string::npos) << *s;
  }
  // The prompt (the validation split's start) shows up escaped.
  EXPECT_NE(samples.find("ab\\x1b[2J\\x07\\r\\x9bcd"), std::string::npos) << samples;
}

TEST(PrepareCli, EmptyInputsAreAnError) {
  auto dir = test::temp_dir("cli_prepare_empty");
  fs::create_directories(dir + "/empty");
  std::string out;
  EXPECT_EQ(test::run_cli("prepare -q -t bytes --out " + dir + "/s1 " + dir + "/empty", &out), 1);
  EXPECT_NE(out.find("error:"), std::string::npos) << out;
  // Files with nothing in them.
  fs::create_directories(dir + "/blank");
  std::ofstream(dir + "/blank/a.txt");
  std::ofstream(dir + "/blank/b.jsonl");
  EXPECT_EQ(test::run_cli("prepare -q -t bytes --out " + dir + "/s2 " + dir + "/blank", &out), 1);
  EXPECT_NE(out.find("hold no text"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir + "/s2"));
  // JSON Lines whose documents are all empty, without EOS: no tokens at all.
  std::ofstream(dir + "/e.jsonl") << "{\"text\": \"\"}\n{\"text\": \"\"}\n";
  EXPECT_EQ(test::run_cli("prepare -q -t bytes --no-eos --out " + dir + "/s3 " + dir + "/e.jsonl", &out), 1);
  EXPECT_NE(out.find("no tokens"), std::string::npos) << out;
}

}  // namespace
}  // namespace sambalm
