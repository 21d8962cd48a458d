// `sambalm train --profile`: the step's regions as a table and RUN/profile.json, and the profiler
// object itself (ops/profiler.h) on the CPU. Presence and consistency only: no timing thresholds.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "io/file.h"
#include "ops/profiler.h"
#include "testing.h"

namespace fs = std::filesystem;

namespace sambalm {
namespace {

std::string write_corpus(const std::string& dir) {
  const char* words[] = {"the", "model", "state", "scan", "window", "of", "and", "a"};
  std::mt19937 g(7);
  std::string s;
  while (s.size() < 20000) s += std::string(words[g() % 8]) + ((g() % 9) ? " " : ".\n");
  const std::string p = dir + "/corpus.txt";
  std::ofstream(p) << s;
  return p;
}

// Samba with 2 blocks: Mamba + MLP, then sliding-window attention + MLP.
std::string train_args(const std::string& data, const std::string& out) {
  return "train --model Samba_421M --n-layer 2 --n-embd 32 --n-head 2 --intermediate-size 64 --local-window 16 "
         "--seq-len 32 --batch 2 --steps 3 --eval-batches 1 --tokenizer bytes --device cpu --data " +
         data + " --out " + out;
}

TEST(TrainProfile, WritesTableAndJsonCoveringEveryKindOfRegion) {
  const auto dir = test::temp_dir("train_profile");
  const auto data = write_corpus(dir);
  std::string out;
  ASSERT_EQ(test::run_cli(train_args(data, dir + "/r") + " --profile", &out), 0) << out;
  EXPECT_NE(out.find("ms/step"), std::string::npos) << out;
  EXPECT_NE(out.find("fwd mamba scan"), std::string::npos) << out;
  EXPECT_NE(out.find("profile.json"), std::string::npos) << out;

  ASSERT_TRUE(fs::exists(dir + "/r/profile.json"));
  const auto j = nlohmann::json::parse(read_text_file(dir + "/r/profile.json"));
  EXPECT_EQ(j["steps"], 2) << "3 steps, the first left out";
  EXPECT_EQ(j["timer"], "steady_clock");
  EXPECT_GE(j["step_ms"].get<double>(), 0.0);
  std::set<std::string> names;
  double sum = 0, percent = 0;
  for (const auto& r : j["regions"]) {
    const std::string name = r["region"];
    EXPECT_TRUE(names.insert(name).second) << "region listed twice: " << name;
    EXPECT_GE(r["ms_per_step"].get<double>(), 0.0) << name;
    EXPECT_GE(r["percent"].get<double>(), 0.0) << name;
    sum += r["ms_per_step"].get<double>();
    percent += r["percent"].get<double>();
  }
  // The regions tile the step: their sum is the step's (same numbers, so only rounding differs).
  EXPECT_NEAR(sum, j["step_ms"].get<double>(), 1e-6 * (1 + sum));
  if (j["step_ms"].get<double>() > 0) {
    EXPECT_NEAR(percent, 100.0, 1e-6);
  }
  for (const char* want : {"data",
                           "optimizer zero grads",
                           "fwd embedding",
                           "fwd norm+residual",
                           "fwd mamba in_proj",
                           "fwd mamba conv",
                           "fwd mamba x_proj/dt_proj",
                           "fwd mamba scan",
                           "fwd mamba silu gate",
                           "fwd mamba out_proj",
                           "fwd attn qkv",
                           "fwd attn rope",
                           "fwd attn kernel",
                           "fwd attn out_proj",
                           "fwd mlp gemms",
                           "fwd mlp swiglu",
                           "fwd lm_head",
                           "fwd cross_entropy",
                           "bwd lm_head",
                           "bwd norm+residual",
                           "bwd mamba out_proj",
                           "bwd mamba scan",
                           "bwd mamba x_proj/dt_proj",
                           "bwd mamba conv",
                           "bwd mamba in_proj",
                           "bwd attn out_proj",
                           "bwd attn kernel",
                           "bwd attn rope",
                           "bwd attn qkv",
                           "bwd mlp gemms",
                           "bwd mlp swiglu",
                           "bwd embedding",
                           "optimizer grad reduce+norm+clip",
                           "optimizer adamw",
                           "optimizer bf16 weight refresh",
                           "other"})
    EXPECT_TRUE(names.count(want)) << "no region " << want;
}

TEST(TrainProfile, OffByDefault) {
  const auto dir = test::temp_dir("train_profile_off");
  const auto data = write_corpus(dir);
  std::string out;
  ASSERT_EQ(test::run_cli(train_args(data, dir + "/r"), &out), 0) << out;
  EXPECT_FALSE(fs::exists(dir + "/r/profile.json"));
  EXPECT_EQ(out.find("ms/step"), std::string::npos) << out;
}

TEST(Profiler, RegionsTileTheStepAndMarksOutsideAStepAreIgnored) {
  Profiler p(cpu_context());
  Profiler::set_active(&p);
  profile_mark("outside");  // no step yet: ignored
  for (int step = 0; step < 3; ++step) {
    p.begin_step();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    profile_mark("a");
    profile_mark("b");
    profile_mark("a");  // a region may come back: its times add up
    p.end_step();
  }
  profile_mark("after");
  Profiler::set_active(nullptr);
  profile_mark("inactive");  // no profiler: nothing happens
  EXPECT_EQ(p.steps_reported(), 2);
  const auto rows = p.rows();
  ASSERT_EQ(rows.size(), 3u);  // a, b, other
  std::set<std::string> names;
  double sum = 0;
  for (const auto& r : rows) names.insert(r.region), sum += r.ms_per_step;
  EXPECT_EQ(names, (std::set<std::string>{"a", "b", "other"}));
  for (const auto& r : rows) {
    if (r.region == "a") {
      EXPECT_GE(r.ms_per_step, 2.0);  // it holds the sleep
    }
  }
  EXPECT_NEAR(sum, p.step_ms(), 1e-9);
  EXPECT_GE(p.wall_step_ms(), p.step_ms());  // the wall clock spans every region
  EXPECT_NE(p.table().find("a "), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(p.json())["regions"].size(), 3u);
}

}  // namespace
}  // namespace sambalm
