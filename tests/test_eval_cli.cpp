// `sambalm eval` as a user meets it: perplexity equal to exp(mean loss) of `sambalm forward` over the
// same windows (chunked equal to one pass at 4x the attention window), passkey prompts and the
// fine-tuning pipeline on a fixture tokenizer, multiple choice equal to a hand computation from
// `sambalm forward`'s logits, and bad input refused with a clear message.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/model_dir.h"
#include "io/safetensors.h"
#include "model/weights.h"
#include "testing.h"
#include "tokenizer/tokenizer.h"

using namespace sambalm;
namespace fs = std::filesystem;

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A random 2-layer Samba (attention window 4) of `vocab` ids, saved with `tokenizer_file` beside it
// (or a bytes tokenizer when empty).
std::string model_dir(const std::string& dir, int64_t vocab, const std::string& tokenizer_file = "") {
  test::SambaShape sh;
  sh.n_layer = 2;
  sh.vocab = vocab;
  sh.padded = (vocab + 63) / 64 * 64;
  sh.window = 4;
  ModelConfig cfg = test::small_samba("eval_cli", sh);
  ParamStore store(param_specs(cfg));
  test::fill_random_params(store, 3);
  save_model_dir(dir, cfg, store);
  if (tokenizer_file.empty())
    std::ofstream(dir + "/" + kTokenizerConfigFile) << bytes_tokenizer_config();
  else
    fs::copy_file(tokenizer_file, dir + "/" + fs::path(tokenizer_file).filename().string());
  return dir;
}

std::string text_file(const std::string& dir, size_t n) {
  static const char* words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "ran", "far", "away"};
  std::string s;
  for (size_t i = 0; s.size() < n; ++i) s += std::string(words[(i * 7 + i / 3) % 10]) + (i % 11 ? " " : ".\n");
  s.resize(n);
  std::ofstream(dir + "/text.txt") << s;
  return dir + "/text.txt";
}

nlohmann::json run_json(const std::string& args) {
  std::string out;
  EXPECT_EQ(test::run_cli(args + " --json -q", &out), 0) << args << "\n" << out;
  return nlohmann::json::parse(out);
}

// `sambalm forward` over rows of ids with targets (-1 = not scored): its loss and its logits.
struct ForwardOut {
  double loss = 0;
  std::vector<float> logits;
};
ForwardOut forward(const std::string& model, const std::string& dir, const std::vector<int32_t>& in,
                   const std::vector<int32_t>& tg, int64_t B, int64_t T) {
  Tensor x = Tensor::zeros(DType::I32, {B, T}), y = Tensor::zeros(DType::I32, {B, T});
  std::copy(in.begin(), in.end(), x.data<int32_t>());
  std::copy(tg.begin(), tg.end(), y.data<int32_t>());
  write_safetensors(dir + "/in.safetensors", {{"input_ids", x}, {"targets", y}});
  std::string out;
  EXPECT_EQ(
      test::run_cli("forward -m " + model + " -i " + dir + "/in.safetensors -o " + dir + "/out.safetensors", &out), 0)
      << out;
  auto f = read_safetensors(dir + "/out.safetensors");
  ForwardOut r;
  r.loss = f.get("loss").data<float>()[0];
  const Tensor& l = f.get("logits");
  r.logits.assign(l.data<float>(), l.data<float>() + l.numel());
  return r;
}

// ---- ppl ------------------------------------------------------------------------------------------

// L = 16 is 4x the attention window (4). Windows as eval ppl documents them, written as forward rows.
TEST(EvalPplCli, EqualsExpMeanLossOfForwardAndChunkedEqualsOnePass) {
  const std::string dir = test::temp_dir("eval_ppl");
  const std::string model = model_dir(dir + "/m", 256);
  const std::string text = text_file(dir, 200);
  const std::string bytes = read_all(text);
  const int64_t L = 16, windows = 5;
  for (int64_t S : {16, 5}) {
    SCOPED_TRACE("stride " + std::to_string(S));
    std::vector<int32_t> in, tg;
    for (int64_t k = 0; k < windows; ++k)
      for (int64_t t = 0; t < L; ++t) {
        in.push_back(uint8_t(bytes[size_t(k * S + t)]));
        tg.push_back(k == 0 || t >= L - S ? int32_t(uint8_t(bytes[size_t(k * S + t + 1)])) : -1);
      }
    const double loss = forward(model, dir, in, tg, windows, L).loss;
    const std::string args =
        "eval ppl -m " + model + " -d " + text + " --lengths 16 --max-windows 5 --stride " + std::to_string(S);
    const auto one_pass = run_json(args + " --chunk 16")["results"][0];
    const auto chunked = run_json(args + " --chunk 3")["results"][0];
    EXPECT_EQ(chunked["windows"], windows);
    EXPECT_EQ(chunked["tokens"], S == L ? windows * L : L + (windows - 1) * S);
    EXPECT_NEAR(chunked["perplexity"].get<double>(), std::exp(loss), 1e-5 * std::exp(loss));
    EXPECT_NEAR(chunked["loss"].get<double>(), loss, 1e-5 * loss);
    EXPECT_NEAR(chunked["loss"].get<double>(), one_pass["loss"].get<double>(), 1e-5 * loss);
    EXPECT_NEAR(chunked["perplexity"].get<double>(), one_pass["perplexity"].get<double>(), 1e-5 * std::exp(loss));
    // Bytes: the tokens are bytes, so bits per byte is bits per token.
    EXPECT_EQ(chunked["bytes"], chunked["tokens"]);
    EXPECT_NEAR(chunked["bits_per_byte"].get<double>(), chunked["loss"].get<double>() / std::log(2.0), 1e-9);
  }
}

// The same tokens as shards (`sambalm prepare`) give the same loss; bits per byte needs text.
TEST(EvalPplCli, ShardsGiveTheSameLoss) {
  const std::string dir = test::temp_dir("eval_ppl_shards");
  const std::string model = model_dir(dir + "/m", 256);
  const std::string text = text_file(dir, 300);
  std::string out;
  ASSERT_EQ(test::run_cli("prepare -t bytes -q --train-fraction 1 --out " + dir + "/s " + text, &out), 0) << out;
  const auto a = run_json("eval ppl -m " + model + " -d " + text + " --lengths 8,32")["results"];
  const auto b = run_json("eval ppl -m " + model + " -d " + dir + "/s --split train --lengths 8,32")["results"];
  const auto c = run_json("eval ppl -m " + model + " -d " + dir + "/s/train_000000.bin --lengths 8,32")["results"];
  ASSERT_EQ(a.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(a[i]["tokens"], b[i]["tokens"]);
    EXPECT_DOUBLE_EQ(a[i]["loss"].get<double>(), b[i]["loss"].get<double>());
    EXPECT_DOUBLE_EQ(a[i]["loss"].get<double>(), c[i]["loss"].get<double>());
    EXPECT_TRUE(b[i]["bits_per_byte"].is_null());
  }
  EXPECT_EQ(a[0]["windows"], (300 - 9) / 8 + 1);
  // Text output: one row per length.
  ASSERT_EQ(test::run_cli("eval ppl -q -m " + model + " -d " + text + " --lengths 8,32", &out), 0) << out;
  EXPECT_NE(out.find("perplexity"), std::string::npos) << out;
}

TEST(EvalPplCli, BadInputIsAClearError) {
  const std::string dir = test::temp_dir("eval_ppl_bad");
  const std::string model = model_dir(dir + "/m", 256);
  const std::string text = text_file(dir, 100);
  std::ofstream(dir + "/empty.txt") << "";
  const std::string base = "eval ppl -q -m " + model + " -d ";
  struct Case {
    std::string args, message;
    int rc;
  } cases[] = {
      {base + dir + "/missing.txt", "no such file", 1},
      {base + dir + "/empty.txt --lengths 8", "empty", 1},
      {base + text + " --lengths 1", "--lengths", 2},
      {base + text + " --lengths 8,x", "not a number", 2},
      {base + text + " --lengths 2000M", "--lengths", 2},
      {base + text + " --lengths 100", "too few", 1},
      {base + text + " --lengths 8 --stride 9", "--stride", 1},
      {base + text + " --lengths 8 --stride 0", "--stride", 2},
      {base + text + " --lengths 8 --max-windows -1", "--max-windows", 2},
      {base + text + " --lengths 8 --split test", "--split", 2},
      {"eval ppl -q -m " + model + " --lengths 8", "--data", 2},
  };
  for (const auto& c : cases) {
    std::string out;
    EXPECT_EQ(test::run_cli(c.args, &out), c.rc) << c.args << "\n" << out;
    EXPECT_NE(out.find(c.message), std::string::npos) << c.args << "\n" << out;
    EXPECT_NE(out.find("error: "), std::string::npos) << out;
  }
}

// ---- passkey --------------------------------------------------------------------------------------

// The whole pipeline on the bpe_tiny fixture tokenizer: evaluate, write the task as training data,
// prepare it, fine-tune on it, evaluate the fine-tuned model.
TEST(EvalPasskeyCli, PipelineRunsOnAFixtureTokenizer) {
  REQUIRE_FIXTURES();
  const std::string dir = test::temp_dir("eval_passkey");
  const std::string model = model_dir(dir + "/m", 3000, test::fixtures_dir() + "/bpe_tiny/tokenizer.json");
  const auto j = run_json("eval passkey -m " + model + " --lengths 300,600 --depths 0,0.5,1 --trials 2 --chunk 64");
  ASSERT_EQ(j["results"].size(), 6u);
  EXPECT_EQ(j["results"][0]["length"], 300);
  EXPECT_EQ(j["results"][5]["depth"], 1.0);
  ASSERT_EQ(j["trials"].size(), 12u);
  int64_t correct = 0;
  for (const auto& t : j["trials"]) {
    const int64_t L = t["length"], n = t["prompt_tokens"];
    EXPECT_LE(n, L);
    EXPECT_GE(double(n), 0.99 * double(L));
    EXPECT_EQ(t["key"].get<std::string>().size(), 5u);
    correct += t["correct"].get<bool>();
  }
  EXPECT_DOUBLE_EQ(j["accuracy"].get<double>(), double(correct) / 12.0);

  std::string out;
  const std::string data = dir + "/pk.jsonl";
  ASSERT_EQ(test::run_cli("eval passkey -m " + model + " --lengths 300 --depths 0.25,0.75 --trials 3 --seed 9 " +
                              "--write-data " + data,
                          &out),
            0)
      << out;
  auto tok = load_tokenizer(model);
  std::istringstream lines(read_all(data));
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    auto e = nlohmann::json::parse(line);
    const std::string key = e["key"];
    EXPECT_EQ(e["text"].get<std::string>(), e["prompt"].get<std::string>() + e["answer"].get<std::string>());
    EXPECT_EQ(e["answer"], " " + key + ".");
    EXPECT_NE(e["prompt"].get<std::string>().find("The pass key is " + key + ". Remember it. " + key),
              std::string::npos);
    EXPECT_EQ(int64_t(tok->encode(e["prompt"].get<std::string>()).size()), e["prompt_tokens"].get<int64_t>());
    ++n;
  }
  EXPECT_EQ(n, 6);
  ASSERT_EQ(test::run_cli("prepare -q -t " + model + " --out " + dir + "/shards " + data, &out), 0) << out;
  ASSERT_EQ(test::run_cli("train --init-from " + model + " --data " + dir +
                              "/shards --seq-len 64 --batch 2 --steps 2 --eval-every 0 --out " + dir + "/run",
                          &out),
            0)
      << out;
  const auto k = run_json("eval passkey -m " + dir + "/run/model --lengths 300 --depths 0.5 --trials 1");
  EXPECT_EQ(k["results"].size(), 1u);
}

TEST(EvalPasskeyCli, BadInputIsAClearError) {
  const std::string dir = test::temp_dir("eval_passkey_bad");
  const std::string model = model_dir(dir + "/m", 256);
  const std::string base = "eval passkey -q -m " + model;
  struct Case {
    std::string args, message;
    int rc;
  } cases[] = {
      {base + " --lengths 1", "--lengths", 2},
      {base + " --lengths 2000M", "--lengths", 2},
      {base + " --lengths 1000 --depths 0.5,1.5", "--depths", 2},
      {base + " --lengths 1000 --depths -0.1", "--depths", 2},
      {base + " --lengths 1000 --depths x", "--depths", 2},
      {base + " --lengths 1000 --trials 0", "--trials", 2},
      {base + " --lengths 50", "cannot hold", 1},
      {base + " --lengths 1000 --write-data " + dir + "/no/such/dir/x.jsonl", "--write-data", 1},
      {base, "--lengths", 2},
  };
  for (const auto& c : cases) {
    std::string out;
    EXPECT_EQ(test::run_cli(c.args, &out), c.rc) << c.args << "\n" << out;
    EXPECT_NE(out.find(c.message), std::string::npos) << c.args << "\n" << out;
  }
}

// ---- mc -------------------------------------------------------------------------------------------

double log_softmax_at(const float* row, int64_t V, int32_t target) {
  double mx = row[0], sum = 0;
  for (int64_t v = 1; v < V; ++v) mx = std::max(mx, double(row[v]));
  for (int64_t v = 0; v < V; ++v) sum += std::exp(double(row[v]) - mx);
  return double(row[target]) - mx - std::log(sum);
}

// The sample task with the bpe_tiny fixture tokenizer: every choice's log-likelihood by hand, from the
// logits `sambalm forward` writes for context + continuation (tokenized as lm-evaluation-harness does).
TEST(EvalMcCli, SampleTaskEqualsAHandComputationFromForward) {
  REQUIRE_FIXTURES();
  const std::string dir = test::temp_dir("eval_mc");
  const std::string model = model_dir(dir + "/m", 3000, test::fixtures_dir() + "/bpe_tiny/tokenizer.json");
  const std::string tasks = std::string(SAMBALM_SOURCE_DIR) + "/data/tasks/sample_mc.jsonl";
  auto tok = load_tokenizer(model);
  struct Row {
    std::vector<int32_t> ids;
    size_t ctx = 0;
  };
  std::vector<Row> rows;
  std::vector<std::vector<std::string>> choices;
  std::vector<int64_t> labels;
  std::istringstream lines(read_all(tasks));
  std::string line;
  while (std::getline(lines, line)) {
    auto e = nlohmann::json::parse(line);
    const std::string ctx = e["context"];
    choices.push_back(e["choices"].get<std::vector<std::string>>());
    labels.push_back(e["label"]);
    for (const auto& c : choices.back()) {
      Row r;
      r.ctx = tok->encode(ctx).size();
      r.ids = tok->encode(ctx + " " + c);
      rows.push_back(r);
    }
  }
  ASSERT_GE(labels.size(), 5u);
  size_t T = 0;
  for (const auto& r : rows) T = std::max(T, r.ids.size() - 1);
  const int64_t B = int64_t(rows.size());
  std::vector<int32_t> in(size_t(B) * T, 0), tg(size_t(B) * T, -1);
  for (size_t b = 0; b < rows.size(); ++b)
    for (size_t t = 0; t + 1 < rows[b].ids.size(); ++t) {
      in[b * T + t] = rows[b].ids[t];
      if (t + 1 >= rows[b].ctx) tg[b * T + t] = rows[b].ids[t + 1];
    }
  const ForwardOut f = forward(model, dir, in, tg, B, int64_t(T));
  const int64_t V = int64_t(f.logits.size()) / (B * int64_t(T));
  const auto j = run_json("eval mc -m " + model + " --tasks " + tasks);
  ASSERT_EQ(j["results"].size(), labels.size());
  size_t b = 0, acc = 0, acc_norm = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    std::vector<double> ll;
    for (size_t c = 0; c < choices[i].size(); ++c, ++b) {
      double s = 0;
      for (size_t t = rows[b].ctx - 1; t + 1 < rows[b].ids.size(); ++t)
        s += log_softmax_at(f.logits.data() + (b * T + t) * size_t(V), V, rows[b].ids[t + 1]);
      ll.push_back(s);
      EXPECT_NEAR(j["results"][i]["loglik"][c].get<double>(), s, 1e-5 * std::abs(s)) << "item " << i << " choice " << c;
    }
    size_t best = 0, best_norm = 0;
    for (size_t c = 1; c < ll.size(); ++c) {
      if (ll[c] > ll[best]) best = c;
      if (ll[c] / double(choices[i][c].size()) > ll[best_norm] / double(choices[i][best_norm].size())) best_norm = c;
    }
    EXPECT_EQ(j["results"][i]["pred"], best);
    EXPECT_EQ(j["results"][i]["pred_norm"], best_norm);
    acc += best == size_t(labels[i]);
    acc_norm += best_norm == size_t(labels[i]);
  }
  EXPECT_DOUBLE_EQ(j["acc"].get<double>(), double(acc) / double(labels.size()));
  EXPECT_DOUBLE_EQ(j["acc_norm"].get<double>(), double(acc_norm) / double(labels.size()));
  // Few-shot and a limit run too; the text output names both measures.
  const auto k = run_json("eval mc -m " + model + " --tasks " + tasks + " --fewshot 2 --limit 3");
  EXPECT_EQ(k["items"], 3);
  std::string out;
  ASSERT_EQ(test::run_cli("eval mc -q -m " + model + " --tasks " + tasks, &out), 0) << out;
  EXPECT_NE(out.find("acc_norm"), std::string::npos) << out;
}

TEST(EvalMcCli, BadInputIsAClearError) {
  const std::string dir = test::temp_dir("eval_mc_bad");
  const std::string model = model_dir(dir + "/m", 256);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir + "/" + name) << text;
    return dir + "/" + name;
  };
  const std::string good = R"({"context": "a b", "choices": ["c", "d"], "label": 1})";
  struct Case {
    std::string args, message;
    int rc;
  } cases[] = {
      {"--tasks " + dir + "/missing.jsonl", "missing.jsonl", 1},
      {"--tasks " + write("empty.jsonl", "\n\n"), "no task items", 1},
      {"--tasks " + write("bad.jsonl", good + "\n" + good + "\n{\"context\": oops}\n"),
       "bad.jsonl:3: not valid JSON (at column 13)", 1},
      {"--tasks " + write("label.jsonl", good + "\n" + R"({"context": "x", "choices": ["c", "d"], "label": 2})"),
       "label.jsonl:2: label 2 is out of range", 1},
      {"--tasks " + write("neg.jsonl", R"({"context": "x", "choices": ["c", "d"], "label": -1})"),
       "neg.jsonl:1: label -1 is out of range", 1},
      {"--tasks " + write("one.jsonl", R"({"context": "x", "choices": ["c"], "label": 0})"), "one.jsonl:1:", 1},
      {"--tasks " + write("type.jsonl", R"({"context": 3, "choices": ["c", "d"], "label": 0})"),
       "type.jsonl:1: 'context'", 1},
      {"--tasks " + write("arr.jsonl", "[1, 2]"), "arr.jsonl:1: expected a JSON object", 1},
      {"--tasks " + write("two.jsonl", good + "\n" + good) + " --fewshot 2", "--fewshot", 1},
      {"--tasks " + write("ok.jsonl", good) + " --fewshot -1", "--fewshot", 2},
  };
  for (const auto& c : cases) {
    std::string out;
    const std::string args = "eval mc -q -m " + model + " " + c.args;
    EXPECT_EQ(test::run_cli(args, &out), c.rc) << args << "\n" << out;
    EXPECT_NE(out.find(c.message), std::string::npos) << args << "\n" << out;
  }
}

}  // namespace
