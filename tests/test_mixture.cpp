// Weighted data mixtures (`--data a:0.7,b:0.3`): each source's share of 10,000 windows within 2% of
// its weight, the same seed the same stream, exact resume from the saved state (also through a
// checkpoint of `sambalm train`), and bad weights as errors naming the option.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "io/file.h"
#include "testing.h"
#include "train/data_loader.h"
#include "train/mixture.h"

namespace sambalm {
namespace {

namespace fs = std::filesystem;

// Source k holds ids in [100 k, 100 k + 100), so a window tells where it came from.
std::vector<MixtureSampler::Source> sources(const std::vector<double>& weights) {
  std::vector<MixtureSampler::Source> v;
  for (size_t k = 0; k < weights.size(); ++k) {
    std::vector<int32_t> ids(1000 + 37 * k);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(100 * k + (i * 13) % 100);
    v.push_back({"s" + std::to_string(k), weights[k], TokenSource::memory(ids, 1000, "s" + std::to_string(k))});
  }
  return v;
}

std::vector<std::pair<size_t, int64_t>> draw(MixtureSampler& m, int n) {
  std::vector<std::pair<size_t, int64_t>> v;
  for (int i = 0; i < n; ++i) v.push_back(m.next(16));
  return v;
}

void expect_error(const std::function<void()>& f, std::initializer_list<std::string> needles) {
  try {
    f();
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

TEST(Mixture, SharesFollowTheWeights) {
  for (uint64_t seed : {1u, 42u, 1234u}) {
    const std::vector<double> w = {0.5, 0.3, 0.0, 0.2};
    MixtureSampler m(sources(w), seed);
    std::vector<int> count(w.size());
    std::vector<int32_t> x(16 * 100), y(16 * 100);
    const int n = 10000;
    for (int b = 0; b < n / 100; ++b) {
      m.next_batch(x.data(), y.data(), 100, 16);
      for (int r = 0; r < 100; ++r) {
        const int k = x[size_t(r) * 16] / 100;
        for (int t = 0; t < 16; ++t) ASSERT_EQ(x[size_t(r) * 16 + t] / 100, k) << "a window mixes sources";
        ++count[size_t(k)];
      }
    }
    for (size_t k = 0; k < w.size(); ++k)
      EXPECT_NEAR(double(count[k]) / n, w[k], 0.02) << "source " << k << " seed " << seed;
    EXPECT_EQ(count[2], 0) << "a zero weight is never drawn";
  }
  // Weights need not sum to 1.
  MixtureSampler m(sources({7, 3}), 9);
  int first = 0;
  for (auto [k, off] : draw(m, 10000)) first += k == 0;
  EXPECT_NEAR(first / 10000.0, 0.7, 0.02);
}

TEST(Mixture, SameSeedSameStreamAndResumeContinuesIt) {
  MixtureSampler a(sources({0.6, 0.4}), 5), b(sources({0.6, 0.4}), 5), c(sources({0.6, 0.4}), 6);
  auto sa = draw(a, 2000), sb = draw(b, 2000), sc = draw(c, 2000);
  EXPECT_EQ(sa, sb);
  EXPECT_NE(sa, sc);
  // Stop after 777 windows, save, restore into a fresh sampler: the rest is the same.
  MixtureSampler d(sources({0.6, 0.4}), 5);
  draw(d, 777);
  const std::string saved = d.state().dump();
  MixtureSampler e(sources({0.6, 0.4}), 5);
  e.restore(nlohmann::json::parse(saved));
  const std::vector<std::pair<size_t, int64_t>> rest(sa.begin() + 777, sa.end());
  EXPECT_EQ(draw(e, 2000 - 777), rest);
  // Another mixture's state is refused.
  MixtureSampler f(sources({0.5, 0.5}), 5);
  expect_error([&] { f.restore(nlohmann::json::parse(saved)); }, {"--data", "weight"});
  MixtureSampler g(sources({0.6, 0.4, 1.0}), 5);
  expect_error([&] { g.restore(nlohmann::json::parse(saved)); }, {"--data", "3 sources"});
}

TEST(Mixture, ParsingAndBadWeights) {
  using V = std::vector<std::pair<std::string, double>>;
  EXPECT_EQ(parse_data_mixture("data/slim", "--data"), V{});
  EXPECT_EQ(parse_data_mixture("odd:name", "--data"), V{});
  EXPECT_EQ(parse_data_mixture("a:0.7,b/c:0.3", "--data"), (V{{"a", 0.7}, {"b/c", 0.3}}));
  EXPECT_EQ(parse_data_mixture("x:y:2", "--data"), (V{{"x:y", 2.0}}));
  expect_error([] { parse_data_mixture("a:0.7,b:-0.3", "--data"); }, {"--data", "b", "-0.3", "zero or positive"});
  expect_error([] { parse_data_mixture("a:0,b:0", "--data"); }, {"--data", "every weight is zero"});
  expect_error([] { parse_data_mixture("a:0.7,b", "--data"); }, {"--data", "'b'", "PATH:WEIGHT"});
  expect_error([] { parse_data_mixture("a:nan,b:1", "--data"); }, {"--data", "a"});
  expect_error([] { MixtureSampler(sources({0, 0}), 1); }, {"--data", "every weight is zero"});
  // A mixture file, in pretrain.py's train_data_config shape or as an object; paths from its directory.
  const std::string dir = test::temp_dir("mixture_file");
  std::ofstream(dir + "/list.json") << R"([["train_slim", 0.7], ["/abs/code", 0.3]])";
  EXPECT_EQ(parse_data_mixture(dir + "/list.json", "--data"), (V{{dir + "/train_slim", 0.7}, {"/abs/code", 0.3}}));
  std::ofstream(dir + "/obj.json") << R"({"a": 1, "b": 3})";
  EXPECT_EQ(parse_data_mixture(dir + "/obj.json", "--data"), (V{{dir + "/a", 1.0}, {dir + "/b", 3.0}}));
  std::ofstream(dir + "/neg.json") << R"({"a": 1, "b": -3})";
  expect_error([&] { parse_data_mixture(dir + "/neg.json", "--data"); }, {"--data", "neg.json", "zero or positive"});
  std::ofstream(dir + "/zero.json") << R"([["a", 0]])";
  expect_error([&] { parse_data_mixture(dir + "/zero.json", "--data"); }, {"--data", "every weight is zero"});
  // Other JSON is not a mixture (it may be a corpus).
  std::ofstream(dir + "/text.json") << R"({"text": "hello"})";
  EXPECT_EQ(parse_data_mixture(dir + "/text.json", "--data"), V{});
}

// Processes of a distributed run draw disjoint streams, each still following the weights.
TEST(Mixture, RanksDrawDisjointStreams) {
  MixtureSampler r0(sources({0.7, 0.3}), 3, "--data", 0, 2), r1(sources({0.7, 0.3}), 3, "--data", 1, 2);
  MixtureSampler one(sources({0.7, 0.3}), 3);
  auto a = draw(r0, 10000), b = draw(r1, 10000), c = draw(one, 10000);
  EXPECT_NE(a, b);
  int same = 0, first = 0;
  for (int i = 0; i < 10000; ++i) same += a[size_t(i)] == b[size_t(i)], first += a[size_t(i)].first == 0;
  EXPECT_LT(same, 100);
  EXPECT_NEAR(first / 10000.0, 0.7, 0.02);
  // Rank 0 of 2 picks its sources as draws 0, 2, 4, ... of the single-process stream.
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a[size_t(i)].first, c[size_t(2 * i)].first) << i;
}

// Together the ranks draw exactly one process's windows (source and offset), and the state after a
// step is one process's, so a checkpoint resumes on any number of processes.
TEST(Mixture, RanksTogetherAreOneProcessAndResumeOnAnyWorld) {
  const int W = 3, k = 200;
  std::vector<MixtureSampler> ranks;
  for (int r = 0; r < W; ++r) ranks.emplace_back(sources({0.5, 0.2, 0.3}), 9, "--data", r, W);
  MixtureSampler one(sources({0.5, 0.2, 0.3}), 9);
  for (int i = 0; i < k; ++i)
    for (int r = 0; r < W; ++r) EXPECT_EQ(ranks[size_t(r)].next(16), one.next(16)) << i << " " << r;
  EXPECT_EQ(ranks[0].state(), one.state());
  EXPECT_EQ(ranks[2].state(), one.state());
  // Resumed on 2 processes from the state of 3 (or of 1): the single-process stream goes on.
  MixtureSampler r0(sources({0.5, 0.2, 0.3}), 9, "--data", 0, 2), r1(sources({0.5, 0.2, 0.3}), 9, "--data", 1, 2);
  r0.restore(ranks[1].state());
  r1.restore(one.state());
  for (int i = 0; i < k; ++i) {
    EXPECT_EQ(r0.next(16), one.next(16)) << i;
    EXPECT_EQ(r1.next(16), one.next(16)) << i;
  }
}

std::string text(size_t n, uint32_t seed) {
  const char* words[] = {"the", "model", "state", "scan", "window", "token", "loss", "of"};
  std::mt19937 g(seed);
  std::string s;
  while (s.size() < n) s += std::string(words[g() % 8]) + ((g() % 7 == 0) ? ".\n" : " ");
  return s;
}

// Through the trainer: --data a:0.7,b:0.3 stopped after 3 steps and resumed gives the losses of an
// uninterrupted run; a negative weight is an error naming --data.
TEST(Mixture, TrainResumesTheSameStream) {
  const std::string dir = test::temp_dir("mixture_train");
  std::ofstream(dir + "/a.txt") << text(6000, 1);
  std::ofstream(dir + "/b.txt") << text(6000, 2);
  std::ofstream(dir + "/v.txt") << text(2000, 3);
  auto args = [&](const std::string& data, const std::string& out) {
    return "train --model Samba_421M --n-layer 2 --n-embd 32 --n-head 2 --intermediate-size 64 --local-window 8 "
           "--vocab-size 256 --tokenizer bytes --seq-len 16 --batch 2 --eval-batches 1 --log-every 1 --steps 6 "
           "--eval-every 0 --sample-every 0 --data " +
           data + " --val-data " + dir + "/v.txt --out " + out;
  };
  const std::string mix = dir + "/a.txt:0.7," + dir + "/b.txt:0.3";
  std::string out;
  ASSERT_EQ(test::run_cli(args(mix, dir + "/r1"), &out), 0) << out;
  ASSERT_EQ(test::run_cli(args(mix, dir + "/r2") + " --stop-after 3", &out), 0) << out;
  ASSERT_EQ(test::run_cli(args(mix, dir + "/r2") + " --resume", &out), 0) << out;
  auto losses = [](const std::string& path) {
    std::vector<double> v;
    std::ifstream f(path);
    for (std::string line; std::getline(f, line);) {
      auto j = nlohmann::json::parse(line);
      if (j.contains("loss")) v.push_back(j["loss"].get<double>());
    }
    return v;
  };
  auto l1 = losses(dir + "/r1/metrics.jsonl"), l2 = losses(dir + "/r2/metrics.jsonl");
  ASSERT_EQ(l1.size(), 6u);
  EXPECT_EQ(l1, l2);
  // A different mixture draws other windows: the losses differ.
  ASSERT_EQ(test::run_cli(args(dir + "/a.txt:0.1," + dir + "/b.txt:0.9", dir + "/r3"), &out), 0) << out;
  EXPECT_NE(losses(dir + "/r3/metrics.jsonl"), l1);
  EXPECT_EQ(test::run_cli(args(dir + "/a.txt:0.7," + dir + "/b.txt:-1", dir + "/r4"), &out), 1);
  EXPECT_NE(out.find("--data"), std::string::npos) << out;
  EXPECT_NE(out.find("zero or positive"), std::string::npos) << out;
}

}  // namespace
}  // namespace sambalm
