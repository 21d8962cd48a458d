// Finite-difference gradient checks of the whole model in float64, for every layer type and
// wiring: Mamba (sequence longer than the scan chunk, so the parallel scan crosses chunk
// boundaries), sliding-window attention with window shorter than the sequence (MHA, GQA, MQA),
// full attention without RoPE, SwiGLU MLP, RMSNorm and LayerNorm, tied and untied heads, biases.
#include <algorithm>
#include <cmath>
#include <random>

#include "model/model.h"
#include "model/params.h"
#include "testing.h"

using namespace sambalm;

namespace {

void fill_random(std::vector<double>& p, const std::vector<ParamEntry>& entries, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, 0.3);
  for (auto& e : entries) {
    for (int64_t i = 0; i < e.numel(); ++i) {
      double v = nd(rng);
      if (e.name.find("norm") != std::string::npos) v = 1.0 + 0.2 * v;
      if (e.name.find("A_log") != std::string::npos) v = std::log(1.0 + (i % 4)) + 0.1 * v;
      p[e.offset + i] = v;
    }
  }
}

void gradcheck(const ModelConfig& cfg, int64_t B, int64_t Tn, int samples_per_tensor) {
  ParamStore store(param_specs(cfg));
  const auto& entries = store.entries();
  std::vector<double> p(store.size()), g(store.size(), 0.0);
  fill_random(p, entries, 7);
  std::mt19937_64 rng(11);
  std::vector<int32_t> tok(B * Tn), tgt(B * Tn);
  for (auto& t : tok) t = static_cast<int32_t>(rng() % cfg.padded_vocab_size);
  for (auto& t : tgt) t = static_cast<int32_t>(rng() % cfg.padded_vocab_size);
  tgt[1] = -1;  // an ignored position
  Model<double> model(cfg, entries);
  model.forward(p.data(), tok.data(), tgt.data(), B, Tn);
  model.backward(p.data(), g.data());
  const double eps = 1e-5;
  for (auto& e : entries) {
    double worst = 0, worst_fd = 0, worst_g = 0;
    for (int s = 0; s < samples_per_tensor; ++s) {
      size_t i = e.offset + rng() % e.numel();
      double orig = p[i];
      p[i] = orig + eps;
      double lp = model.forward(p.data(), tok.data(), tgt.data(), B, Tn);
      p[i] = orig - eps;
      double lm = model.forward(p.data(), tok.data(), tgt.data(), B, Tn);
      p[i] = orig;
      double fd = (lp - lm) / (2 * eps);
      // Relative to the larger of the two, with a floor tied to the finite-difference noise.
      double err = std::fabs(fd - g[i]) / std::max({1e-4, std::fabs(fd), std::fabs(g[i])});
      if (err > worst) {
        worst = err;
        worst_fd = fd;
        worst_g = g[i];
      }
    }
    EXPECT_LT(worst, 1e-5) << cfg.name << ": gradient of " << e.name << " finite difference " << worst_fd
                           << " analytic " << worst_g;
  }
}

ModelConfig tiny_samba() {
  return test::small_samba("gradcheck_samba", {.d = 8,
                                               .groups = 2,
                                               .head_size = 2,
                                               .mlp = 12,
                                               .window = 5,
                                               .vocab = 11,
                                               .padded = 16,
                                               .d_state = 4,
                                               .dt_rank = 2});
}

}  // namespace

TEST(ModelGradcheck, SambaGqaWindowAcrossScanChunks) {
  ModelConfig c = tiny_samba();
  gradcheck(c, 1, 70, 3);  // 70 > scan chunk (64) and > window (5)
}

TEST(ModelGradcheck, SambaMqaRmsNormShort) {
  ModelConfig c = tiny_samba();
  c.n_query_groups = 1;
  c.local_window = 2;
  gradcheck(c, 1, 9, 6);
}

TEST(ModelGradcheck, PureMambaLayerNormBiases) {
  ModelConfig c;
  c.name = "gradcheck_mamba";
  c.mamba = true;
  c.n_layer = 2;
  c.n_embd = 8;
  c.vocab_size = 13;
  c.padded_vocab_size = 16;
  c.norm = NormKind::LayerNorm;
  c.proj_bias = true;
  c.dt_rank = 3;
  c.d_state = 3;
  c.d_conv = 3;
  c.tied_embeddings = true;
  gradcheck(c, 2, 11, 6);
}

TEST(ModelGradcheck, MambaSwaMlpFullAttentionNopeUntiedBias) {
  ModelConfig c = tiny_samba();
  c.name = "gradcheck_mixed";
  c.n_layer = 2;
  c.mamba_swa_mlp = true;
  c.local_window = -1;
  c.nope = true;
  c.bias = true;
  c.tied_embeddings = false;
  c.mamba_init = false;
  gradcheck(c, 1, 7, 6);
}

TEST(ModelGradcheck, AblMambaPartialRope) {
  ModelConfig c = tiny_samba();
  c.name = "gradcheck_abl";
  c.abl_mamba = true;
  c.n_head = 2;
  c.n_query_groups = 2;
  c.head_size = 4;
  c.rotary_percentage = 0.5;
  gradcheck(c, 1, 8, 6);
}
