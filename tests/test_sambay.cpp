// SambaY (microsoft/ArchScale, Phi-4-mini-flash): configs from the three sources, parity with the
// original code on fixtures/sambay_tiny from both weight layouts (logits, loss, each block's output,
// every gradient), finite-difference gradient checks of the new layers in float64, and the refusals
// (bad configs).
#include <omp.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "infer/decode_model.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "io/state_dict.h"
#include "model/model.h"
#include "model/weights.h"
#include "ops/ops.h"
#include "testing.h"

using namespace sambalm;

namespace {

std::string sambay_dir() { return test::fixtures_dir() + "/sambay_tiny"; }

bool is_lambda(const std::string& name) { return name.find("lambda_") != std::string::npos; }

// The fixtures README: lambda gradients are sums with heavy cancellation; compare them within 1e-9
// absolute or 1e-2 relative, every other gradient within 1e-3 relative (max |a - b| / max |b|).
void expect_grad_close(const std::string& what, const float* got, const float* want, int64_t n, bool lambda) {
  if (!lambda) {
    EXPECT_LT(test::rel_error(got, want, n), 1e-3) << what;
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const double diff = std::fabs(double(got[i]) - double(want[i]));
    EXPECT_TRUE(diff <= 1e-9 || diff <= 1e-2 * std::fabs(double(want[i])))
        << what << "[" << i << "] " << got[i] << " vs " << want[i];
  }
}

void check_parity(const std::string& config_file, const std::string& weights_file) {
  const std::string dir = sambay_dir();
  ModelConfig cfg = ModelConfig::from_json_file(dir + "/" + config_file);
  ASSERT_TRUE(cfg.sambay);
  auto sd = read_state_dict(dir + "/" + weights_file);
  ParamStore params = load_params(cfg, sd, weights_file);
  auto expected = read_safetensors(dir + "/expected.safetensors");
  const Tensor& in = expected.get("input_ids");
  const int64_t B = in.dim(0), Tn = in.dim(1), V = cfg.padded_vocab_size, d = cfg.n_embd;
  auto tokens = test::ids_of(in);
  auto targets = test::ids_of(expected.get("targets"));

  Model<float> model(cfg, params.entries());
  const double loss = model.forward(params.data(), tokens.data(), targets.data(), B, Tn);
  const Tensor& exp_logits = expected.get("logits");
  ASSERT_EQ(exp_logits.numel(), B * Tn * V);
  EXPECT_LT(test::rel_error(model.logits(), exp_logits.data<float>(), B * Tn * V), 1e-4) << weights_file << " logits";
  const float exp_loss = expected.get("loss").data<float>()[0];
  EXPECT_LT(std::fabs(loss - exp_loss) / std::fabs(exp_loss), 1e-4) << "loss " << loss << " vs " << exp_loss;
  for (int64_t i = 0; i < cfg.n_layer; ++i) {
    const Tensor& a = expected.get("act." + std::to_string(i));
    ASSERT_EQ(a.numel(), B * Tn * d);
    EXPECT_LT(test::rel_error(model.block_output(i), a.data<float>(), a.numel()), 1e-4) << weights_file << " act." << i;
  }

  // The gradients are stored under the lit_gpt keys: export ours under those names.
  ParamStore grads(param_specs(cfg));
  model.backward(params.data(), grads.data());
  std::set<std::string> compared;
  for (auto& [ext_name, g] : export_params(cfg, grads, WeightFormat::LitGpt)) {
    if (!expected.has("grad." + ext_name)) continue;
    const Tensor& eg = expected.get("grad." + ext_name);
    ASSERT_EQ(eg.numel(), g.numel()) << ext_name;
    expect_grad_close(weights_file + " grad." + ext_name, g.data<float>(), eg.data<float>(), g.numel(),
                      is_lambda(ext_name));
    compared.insert(ext_name);
  }
  for (auto& key : expected.order) {
    if (key.rfind("grad.", 0) == 0) {
      EXPECT_TRUE(compared.count(key.substr(5))) << key << " not compared";
    }
  }
}

ModelConfig tiny_sambay() {
  ModelConfig c;
  c.name = "gradcheck_sambay";
  c.sambay = true;
  c.n_layer = 8;
  c.n_embd = 8;
  c.n_head = 4;
  c.n_query_groups = 2;
  c.head_size = 2;
  c.intermediate_size = 12;
  c.vocab_size = 11;
  c.padded_vocab_size = 16;
  c.local_window = 3;
  c.nope = true;
  c.norm = NormKind::LayerNorm;
  c.d_state = 3;
  c.dt_rank = 2;
  c.mamba_init = true;
  return c;
}

// Finite differences of the whole model's loss in float64 against backward(), a few entries of every
// parameter tensor (the lambda vectors, subln, q/k/v and their biases, GMU projections included).
void gradcheck(const ModelConfig& cfg, int64_t B, int64_t Tn, int samples_per_tensor) {
  ParamStore store(param_specs(cfg));
  const auto& entries = store.entries();
  std::vector<double> p(store.size()), g(store.size(), 0.0);
  std::mt19937_64 rng(7);
  std::normal_distribution<double> nd(0.0, 0.3);
  for (auto& e : entries)
    for (int64_t i = 0; i < e.numel(); ++i) {
      double v = nd(rng);
      if (e.name.find("norm") != std::string::npos || e.name.find("subln") != std::string::npos) v = 1.0 + 0.2 * v;
      if (e.name.find("A_log") != std::string::npos) v = std::log(1.0 + double(i % 4)) + 0.1 * v;
      p[e.offset + i] = v;
    }
  std::vector<int32_t> tok(B * Tn), tgt(B * Tn);
  for (auto& t : tok) t = static_cast<int32_t>(rng() % cfg.padded_vocab_size);
  for (auto& t : tgt) t = static_cast<int32_t>(rng() % cfg.padded_vocab_size);
  tgt[1] = -1;
  Model<double> model(cfg, entries);
  model.forward(p.data(), tok.data(), tgt.data(), B, Tn);
  model.backward(p.data(), g.data());
  const double eps = 1e-5;
  for (auto& e : entries) {
    double worst = 0, worst_fd = 0, worst_g = 0;
    for (int s = 0; s < samples_per_tensor; ++s) {
      const size_t i = e.offset + rng() % e.numel();
      const double orig = p[i];
      p[i] = orig + eps;
      const double lp = model.forward(p.data(), tok.data(), tgt.data(), B, Tn);
      p[i] = orig - eps;
      const double lm = model.forward(p.data(), tok.data(), tgt.data(), B, Tn);
      p[i] = orig;
      const double fd = (lp - lm) / (2 * eps);
      const double err = std::fabs(fd - g[i]) / std::max({1e-4, std::fabs(fd), std::fabs(g[i])});
      if (err > worst) worst = err, worst_fd = fd, worst_g = g[i];
    }
    EXPECT_LT(worst, 1e-5) << cfg.name << ": gradient of " << e.name << " finite difference " << worst_fd
                           << " analytic " << worst_g;
  }
}

nlohmann::json fixture_hf_config() { return nlohmann::json::parse(read_text_file(sambay_dir() + "/config.json")); }

}  // namespace

// ---- Configs -------------------------------------------------------------------------------------

TEST(SambaYConfig, FixtureConfigsAgree) {
  REQUIRE_FIXTURES();
  ModelConfig hf = ModelConfig::from_json_file(sambay_dir() + "/config.json");
  ModelConfig lit = ModelConfig::from_json_file(sambay_dir() + "/lit_config.json");
  for (const ModelConfig* c : {&hf, &lit}) {
    EXPECT_TRUE(c->sambay);
    EXPECT_EQ(c->n_layer, 8);
    EXPECT_EQ(c->n_embd, 64);
    EXPECT_EQ(c->n_head, 4);
    EXPECT_EQ(c->n_query_groups, 2);
    EXPECT_EQ(c->head_size, 16);
    EXPECT_EQ(c->local_window, 6);
    EXPECT_EQ(c->padded_vocab_size, 128);
    EXPECT_EQ(c->norm, NormKind::LayerNorm);
    EXPECT_EQ(c->layer_pattern(), "M D M D m K G X");
    EXPECT_EQ(c->num_params(), hf.num_params());
  }
  // The roles of lit_config.json's layer_kinds, block by block.
  auto lit_json = nlohmann::json::parse(read_text_file(sambay_dir() + "/lit_config.json"));
  const auto layout = lit.layout();
  const std::vector<std::string> kinds = lit_json.at("layer_kinds");
  ASSERT_EQ(kinds.size(), layout.size());
  for (size_t i = 0; i < kinds.size(); ++i) {
    const Sublayer& s = layout[i].sublayers.at(0);
    std::string role = s.kind == SublayerKind::Mamba            ? (s.keeps_memory ? "mamba_memory" : "mamba")
                       : s.kind == SublayerKind::DiffAttention  ? (s.shares_kv ? "full_attention_kv" : "swa")
                       : s.kind == SublayerKind::Gmu            ? "gmu"
                       : s.kind == SublayerKind::CrossAttention ? "cross_attention"
                                                                : "?";
    EXPECT_EQ(role, kinds[i]) << "block " << i;
    EXPECT_EQ(layout[i].sublayers.at(1).kind, SublayerKind::MLP);
    EXPECT_NEAR(s.lambda_init, 0.8 - 0.6 * std::exp(-0.3 * double(i)), 1e-15);
  }
}

TEST(SambaYConfig, PresetParameterCountAndRoles) {
  ModelConfig c = ModelConfig::from_preset("phi4miniflash_d32");
  EXPECT_EQ(c.num_params(), 3852551424);
  std::string out;
  ASSERT_EQ(test::run_cli("info phi4miniflash_d32", &out), 0) << out;
  EXPECT_NE(out.find("3,852,551,424"), std::string::npos) << out;
  for (const char* role : {"mamba+mlp10240", "diffswa512+mlp10240", "mamba_memory+mlp10240",
                           "diffattn_shared_kv+mlp10240", "gmu+mlp10240", "cross_diffattn+mlp10240"})
    EXPECT_NE(out.find(role), std::string::npos) << role << "\n" << out;
  EXPECT_NE(out.find("blocks 16\n"), std::string::npos) << out;  // the memory layer
  EXPECT_NE(out.find("blocks 17\n"), std::string::npos) << out;  // the shared-KV layer
  // Decode state: 9 Mamba layers' conv + SSM states, 8 windows of 512 keys/values, one shared cache
  // of the whole context (20 kv heads of 64, fp32); the cross-decoder keeps nothing.
  ASSERT_EQ(test::run_cli("info phi4miniflash_d32 --json --context 32768", &out), 0) << out;
  auto j = nlohmann::json::parse(out);
  const int64_t kv_per_pos = 2 * 20 * 64 * 4;
  EXPECT_EQ(j["inference"]["decode_attention_bytes_per_seq"].get<int64_t>(), kv_per_pos * (8 * 512 + 32768));
  EXPECT_EQ(j["inference"]["decode_mamba_bytes_per_seq"].get<int64_t>(), 9 * 4 * (3 * 5120 + 5120 * 16));
}

TEST(SambaYConfig, BadConfigsNameTheField) {
  REQUIRE_FIXTURES();
  auto expect_error = [](nlohmann::json j, const std::string& field) {
    try {
      ModelConfig::from_json(j, "cfg.json");
      ADD_FAILURE() << "accepted a config with bad " << field;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("cfg.json"), std::string::npos) << e.what();
    }
  };
  nlohmann::json hf = fixture_hf_config();
  auto odd_heads = hf;
  odd_heads["num_attention_heads"] = 1;
  expect_error(odd_heads, "num_attention_heads");
  auto odd_kv = hf;
  odd_kv["num_key_value_heads"] = 1;
  expect_error(odd_kv, "num_key_value_heads");
  auto layers = hf;
  layers["num_hidden_layers"] = 6;
  expect_error(layers, "num_hidden_layers");
  // The lit_gpt form: the same checks, and ArchScale variants sambalm does not build.
  auto lit = nlohmann::json::parse(read_text_file(sambay_dir() + "/lit_config.json"));
  auto lit_layers = lit;
  lit_layers["n_layer"] = 10;
  expect_error(lit_layers, "n_layer");
  auto lit_kv = lit;
  lit_kv["n_query_groups"] = 1;
  expect_error(lit_kv, "n_query_groups");
  auto no_da = lit;
  no_da["use_da"] = false;
  expect_error(no_da, "use_da");
}

// ---- Parity with the original code ---------------------------------------------------------------

TEST(SambaYParity, HuggingFaceLayout) {
  REQUIRE_FIXTURES();
  check_parity("config.json", "model.safetensors");
}

TEST(SambaYParity, LitGptLayout) {
  REQUIRE_FIXTURES();
  check_parity("lit_config.json", "lit_model.safetensors");
}

// Both layouts hold the same model: loading either gives the same parameters, and exporting to the
// other's names gives back its tensors exactly (the Wqkv key bias is zero in the original).
TEST(SambaYParity, LayoutsRoundTrip) {
  REQUIRE_FIXTURES();
  ModelConfig cfg = ModelConfig::from_json_file(sambay_dir() + "/config.json");
  auto hf_sd = read_state_dict(sambay_dir() + "/model.safetensors");
  auto lit_sd = read_state_dict(sambay_dir() + "/lit_model.safetensors");
  ParamStore a = load_params(cfg, hf_sd, "hf"), b = load_params(cfg, lit_sd, "lit");
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
  for (auto [fmt, sd] : {std::pair{WeightFormat::HF, &hf_sd}, std::pair{WeightFormat::LitGpt, &lit_sd}}) {
    auto out = export_params(cfg, a, fmt);
    EXPECT_EQ(out.size(), sd->size());
    for (auto& [name, t] : out) {
      ASSERT_TRUE(sd->count(name)) << name;
      const Tensor& want = sd->at(name);
      ASSERT_EQ(t.shape(), want.shape()) << name;
      EXPECT_EQ(0, std::memcmp(t.raw(), want.raw(), size_t(t.numel()) * sizeof(float))) << name;
    }
  }
}

// Through the command line: the lit_gpt checkpoint converted to Hugging Face names (and a Phi4Flash
// config.json), then `sambalm forward` on the result gives the original logits.
TEST(SambaYParity, ConvertLitToHfThenForward) {
  REQUIRE_FIXTURES();
  const std::string tmp = test::temp_dir("sambay_conv");
  const std::string src = tmp + "/lit";
  std::filesystem::create_directories(src);
  std::filesystem::copy_file(sambay_dir() + "/lit_config.json", src + "/config.json");
  std::filesystem::copy_file(sambay_dir() + "/lit_model.safetensors", src + "/model.safetensors");
  std::string log;
  ASSERT_EQ(test::run_cli("convert " + src + " --out " + tmp + "/hf --to hf", &log), 0) << log;
  auto cfg = nlohmann::json::parse(read_text_file(tmp + "/hf/config.json"));
  EXPECT_EQ(cfg.at("model_type"), "phi4flash");
  auto written = read_state_dict(tmp + "/hf/model.safetensors");
  auto original = read_state_dict(sambay_dir() + "/model.safetensors");
  EXPECT_EQ(written.size(), original.size());
  ASSERT_EQ(test::run_cli("forward --model " + tmp + "/hf --inputs " + sambay_dir() + "/expected.safetensors --out " +
                              tmp + "/out.safetensors --acts",
                          &log),
            0)
      << log;
  auto got = read_safetensors(tmp + "/out.safetensors");
  auto expected = read_safetensors(sambay_dir() + "/expected.safetensors");
  EXPECT_LT(test::rel_error(got.get("logits"), expected.get("logits")), 1e-4);
  EXPECT_LT(test::rel_error(got.get("loss"), expected.get("loss")), 1e-4);
  EXPECT_LT(test::rel_error(got.get("act.7"), expected.get("act.7")), 1e-4);
}

// ---- Gradients of the new layers (float64 finite differences) ------------------------------------

TEST(SambaYGradcheck, WindowShorterThanSequence) {
  ModelConfig c = tiny_sambay();
  gradcheck(c, 2, 9, 4);  // window 3 < 9: the self-decoder's attention is banded
}

TEST(SambaYGradcheck, MoreHeadsPerKvGroupUntiedNoAttentionBias) {
  ModelConfig c = tiny_sambay();
  c.n_head = 8;
  c.n_embd = 16;
  c.n_query_groups = 2;  // 4 query heads per kv head: pairs (2m, 2m+1) read kv 2 (m / 4) and the next
  c.attn_bias = false;
  c.attn_out_bias = false;
  c.tied_embeddings = false;
  c.local_window = 20;  // wider than the sequence
  gradcheck(c, 1, 7, 4);
}

// ---- The ops ---------------------------------------------------------------------------------------

namespace {

struct DiffShape {
  int64_t B, Tn, H, G, hd, window;
};

// q, k, v as views into one fused [q | k | v] row per token (the layer's layout), random values.
struct DiffInputs {
  DiffShape s;
  int64_t W;
  std::vector<double> qkv;
  double lambda;
  DiffInputs(const DiffShape& sh, uint64_t seed) : s(sh), W((sh.H + 2 * sh.G) * sh.hd) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> nd(0.0, 0.7);
    qkv.resize(size_t(s.B * s.Tn * W));
    for (auto& x : qkv) x = nd(rng);
    lambda = 0.37;
  }
  const double* q() const { return qkv.data(); }
  const double* k() const { return qkv.data() + s.H * s.hd; }
  const double* v() const { return qkv.data() + (s.H + s.G) * s.hd; }
};

// The oracle: the standard attention op run on each half of the heads. Half c of the queries (heads
// c, c+2, ...) against half c of the key/value heads is ordinary GQA; P1 and P2 times the even and
// the odd value heads give the four hd-wide pieces of a = P1 V - lambda P2 V.
std::vector<double> diff_attention_by_halves(const DiffInputs& in) {
  const auto& s = in.s;
  const int64_t Hh = s.H / 2, Gh = s.G / 2, hd = s.hd;
  auto gather = [&](const double* base, int64_t heads, int64_t parity) {
    std::vector<double> out(size_t(s.B * heads * s.Tn * hd));  // [B, heads, T, hd]
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t t = 0; t < s.Tn; ++t)
          for (int64_t i = 0; i < hd; ++i)
            out[((b * heads + h) * s.Tn + t) * hd + i] = base[(b * s.Tn + t) * in.W + (2 * h + parity) * hd + i];
    return out;
  };
  std::vector<double> a(size_t(s.B * s.Tn * s.H * hd), 0.0);
  const double scale = 1.0 / std::sqrt(double(hd));
  for (int64_t c = 0; c < 2; ++c) {
    auto q = gather(in.q(), Hh, c), k = gather(in.k(), Gh, c);
    const double sign = c == 0 ? 1.0 : -in.lambda;
    for (int64_t vpar = 0; vpar < 2; ++vpar) {
      auto v = gather(in.v(), Gh, vpar);
      std::vector<double> o(size_t(s.B * s.Tn * Hh * hd)), lse(size_t(s.B * Hh * s.Tn));
      ops::attention_forward(cpu_context(), o.data(), lse.data(), q.data(), k.data(), v.data(), s.B, s.Tn, Hh, Gh, hd,
                             s.window, scale);
      for (int64_t b = 0; b < s.B; ++b)
        for (int64_t t = 0; t < s.Tn; ++t)
          for (int64_t m = 0; m < Hh; ++m)
            for (int64_t i = 0; i < hd; ++i)
              a[((b * s.Tn + t) * s.H + 2 * m) * hd + vpar * hd + i] += sign * o[((b * s.Tn + t) * Hh + m) * hd + i];
    }
  }
  return a;
}

}  // namespace

TEST(SambaYOps, DiffAttentionEqualsStandardAttentionPerHalf) {
  for (DiffShape sh : {DiffShape{2, 9, 4, 2, 3, 4}, DiffShape{1, 7, 8, 2, 2, 0}, DiffShape{1, 6, 4, 4, 5, 1}}) {
    DiffInputs in(sh, 3);
    std::vector<double> out(size_t(sh.B * sh.Tn * sh.H * sh.hd)), lse(size_t(sh.B * sh.Tn * sh.H));
    ops::diff_attention_forward(cpu_context(), out.data(), lse.data(), in.q(), in.W, in.k(), in.v(), in.W, &in.lambda,
                                sh.B, sh.Tn, sh.H, sh.G, sh.hd, sh.window, 1.0 / std::sqrt(double(sh.hd)));
    auto want = diff_attention_by_halves(in);
    double worst = 0;
    for (size_t i = 0; i < out.size(); ++i) worst = std::max(worst, std::fabs(out[i] - want[i]));
    EXPECT_LT(worst, 1e-12) << "H " << sh.H << " G " << sh.G << " window " << sh.window;
  }
}

// d/d(q, k, v, lambda) of sum(w * out) by central differences, against diff_attention_backward.
TEST(SambaYOps, DiffAttentionBackwardFiniteDifferences) {
  const DiffShape sh{2, 7, 4, 2, 3, 3};
  DiffInputs in(sh, 5);
  const int64_t n_out = sh.B * sh.Tn * sh.H * sh.hd;
  std::vector<double> w(static_cast<size_t>(n_out));
  std::mt19937_64 rng(9);
  std::normal_distribution<double> nd(0.0, 1.0);
  for (auto& x : w) x = nd(rng);
  const double scale = 1.0 / std::sqrt(double(sh.hd));
  auto objective = [&](const DiffInputs& x) {
    std::vector<double> out(static_cast<size_t>(n_out));
    ops::diff_attention_forward(cpu_context(), out.data(), static_cast<double*>(nullptr), x.q(), x.W, x.k(), x.v(), x.W,
                                &x.lambda, sh.B, sh.Tn, sh.H, sh.G, sh.hd, sh.window, scale);
    double l = 0;
    for (int64_t i = 0; i < n_out; ++i) l += w[size_t(i)] * out[size_t(i)];
    return l;
  };
  std::vector<double> out(static_cast<size_t>(n_out)), lse(size_t(sh.B * sh.Tn * sh.H));
  ops::diff_attention_forward(cpu_context(), out.data(), lse.data(), in.q(), in.W, in.k(), in.v(), in.W, &in.lambda,
                              sh.B, sh.Tn, sh.H, sh.G, sh.hd, sh.window, scale);
  std::vector<double> dqkv(in.qkv.size(), 0.0);
  double dlambda = 0;
  std::vector<double> parts(static_cast<size_t>(sh.B * sh.G / 2));
  ops::diff_attention_backward(cpu_context(), dqkv.data(), dqkv.data() + sh.H * sh.hd,
                               dqkv.data() + (sh.H + sh.G) * sh.hd, &dlambda, parts.data(), w.data(), lse.data(),
                               in.q(), in.W, in.k(), in.v(), in.W, &in.lambda, sh.B, sh.Tn, sh.H, sh.G, sh.hd,
                               sh.window, scale);
  const double eps = 1e-6;
  for (size_t i = 0; i < in.qkv.size(); ++i) {
    DiffInputs p = in, m = in;
    p.qkv[i] += eps;
    m.qkv[i] -= eps;
    const double fd = (objective(p) - objective(m)) / (2 * eps);
    EXPECT_NEAR(dqkv[i], fd, 1e-7 * std::max(1.0, std::fabs(fd))) << "element " << i;
  }
  DiffInputs p = in, m = in;
  p.lambda += eps;
  m.lambda -= eps;
  EXPECT_NEAR(dlambda, (objective(p) - objective(m)) / (2 * eps), 1e-7);
}

// Above the size where the ops go parallel: the same bits on 1, 2 and 3 threads (the backward sums
// dlambda's per-task shares in a fixed order).
TEST(SambaYOps, DiffAttentionSameResultOnAnyThreadCount) {
  const int64_t B = 2, Tn = 40, H = 8, G = 4, hd = 16, W = (H + 2 * G) * hd, window = 12;
  std::mt19937_64 rng(4);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> qkv(static_cast<size_t>(B * Tn * W)), dout(static_cast<size_t>(B * Tn * H * hd));
  for (auto& x : qkv) x = nd(rng);
  for (auto& x : dout) x = nd(rng);
  const float lambda = 0.3f;
  struct Result {
    std::vector<float> out, lse, dqkv;
    float dlambda = 0;
  };
  auto run = [&](int threads) {
    Result r{std::vector<float>(dout.size()), std::vector<float>(static_cast<size_t>(B * Tn * H)),
             std::vector<float>(qkv.size())};
    std::vector<float> parts(static_cast<size_t>(B * G / 2));
    const int keep = omp_get_max_threads();
    omp_set_num_threads(threads);
    const float* q = qkv.data();
    ops::diff_attention_forward(cpu_context(), r.out.data(), r.lse.data(), q, W, q + H * hd, q + (H + G) * hd, W,
                                &lambda, B, Tn, H, G, hd, window, 0.25);
    ops::diff_attention_backward(cpu_context(), r.dqkv.data(), r.dqkv.data() + H * hd, r.dqkv.data() + (H + G) * hd,
                                 &r.dlambda, parts.data(), dout.data(), r.lse.data(), q, W, q + H * hd,
                                 q + (H + G) * hd, W, &lambda, B, Tn, H, G, hd, window, 0.25);
    omp_set_num_threads(keep);
    return r;
  };
  const Result one = run(1);
  for (int threads : {2, 3}) {
    const Result r = run(threads);
    EXPECT_EQ(r.out, one.out) << threads;
    EXPECT_EQ(r.lse, one.lse) << threads;
    EXPECT_EQ(r.dqkv, one.dqkv) << threads;
    EXPECT_EQ(r.dlambda, one.dlambda) << threads;
  }
}

TEST(SambaYOps, DiffLambdaForwardBackward) {
  const int64_t hd = 5;
  std::vector<double> v(4 * hd);
  std::mt19937_64 rng(2);
  std::normal_distribution<double> nd(0.0, 0.3);
  for (auto& x : v) x = nd(rng);
  auto lambda_of = [&](const std::vector<double>& x) {
    double l = 0;
    ops::diff_lambda_forward(cpu_context(), &l, x.data(), x.data() + hd, x.data() + 2 * hd, x.data() + 3 * hd, hd, 0.2);
    return l;
  };
  double d1 = 0, d2 = 0;
  for (int64_t i = 0; i < hd; ++i) d1 += v[i] * v[hd + i], d2 += v[2 * hd + i] * v[3 * hd + i];
  EXPECT_NEAR(lambda_of(v), std::exp(d1) - std::exp(d2) + 0.2, 1e-15);
  std::vector<double> g(4 * hd, 0.0);
  const double dl = 1.5;
  ops::diff_lambda_backward(cpu_context(), g.data(), g.data() + hd, g.data() + 2 * hd, g.data() + 3 * hd, &dl, v.data(),
                            v.data() + hd, v.data() + 2 * hd, v.data() + 3 * hd, hd);
  for (size_t i = 0; i < v.size(); ++i) {
    auto p = v, m = v;
    p[i] += 1e-6;
    m[i] -= 1e-6;
    EXPECT_NEAR(g[i], dl * (lambda_of(p) - lambda_of(m)) / 2e-6, 1e-8) << i;
  }
}

