// AdamW, gradient clipping and the LR schedule against the formulas of torch.optim.AdamW
// (single-tensor path), torch.nn.utils.clip_grad_norm_ and pretrain.py's get_lr, written out here
// independently in double precision, on the samba_tiny fixture's real weights and gradients.
#include <cmath>
#include <numbers>
#include <vector>

#include "io/safetensors.h"
#include "testing.h"
#include "train/adamw.h"
#include "train/lr_schedule.h"

namespace sambalm {
namespace {

struct Flat {
  std::vector<std::string> names;
  std::vector<size_t> offsets, sizes;
  std::vector<float> params, grads;
};

// Every parameter that has a gradient in expected.safetensors (the tied head counted once, as torch
// holds it once), concatenated in file order.
Flat load_fixture() {
  auto model = read_safetensors(test::fixtures_dir() + "/samba_tiny/model.safetensors");
  auto expected = read_safetensors(test::fixtures_dir() + "/samba_tiny/expected.safetensors");
  Flat f;
  for (const auto& key : expected.order) {
    if (key.rfind("grad.", 0) != 0) continue;
    const std::string name = key.substr(5);
    Tensor p = model.get(name).to_f32(), g = expected.get(key).to_f32();
    EXPECT_EQ(p.numel(), g.numel()) << name;
    f.names.push_back(name);
    f.offsets.push_back(f.params.size());
    f.sizes.push_back(static_cast<size_t>(p.numel()));
    f.params.insert(f.params.end(), p.data<float>(), p.data<float>() + p.numel());
    f.grads.insert(f.grads.end(), g.data<float>(), g.data<float>() + g.numel());
  }
  return f;
}

// torch.optim.AdamW._single_tensor_adamw, in double:
//   param.mul_(1 - lr * weight_decay)
//   exp_avg.lerp_(grad, 1 - beta1)
//   exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
//   step_size = lr / (1 - beta1 ** step)
//   denom = (exp_avg_sq.sqrt() / sqrt(1 - beta2 ** step)).add_(eps)
//   param.addcdiv_(exp_avg, denom, value=-step_size)
struct RefAdamW {
  double lr, b1, b2, eps, wd;
  std::vector<double> m, v;
  int step = 0;
  void update(std::vector<double>& p, const std::vector<double>& g) {
    if (m.empty()) m.assign(p.size(), 0.0), v.assign(p.size(), 0.0);
    ++step;
    for (size_t i = 0; i < p.size(); ++i) {
      p[i] *= 1 - lr * wd;
      m[i] += (g[i] - m[i]) * (1 - b1);
      v[i] = v[i] * b2 + (1 - b2) * g[i] * g[i];
      const double step_size = lr / (1 - std::pow(b1, step));
      const double denom = std::sqrt(v[i]) / std::sqrt(1 - std::pow(b2, step)) + eps;
      p[i] += -step_size * m[i] / denom;
    }
  }
};

// clip_grad_norm_(max_norm): total = ||(||g_1||, ..., ||g_k||)||_2; coef = max_norm / (total + 1e-6);
// every g multiplied by min(coef, 1).
double ref_clip(std::vector<double>& g, const Flat& f, double max_norm) {
  double sq = 0;
  for (size_t k = 0; k < f.sizes.size(); ++k) {
    double s = 0;
    for (size_t i = 0; i < f.sizes[k]; ++i) s += g[f.offsets[k] + i] * g[f.offsets[k] + i];
    sq += s;  // (sqrt(s))^2
  }
  const double total = std::sqrt(sq);
  const double coef = std::min(max_norm / (total + 1e-6), 1.0);
  for (auto& x : g) x *= coef;
  return total;
}

// Per parameter tensor: max |a - b| / max |b|, the worst over all tensors.
double worst_rel(const Flat& f, const std::vector<float>& a, const std::vector<double>& b) {
  double worst = 0;
  for (size_t k = 0; k < f.sizes.size(); ++k) {
    double md = 0, mb = 0;
    for (size_t i = f.offsets[k]; i < f.offsets[k] + f.sizes[k]; ++i) {
      md = std::max(md, std::fabs(double(a[i]) - b[i]));
      mb = std::max(mb, std::fabs(b[i]));
    }
    worst = std::max(worst, mb > 0 ? md / mb : md);
  }
  return worst;
}

void run_steps(double lr, double wd, double clip, int steps) {
  Flat f = load_fixture();
  ASSERT_FALSE(f.params.empty());
  std::vector<double> p_ref(f.params.begin(), f.params.end());
  std::vector<double> g_ref(f.grads.begin(), f.grads.end());
  const double norm_ref = ref_clip(g_ref, f, clip);
  RefAdamW ref{lr, 0.9, 0.95, 1e-8, wd, {}, {}};

  std::vector<float> p = f.params;
  AdamW opt(p.size(), AdamWOptions{0.9, 0.95, 1e-8, wd});
  for (int s = 0; s < steps; ++s) {
    std::vector<float> g = f.grads;
    const double norm = clip_grad_norm(g.data(), g.size(), clip);
    EXPECT_NEAR(norm, norm_ref, 1e-6 * norm_ref);
    opt.step(p.data(), g.data(), lr);
    ref.update(p_ref, g_ref);
  }
  EXPECT_EQ(opt.t, steps);
  EXPECT_LT(worst_rel(f, p, p_ref), 1e-5) << "weights after " << steps << " step(s)";
  // The weights barely move in one step, so also compare the updates themselves.
  std::vector<float> dp(p.size());
  std::vector<double> dp_ref(p.size());
  for (size_t i = 0; i < p.size(); ++i) dp[i] = p[i] - f.params[i], dp_ref[i] = p_ref[i] - f.params[i];
  EXPECT_LT(worst_rel(f, dp, dp_ref), 1e-3) << "updates after " << steps << " step(s)";
}

TEST(AdamW, OneStepMatchesTorchFormulaOnFixture) {
  REQUIRE_FIXTURES();
  run_steps(1e-3, 0.1, 1.0, 1);
}

TEST(AdamW, ThreeStepsExerciseBiasCorrection) {
  REQUIRE_FIXTURES();
  run_steps(1e-3, 0.1, 1.0, 3);
}

TEST(AdamW, ClippingActiveWhenNormExceedsMax) {
  REQUIRE_FIXTURES();
  Flat f = load_fixture();
  const double norm = grad_global_norm(f.grads.data(), f.grads.size());
  ASSERT_GT(norm, 0);
  // A max_norm well below the fixture's norm makes the clip scale every gradient.
  run_steps(1e-3, 0.1, norm / 7, 2);
  std::vector<float> g = f.grads;
  clip_grad_norm(g.data(), g.size(), norm / 7);
  EXPECT_NEAR(grad_global_norm(g.data(), g.size()), norm / 7, 1e-5 * norm);
}

TEST(AdamW, ZeroGradientMovesOnlyByDecay) {
  // With g = 0 everywhere and wd = 0 the parameters must not move; with wd alone they shrink by
  // exactly (1 - lr*wd) per step.
  std::vector<float> p = {1.0f, -2.0f, 3.0f};
  std::vector<float> g(3, 0.0f);
  AdamW a(3, AdamWOptions{0.9, 0.95, 1e-8, 0.0});
  a.step(p.data(), g.data(), 0.1);
  EXPECT_EQ(p[1], -2.0f);
  AdamW b(3, AdamWOptions{0.9, 0.95, 1e-8, 0.5});
  b.step(p.data(), g.data(), 0.1);
  EXPECT_FLOAT_EQ(p[2], 3.0f * 0.95f);
}

TEST(AdamW, DecayRangesExcludeNormsBiasesEmbeddingALogD) {
  std::vector<ParamEntry> es = {
      {"embedding.weight", {8, 4}, 0},
      {"blocks.0.0.norm.weight", {4}, 32},
      {"blocks.0.0.in_proj.weight", {16, 4}, 36},
      {"blocks.0.0.conv.bias", {8}, 100},
      {"blocks.0.0.A_log", {8, 2}, 108},
      {"blocks.0.0.D", {8}, 124},
      {"blocks.0.0.out_proj.weight", {4, 8}, 132},
      {"final_norm.weight", {4}, 164},
  };
  std::vector<bool> expect = {false, false, true, false, false, false, true, false};
  for (size_t i = 0; i < es.size(); ++i) EXPECT_EQ(param_decays(es[i]), expect[i]) << es[i].name;
  auto all = decay_ranges(es, true);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].size, 168u);
  auto sel = decay_ranges(es, false);
  size_t decayed = 0;
  for (auto& r : sel) decayed += r.decay ? r.size : 0;
  EXPECT_EQ(decayed, 64u + 32u);

  // Applied: with zero gradients, only the decayed entries shrink.
  std::vector<float> p(168, 1.0f), g(168, 0.0f);
  AdamW opt(p.size(), AdamWOptions{0.9, 0.95, 1e-8, 0.1}, sel);
  opt.step(p.data(), g.data(), 1.0);
  EXPECT_EQ(p[0], 1.0f);          // embedding
  EXPECT_FLOAT_EQ(p[36], 0.9f);   // in_proj
  EXPECT_EQ(p[110], 1.0f);        // A_log
  EXPECT_FLOAT_EQ(p[140], 0.9f);  // out_proj
}

TEST(LrSchedule, MatchesPretrainGetLr) {
  // The reference recipe: lr 2e-3, min 2e-4, warmup 50, decay over 600 steps.
  LrSchedule s{2e-3, 2e-4, 50, 600};
  auto get_lr = [](double it) {
    if (it < 50) return 2e-3 * it / 50;
    if (it > 600) return 2e-4;
    double ratio = (it - 50) / 550.0;
    return 2e-4 + 0.5 * (1.0 + std::cos(std::numbers::pi * ratio)) * (2e-3 - 2e-4);
  };
  for (int it : {0, 1, 25, 49, 50, 51, 100, 325, 599, 600, 700}) EXPECT_NEAR(s.at(it), get_lr(it), 1e-15) << it;
  EXPECT_EQ(s.at(0), 0.0);
  EXPECT_DOUBLE_EQ(s.at(50), 2e-3);
  EXPECT_NEAR(s.at(325), 1.1e-3, 1e-15);  // the midpoint of the cosine
  EXPECT_DOUBLE_EQ(s.at(600), 2e-4);
  LrSchedule flat{1e-3, 1e-4, 0, 100, false};
  EXPECT_DOUBLE_EQ(flat.at(0), 1e-3);
  EXPECT_DOUBLE_EQ(flat.at(99), 1e-3);
}

}  // namespace
}  // namespace sambalm
