// `sambalm serve` scoring a multiple-choice task the way lm-evaluation-harness's `local-completions`
// does, against `sambalm eval mc` on the same task and model: the per-choice log-likelihoods (summed
// echoed logprobs of the continuation tokens) agree within 1e-4, and so do acc and acc_norm. And the
// tokenizer routes the harness's `tokenizer_backend=remote` uses (vLLM's /tokenizer_info, /tokenize,
// /detokenize) give the model's tokenizer: the same pairs of context and continuation ids.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <tuple>

#include "serve_testing.h"

using namespace sambalm;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A random 2-block Samba over a fixture tokenizer (`file` of fixtures/, `vocab` ids; the head padded
// to a multiple of 64, so that padding rows exist), so that contexts and choices are several-byte
// tokens as with a real model.
std::string fixture_model_dir(const std::string& dir, const std::string& file, int64_t vocab) {
  test::SambaShape sh;
  sh.n_layer = 2;
  sh.vocab = vocab;
  sh.padded = (vocab + 63) / 64 * 64;
  sh.window = 4;
  ModelConfig cfg = test::small_samba("serve_eval", sh);
  ParamStore store(param_specs(cfg));
  test::fill_random_params(store, 5);
  save_model_dir(dir, cfg, store);
  fs::copy_file(test::fixtures_dir() + "/" + file, dir + "/" + fs::path(file).filename().string(),
                fs::copy_options::overwrite_existing);
  return dir;
}
std::string bpe_model_dir(const std::string& dir) { return fixture_model_dir(dir, "bpe_tiny/tokenizer.json", 3000); }

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The harness's request for one (context, continuation) pair: trailing spaces of the context move to
// the continuation, the whole text is encoded once, the context's tokens are the first
// len(encode(context)) of it (lm_eval.api.model.TemplateLM._encode_pair).
struct Pair {
  std::vector<int32_t> ids;
  size_t ctxlen = 0;
};
Pair encode_pair(const Tokenizer& tok, std::string context, std::string continuation) {
  const size_t keep = context.find_last_not_of(' ') + 1;
  continuation = context.substr(keep) + continuation;
  context.resize(keep);
  Pair p;
  p.ids = tok.encode(context + continuation);
  p.ctxlen = tok.encode(context).size();
  return p;
}

struct Item {
  std::string context;
  std::vector<std::string> choices;
  int64_t label = 0;
};

std::vector<Item> read_items(const std::string& tasks) {
  std::vector<Item> items;
  std::istringstream lines(read_all(tasks));
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    const json e = json::parse(line);
    items.push_back({e["context"], e["choices"].get<std::vector<std::string>>(), e["label"]});
  }
  return items;
}

const std::string kTasks = std::string(SAMBALM_SOURCE_DIR) + "/data/tasks/sample_mc.jsonl";

TEST(ServeEval, EchoLogprobsEqualEvalMcLoglikelihoods) {
  REQUIRE_FIXTURES();
  const std::string dir = test::temp_dir("serve_eval");
  const std::string model = bpe_model_dir(dir + "/model");
  const std::string& tasks = kTasks;

  std::string out;
  ASSERT_EQ(test::run_cli("eval mc -q --json -m " + model + " --tasks " + tasks, &out), 0) << out;
  const json mc = json::parse(out);

  const std::vector<Item> items = read_items(tasks);
  ASSERT_EQ(mc["results"].size(), items.size());

  auto tok = load_tokenizer(model);
  // A prefill chunk shorter than the prompts: the echoed logprobs come from several prefill calls.
  test::ServeProcess s(model, {"--chunk", "5"});
  ASSERT_GT(s.port, 0) << s.log();
  size_t acc = 0, acc_norm = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const Item& it = items[i];
    std::vector<Pair> pairs;
    json prompts = json::array();
    for (const auto& c : it.choices) {
      pairs.push_back(encode_pair(*tok, it.context, " " + c));
      prompts.push_back(pairs.back().ids);
    }
    // The choices of an item in one request (the harness batches them so), in the two forms the
    // harness has sent: max_tokens 0, every entry the prompt's; max_tokens 1 (lm-eval 0.4.x), one
    // generated entry more, which the harness drops with [ctxlen:-1].
    for (int max_tokens : {0, 1}) {
      auto [status, r] = s.post("/v1/completions", json{{"prompt", prompts},
                                                        {"max_tokens", max_tokens},
                                                        {"echo", true},
                                                        {"logprobs", 1},
                                                        {"temperature", 0},
                                                        {"seed", 1234}});
      ASSERT_EQ(status, 200) << r.dump();
      ASSERT_EQ(r["choices"].size(), it.choices.size());
      std::vector<double> ll(it.choices.size());
      for (const auto& ch : r["choices"]) {
        const size_t c = ch["index"];
        const json& lp = ch["logprobs"]["token_logprobs"];
        ASSERT_EQ(lp.size(), pairs[c].ids.size() + size_t(max_tokens)) << "item " << i << " choice " << c;
        ASSERT_GE(pairs[c].ctxlen, 1u);
        for (size_t t = pairs[c].ctxlen; t < pairs[c].ids.size(); ++t) ll[c] += lp[t].get<double>();
        EXPECT_NEAR(ll[c], mc["results"][i]["loglik"][c].get<double>(), 1e-4)
            << "item " << i << " choice " << c << " max_tokens " << max_tokens;
      }
      // acc and acc_norm as the harness computes them: argmax of ll, and of ll / len(choice) (the
      // sample task is ASCII, so characters are bytes).
      size_t best = 0, best_norm = 0;
      for (size_t c = 1; c < ll.size(); ++c) {
        if (ll[c] > ll[best]) best = c;
        if (ll[c] / double(it.choices[c].size()) > ll[best_norm] / double(it.choices[best_norm].size())) best_norm = c;
      }
      EXPECT_EQ(mc["results"][i]["pred"], best) << "item " << i;
      EXPECT_EQ(mc["results"][i]["pred_norm"], best_norm) << "item " << i;
      if (max_tokens == 0) {
        acc += best == size_t(it.label);
        acc_norm += best_norm == size_t(it.label);
      }
    }
  }
  EXPECT_DOUBLE_EQ(mc["acc"].get<double>(), double(acc) / double(items.size()));
  EXPECT_DOUBLE_EQ(mc["acc_norm"].get<double>(), double(acc_norm) / double(items.size()));
}

// What the harness's remote tokenizer asks: the special tokens' strings, the ids of a text without
// special tokens added, the text of ids.
std::vector<int32_t> remote_encode(const test::ServeProcess& s, const std::string& text) {
  auto [status, r] = s.post("/tokenize", json{{"prompt", text}, {"add_special_tokens", false}});
  EXPECT_EQ(status, 200) << r.dump();
  EXPECT_EQ(r["count"], r["tokens"].size());
  return r["tokens"].get<std::vector<int32_t>>();
}

TEST(ServeEval, TokenizerRoutesGiveTheModelsTokenizer) {
  REQUIRE_FIXTURES();
  const std::string dir = test::temp_dir("serve_tok");
  struct Case {
    std::string model, bos, eos;
  } cases[] = {{bpe_model_dir(dir + "/bpe"), "", "<|endoftext|>"},
               {fixture_model_dir(dir + "/sp", "sp_tiny/tokenizer.model", 2000), "<s>", "</s>"}};
  const std::vector<Item> items = read_items(kTasks);
  for (const auto& c : cases) {
    auto tok = load_tokenizer(c.model);
    test::ServeProcess s(c.model, {});
    ASSERT_GT(s.port, 0) << s.log();
    auto info = s.client().Get("/tokenizer_info");
    ASSERT_TRUE(info);
    ASSERT_EQ(info->status, 200);
    const json j = json::parse(info->body);
    // The harness takes the routes for a tokenizer only when "eos_token" is there (null or not).
    ASSERT_TRUE(j.contains("eos_token")) << j.dump();
    EXPECT_EQ(j["eos_token"], c.eos) << c.model;
    EXPECT_EQ(j["bos_token"], c.bos.empty() ? json(nullptr) : json(c.bos)) << c.model;
    // It finds the special ids by encoding their strings.
    EXPECT_EQ(remote_encode(s, c.eos), std::vector<int32_t>{*tok->eos_id()}) << c.model;
    if (!c.bos.empty()) {
      EXPECT_EQ(remote_encode(s, c.bos), std::vector<int32_t>{*tok->bos_id()}) << c.model;
    }
    // Every context and continuation pair of the sample task tokenizes as here (and as eval mc).
    for (const auto& it : items)
      for (const auto& ch : it.choices) {
        const Pair local = encode_pair(*tok, it.context, " " + ch);
        EXPECT_EQ(remote_encode(s, it.context + " " + ch), local.ids) << it.context << " " << ch;
        EXPECT_EQ(remote_encode(s, it.context).size(), local.ctxlen) << it.context;
        auto [ds, d] = s.post("/detokenize", json{{"tokens", local.ids}});
        ASSERT_EQ(ds, 200) << d.dump();
        EXPECT_EQ(d["prompt"], tok->decode(local.ids));
      }
    // vLLM's default adds the BOS (when there is one).
    auto [as, a] = s.post("/tokenize", json{{"prompt", "The sun"}});
    ASSERT_EQ(as, 200) << a.dump();
    std::vector<int32_t> want = tok->encode("The sun");
    if (tok->bos_id()) want.insert(want.begin(), *tok->bos_id());
    EXPECT_EQ(a["tokens"].get<std::vector<int32_t>>(), want) << c.model;
    // Bad requests: a clear 400, and the server goes on.
    for (const auto& [path, body, message] : std::vector<std::tuple<std::string, std::string, std::string>>{
             {"/tokenize", R"({"text": "x"})", "'prompt' must be a string"},
             {"/tokenize", R"({"prompt": "x", "add_special_tokens": 1})", "'add_special_tokens' must be a boolean"},
             {"/tokenize", "{oops", "not valid JSON"},
             {"/detokenize", R"({"tokens": [1, "a"]})", "'tokens' must be a list of token ids"},
             {"/detokenize", R"({"tokens": [99999]})", "token id 99999, outside the vocabulary"}}) {
      auto [status, r] = s.post(path, body);
      EXPECT_EQ(status, 400) << path << " " << body;
      EXPECT_NE(r["error"]["message"].get<std::string>().find(message), std::string::npos) << r.dump();
    }
    EXPECT_EQ(remote_encode(s, "ok"), tok->encode("ok"));
  }
  // A byte-level model has no special tokens: "eos_token" is null.
  test::ServeProcess s(test::serve_model_dir("serve_tok_bytes"), {});
  ASSERT_GT(s.port, 0) << s.log();
  auto info = s.client().Get("/tokenizer_info");
  ASSERT_TRUE(info);
  const json j = json::parse(info->body);
  ASSERT_TRUE(j.contains("eos_token")) << j.dump();
  EXPECT_TRUE(j["eos_token"].is_null());
  EXPECT_EQ(remote_encode(s, "Hi"), (std::vector<int32_t>{72, 105}));
}

}  // namespace
