// `sambalm forward` at the command line: rows in micro-batches give the outputs of one pass, logits
// can be left out, per-row losses on request, and a loss with nothing to score is NaN (as PyTorch).
#include <cmath>
#include <fstream>
#include <random>

#include "io/model_dir.h"
#include "io/safetensors.h"
#include "model/weights.h"
#include "testing.h"

namespace sambalm {
namespace {

constexpr int64_t kB = 5, kT = 7;

// A random small Samba saved as a model directory, and an input file of kB rows of kT ids with
// targets (the last row's targets all -1, so that row scores nothing).
struct ForwardCase {
  std::string dir = test::temp_dir("forward_cli");
  std::string model = dir + "/model", inputs = dir + "/in.safetensors";
  ForwardCase(bool all_ignored = false) {
    ModelConfig cfg = test::small_samba("fwd_cli");
    ParamStore params(param_specs(cfg));
    test::fill_random_params(params, 3);
    save_model_dir(model, cfg, params);
    std::mt19937 rng(5);
    std::vector<int64_t> ids(kB * kT), tg(kB * kT);
    for (auto& v : ids) v = int64_t(rng() % uint32_t(cfg.vocab_size));
    for (size_t i = 0; i < tg.size(); ++i)
      tg[i] = all_ignored || int64_t(i) >= (kB - 1) * kT ? -1 : int64_t(rng() % uint32_t(cfg.vocab_size));
    Tensor a = Tensor::zeros(DType::I64, {kB, kT}), b = Tensor::zeros(DType::I64, {kB, kT});
    std::copy(ids.begin(), ids.end(), a.data<int64_t>());
    std::copy(tg.begin(), tg.end(), b.data<int64_t>());
    write_safetensors(inputs, {{"input_ids", a}, {"targets", b}});
  }
  int run(const std::string& extra, const std::string& out, std::string* log) const {
    return test::run_cli("forward -m " + model + " -i " + inputs + " -o " + out + " " + extra, log);
  }
};

// The fixtures' measure, max |a - b| / max |b|, within 1e-6: a kernel may pick another (equally exact)
// strategy for another batch shape, so the last bits can differ. NaNs must sit at the same places.
void expect_close(const Tensor& a, const Tensor& b, const char* what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  std::vector<float> x(a.data<float>(), a.data<float>() + a.numel()), y(b.data<float>(), b.data<float>() + b.numel());
  for (size_t i = 0; i < y.size(); ++i) {
    ASSERT_EQ(std::isnan(x[i]), std::isnan(y[i])) << what << "[" << i << "]";
    if (std::isnan(y[i])) x[i] = y[i] = 0;
  }
  EXPECT_LE(test::rel_error(x.data(), y.data(), int64_t(y.size())), 1e-6) << what;
}

TEST(ForwardCli, MicroBatchesGiveTheOutputsOfOnePass) {
  ForwardCase c;
  std::string log;
  const std::string one = c.dir + "/one.safetensors", mb = c.dir + "/mb.safetensors";
  ASSERT_EQ(c.run("--batch-size 5 --row-losses --acts", one, &log), 0) << log;
  ASSERT_EQ(c.run("--batch-size 2 --row-losses --acts", mb, &log), 0) << log;
  auto a = read_safetensors(one), b = read_safetensors(mb);
  for (const char* key : {"logits", "loss", "row_losses", "act.0", "act.3"}) {
    ASSERT_TRUE(a.has(key) && b.has(key)) << key;
    expect_close(b.get(key), a.get(key), key);
  }
  EXPECT_EQ(a.get("logits").shape(), (Shape{kB, kT, 64}));
  // Row losses: the scored rows' mean is the loss; the row with no target is NaN.
  const float* rl = a.get("row_losses").data<float>();
  double mean = 0;
  for (int64_t r = 0; r < kB - 1; ++r) mean += rl[r] / double(kB - 1);
  EXPECT_NEAR(mean, a.get("loss").data<float>()[0], 1e-5);
  EXPECT_TRUE(std::isnan(rl[kB - 1]));
}

TEST(ForwardCli, NoLogitsWritesOnlyTheLoss) {
  ForwardCase c;
  std::string log;
  const std::string full = c.dir + "/full.safetensors", lean = c.dir + "/lean.safetensors";
  ASSERT_EQ(c.run("", full, &log), 0) << log;
  ASSERT_EQ(c.run("--no-logits --batch-size 1", lean, &log), 0) << log;
  auto f = read_safetensors(full), l = read_safetensors(lean);
  EXPECT_TRUE(f.has("logits"));
  EXPECT_FALSE(l.has("logits"));
  expect_close(l.get("loss"), f.get("loss"), "loss");
  // Without targets there is nothing left to write.
  Tensor ids = Tensor::zeros(DType::I64, {1, 3});
  write_safetensors(c.dir + "/noloss.safetensors", {{"input_ids", ids}});
  EXPECT_EQ(test::run_cli("forward -m " + c.model + " -i " + c.dir + "/noloss.safetensors -o " + c.dir +
                              "/x.safetensors --no-logits",
                          &log),
            1);
  EXPECT_NE(log.find("--no-logits"), std::string::npos) << log;
}

TEST(ForwardCli, EveryTargetIgnoredIsNaN) {
  ForwardCase c(/*all_ignored=*/true);
  std::string log;
  ASSERT_EQ(c.run("", c.dir + "/o.safetensors", &log), 0) << log;
  EXPECT_NE(log.find("loss nan"), std::string::npos) << log;
  EXPECT_TRUE(std::isnan(read_safetensors(c.dir + "/o.safetensors").get("loss").data<float>()[0]));
}

}  // namespace
}  // namespace sambalm
