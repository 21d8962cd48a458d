// DecodeState: constant size whatever the position, allocation-free decode steps, RoPE at far
// positions, and state files (round trip, and every kind of bad file refused with a clear error).
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "count_allocations.h"
#include "infer/decode_model.h"
#include "infer/state_file.h"
#include "ops/ops.h"
#include "testing.h"

using namespace sambalm;

namespace {

ModelConfig samba_cfg(int64_t d = 32) {
  return test::small_samba("state_samba",
                           {.d = d, .groups = 2, .head_size = d / 4, .mlp = 2 * d, .window = 8, .d_state = 8});
}

struct Fixture {
  ModelConfig cfg;
  ParamStore store;
  std::unique_ptr<DecodeModel> dm;
  explicit Fixture(const ModelConfig& c, uint64_t seed = 1) : cfg(c), store(param_specs(c)) {
    test::fill_random_params(store, seed);
    dm = std::make_unique<DecodeModel>(cfg, store.entries(), store.data(), DecodeOptions{.slots = 4});
  }
};

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> v(n);
  for (auto& t : v) t = int32_t(rng() % vocab);
  return v;
}

}  // namespace

TEST(DecodeState, SizeDoesNotDependOnPosition) {
  Fixture f(samba_cfg());
  DecodeState st = f.dm->new_state();
  // Two Mamba layers: conv (K-1) x di + ssm di x N; two window-8 attention layers: k and v, G x 8 x hs.
  const int64_t di = 64, per_mamba = 3 * di + di * 8, per_attn = 2 * 2 * 8 * 8;
  EXPECT_EQ(st.floats(), 2 * per_mamba + 2 * per_attn);
  const int64_t bytes0 = st.bytes(), scratch0 = f.dm->scratch_bytes();
  auto ids = random_ids(1000, 50, 3);
  f.dm->prefill(st, ids.data(), 1000, nullptr, nullptr);
  EXPECT_EQ(st.pos(), 1000);
  EXPECT_EQ(st.bytes(), bytes0);
  EXPECT_EQ(f.dm->scratch_bytes(), scratch0);  // a long prompt: chunked, same scratch
}

TEST(DecodeState, StepsDoNotAllocate) {
  Fixture f(samba_cfg());
  std::vector<DecodeState> states;
  for (int i = 0; i < 3; ++i) states.push_back(f.dm->new_state());
  std::vector<DecodeState*> ptrs = {&states[0], &states[1], &states[2]};
  auto ids = random_ids(40, 50, 4);
  f.dm->prefill(states[1], ids.data(), 40, nullptr, nullptr);
  std::vector<float> logits(3 * 64);
  std::vector<int32_t> tok = {1, 2, 3};
  f.dm->step(ptrs.data(), 3, tok.data(), logits.data());  // sizes the batch scratch once
  const int64_t scratch = f.dm->scratch_bytes();
  {
    test::CountAllocations c;
    for (int i = 0; i < 50; ++i) f.dm->step(ptrs.data(), 1 + i % 3, tok.data(), logits.data());
    EXPECT_EQ(c.count(), 0);
  }
  {
    test::CountAllocations c;  // the counter does see allocations
    auto probe = std::make_unique<std::vector<int>>(10);
    EXPECT_GE(c.count(), 1);
  }
  EXPECT_EQ(f.dm->scratch_bytes(), scratch);
}

TEST(DecodeState, PrefillDoesNotAllocate) {
  // Chunked prefill runs in the scratch sized at construction: no allocation per chunk, so a prompt
  // of any length prefills in the same memory.
  Fixture f(samba_cfg());
  DecodeState st = f.dm->new_state();
  auto ids = random_ids(3000, 50, 6);
  f.dm->prefill(st, ids.data(), 10, nullptr, nullptr);
  test::CountAllocations c;
  f.dm->prefill(st, ids.data() + 10, 2990, nullptr, nullptr);
  c.stop();
  EXPECT_EQ(c.count(), 0);
}

TEST(DecodeState, FileRoundTripResumesExactly) {
  Fixture f(samba_cfg());
  const std::string dir = test::temp_dir("state");
  auto ids = random_ids(30, 50, 5);
  DecodeState a = f.dm->new_state();
  f.dm->prefill(a, ids.data(), 20, nullptr, nullptr);
  std::vector<int32_t> hist(ids.begin(), ids.begin() + 20);
  save_decode_state(dir + "/s.state", *f.dm, a, hist);
  DecodeState b = f.dm->new_state();
  std::vector<int32_t> hist_b;
  load_decode_state(dir + "/s.state", *f.dm, b, hist_b);
  EXPECT_EQ(b.pos(), 20);
  EXPECT_EQ(hist_b, hist);
  std::vector<float> la(64), lb(64);
  DecodeState *pa = &a, *pb = &b;
  for (int t = 20; t < 30; ++t) {
    f.dm->step(&pa, 1, &ids[t], la.data());
    f.dm->step(&pb, 1, &ids[t], lb.data());
    ASSERT_EQ(la, lb) << "position " << t;
  }
}

// A state saved with no token ids (a prefix fed without recording it, or a continued state) loads.
TEST(DecodeState, FileWithNoTokensLoads) {
  Fixture f(samba_cfg());
  const std::string path = test::temp_dir("state_empty") + "/s.state";
  DecodeState a = f.dm->new_state();
  std::vector<int32_t> ids = {1, 2, 3, 4};
  f.dm->prefill(a, ids.data(), 4, nullptr, nullptr);
  save_decode_state(path, *f.dm, a, {});
  DecodeState b = f.dm->new_state();
  std::vector<int32_t> toks = {9};
  load_decode_state(path, *f.dm, b, toks);
  EXPECT_EQ(b.pos(), 4);
  EXPECT_TRUE(toks.empty());
  std::vector<float> sa(size_t(a.floats())), sb(size_t(b.floats()));
  a.copy_out(sa.data());
  b.copy_out(sb.data());
  EXPECT_EQ(sa, sb);
}

namespace {
std::string read_all(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void write_all(const std::string& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }
// Re-seals a modified file with the FNV-1a checksum of docs/FORMATS.md.
void reseal(std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i + 8 < s.size(); ++i) h = (h ^ uint8_t(s[i])) * 0x100000001b3ull;
  std::memcpy(s.data() + s.size() - 8, &h, 8);
}
void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}
}  // namespace

TEST(DecodeState, BadFilesAreRefused) {
  Fixture f(samba_cfg());
  const std::string dir = test::temp_dir("state_bad");
  const std::string path = dir + "/s.state";
  DecodeState st = f.dm->new_state();
  std::vector<int32_t> hist = {5, 6, 7};
  f.dm->prefill(st, hist.data(), 3, nullptr, nullptr);
  save_decode_state(path, *f.dm, st, hist);
  const std::string good = read_all(path);
  DecodeState out = f.dm->new_state();
  std::vector<int32_t> toks;
  auto load = [&](const std::string& p, DecodeModel& m) {
    DecodeState s = m.new_state();
    load_decode_state(p, m, s, toks);
  };

  // Another architecture (wider model) and the same architecture with other weights.
  Fixture wide(samba_cfg(48));
  expect_error([&] { load(path, *wide.dm); }, "another model");
  Fixture other(samba_cfg(), 2);
  expect_error([&] { load(path, *other.dm); }, "other weights");

  // A token id outside the vocabulary (checksum made valid again so the id check is what fails).
  std::string bad = good;
  const size_t tok0 = good.size() - 8 - size_t(st.floats()) * 4 - 3 * 4;
  int32_t id = 1000;
  std::memcpy(bad.data() + tok0, &id, 4);
  reseal(bad);
  write_all(dir + "/ids.state", bad);
  expect_error([&] { load(dir + "/ids.state", *f.dm); }, "outside the model's vocabulary");

  // A flipped state byte: checksum.
  bad = good;
  bad[good.size() - 20] ^= 0x40;
  write_all(dir + "/flip.state", bad);
  expect_error([&] { load(dir + "/flip.state", *f.dm); }, "checksum");

  // Truncated, not a state file, missing.
  write_all(dir + "/trunc.state", good.substr(0, good.size() - 100));
  expect_error([&] { load(dir + "/trunc.state", *f.dm); }, "bytes");
  write_all(dir + "/junk.state", "hello world, not a state");
  expect_error([&] { load(dir + "/junk.state", *f.dm); }, "not a sambalm decode state");
  EXPECT_THROW(load(dir + "/missing.state", *f.dm), Error);

  // A token count whose byte size wraps around (2^62 tokens * 4 bytes = 2^64 = 0): the file has no
  // token bytes and the rest is exact, so only a count checked before it is multiplied refuses it
  // (it used to pass and size the ids vector from it).
  {
    uint32_t hlen = 0;
    std::memcpy(&hlen, good.data() + 12, 4);
    nlohmann::json h = nlohmann::json::parse(good.substr(16, hlen));
    h["n_tokens"] = int64_t(1) << 62;
    h["pos"] = int64_t(1) << 62;
    const std::string hs = h.dump();
    const uint32_t n = uint32_t(hs.size());
    std::string wrap = good.substr(0, 12) + std::string(reinterpret_cast<const char*>(&n), 4) + hs +
                       good.substr(16 + hlen + 3 * 4);  // the state and the checksum, no token ids
    reseal(wrap);
    write_all(dir + "/wrap.state", wrap);
    expect_error([&] { load(dir + "/wrap.state", *f.dm); }, "bytes");
  }

  // Header integers written as floats, one of them beyond int64's range (a fuzzer's find: the
  // conversion used to be undefined behaviour), and a count written as a string.
  for (const auto& [key, value] : std::vector<std::pair<const char*, nlohmann::json>>{
           {"pos", 5.44444e19}, {"n_pending", 1.5}, {"state_floats", "12"}}) {
    uint32_t hlen = 0;
    std::memcpy(&hlen, good.data() + 12, 4);
    nlohmann::json h = nlohmann::json::parse(good.substr(16, hlen));
    h[key] = value;
    const std::string hs = h.dump();
    const uint32_t n = uint32_t(hs.size());
    std::string typed = good.substr(0, 12) + std::string(reinterpret_cast<const char*>(&n), 4) + hs +
                        good.substr(16 + hlen);
    reseal(typed);
    write_all(dir + "/typed.state", typed);
    expect_error([&] { load(dir + "/typed.state", *f.dm); }, std::string("field '") + key + "' must be an integer");
  }

  // The good file still loads.
  load(path, *f.dm);
  EXPECT_EQ(toks, hist);
}
