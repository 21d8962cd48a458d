// sambalm train end to end on a tiny model: metrics, schedule, exact resume, bad steps, bad input,
// checkpoints surviving SIGKILL, Ctrl-C, plotting.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "io/model_dir.h"
#include "io/safetensors.h"
#include "model/weights.h"
#include "testing.h"
#include "train/checkpoint.h"
#include "train/metrics.h"

namespace fs = std::filesystem;

namespace sambalm {
namespace {

// Deterministic text of ~n bytes: words from a small vocabulary, sentences, newlines.
std::string make_text(size_t n, uint32_t seed = 7) {
  const char* words[] = {"the", "model", "state", "scan", "window", "attention", "token", "loss",
                         "of",  "and",   "a",     "to",   "is",     "in",        "byte",  "layer"};
  std::mt19937 g(seed);
  std::string s;
  while (s.size() < n) {
    s += words[g() % 16];
    s += (g() % 9 == 0) ? ".\n" : " ";
  }
  return s;
}

std::string write_text(const std::string& dir, size_t n) {
  const std::string p = dir + "/data.txt";
  std::ofstream(p) << make_text(n);
  return p;
}

// A two-block Samba (Mamba + SWA), d = 32: a few milliseconds per step.
std::string tiny_args(const std::string& data, const std::string& out) {
  return "train --model Samba_421M --n-layer 2 --n-embd 32 --n-head 2 --intermediate-size 64 --local-window 8 "
         "--vocab-size 256 --tokenizer bytes --seq-len 32 --batch 2 --eval-batches 1 --log-every 1 --data " +
         data + " --out " + out;
}

std::vector<float> model_weights(const std::string& model_dir) {
  auto f = read_safetensors(model_dir + "/model.safetensors");
  std::vector<float> all;
  for (const auto& k : f.order) {
    Tensor t = f.get(k).to_f32();
    all.insert(all.end(), t.data<float>(), t.data<float>() + t.numel());
  }
  return all;
}

TEST(Train, MetricsScheduleAndFinalModel) {
  auto dir = test::temp_dir("train_metrics");
  auto data = write_text(dir, 20000);
  std::string out;
  int rc = test::run_cli(tiny_args(data, dir + "/run") + " --steps 8 --warmup 2 --lr 1e-2 --min-lr 1e-3 --eval-every 4",
                         &out);
  ASSERT_EQ(rc, 0) << out;
  auto recs = read_metrics(dir + "/run/metrics.jsonl");
  ASSERT_EQ(recs.size(), 9u) << out;  // step 0 evaluation + 8 steps
  EXPECT_EQ(recs[0]["step"], 0);
  EXPECT_TRUE(recs[0].contains("val_loss"));
  for (int s = 1; s <= 8; ++s) {
    const auto& r = recs[s];
    EXPECT_EQ(r["step"], s);
    for (const char* k : {"loss", "lr", "tokens_per_s"}) EXPECT_TRUE(r.contains(k) && r[k].is_number()) << k;
    EXPECT_EQ(r.contains("val_loss"), s % 4 == 0) << s;
    // pretrain.py get_lr at it = s - 1 (the lr set before update s), warmup 2, decay over 8 steps.
    const double it = s - 1;
    const double want = it < 2 ? 1e-2 * it / 2 : 1e-3 + 0.5 * (1e-2 - 1e-3) * (1 + std::cos(M_PI * (it - 2) / (8 - 2)));
    EXPECT_NEAR(r["lr"].get<double>(), want, 1e-12) << s;
  }
  // Bits per byte reported with the loss.
  EXPECT_NEAR(recs[8]["val_bpb"].get<double>(), recs[8]["val_loss"].get<double>() / std::log(2.0), 1e-9);
  // Learning happened: the loss of a byte model starts near ln(256) = 5.55 and drops on this text.
  EXPECT_LT(recs[8]["val_loss"].get<double>(), recs[0]["val_loss"].get<double>() - 0.3);
  // The final model directory loads as a model.
  LoadedModel lm = load_model(dir + "/run/model");
  EXPECT_EQ(lm.config.n_layer, 2);
  EXPECT_EQ(lm.config.n_embd, 32);
  EXPECT_EQ(lm.config.vocab_size, 256);
  // Fine-tuning from it: the evaluation before the first update sees the trained weights (the same
  // fixed validation windows give the same loss).
  std::string ft = tiny_args(data, dir + "/ft");
  ft.replace(ft.find("--model Samba_421M --n-layer 2 --n-embd 32 --n-head 2 --intermediate-size 64 --local-window 8 "
                     "--vocab-size 256"),
             110, "--init-from " + dir + "/run/model");
  rc = test::run_cli(ft + " --steps 1 --eval-every 1", &out);
  ASSERT_EQ(rc, 0) << out;
  auto ft_recs = read_metrics(dir + "/ft/metrics.jsonl");
  ASSERT_FALSE(ft_recs.empty());
  EXPECT_NEAR(ft_recs[0]["val_loss"].get<double>(), recs[8]["val_loss"].get<double>(), 1e-6);
  // And plots.
  rc = test::run_cli("plot " + dir + "/run", &out);
  ASSERT_EQ(rc, 0) << out;
  std::ifstream svg(dir + "/run/loss.svg");
  std::string text((std::istreambuf_iterator<char>(svg)), {});
  EXPECT_NE(text.find("<svg"), std::string::npos);
  EXPECT_NE(text.find("validation loss"), std::string::npos);
  EXPECT_NE(text.find("<polyline"), std::string::npos);
}

TEST(Train, ResumeIsExact) {
  auto dir = test::temp_dir("train_resume");
  auto data = write_text(dir, 20000);
  const std::string common = " --steps 6 --warmup 2 --lr 5e-3 --eval-every 3 --sample-every 3 --sample-tokens 8";
  std::string out;
  ASSERT_EQ(test::run_cli(tiny_args(data, dir + "/a") + common, &out), 0) << out;
  ASSERT_EQ(test::run_cli(tiny_args(data, dir + "/b") + common + " --stop-after 3", &out), 0) << out;
  EXPECT_FALSE(fs::exists(dir + "/b/model"));
  auto ck = latest_checkpoint(dir + "/b");
  ASSERT_TRUE(ck.has_value());
  EXPECT_EQ(fs::path(*ck).filename(), "step_00000003");
  ASSERT_EQ(test::run_cli(tiny_args(data, dir + "/b") + common + " --resume", &out), 0) << out;

  auto wa = model_weights(dir + "/a/model"), wb = model_weights(dir + "/b/model");
  ASSERT_EQ(wa.size(), wb.size());
  size_t differ = 0;
  for (size_t i = 0; i < wa.size(); ++i) differ += wa[i] != wb[i];
  EXPECT_EQ(differ, 0u) << "weights differ after 3 + resume + 3 steps vs 6 steps";
  // The same losses step by step, and no step logged twice.
  auto ma = read_metrics(dir + "/a/metrics.jsonl"), mb = read_metrics(dir + "/b/metrics.jsonl");
  ASSERT_EQ(ma.size(), mb.size());
  for (size_t i = 0; i < ma.size(); ++i) {
    EXPECT_EQ(ma[i]["step"], mb[i]["step"]);
    if (ma[i].contains("loss")) {
      EXPECT_EQ(ma[i]["loss"].get<double>(), mb[i]["loss"].get<double>()) << i;
    }
  }
  // Optimizer state too.
  auto sa = load_trainer_state(*latest_checkpoint(dir + "/a"), wa.size());
  auto sb = load_trainer_state(*latest_checkpoint(dir + "/b"), wb.size());
  EXPECT_EQ(sa.step, 6);
  EXPECT_EQ(sa.adam_t, sb.adam_t);
  EXPECT_EQ(sa.exp_avg, sb.exp_avg);
  EXPECT_EQ(sa.exp_avg_sq, sb.exp_avg_sq);
  // A finished run refuses to be resumed past its end, and a fresh run refuses a used directory.
  EXPECT_NE(test::run_cli(tiny_args(data, dir + "/a") + common + " --resume", &out), 0);
  EXPECT_NE(test::run_cli(tiny_args(data, dir + "/a") + common, &out), 0);
  EXPECT_NE(out.find("--resume"), std::string::npos) << out;
}

TEST(Train, NonFiniteLossSkipsThenStops) {
  auto dir = test::temp_dir("train_nan");
  auto data = write_text(dir, 20000);
  std::string out;
  // One bad step: skipped, reported, the run finishes.
  setenv("SAMBALM_TEST_INJECT_NAN_AT", "3:1", 1);
  int rc = test::run_cli(tiny_args(data, dir + "/one") + " --steps 5 --eval-every 0", &out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("not finite"), std::string::npos) << out;
  auto recs = read_metrics(dir + "/one/metrics.jsonl");
  ASSERT_EQ(recs.size(), 5u);
  EXPECT_TRUE(recs[2].value("skipped", false));
  EXPECT_TRUE(recs[2]["loss"].is_null());
  EXPECT_FALSE(recs[3].value("skipped", false));
  EXPECT_EQ(load_trainer_state(*latest_checkpoint(dir + "/one"), model_weights(dir + "/one/model").size()).adam_t, 4);

  // NaN from step 5 on: steps 5, 6, 7 skipped, the run stops with a message; checkpoint 4 intact.
  setenv("SAMBALM_TEST_INJECT_NAN_AT", "5", 1);
  rc = test::run_cli(tiny_args(data, dir + "/many") + " --steps 20 --eval-every 0 --save-every 2 --max-bad-steps 3",
                     &out);
  unsetenv("SAMBALM_TEST_INJECT_NAN_AT");
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(out.find("NaN/Inf for 3 steps in a row"), std::string::npos) << out;
  auto ck = latest_checkpoint(dir + "/many");
  ASSERT_TRUE(ck.has_value());
  EXPECT_EQ(fs::path(*ck).filename(), "step_00000004");
  LoadedModel lm = load_model(*ck);
  for (size_t i = 0; i < lm.params.size(); ++i) ASSERT_TRUE(std::isfinite(lm.params.data()[i]));
  EXPECT_EQ(load_trainer_state(*ck, lm.params.size()).step, 4);
  EXPECT_EQ(read_metrics(dir + "/many/metrics.jsonl").size(), 7u);
}

TEST(Train, TokenShardsFromPrepare) {
  auto dir = test::temp_dir("train_shards");
  auto data = write_text(dir, 20000);
  std::string out;
  ASSERT_EQ(test::run_cli("prepare -t bytes -q --out " + dir + "/shards " + data, &out), 0) << out;
  // No --tokenizer: meta.json names it (bytes), so samples decode to text.
  std::string args = tiny_args(dir + "/shards", dir + "/run");
  args.replace(args.find("--tokenizer bytes"), 17, "");
  ASSERT_EQ(test::run_cli(args + " --steps 3 --eval-every 3 --sample-every 3 --sample-tokens 4", &out), 0) << out;
  auto recs = read_metrics(dir + "/run/metrics.jsonl");
  ASSERT_EQ(recs.size(), 4u) << out;
  EXPECT_TRUE(recs[3].contains("val_bpb")) << out;
  EXPECT_NE(out.find("train_000000.bin"), std::string::npos) << out;
  // Shards of a 256-id vocabulary refused by a 128-id model.
  args.replace(args.find("--vocab-size 256"), 16, "--vocab-size 128");
  args.replace(args.find(dir + "/run"), dir.size() + 4, dir + "/run2");
  EXPECT_EQ(test::run_cli(args + " --steps 1", &out), 1);
  EXPECT_NE(out.find("vocabulary has 256 ids, more than the model's vocab_size 128"), std::string::npos) << out;
}

TEST(Train, BadInputGivesClearErrors) {
  auto dir = test::temp_dir("train_bad");
  auto data = write_text(dir, 20000);
  std::string out;
  // Data shorter than one window.
  std::ofstream(dir + "/short.txt") << "too short";
  EXPECT_EQ(test::run_cli(tiny_args(dir + "/short.txt", dir + "/r1") + " --steps 2", &out), 1);
  EXPECT_NE(out.find("fewer than one window"), std::string::npos) << out;
  // Validation split shorter than one window.
  EXPECT_EQ(test::run_cli(tiny_args(data, dir + "/r1") + " --steps 2 --val-fraction 0.001", &out), 1);
  EXPECT_NE(out.find("validation split"), std::string::npos) << out;
  // The data's vocabulary (256 bytes) larger than the model's.
  std::string args = tiny_args(data, dir + "/r2");
  args.replace(args.find("--vocab-size 256"), 16, "--vocab-size 100");
  EXPECT_EQ(test::run_cli(args + " --steps 2", &out), 1);
  EXPECT_NE(out.find("vocab_size 100"), std::string::npos) << out;
  // Unknown preset.
  args = tiny_args(data, dir + "/r3");
  args.replace(args.find("Samba_421M"), 10, "Samba_9000B");
  EXPECT_EQ(test::run_cli(args + " --steps 2", &out), 1);
  EXPECT_NE(out.find("Samba_9000B"), std::string::npos) << out;
  // Run directory that cannot be created (below a regular file).
  EXPECT_EQ(test::run_cli(tiny_args(data, data + "/run") + " --steps 2", &out), 1);
  EXPECT_NE(out.find("--out"), std::string::npos) << out;
  // Missing data file.
  EXPECT_EQ(test::run_cli(tiny_args(dir + "/nope.txt", dir + "/r4") + " --steps 2", &out), 1);
  EXPECT_NE(out.find("nope.txt"), std::string::npos) << out;
  // Resume without a checkpoint.
  EXPECT_EQ(test::run_cli(tiny_args(data, dir + "/r5") + " --steps 2 --resume", &out), 1);
  EXPECT_NE(out.find("no complete checkpoint"), std::string::npos) << out;
}

}  // namespace
}  // namespace sambalm
