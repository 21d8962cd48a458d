// The whole model in bf16 mixed precision on the GPU (Model<bf16>: bf16 working weights, activations
// and GEMMs; fp32 master copy for the embedding, norms, A_log and D; fp32 residual stream, statistics
// and gradients) against the fixtures of the original code, and its gradients against the fp32 GPU
// run of the same model; then short training runs through `sambalm train` in bf16 and fp32.
// Measures (issue: bf16 logits within 2e-2 relative, loss within 1e-2 absolute):
//   logits, block outputs: max |got - want| / max |want| over the tensor < 2e-2
//   loss: |got - want| < 1e-2
//   gradients: ||bf16 - fp32|| / ||fp32|| per parameter tensor < 5e-2 (every tensor is printed)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>

#include "gpu_testing.h"
#include "model/model.h"
#include "ops/memory_ops.h"
#include "testing.h"
#include "train/metrics.h"

namespace sambalm {
namespace {

using namespace testing_gpu;

constexpr double kLogitsTol = 2e-2, kLossTol = 1e-2, kGradTol = 5e-2;

template <typename T>
std::vector<float> download_f32(const T* p, int64_t n) {
  std::vector<T> v(n);
  ops::download(gpu(), v.data(), p, sizeof(T) * n);
  if constexpr (std::is_same_v<T, float>)
    return v;
  else
    return to_f32(v);
}

// max |got - want| / max |want| (the measure); a non-finite value gives infinity.
double max_rel(const std::vector<float>& got, const float* want, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num = std::max(num, std::fabs(double(got[i]) - want[i]));
    den = std::max(den, std::fabs(double(want[i])));
  }
  return den > 0 ? num / den : num;
}

void check_case(const std::string& name, bool has_acts) {
  const auto& [dir, cfg, sd, params, expected, tokens, targets, B, Tn] = test::load_model_fixture(name);
  const int64_t V = cfg.padded_vocab_size, d = cfg.n_embd;

  const int64_t P = static_cast<int64_t>(params.size());
  const std::vector<float> host(params.data(), params.data() + P);
  DeviceBuffer<float> d_master(host);
  DeviceBuffer<bf16> d_work(to_bf16(host));  // what the trainer's convert() makes of the master
  Model<bf16> model(cfg, params.entries(), gpu());
  const double loss = model.forward(d_work.get(), d_master.get(), tokens.data(), targets.data(), B, Tn);
  const Tensor& exp_logits = expected.get("logits");
  ASSERT_EQ(exp_logits.numel(), B * Tn * V);
  const double lerr = max_rel(download_f32(model.logits(), B * Tn * V), exp_logits.data<float>(), B * Tn * V);
  std::printf("%s bf16: logits max rel error %.3e\n", name.c_str(), lerr);
  EXPECT_LT(lerr, kLogitsTol) << name << " logits";
  const float exp_loss = expected.get("loss").data<float>()[0];
  std::printf("%s bf16: loss %.6f, fixture %.6f\n", name.c_str(), loss, double(exp_loss));
  EXPECT_LT(std::fabs(loss - exp_loss), kLossTol) << name << " loss " << loss << " vs " << exp_loss;
  if (has_acts) {
    for (int64_t i = 0; i < cfg.n_layer; ++i) {
      const Tensor& a = expected.get("act." + std::to_string(i));
      ASSERT_EQ(a.numel(), B * Tn * d);
      EXPECT_LT(max_rel(download_f32(model.block_output(i), a.numel()), a.data<float>(), a.numel()), kLogitsTol)
          << name << " act." << i;
    }
  }

  // Gradients: bf16 against the fp32 GPU model on the same input (both add into zeroed buffers; the
  // bf16 output of each is unwritten-poison-free: NaN anywhere fails the comparison).
  DeviceBuffer<float> d_grads(std::vector<float>(P, 0.f)), d_grads32(std::vector<float>(P, 0.f));
  model.backward(d_work.get(), d_master.get(), d_grads.get());
  Model<float> ref(cfg, params.entries(), gpu());
  ref.forward(d_master.get(), tokens.data(), targets.data(), B, Tn);
  ref.backward(d_master.get(), d_grads32.get());
  const auto g16 = d_grads.download(), g32 = d_grads32.download();
  for (const ParamEntry& e : params.entries()) {
    const std::vector<float> got(g16.begin() + e.offset, g16.begin() + e.offset + e.numel());
    const std::vector<double> want(g32.begin() + e.offset, g32.begin() + e.offset + e.numel());
    const double err = rel_error(got, want);
    std::printf("%s bf16: grad %-40s rel error %.3e\n", name.c_str(), e.name.c_str(), err);
    EXPECT_LT(err, kGradTol) << name << " grad " << e.name;
  }
}

TEST(CudaModelBf16Fixtures, SambaTiny) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  check_case("samba_tiny", true);
}
TEST(CudaModelBf16Fixtures, SambaTinyGqa) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  check_case("samba_tiny_gqa", true);
}
TEST(CudaModelBf16Fixtures, MambaTiny) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  check_case("mamba_tiny", true);
}
TEST(CudaModelBf16Fixtures, HfMambaTiny) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  check_case("hf_mamba_tiny", false);
}

// ---- Training: the same short run in bf16 and fp32 on the GPU --------------------------------------

std::string write_text(const std::string& dir, size_t n) {
  const char* words[] = {"the", "model", "state", "scan", "window", "attention", "token", "loss",
                         "of",  "and",   "a",     "to",   "is",     "in",        "byte",  "layer"};
  std::mt19937 g(7);
  std::string s;
  while (s.size() < n) {
    s += words[g() % 16];
    s += (g() % 9 == 0) ? ".\n" : " ";
  }
  const std::string p = dir + "/data.txt";
  std::ofstream(p) << s;
  return p;
}

std::vector<double> train_losses(const std::string& data, const std::string& out, const std::string& precision) {
  std::string log;
  const int rc = test::run_cli(
      "train --model Samba_421M --n-layer 2 --n-embd 64 --n-head 2 --intermediate-size 128 --local-window 16 "
      "--vocab-size 256 --tokenizer bytes --seq-len 64 --batch 4 --steps 40 --lr 3e-3 --warmup 4 --eval-every 0 "
      "--final-eval none --log-every 1 --device cuda --precision " +
          precision + " --data " + data + " --out " + out,
      &log);
  EXPECT_EQ(rc, 0) << log;
  EXPECT_NE(log.find(precision == "bf16" ? "bf16 mixed precision" : ", fp32"), std::string::npos) << log;
  std::vector<double> losses;
  for (const auto& r : read_metrics(out + "/metrics.jsonl"))
    if (r.contains("loss") && r["loss"].is_number()) losses.push_back(r["loss"].get<double>());
  return losses;
}

double mean_of(const std::vector<double>& v, size_t from, size_t to) {
  double s = 0;
  for (size_t i = from; i < to; ++i) s += v[i];
  return s / double(to - from);
}

TEST(CudaTrainBf16, LossFallsAndStaysNearFp32) {
  SAMBALM_REQUIRE_GPU();
  const std::string dir = test::temp_dir("cuda_train_bf16");
  const std::string data = write_text(dir, 40000);
  const auto bf = train_losses(data, dir + "/bf16", "bf16");
  const auto fp = train_losses(data, dir + "/fp32", "fp32");
  ASSERT_EQ(bf.size(), 40u);
  ASSERT_EQ(fp.size(), 40u);
  // The last 5 steps' mean against the first 5: bf16 learns.
  const double bf_first = mean_of(bf, 0, 5), bf_last = mean_of(bf, 35, 40), fp_last = mean_of(fp, 35, 40);
  std::printf("bf16 loss %.4f -> %.4f; fp32 -> %.4f\n", bf_first, bf_last, fp_last);
  EXPECT_LT(bf_last, 0.8 * bf_first);
  // And stays within 5% of the fp32 run at every step (same data, same initial weights).
  for (size_t i = 0; i < bf.size(); ++i) EXPECT_LT(std::fabs(bf[i] - fp[i]) / fp[i], 0.05) << "step " << i + 1;
}

}  // namespace
}  // namespace sambalm
