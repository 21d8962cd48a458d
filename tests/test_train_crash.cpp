// Checkpoints survive a run killed at any moment (SIGKILL), and Ctrl-C saves and exits cleanly.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "io/model_dir.h"
#include "model/weights.h"
#include "testing.h"
#include "train/checkpoint.h"

namespace fs = std::filesystem;

namespace sambalm {
namespace {

std::string write_text(const std::string& dir) {
  std::mt19937 g(11);
  const char* words[] = {"mamba", "scan", "state", "of", "the", "window", "and", "token"};
  std::string s;
  while (s.size() < 30000) s += std::string(words[g() % 8]) + ((g() % 7) ? " " : ".\n");
  std::ofstream(dir + "/data.txt") << s;
  return dir + "/data.txt";
}

std::vector<std::string> train_args(const std::string& data, const std::string& out) {
  return test::split_args(
      "train --model Samba_421M --n-layer 2 --n-embd 32 --n-head 2 --intermediate-size 64 --local-window 8 "
      "--vocab-size 256 --tokenizer bytes --seq-len 32 --batch 2 --steps 100000 --eval-every 0 --save-every 1 "
      "--keep-last 2 --threads 1 --data " +
      data + " --out " + out);
}

// Waits until `run` holds a checkpoint newer than `after` (or the timeout passes).
bool wait_for_checkpoint(const std::string& run, const std::string& after, double timeout_s) {
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < timeout_s) {
    auto ck = latest_checkpoint(run);
    if (ck && *ck != after) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

std::string read_file(const std::string& p) {
  std::ifstream f(p);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

TEST(TrainCrash, SigkillNeverLeavesACorruptCheckpoint) {
  auto dir = test::temp_dir("train_kill");
  auto data = write_text(dir);
  const std::string run = dir + "/run", log = dir + "/log.txt";
  std::mt19937 g(std::random_device{}());
  const int rounds = std::getenv("SAMBALM_TEST_SCALE") ? 2 : 4;
  int64_t last_step = 0;
  for (int round = 0; round < rounds; ++round) {
    auto args = train_args(data, run);
    if (round > 0) args.push_back("--resume");
    const std::string before = latest_checkpoint(run).value_or("");
    pid_t pid = test::spawn_cli(args, log);
    ASSERT_GT(pid, 0);
    const bool saved = wait_for_checkpoint(run, before, 120);
    // Kill at a random moment after the first new checkpoint: often in the middle of writing one.
    std::this_thread::sleep_for(std::chrono::microseconds(g() % 150000));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(saved) << read_file(log);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the run ended by itself:\n" << read_file(log);

    // Every checkpoint that readers see is complete and loads; the newest one moved forward.
    auto all = list_checkpoints(run);
    ASSERT_FALSE(all.empty());
    ASSERT_LE(all.size(), 3u);  // keep-last 2, plus possibly the one being pruned when killed
    for (const auto& ck : all) {
      LoadedModel lm = load_model(ck);
      TrainerState st = load_trainer_state(ck, lm.params.size());
      EXPECT_EQ(fs::path(ck).filename(), checkpoint_name(st.step));
      EXPECT_EQ(st.adam_t, st.step);
    }
    const int64_t step = load_trainer_state(all.back(), load_model(all.back()).params.size()).step;
    EXPECT_GT(step, last_step);
    last_step = step;
  }
  // And the run continues from there.
  auto args = train_args(data, run);
  args.push_back("--resume");
  args.push_back("--stop-after");
  args.push_back("2");
  std::string cmd;
  for (size_t i = 0; i < args.size(); ++i) cmd += args[i] + " ";
  std::string out;
  ASSERT_EQ(test::run_cli(cmd, &out), 0) << out;
  EXPECT_EQ(fs::path(*latest_checkpoint(run)).filename(), checkpoint_name(last_step + 2)) << out;
}

TEST(TrainCrash, CtrlCSavesAndExitsCleanly) {
  auto dir = test::temp_dir("train_sigint");
  auto data = write_text(dir);
  const std::string run = dir + "/run", log = dir + "/log.txt";
  auto args = train_args(data, run);
  args[std::find(args.begin(), args.end(), "--save-every") - args.begin() + 1] = "0";  // only on exit
  pid_t pid = test::spawn_cli(args, log);
  ASSERT_GT(pid, 0);
  // Wait until training is under way (metrics lines appear), then interrupt.
  const auto t0 = std::chrono::steady_clock::now();
  while (read_file(run + "/metrics.jsonl").size() < 200 &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120))
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  const std::string out = read_file(log);
  ASSERT_TRUE(WIFEXITED(status)) << out;
  EXPECT_EQ(WEXITSTATUS(status), 130) << out;
  EXPECT_NE(out.find("interrupted at step"), std::string::npos) << out;
  auto ck = latest_checkpoint(run);
  ASSERT_TRUE(ck.has_value()) << out;
  LoadedModel lm = load_model(*ck);
  TrainerState st = load_trainer_state(*ck, lm.params.size());
  EXPECT_GT(st.step, 0);
  EXPECT_EQ(st.extra.value("reason", ""), "stopped");
}

}  // namespace
}  // namespace sambalm
