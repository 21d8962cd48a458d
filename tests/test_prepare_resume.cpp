// An interrupted `sambalm prepare` (SIGKILL while reading inputs, and again while writing shards)
// started again with the same command gives shards byte-identical to an uninterrupted run; a kill never
// leaves a partial shard under its final name; a finished shard spoiled in between is written again;
// a state of other inputs or options is refused without --overwrite.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "io/shards.h"
#include "testing.h"

namespace fs = std::filesystem;

namespace sambalm {
namespace {

// 30 JSON Lines files of documents from three sources (so --group-by makes three shard sets).
std::string write_tree(const std::string& dir) {
  std::mt19937 g(7);
  const char* words[] = {"scan", "state", "window", "token", "mamba", "of", "the", "and", "block", "a"};
  const char* sources[] = {"RedPajamaC4", "RedPajamaGithub", "RedPajamaBook"};
  const std::string in = dir + "/in/train/chunk1";
  fs::create_directories(in);
  for (int f = 0; f < 30; ++f) {
    std::ofstream out(in + "/example_train_" + std::to_string(100 + f) + ".jsonl");
    for (int d = 0; d < 400; ++d) {
      std::string text;
      for (int w = 0, n = 5 + int(g() % 60); w < n; ++w) text += std::string(w ? " " : "") + words[g() % 10];
      out << nlohmann::json({{"text", text}, {"meta", {{"redpajama_set_name", sources[g() % 3]}}}}).dump() << "\n";
    }
  }
  return dir + "/in";
}

// `format`: the output options (default: grouped sambalm shards).
std::vector<std::string> prepare_args(const std::string& in, const std::string& out,
                                      const std::string& format =
                                          "--group-by meta.redpajama_set_name "
                                          "--shard-tokens 40000") {
  return test::split_args("prepare -q -t bytes --split train --train-fraction 0.8 --threads 1 --checkpoint-seconds 0 " +
                          format + " --out " + out + " " + in);
}

int wait_exit(pid_t pid) {
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// Runs prepare and SIGKILLs it as soon as its state file satisfies `when`; false when the run ended
// first (then there was nothing to interrupt at that point).
bool kill_when(const std::vector<std::string>& args, const std::string& out, const std::string& log,
               const std::function<bool(const nlohmann::json&)>& when) {
  pid_t pid = test::spawn_cli(args, log);
  for (;;) {
    int st = 0;
    if (waitpid(pid, &st, WNOHANG) == pid) return false;
    std::ifstream f(out + "/prepare.state.json");
    if (f) {
      auto j = nlohmann::json::parse(f, nullptr, false);
      if (!j.is_discarded() && when(j)) break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  kill(pid, SIGKILL);
  EXPECT_EQ(wait_exit(pid), 128 + SIGKILL);
  return true;
}

// Every file under `dir` by relative path, with its bytes.
std::map<std::string, std::string> tree_bytes(const std::string& dir) {
  std::map<std::string, std::string> m;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::ifstream f(e.path(), std::ios::binary);
    m[fs::relative(e.path(), dir).string()] = std::string((std::istreambuf_iterator<char>(f)), {});
  }
  return m;
}

// After a kill: every file under a shard's final name is a whole, valid shard.
void expect_whole_shards(const std::string& dir) {
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.path().filename().string().ends_with(".bin")) {
      EXPECT_NO_THROW(Shard::open(e.path().string(), 256)) << e.path();  // the bytes tokenizer's vocabulary
    }
  }
}

TEST(PrepareResume, KilledTwiceThenRerunGivesTheSameBytes) {
  const auto dir = test::temp_dir("prepare_resume");
  const auto in = write_tree(dir);
  const std::string ref = dir + "/ref", out = dir + "/out", log = dir + "/log.txt";
  ASSERT_EQ(wait_exit(test::spawn_cli(prepare_args(in, ref), log)), 0);
  const auto want = tree_bytes(ref);
  ASSERT_GT(want.size(), 20u);  // three groups of several shards each, and the meta.json files
  for (const auto& [name, bytes] : want) EXPECT_FALSE(name.ends_with(".tmp")) << name;

  // 1: killed while reading the inputs, some files done.
  ASSERT_TRUE(kill_when(prepare_args(in, out), out, log, [](const nlohmann::json& s) {
    return s.value("files_done", 0) >= 3 && s.value("files_done", 0) <= 25;
  })) << "the run ended before it could be interrupted";
  expect_whole_shards(out);
  // 2: resumed, and killed again once it has finished a few shards.
  bool killed2 = kill_when(prepare_args(in, out), out, log,
                           [](const nlohmann::json& s) { return s.contains("shards") && s["shards"].size() >= 3; });
  ASSERT_TRUE(killed2) << "the resumed run ended before it wrote 3 shards";
  expect_whole_shards(out);
  {
    std::ifstream f(out + "/prepare.state.json");
    auto s = nlohmann::json::parse(f);
    EXPECT_EQ(s["files_done"], 30);
    // A recorded shard spoiled while no run was going: the next run checks and rewrites it.
    const std::string first = out + "/" + s["shards"].begin().key();
    std::fstream g(first, std::ios::in | std::ios::out | std::ios::binary);
    g.seekp(-1, std::ios::end);
    g.put('\x7f');
  }
  // 3: run to the end.
  ASSERT_EQ(wait_exit(test::spawn_cli(prepare_args(in, out), log)), 0);
  std::ifstream lf(log);
  const std::string logtext((std::istreambuf_iterator<char>(lf)), {});
  EXPECT_NE(logtext.find("prepare: resuming"), std::string::npos) << logtext;

  const auto got = tree_bytes(out);
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, bytes] : want) {
    auto it = got.find(name);
    ASSERT_NE(it, got.end()) << name;
    EXPECT_TRUE(it->second == bytes) << name << " differs from the uninterrupted run's";
  }
}

// lit_gpt PackedDataset chunks, one output set: killed while writing chunks, then finished.
TEST(PrepareResume, LitPkdChunksKilledWhileWritingThenFinished) {
  const auto dir = test::temp_dir("prepare_resume_litpkd");
  const auto in = write_tree(dir);
  const std::string ref = dir + "/ref", out = dir + "/out", log = dir + "/log.txt";
  const std::string format = "--format litpkd --sep-token 0 --chunk-size 60000";
  ASSERT_EQ(wait_exit(test::spawn_cli(prepare_args(in, ref, format), log)), 0);
  ASSERT_TRUE(fs::exists(ref + "/train_0000000005.bin"));
  ASSERT_TRUE(kill_when(prepare_args(in, out, format), out, log, [](const nlohmann::json& s) {
    return s.contains("shards") && s["shards"].size() >= 2;
  })) << "the run ended before it wrote 2 chunks";
  expect_whole_shards(out);
  ASSERT_EQ(wait_exit(test::spawn_cli(prepare_args(in, out, format), log)), 0);
  EXPECT_TRUE(tree_bytes(out) == tree_bytes(ref));
}

TEST(PrepareResume, AStateOfOtherOptionsIsRefusedWithoutOverwrite) {
  const auto dir = test::temp_dir("prepare_resume_other");
  const auto in = write_tree(dir);
  const std::string out = dir + "/out", log = dir + "/log.txt";
  ASSERT_TRUE(kill_when(prepare_args(in, out), out, log,
                        [](const nlohmann::json& s) { return s.value("files_done", 0) >= 2; }));
  // Another train fraction: the interrupted run's streams do not fit this one.
  std::string output;
  const std::string other =
      "prepare -q -t bytes --split train --group-by meta.redpajama_set_name --threads 1 "
      "--train-fraction 0.5 --out " +
      out + " " + in;
  EXPECT_EQ(test::run_cli(other, &output), 1);
  EXPECT_NE(output.find("holds an interrupted prepare"), std::string::npos) << output;
  EXPECT_NE(output.find("--overwrite"), std::string::npos) << output;
  EXPECT_EQ(test::run_cli(other + " --overwrite", &output), 0) << output;
  EXPECT_FALSE(fs::exists(out + "/prepare.state.json"));
  EXPECT_FALSE(fs::exists(out + "/RedPajamaC4/tokens.stream.tmp"));
  // Started over without groups: the interrupted run's group streams are gone too.
  ASSERT_TRUE(kill_when(prepare_args(in, out, "--group-by meta.redpajama_set_name --overwrite"), out, log,
                        [](const nlohmann::json& s) { return s.value("files_done", 0) >= 2; }));
  ASSERT_TRUE(fs::exists(out + "/RedPajamaBook/tokens.stream.tmp"));
  EXPECT_EQ(test::run_cli("prepare -q -t bytes --split train --threads 1 --overwrite --out " + out + " " + in, &output),
            0)
      << output;
  EXPECT_FALSE(fs::exists(out + "/RedPajamaBook/tokens.stream.tmp"));
  EXPECT_FALSE(fs::exists(out + "/prepare.state.json"));
}

TEST(PrepareResume, AMissingStreamIsAClearError) {
  const auto dir = test::temp_dir("prepare_resume_stream");
  const auto in = write_tree(dir);
  const std::string out = dir + "/out", log = dir + "/log.txt";
  ASSERT_TRUE(kill_when(prepare_args(in, out), out, log,
                        [](const nlohmann::json& s) { return s.value("files_done", 0) >= 2; }));
  fs::remove(out + "/RedPajamaC4/tokens.stream.tmp");
  std::string output, cmd;
  for (const auto& a : prepare_args(in, out)) cmd += a + " ";
  EXPECT_EQ(test::run_cli(cmd, &output), 1);
  EXPECT_NE(output.find("RedPajamaC4/tokens.stream.tmp"), std::string::npos) << output;
  EXPECT_NE(output.find("--overwrite"), std::string::npos) << output;
}

}  // namespace
}  // namespace sambalm
