// init_params: statistical properties of each rule of the original initialisation (the rules are
// in init.h), exact values where the original's are exact, and determinism.
#include <cmath>
#include <cstring>

#include "model/init.h"
#include "testing.h"

using namespace sambalm;

namespace {

struct Stats {
  double mean = 0, std = 0, min = 1e30, max = -1e30;
};

Stats stats(const ParamStore& p, const std::string& name) {
  const float* x = p.get(name);
  int64_t n = p.entry(name).numel();
  Stats s;
  double sum = 0, sq = 0;
  for (int64_t i = 0; i < n; ++i) {
    sum += x[i];
    sq += double(x[i]) * x[i];
    s.min = std::min(s.min, double(x[i]));
    s.max = std::max(s.max, double(x[i]));
  }
  s.mean = sum / n;
  s.std = std::sqrt(sq / n - s.mean * s.mean);
  return s;
}

// A uniform(-b, b) sample: inside the bound, reaching close to it, with std b/sqrt(3).
void expect_uniform(const ParamStore& p, const std::string& name, double b) {
  SCOPED_TRACE(name);
  Stats s = stats(p, name);
  EXPECT_LE(s.max, b * (1 + 1e-6));
  EXPECT_GE(s.min, -b * (1 + 1e-6));
  EXPECT_GT(s.max, 0.9 * b);
  EXPECT_LT(s.min, -0.9 * b);
  EXPECT_NEAR(s.std, b / std::sqrt(3.0), 0.06 * b);
  EXPECT_NEAR(s.mean, 0.0, 0.1 * b);
}

void expect_normal(const ParamStore& p, const std::string& name, double std) {
  SCOPED_TRACE(name);
  Stats s = stats(p, name);
  EXPECT_NEAR(s.std, std, 0.05 * std);
  EXPECT_NEAR(s.mean, 0.0, 0.1 * std);
  EXPECT_GT(s.max, 2.5 * std);  // not uniform: tails beyond the uniform's reach
}

void expect_constant(const ParamStore& p, const std::string& name, float v) {
  const float* x = p.get(name);
  for (int64_t i = 0; i < p.entry(name).numel(); ++i) ASSERT_EQ(x[i], v) << name << "[" << i << "]";
}

// Samba-like: Mamba / SWA alternating with MLPs, mamba_init, tied.
ModelConfig samba_like() {
  return test::small_samba(
      "samba_like", {.d = 128, .groups = 4, .head_size = 32, .mlp = 256, .window = 16, .vocab = 1000, .padded = 1024});
}

ParamStore init(const ModelConfig& c, uint64_t seed) {
  c.validate();
  ParamStore p(param_specs(c));
  init_params(c, p, seed);
  return p;
}

}  // namespace

TEST(Init, MambaInitRules) {
  ModelConfig c = samba_like();
  ParamStore p = init(c, 1);
  const double d = 128, di = 256, L = 4, hidden = 256, K = 4, r = c.mamba_dt_rank();
  const double out = 1.0 / std::sqrt(2 * L);  // n_res = 2
  EXPECT_EQ(init_residuals_per_layer(c), 2);
  expect_normal(p, "embedding.weight", 0.02);
  EXPECT_FALSE(p.has("lm_head.weight"));
  // Mamba block 0.
  expect_uniform(p, "blocks.0.0.in_proj.weight", 1 / std::sqrt(d));
  expect_uniform(p, "blocks.0.0.x_proj.weight", 1 / std::sqrt(di));
  expect_uniform(p, "blocks.0.0.dt_proj.weight", 1 / std::sqrt(r));
  expect_uniform(p, "blocks.0.0.conv.weight", 1 / std::sqrt(K));
  expect_uniform(p, "blocks.0.0.conv.bias", 1 / std::sqrt(K));
  expect_uniform(p, "blocks.0.0.out_proj.weight", out / std::sqrt(di));
  const float* A = p.get("blocks.0.0.A_log");
  for (int64_t ch = 0; ch < 256; ++ch)
    for (int64_t n = 0; n < 16; ++n) ASSERT_EQ(A[ch * 16 + n], float(std::log(double(n + 1))));
  expect_constant(p, "blocks.0.0.D", 1.0f);
  expect_constant(p, "blocks.0.0.norm.weight", 1.0f);
  // dt = softplus(bias) log-uniform in [1e-3, 0.1].
  const float* b = p.get("blocks.2.0.dt_proj.bias");
  double mean_log = 0;
  double lo = 1, hi = 0;
  for (int i = 0; i < 256; ++i) {
    double dt = std::log1p(std::exp(double(b[i])));
    lo = std::min(lo, dt), hi = std::max(hi, dt);
    mean_log += std::log(dt) / 256;
  }
  EXPECT_GE(lo, 1e-3 * (1 - 1e-4));
  EXPECT_LE(hi, 0.1 * (1 + 1e-4));
  EXPECT_LT(lo, 2e-3);
  EXPECT_GT(hi, 0.05);
  EXPECT_NEAR(mean_log, 0.5 * (std::log(1e-3) + std::log(0.1)), 0.4);
  // Attention block 1, MLPs.
  expect_uniform(p, "blocks.1.0.qkv.weight", 1 / std::sqrt(d));
  expect_uniform(p, "blocks.1.0.proj.weight", out / std::sqrt(d));
  expect_uniform(p, "blocks.1.1.w1.weight", 1 / std::sqrt(d));
  expect_uniform(p, "blocks.1.1.w2.weight", 1 / std::sqrt(d));
  expect_uniform(p, "blocks.1.1.w3.weight", out / std::sqrt(hidden));
  expect_constant(p, "final_norm.weight", 1.0f);
}

TEST(Init, ResidualCountFollowsTheWiring) {
  ModelConfig c = samba_like();
  c.mamba_swa_mlp = true;
  EXPECT_EQ(init_residuals_per_layer(c), 3);
  ParamStore p = init(c, 2);
  expect_uniform(p, "blocks.0.0.out_proj.weight", 1 / std::sqrt(256.0) / std::sqrt(3 * 4.0));
  expect_uniform(p, "blocks.0.2.w3.weight", 1 / std::sqrt(256.0) / std::sqrt(3 * 4.0));
  c.mlp = false;
  EXPECT_EQ(init_residuals_per_layer(c), 1);
  ModelConfig m;
  m.mamba = true;
  m.mamba_init = true;
  m.mlp = false;
  m.n_layer = 3;
  m.n_embd = 128;
  m.vocab_size = m.padded_vocab_size = 64;
  EXPECT_EQ(init_residuals_per_layer(m), 1);
  ParamStore q = init(m, 3);
  expect_uniform(q, "blocks.1.0.out_proj.weight", 1 / std::sqrt(256.0) / std::sqrt(3.0));
  expect_normal(q, "embedding.weight", 0.02);
}

TEST(Init, AblMambaSlotMlpIsScaled) {
  ModelConfig c = samba_like();
  c.abl_mamba = true;
  ParamStore p = init(c, 4);
  // The MLP in the Mamba slot has hidden 2*d; its w3 is an output projection too.
  EXPECT_EQ(p.entry("blocks.0.0.w3.weight").shape, (Shape{128, 256}));
  expect_uniform(p, "blocks.0.0.w3.weight", 1 / std::sqrt(256.0) / std::sqrt(8.0));
  expect_uniform(p, "blocks.0.0.w1.weight", 1 / std::sqrt(128.0));
}

TEST(Init, GptNeoxRules) {
  ModelConfig c = samba_like();
  c.mb_per_layer = -1;  // Llama-style: attention everywhere
  c.mamba_init = false;
  c.tied_embeddings = false;
  c.bias = true;
  c.norm = NormKind::LayerNorm;
  ParamStore p = init(c, 5);
  const double d = 128, L = 4, std_ = std::sqrt(2 / (5 * d));
  expect_normal(p, "embedding.weight", std_);
  expect_normal(p, "lm_head.weight", std_);
  expect_normal(p, "blocks.0.0.qkv.weight", std_);
  expect_normal(p, "blocks.0.1.w1.weight", std_);
  expect_normal(p, "blocks.2.0.proj.weight", 1 / std::sqrt(d) / L);
  expect_normal(p, "blocks.2.1.w3.weight", 1 / std::sqrt(d) / L);
  expect_constant(p, "blocks.0.0.qkv.bias", 0.0f);
  expect_constant(p, "blocks.0.1.w3.bias", 0.0f);
  expect_constant(p, "blocks.0.0.norm.weight", 1.0f);
  expect_constant(p, "blocks.0.0.norm.bias", 0.0f);
  expect_constant(p, "final_norm.bias", 0.0f);
}

TEST(Init, DeterministicInTheSeed) {
  ModelConfig c = samba_like();
  ParamStore a = init(c, 42), b = init(c, 42), d = init(c, 43);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  EXPECT_NE(std::memcmp(a.data(), d.data(), a.size() * sizeof(float)), 0);
  // Parameters of the same shape and rule differ from each other.
  EXPECT_NE(std::memcmp(a.get("blocks.0.0.in_proj.weight"), a.get("blocks.2.0.in_proj.weight"),
                        a.entry("blocks.0.0.in_proj.weight").numel() * sizeof(float)),
            0);
}
