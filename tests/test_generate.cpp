// Generation: greedy output agrees with the one-pass forward's argmax, seeds reproduce, stop strings
// cut the text (streamed pieces included), turns of a conversation continue the same state, and the
// `sambalm generate` command: JSON output, state files and clear errors for bad input.
#include <atomic>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "infer/generator.h"
#include "infer/state_file.h"
#include "io/model_dir.h"
#include "model/model.h"
#include "model/weights.h"
#include "testing.h"

using namespace sambalm;

namespace {

int32_t argmax(const float* l, int64_t n) { return int32_t(std::max_element(l, l + n) - l); }

// A random Samba model over bytes (vocab 256), for text tests.
struct ByteModel {
  ModelConfig cfg;
  ParamStore store;
  std::unique_ptr<Tokenizer> tok = make_bytes_tokenizer();
  std::unique_ptr<DecodeModel> dm;
  ByteModel() {
    cfg.name = "gen_bytes";
    cfg.n_layer = 2;
    cfg.n_embd = 32;
    cfg.n_head = 4;
    cfg.n_query_groups = 4;
    cfg.head_size = 8;
    cfg.intermediate_size = 64;
    cfg.vocab_size = 256;
    cfg.padded_vocab_size = 256;
    cfg.local_window = 4;
    cfg.mb_per_layer = 2;
    cfg.mamba_init = true;
    cfg.d_state = 4;
    store = ParamStore(param_specs(cfg));
    std::mt19937_64 rng(9);
    std::normal_distribution<float> nd(0.0f, 0.5f);
    for (auto& e : store.entries())
      for (int64_t i = 0; i < e.numel(); ++i)
        store.data()[e.offset + i] = e.name.find("A_log") != std::string::npos ? 0.5f : nd(rng);
    dm = std::make_unique<DecodeModel>(cfg, store.entries(), store.data(), DecodeOptions{.slots = 4});
  }
};

GenerationResult gen1(Generator& g, Session& s, const std::vector<int32_t>& prompt, const GenerateOptions& o,
                      std::string* streamed = nullptr) {
  std::vector<Session*> ss = {&s};
  auto r = g.run(ss, {prompt}, o, [&](size_t, std::string_view t) {
    if (streamed) streamed->append(t);
  });
  return r[0];
}

}  // namespace

TEST(Generate, GreedyIsTheForwardArgmax) {
  REQUIRE_FIXTURES();
  LoadedModel lm = load_model(test::fixtures_dir() + "/samba_tiny");
  DecodeOptions dopt;
  dopt.chunk = 5;
  dopt.slots = 4;
  DecodeModel dm(lm.config, lm.params.entries(), lm.params.data(), dopt);
  Generator g(dm, nullptr);
  GenerateOptions o;
  o.sampling.temperature = 0;
  o.max_tokens = 20;  // prompt 7 + 20: past 3 windows of 8
  std::vector<int32_t> prompt = {5, 17, 3, 90, 42, 8, 1};
  Session s = g.new_session();
  auto r = gen1(g, s, prompt, o);
  ASSERT_EQ(r.ids.size(), 20u);
  EXPECT_EQ(r.stop_reason, "max_tokens");
  std::vector<int32_t> seq = prompt;
  seq.insert(seq.end(), r.ids.begin(), r.ids.end());
  Model<float> model(lm.config, lm.params.entries());
  model.forward(lm.params.data(), seq.data(), nullptr, 1, int64_t(seq.size()));
  const int64_t V = lm.config.padded_vocab_size;
  for (size_t t = 0; t < r.ids.size(); ++t)
    EXPECT_EQ(r.ids[t], argmax(model.logits() + (prompt.size() - 1 + t) * V, lm.config.vocab_size)) << "token " << t;
}

TEST(Generate, SameSeedSameText) {
  ByteModel m;
  Generator g(*m.dm, m.tok.get());
  GenerateOptions o;
  o.sampling.temperature = 1.0;
  o.sampling.top_k = 0;
  o.sampling.top_p = 0.95;
  o.max_tokens = 24;
  o.stop_at_eos = false;
  auto run = [&](uint64_t seed) {
    o.sampling.seed = seed;
    Session s = g.new_session();
    return gen1(g, s, g.encode("hello", false), o);
  };
  auto a = run(7), b = run(7), c = run(8);
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(a.text, b.text);
  EXPECT_NE(a.ids, c.ids);
}

TEST(Generate, StopStringsCutTheTextAndTheStream) {
  ByteModel m;
  Generator g(*m.dm, m.tok.get());
  GenerateOptions o;
  o.sampling.temperature = 1.0;
  o.sampling.top_k = 0;
  o.sampling.seed = 3;
  o.max_tokens = 40;
  o.stop_at_eos = false;
  std::vector<int32_t> prompt = g.encode("abc", false);
  Session s0 = g.new_session();
  std::string streamed0;
  auto full = gen1(g, s0, prompt, o, &streamed0);
  EXPECT_EQ(full.stop_reason, "max_tokens");
  EXPECT_EQ(streamed0, full.text);
  ASSERT_GE(full.text.size(), 12u);
  const std::string stop = full.text.substr(8, 3);
  const size_t at = full.text.find(stop);
  o.stop = {"\x01\x02\x03 never", stop};
  Session s1 = g.new_session();
  std::string streamed1;
  auto cut = gen1(g, s1, prompt, o, &streamed1);
  EXPECT_EQ(cut.stop_reason, "stop");
  EXPECT_EQ(cut.text, full.text.substr(0, at));
  EXPECT_EQ(streamed1, cut.text);  // the stream never showed any of the stop string
  EXPECT_EQ(std::vector<int32_t>(full.ids.begin(), full.ids.begin() + cut.ids.size()), cut.ids);
}

TEST(Generate, EosStops) {
  ByteModel m;
  Generator g(*m.dm, m.tok.get());
  GenerateOptions o;
  o.sampling.temperature = 0;
  o.max_tokens = 30;
  Session s0 = g.new_session();
  auto full = gen1(g, s0, {1, 2}, o);
  o.eos_id = full.ids[5];
  Session s1 = g.new_session();
  auto r = gen1(g, s1, {1, 2}, o);
  EXPECT_EQ(r.stop_reason, "eos");
  const size_t first = std::find(full.ids.begin(), full.ids.end(), o.eos_id) - full.ids.begin();
  EXPECT_EQ(r.ids.size(), first + 1);
}

TEST(Generate, TurnsContinueTheSameState) {
  // Turn 1 then turn 2 on one session = one fresh run over (prompt 1, reply 1, prompt 2).
  ByteModel m;
  Generator g(*m.dm, m.tok.get());
  GenerateOptions o;
  o.sampling.temperature = 0;
  o.max_tokens = 6;
  o.stop_at_eos = false;
  Session s = g.new_session();
  auto p1 = g.encode("one ", false), p2 = g.encode("two ", false);
  auto r1 = gen1(g, s, p1, o);
  auto r2 = gen1(g, s, p2, o);
  std::vector<int32_t> all = p1;
  all.insert(all.end(), r1.ids.begin(), r1.ids.end());
  all.insert(all.end(), p2.begin(), p2.end());
  Session fresh = g.new_session();
  auto r = gen1(g, fresh, all, o);
  EXPECT_EQ(r.ids, r2.ids);
  EXPECT_EQ(s.state.pos() + int64_t(s.pending.size()), int64_t(s.history.size()));
}

TEST(Generate, BadPromptsAreErrors) {
  ByteModel m;
  Generator g(*m.dm, m.tok.get());
  GenerateOptions o;
  o.max_prompt_tokens = 4;
  Session s = g.new_session();
  EXPECT_THROW(gen1(g, s, {}, o), Error);
  EXPECT_THROW(gen1(g, s, {1, 2, 3, 4, 5}, o), Error);
  EXPECT_THROW(gen1(g, s, {1, 256}, o), Error);
  EXPECT_EQ(s.state.pos(), 0);
}

TEST(Generate, InterruptKeepsWhatWasGenerated) {
  // The flag (set by the CLI's SIGINT handler) ends every sequence after its current token.
  ByteModel m;
  Generator g(*m.dm, m.tok.get());
  GenerateOptions o;
  o.sampling.temperature = 0;
  o.max_tokens = 50;
  o.stop_at_eos = false;
  std::atomic<bool> stop{false};
  o.interrupt = &stop;
  Session a = g.new_session(), b = g.new_session();
  std::vector<Session*> ss = {&a, &b};
  int calls = 0;
  auto r = g.run(ss, {{1, 2}, {3}}, o, [&](size_t, std::string_view) {
    if (++calls == 3) stop.store(true);
  });
  for (const auto& x : r) {
    EXPECT_EQ(x.stop_reason, "interrupted");
    EXPECT_GT(x.ids.size(), 0u);
    EXPECT_LT(x.ids.size(), 50u);
  }
  EXPECT_EQ(a.pending.size(), 1u);  // the last token stays pending, as for any other stop
}

TEST(Generate, NonFiniteLogitsAreAnError) {
  ByteModel m;
  for (auto& e : m.store.entries())
    if (e.name.rfind("final_norm", 0) == 0) std::fill_n(m.store.data() + e.offset, e.numel(), 1e38f);
  Generator g(*m.dm, m.tok.get());
  GenerateOptions o;
  Session s = g.new_session();
  EXPECT_THROW(gen1(g, s, {1, 2}, o), Error);
}

TEST(Generate, FullAttentionCacheIsCheckedFirst) {
  ByteModel m;
  m.cfg.local_window = -1;
  m.cfg.block_size = 16;
  DecodeModel dm(m.cfg, m.store.entries(), m.store.data(), DecodeOptions{.slots = 2});
  Generator g(dm, m.tok.get());
  GenerateOptions o;
  o.max_tokens = 14;  // 3 + 13 fed = 16: fits exactly
  Session s = g.new_session();
  EXPECT_EQ(gen1(g, s, {1, 2, 3}, o).ids.size(), 14u);
  o.max_tokens = 15;
  Session t = g.new_session();
  try {
    gen1(g, t, {1, 2, 3}, o);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--max-context"), std::string::npos) << e.what();
  }
  EXPECT_EQ(t.state.pos(), 0);  // refused before any work
}

// ---- The command ------------------------------------------------------------------------------

TEST(GenerateCli, JsonMatchesTheLibraryAndStatesResume) {
  REQUIRE_FIXTURES();
  const std::string model = test::fixtures_dir() + "/samba_tiny";
  std::string out;
  ASSERT_EQ(test::run_cli("generate -m " + model + " --prompt-ids 5,17,3 -n 12 --json -q", &out), 0) << out;
  auto j = nlohmann::json::parse(out);
  auto ids = j["results"][0]["ids"].get<std::vector<int32_t>>();
  ASSERT_EQ(ids.size(), 12u);
  EXPECT_EQ(j["results"][0]["stop_reason"], "max_tokens");
  EXPECT_EQ(j["stats"]["generated_tokens"], 12);

  // Same with the library.
  LoadedModel lm = load_model(model);
  DecodeModel dm(lm.config, lm.params.entries(), lm.params.data(), DecodeOptions{.slots = 4});
  Generator g(dm, nullptr);
  GenerateOptions o;
  o.sampling.top_k = 1;
  o.max_tokens = 12;
  Session s = g.new_session();
  EXPECT_EQ(gen1(g, s, {5, 17, 3}, o).ids, ids);

  // 5 tokens, save, resume with the 6th onwards: the same 12 ids (greedy).
  const std::string dir = test::temp_dir("gen_cli");
  ASSERT_EQ(
      test::run_cli("generate -m " + model + " --prompt-ids 5,17,3 -n 5 --json -q --save-state " + dir + "/a.st", &out),
      0)
      << out;
  auto first = nlohmann::json::parse(out)["results"][0]["ids"].get<std::vector<int32_t>>();
  // Resuming with the last generated id as the prompt continues the sequence.
  ASSERT_EQ(test::run_cli("generate -m " + model + " --load-state " + dir + "/a.st --prompt-ids " +
                              std::to_string(ids[5]) + " -n 6 --json -q",
                          &out),
            0)
      << out;
  auto rest = nlohmann::json::parse(out)["results"][0]["ids"].get<std::vector<int32_t>>();
  std::vector<int32_t> joined = first;
  joined.push_back(ids[5]);
  joined.insert(joined.end(), rest.begin(), rest.end());
  EXPECT_EQ(std::vector<int32_t>(joined.begin(), joined.begin() + 12), ids);
}

TEST(GenerateCli, BadInputIsAClearError) {
  REQUIRE_FIXTURES();
  const std::string samba = test::fixtures_dir() + "/samba_tiny", mamba = test::fixtures_dir() + "/mamba_tiny";
  const std::string dir = test::temp_dir("gen_bad");
  std::string out;
  EXPECT_NE(test::run_cli("generate -m " + samba + " --prompt-ids '' -q", &out), 0);
  EXPECT_NE(out.find("empty"), std::string::npos) << out;
  EXPECT_NE(test::run_cli("generate -m " + samba + " --prompt-ids 1,2,3 --max-prompt 2 -q", &out), 0);
  EXPECT_NE(out.find("more than the limit"), std::string::npos) << out;
  EXPECT_NE(test::run_cli("generate -m " + samba + " --prompt-ids 1,999 -q", &out), 0);
  EXPECT_NE(out.find("outside the vocabulary"), std::string::npos) << out;
  EXPECT_NE(test::run_cli("generate -m " + samba + " --prompt-ids 1,x -q", &out), 0);
  EXPECT_NE(out.find("not a token id"), std::string::npos) << out;
  EXPECT_NE(test::run_cli("generate -m " + samba + " -p hello -q", &out), 0);  // no tokenizer beside the fixture
  EXPECT_NE(out.find("tokenizer"), std::string::npos) << out;
  ASSERT_EQ(test::run_cli("generate -m " + samba + " --prompt-ids 1,2 -n 2 -q --save-state " + dir + "/s.st", &out), 0)
      << out;
  EXPECT_NE(test::run_cli("generate -m " + mamba + " --load-state " + dir + "/s.st --prompt-ids 1 -q", &out), 0);
  EXPECT_NE(out.find("another model"), std::string::npos) << out;
  EXPECT_NE(test::run_cli("generate -m " + samba + " --prompt-ids 1 --temperature -1 -q", &out), 0);
  EXPECT_NE(out.find("temperature"), std::string::npos) << out;
}

TEST(GenerateCli, InteractiveKeepsTheStateBetweenTurns) {
  // Turns typed on stdin: each continues the same state (= the library's turns on one session), a
  // turn that fails leaves the state as it was, /save writes the whole conversation, /reset forgets it.
  ByteModel m;
  const std::string dir = test::temp_dir("gen_interactive");
  save_model_dir(dir + "/model", m.cfg, m.store);
  std::ofstream(dir + "/in.txt") << "one \nthis line is far too long\ntwo \n/save " << dir
                                 << "/chat.st\n/reset\none \n/quit\n";
  const std::string cmd = std::string(SAMBALM_CLI_PATH) + " generate -m " + dir +
                          "/model --tokenizer bytes -i -n 6 --temperature 0 --ignore-eos --max-prompt 8 < " + dir +
                          "/in.txt > " + dir + "/out.txt 2> " + dir + "/err.txt";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream err_in(dir + "/err.txt");
  const std::string err((std::istreambuf_iterator<char>(err_in)), std::istreambuf_iterator<char>());
  EXPECT_NE(err.find("more than the limit"), std::string::npos) << err;  // the long line, reported, not fatal

  Generator g(*m.dm, m.tok.get());
  GenerateOptions o;
  o.sampling.temperature = 0;
  o.max_tokens = 6;
  o.stop_at_eos = false;
  Session s = g.new_session(), fresh = g.new_session();
  std::string t1, t2, t3;
  auto p1 = g.encode("one \n", false), p2 = g.encode("two \n", false);
  auto r1 = gen1(g, s, p1, o, &t1);
  auto r2 = gen1(g, s, p2, o, &t2);
  gen1(g, fresh, p1, o, &t3);
  std::ifstream in(dir + "/out.txt");
  const std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(out, t1 + "\n" + t2 + "\n" + t3 + "\n");

  // The saved state holds both turns and continues like the live session.
  std::vector<int32_t> all = p1;
  all.insert(all.end(), r1.ids.begin(), r1.ids.end());
  all.insert(all.end(), p2.begin(), p2.end());
  all.insert(all.end(), r2.ids.begin(), r2.ids.end());
  Session loaded = g.new_session();
  load_decode_state(dir + "/chat.st", *m.dm, loaded.state, loaded.history, &loaded.pending);
  EXPECT_EQ(loaded.history, all);
  // The last reply's last token is kept pending (not yet fed), as in the live session.
  EXPECT_EQ(loaded.pending, std::vector<int32_t>{all.back()});
  EXPECT_EQ(loaded.state.pos(), int64_t(all.size()) - 1);
  auto p3 = g.encode("three \n", false);
  EXPECT_EQ(gen1(g, loaded, p3, o).ids, gen1(g, s, p3, o).ids);
}
