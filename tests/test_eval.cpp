// The evaluation library: passkey prompts (length, key, depth) for the three tokenizer kinds, the
// perplexity windows (each token scored once), the multiple-choice pair encoding, and the scorer
// against the one-pass forward.
#include <cmath>
#include <set>

#include "eval/multiple_choice.h"
#include "eval/passkey.h"
#include "eval/perplexity.h"
#include "eval/scorer.h"
#include "model/model.h"
#include "model/weights.h"
#include "ops/ops.h"
#include "testing.h"

using namespace sambalm;

namespace {

const char* kKeyLine = "The pass key is ";
const char* kQuestion = "What is the pass key? The pass key is";

int64_t ntok(const Tokenizer& tok, const std::string& s) { return int64_t(tok.encode(s).size()); }

TEST(EvalPasskey, PromptsHoldTheKeyAtTheDepthAndReachTheLength) {
  REQUIRE_FIXTURES();
  std::vector<std::unique_ptr<Tokenizer>> toks;
  toks.push_back(make_bytes_tokenizer());
  toks.push_back(load_tokenizer(test::fixtures_dir() + "/bpe_tiny/tokenizer.json"));
  toks.push_back(load_tokenizer(test::fixtures_dir() + "/sp_tiny"));
  for (const auto& tok : toks)
    for (int64_t L : {1000, 4096, 20000})
      for (double depth : {0.0, 0.1, 0.5, 0.9, 1.0}) {
        SCOPED_TRACE(tok->kind() + " length " + std::to_string(L) + " depth " + std::to_string(depth));
        const std::string key = passkey_key(7, 0, 0, int64_t(L));
        const PasskeyPrompt p = make_passkey_prompt(*tok, L, depth, key);
        // The length: the text's own tokens, at most L and within 1% of it.
        const int64_t n = ntok(*tok, p.text);
        EXPECT_EQ(n, int64_t(p.ids.size()));
        EXPECT_LE(n, L);
        EXPECT_GE(double(n), 0.99 * double(L));
        // The key line once, with the key; the question last.
        const std::string line = kKeyLine + key + ". Remember it. " + key + " is the pass key.";
        const size_t at = p.text.find(line);
        ASSERT_NE(at, std::string::npos);
        EXPECT_EQ(p.text.find(kKeyLine, at + 1), std::string::npos);
        ASSERT_GE(p.text.size(), std::string(kQuestion).size());
        EXPECT_EQ(p.text.substr(p.text.size() - std::string(kQuestion).size()), kQuestion);
        // The depth, measured in tokens over the filler (between the intro line and the question).
        const int64_t begin = ntok(*tok, p.text.substr(0, p.text.find('\n') + 1));
        const int64_t end = ntok(*tok, p.text.substr(0, p.text.rfind('\n') + 1));
        const int64_t key_at = ntok(*tok, p.text.substr(0, at)), key_len = ntok(*tok, line + "\n");
        const double measured = double(key_at - begin) / double(end - begin - key_len);
        // The key goes at a sentence end: at most half a sentence (the longest: 8 tokens here) off.
        EXPECT_NEAR(measured, depth, 12.0 / double(end - begin - key_len) + 1e-9);
      }
}

TEST(EvalPasskey, KeysAndAnswers) {
  EXPECT_EQ(passkey_key(3, 1, 2, 4), passkey_key(3, 1, 2, 4));
  EXPECT_NE(passkey_key(3, 1, 2, 4), passkey_key(3, 1, 2, 5));
  EXPECT_EQ(passkey_key(3, 1, 2, 4).size(), 5u);
  EXPECT_TRUE(passkey_correct(" 12345. Remember", "12345"));
  EXPECT_FALSE(passkey_correct(" 123456", "12345"));
  EXPECT_FALSE(passkey_correct(" 54321 12345", "12345"));
  EXPECT_FALSE(passkey_correct(" none", "12345"));
  auto tok = make_bytes_tokenizer();
  EXPECT_THROW(make_passkey_prompt(*tok, 100, 0.5, "12345"), Error);  // too short for the fixed lines
  EXPECT_THROW(make_passkey_prompt(*tok, 1000, 1.5, "12345"), Error);
}

TEST(EvalPerplexity, EveryTokenIsScoredOnce) {
  for (int64_t S : {1, 3, 4, 10}) {
    const int64_t n = 57, L = 10;
    const auto w = perplexity_windows(n, L, S, 0);
    std::vector<int> seen(size_t(n), 0);
    for (const auto& x : w) {
      EXPECT_LE(x.start + L + 1, n);
      for (int64_t t = x.first_target; t <= L; ++t) seen[size_t(x.start + t)] += 1;
      if (&x != &w[0]) {
        EXPECT_EQ(x.first_target, 1 + L - S);
      }
    }
    // Targets 1 .. last window's end are scored exactly once.
    const int64_t last = w.back().start + L;
    for (int64_t t = 0; t < n; ++t) EXPECT_EQ(seen[size_t(t)], t >= 1 && t <= last ? 1 : 0) << "S " << S << " t " << t;
    EXPECT_EQ(int64_t(w.size()), (n - L - 1) / S + 1);
  }
  EXPECT_EQ(perplexity_windows(100, 10, 10, 3).size(), 3u);
  EXPECT_THROW(perplexity_windows(10, 10, 10, 0), Error);  // a window needs L + 1 tokens
  EXPECT_THROW(perplexity_windows(100, 10, 11, 0), Error);
}

TEST(EvalMultipleChoice, PairsAreEncodedAsTheHarnessDoes) {
  auto tok = make_bytes_tokenizer();
  // Trailing spaces of the context move to the continuation.
  McRequest r = mc_encode(*tok, "Q: a ", "b");
  EXPECT_EQ(r.context_tokens, 4);
  EXPECT_EQ(tok->decode(r.ids), "Q: a b");
  EXPECT_THROW(mc_encode(*tok, "", "b"), Error);  // an empty context needs a BOS/EOS token
  std::vector<McItem> items(4);
  for (size_t i = 0; i < items.size(); ++i) items[i] = {"c" + std::to_string(i), {"x", "y"}, int64_t(i % 2), " "};
  const std::string ctx = mc_fewshot_context(items, 1, 2, 9);
  EXPECT_EQ(ctx, mc_fewshot_context(items, 1, 2, 9));
  EXPECT_EQ(ctx.substr(ctx.size() - 4), "\n\nc1");
  EXPECT_EQ(ctx.find("c1 "), std::string::npos);  // never the item itself
  EXPECT_EQ(std::count(ctx.begin(), ctx.end(), '\n'), 4);
}

// The scorer (chunked prefill, any chunk) equals the one-pass training forward's per-token losses.
TEST(EvalScorer, EqualsTheOnePassForward) {
  test::SambaShape sh;
  sh.n_layer = 4;
  sh.window = 4;
  ModelConfig cfg = test::small_samba("eval_scorer", sh);
  ParamStore store(param_specs(cfg));
  test::fill_random_params(store, 11);
  const int64_t n = 17, V = cfg.padded_vocab_size;
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = int32_t((i * 7 + 3) % cfg.vocab_size);
  Model<float> model(cfg, store.entries());
  model.forward(store.data(), ids.data(), nullptr, 1, n - 1);
  std::vector<float> expect(size_t(n - 1));
  ops::cross_entropy_forward_backward(cpu_context(), static_cast<float*>(nullptr), expect.data(), model.logits(),
                                      ids.data() + 1, n - 1, V, 1.0);
  for (int64_t chunk : {1, 3, 16}) {
    DecodeOptions o;
    o.chunk = chunk;
    DecodeModel dm(cfg, store.entries(), store.data(), o);
    Scorer s(dm);
    for (int64_t first : {1, 6}) {
      std::vector<float> got(size_t(n - first));
      const double sum = s.score(ids.data(), n, first, got.data());
      double want = 0;
      for (int64_t t = first; t < n; ++t) {
        EXPECT_NEAR(got[size_t(t - first)], expect[size_t(t - 1)], 1e-5 * std::abs(expect[size_t(t - 1)]))
            << "chunk " << chunk << " t " << t;
        want += expect[size_t(t - 1)];
      }
      EXPECT_NEAR(sum, want, 1e-5 * want);
    }
  }
}

}  // namespace
