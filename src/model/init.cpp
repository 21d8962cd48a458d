// Weight initialisation (see init.h for the rules and where they come from).
#include "model/init.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <vector>

#include "core/error.h"
#include "model/packed_weights.h"

namespace sambalm {

namespace {

// splitmix64: a small, well-mixed generator whose output is the same on every platform (unlike
// std::normal_distribution), so a seed means the same weights everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  double normal() {  // Box-Muller
    double u1 = uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log1p(-u1)) * std::cos(2.0 * M_PI * u2);
  }

 private:
  uint64_t state_;
};

uint64_t name_hash(const std::string& s) {  // FNV-1a
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

// Where the values go: the float32 buffer of a ParamStore, or, for the matrices that are packed as
// they are initialised (init_params_packed), one float32 scratch matrix at a time that is packed into
// `sink` once the next parameter is touched (or at finish()). Every rule below touches a matrix in
// one run of calls (fill, then perhaps scale or a re-draw), so packing on the switch sees its final
// values.
class Initializer {
 public:
  Initializer(ParamStore& p, uint64_t seed) : p_(p), seed_(seed) {}
  Initializer(ParamStore& floats, std::map<std::string, Shape> packed, PackedWeights* sink, MatrixFormat format,
              uint64_t seed)
      : p_(floats), seed_(seed), packed_(std::move(packed)), sink_(sink), format_(format) {}

  // Chunks of kChunk values each draw from their own stream (seed, name, chunk index), so large
  // parameters fill in parallel and the values do not depend on the number of threads.
  template <typename F>
  void fill(const std::string& name, F f) {
    constexpr int64_t kChunk = 1 << 16;
    const int64_t n = shape_numel(shape(name)), chunks = (n + kChunk - 1) / kChunk;
    const uint64_t base = seed_ ^ name_hash(name);
    float* x = values(name);
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
      Rng rng(base + 0xD1B54A32D192ED03ull * uint64_t(c + 1));
      rng.next();
      for (int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i) x[i] = f(rng, i);
    }
  }
  void constant(const std::string& name, float v) {
    fill(name, [v](Rng&, int64_t) { return v; });
  }
  void uniform(const std::string& name, double bound) {
    fill(name, [bound](Rng& r, int64_t) { return float(r.uniform(-bound, bound)); });
  }
  void normal(const std::string& name, double std) {
    fill(name, [std](Rng& r, int64_t) { return float(r.normal() * std); });
  }
  // Zero when the parameter exists (optional biases).
  void zero_if(const std::string& name) {
    if (has(name)) constant(name, 0.0f);
  }
  void scale(const std::string& name, double s) {
    const int64_t n = shape_numel(shape(name));
    float* x = values(name);
    for (int64_t i = 0; i < n; ++i) x[i] = float(double(x[i]) * s);
  }
  const Shape& shape(const std::string& name) const {
    auto it = packed_.find(name);
    return it != packed_.end() ? it->second : p_.entry(name).shape;
  }
  bool has(const std::string& name) const { return packed_.count(name) || p_.has(name); }
  // Packs the scratch matrix, if any (call once after the last rule).
  void finish() {
    if (scratch_name_.empty()) return;
    const Shape& s = packed_.at(scratch_name_);
    sink_->add(scratch_name_, pack_matrix(scratch_.data(), s[0], s[1], format_));
    std::vector<float>().swap(scratch_);  // give the memory back before the next matrix is drawn
    scratch_name_.clear();
  }

 private:
  float* values(const std::string& name) {
    if (!packed_.count(name)) return p_.get(name);
    if (scratch_name_ != name) {
      // A rule that came back to a matrix after another one would find it packed already.
      SAMBALM_CHECK(!sink_->find(name), "init: parameter '{}' is touched again after it was packed", name);
      finish();
      scratch_.resize(static_cast<size_t>(shape_numel(packed_.at(name))));
      scratch_name_ = name;
    }
    return scratch_.data();
  }

  ParamStore& p_;
  uint64_t seed_;
  std::map<std::string, Shape> packed_;  // the matrices initialised into `sink_`
  PackedWeights* sink_ = nullptr;
  MatrixFormat format_ = MatrixFormat::F32;
  std::string scratch_name_;
  std::vector<float> scratch_;
};

// PyTorch's default Linear init: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)).
void default_linear(Initializer& in, const std::string& w) {
  in.uniform(w, 1.0 / std::sqrt(double(in.shape(w).at(1))));
}

void init_mamba_internals(Initializer& in, const ModelConfig& c, const std::string& p) {
  const double conv_bound = 1.0 / std::sqrt(double(c.d_conv));  // depthwise Conv1d: fan_in = d_conv
  in.uniform(p + "conv.weight", conv_bound);
  if (in.has(p + "conv.bias")) in.uniform(p + "conv.bias", conv_bound);
  const int64_t N = c.d_state;
  in.fill(p + "A_log", [N](Rng&, int64_t i) { return float(std::log(double(i % N + 1))); });
  in.constant(p + "D", 1.0f);
}

// dt = exp(U * (log dt_max - log dt_min) + log dt_min) floored at 1e-4, bias = softplus^-1(dt)
// = dt + log(-expm1(-dt)), as mamba_simple.py computes it.
void init_dt_bias(Initializer& in, const std::string& name) {
  const double lo = std::log(0.001), hi = std::log(0.1);
  in.fill(name, [lo, hi](Rng& r, int64_t) {
    double dt = std::max(std::exp(r.uniform() * (hi - lo) + lo), 1e-4);
    return float(dt + std::log(-std::expm1(-dt)));
  });
}

void init_norm(Initializer& in, const std::string& prefix) {
  in.constant(prefix + "weight", 1.0f);
  in.zero_if(prefix + "bias");
}

}  // namespace

int64_t init_residuals_per_layer(const ModelConfig& cfg) {
  if (cfg.mamba || !cfg.mlp) return 1;
  if (cfg.mamba_swa_mlp) return 3;
  return 2;
}

namespace {

void init_all(const ModelConfig& cfg, Initializer& in) {
  const bool mamba_style = cfg.mamba || cfg.mamba_init;
  const double L = double(cfg.n_layer), d = double(cfg.n_embd);
  const double neox_std = std::sqrt(2.0 / (5.0 * d));
  const double out_scale = 1.0 / std::sqrt(double(init_residuals_per_layer(cfg)) * L);
  const double neox_out_std = 1.0 / std::sqrt(d) / L;

  auto linear = [&](const std::string& w, const std::string& b) {
    if (mamba_style)
      default_linear(in, w);
    else
      in.normal(w, neox_std);
    in.zero_if(b);
  };
  auto out_proj = [&](const std::string& w, const std::string& b) {
    linear(w, b);
    if (mamba_style)
      in.scale(w, out_scale);
    else
      in.normal(w, neox_out_std);
  };

  in.normal("embedding.weight", mamba_style ? 0.02 : neox_std);
  if (in.has("lm_head.weight")) linear("lm_head.weight", "");
  auto blocks = cfg.layout();
  for (size_t i = 0; i < blocks.size(); ++i) {
    for (size_t s = 0; s < blocks[i].sublayers.size(); ++s) {
      const std::string p = fmt::format("blocks.{}.{}.", i, s);
      init_norm(in, p + "norm.");
      switch (blocks[i].sublayers[s].kind) {
        case SublayerKind::Mamba:
          linear(p + "in_proj.weight", p + "in_proj.bias");
          linear(p + "x_proj.weight", "");
          if (mamba_style) {
            in.uniform(p + "dt_proj.weight", 1.0 / std::sqrt(double(cfg.mamba_dt_rank())));
            init_dt_bias(in, p + "dt_proj.bias");
          } else {
            linear(p + "dt_proj.weight", p + "dt_proj.bias");
          }
          init_mamba_internals(in, cfg, p);
          out_proj(p + "out_proj.weight", p + "out_proj.bias");
          break;
        case SublayerKind::Attention:
          linear(p + "qkv.weight", p + "qkv.bias");
          out_proj(p + "proj.weight", p + "proj.bias");
          break;
        case SublayerKind::DiffAttention:
        case SublayerKind::CrossAttention:
          // ArchScale GPT.reset_parameters: Linear weights N(0, 0.02), biases 0, lambdas N(0, 0.1).
          for (const char* w : {"q_proj", "k_proj", "v_proj"})
            if (in.has(p + w + ".weight")) in.normal(p + w + ".weight", 0.02);
          in.zero_if(p + "q_proj.bias");
          in.zero_if(p + "v_proj.bias");
          for (const char* l : {"lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2"}) in.normal(p + l, 0.1);
          in.constant(p + "subln.weight", 1.0f);
          in.normal(p + "proj.weight", 0.02);
          in.zero_if(p + "proj.bias");
          break;
        case SublayerKind::Gmu:
          in.normal(p + "in_proj.weight", 0.02);
          in.normal(p + "out_proj.weight", 0.02);
          break;
        case SublayerKind::MLP:
          linear(p + "w1.weight", p + "w1.bias");
          linear(p + "w2.weight", p + "w2.bias");
          out_proj(p + "w3.weight", p + "w3.bias");
          break;
      }
    }
  }
  init_norm(in, "final_norm.");
  in.finish();
}

}  // namespace

void init_params(const ModelConfig& cfg, ParamStore& params, uint64_t seed) {
  Initializer in(params, seed);
  init_all(cfg, in);
}

ParamStore init_params_packed(const ModelConfig& cfg, uint64_t seed, MatrixFormat format) {
  const std::vector<ParamSpec> specs = param_specs(cfg);
  std::vector<ParamSpec> float_specs;
  std::map<std::string, Shape> packed_shapes;
  for (const auto& s : specs) {
    if (packs_into(s.name, s.shape, format))
      packed_shapes[s.name] = s.shape;
    else
      float_specs.push_back(s);
  }
  auto sink = std::make_shared<PackedWeights>();
  ParamStore floats(float_specs);
  {
    Initializer in(floats, std::move(packed_shapes), sink.get(), format, seed);
    init_all(cfg, in);
  }
  ParamStore out(specs, sink->matrices().empty() ? nullptr : std::move(sink));
  for (const auto& s : float_specs) std::copy_n(floats.get(s.name), shape_numel(s.shape), out.get(s.name));
  return out;
}

}  // namespace sambalm
