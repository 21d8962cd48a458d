// `sambalm serve` scoring a multiple-choice task the way lm-evaluation-harness's `local-completions`
// does, against `sambalm eval mc` on the same task and model: the per-choice log-likelihoods (summed
// echoed logprobs of the continuation tokens) agree within 1e-4, and so do acc and acc_norm.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "serve_testing.h"

using namespace sambalm;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A random 2-block Samba over the bpe_tiny fixture tokenizer (vocab 3000), so that contexts and
// choices are several-byte tokens as with a real model.
std::string bpe_model_dir(const std::string& dir) {
  test::SambaShape sh;
  sh.n_layer = 2;
  sh.vocab = 3000;
  sh.padded = 3008;
  sh.window = 4;
  ModelConfig cfg = test::small_samba("serve_eval", sh);
  ParamStore store(param_specs(cfg));
  test::fill_random_params(store, 5);
  save_model_dir(dir, cfg, store);
  fs::copy_file(test::fixtures_dir() + "/bpe_tiny/tokenizer.json", dir + "/tokenizer.json",
                fs::copy_options::overwrite_existing);
  return dir;
}

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

TEST(ServeEval, EchoLogprobsEqualEvalMcLoglikelihoods) {
  REQUIRE_FIXTURES();
  const std::string dir = test::temp_dir("serve_eval");
  const std::string model = bpe_model_dir(dir + "/model");
  const std::string tasks = std::string(SAMBALM_SOURCE_DIR) + "/data/tasks/sample_mc.jsonl";

  std::string out;
  ASSERT_EQ(test::run_cli("eval mc -q --json -m " + model + " --tasks " + tasks, &out), 0) << out;
  const json mc = json::parse(out);

  std::vector<Item> items;
  std::istringstream lines(read_all(tasks));
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    const json e = json::parse(line);
    items.push_back({e["context"], e["choices"].get<std::vector<std::string>>(), e["label"]});
  }
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

}  // namespace
