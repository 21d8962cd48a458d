// `sambalm forward`: run the model once over given token ids and write the logits (and the loss
// when targets are given) to a safetensors file. The harness for comparing with reference
// implementations, and a way to score text with a model.
#include <cmath>
#include <cstdio>

#include "cli/command.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "model/weights.h"

namespace sambalm::cli {
namespace {

struct ForwardOpts {
  std::string model, config, inputs, out;
  bool acts = false;
};

// input_ids / targets may be I64 or I32, shape [B, T] or [T].
std::vector<int32_t> read_ids(const SafetensorsFile& f, const std::string& key, int64_t* B, int64_t* Tn) {
  const Tensor& t = f.get(key);
  SAMBALM_CHECK(t.dtype() == DType::I64 || t.dtype() == DType::I32, "{}: '{}' must be I64 or I32, found {}", f.path,
                key, dtype_name(t.dtype()));
  SAMBALM_CHECK(t.ndim() == 2 || t.ndim() == 1, "{}: '{}' must have shape [B, T] or [T], found {}", f.path, key,
                shape_str(t.shape()));
  *B = t.ndim() == 2 ? t.dim(0) : 1;
  *Tn = t.dim(-1);
  std::vector<int32_t> ids(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) {
    int64_t v = t.dtype() == DType::I64 ? t.data<int64_t>()[i] : t.data<int32_t>()[i];
    SAMBALM_CHECK(v >= -1 && v < (int64_t(1) << 31), "{}: '{}' holds id {} out of range", f.path, key, v);
    ids[i] = static_cast<int32_t>(v);
  }
  return ids;
}

int run(const ForwardOpts& o) {
  LoadedModel lm = load_model(o.model, o.config);
  auto in = read_safetensors(o.inputs);
  int64_t B = 0, Tn = 0;
  std::vector<int32_t> ids = read_ids(in, "input_ids", &B, &Tn);
  std::vector<int32_t> targets;
  if (in.has("targets")) {
    int64_t B2 = 0, T2 = 0;
    targets = read_ids(in, "targets", &B2, &T2);
    SAMBALM_CHECK(B2 == B && T2 == Tn, "{}: 'targets' shape [{}, {}] differs from input_ids [{}, {}]", o.inputs, B2, T2,
                  B, Tn);
  }
  Model<float> model(lm.config, lm.params.entries());
  double loss = model.forward(lm.params.data(), ids.data(), targets.empty() ? nullptr : targets.data(), B, Tn);
  const int64_t V = lm.config.padded_vocab_size, d = lm.config.n_embd;
  std::vector<std::pair<std::string, Tensor>> outs;
  Tensor logits = Tensor::zeros(DType::F32, {B, Tn, V});
  std::copy(model.logits(), model.logits() + B * Tn * V, logits.data<float>());
  outs.emplace_back("logits", logits);
  if (!targets.empty()) outs.emplace_back("loss", Tensor::from_f32({1}, {static_cast<float>(loss)}));
  if (o.acts) {
    for (int64_t i = 0; i < lm.config.n_layer; ++i) {
      Tensor a = Tensor::zeros(DType::F32, {B, Tn, d});
      std::copy(model.block_output(i), model.block_output(i) + B * Tn * d, a.data<float>());
      outs.emplace_back("act." + std::to_string(i), a);
    }
  }
  write_safetensors(o.out, outs);
  if (!targets.empty()) std::printf("loss %.6f  (%lld x %lld tokens)\n", loss, (long long)B, (long long)Tn);
  std::printf("wrote %s\n", o.out.c_str());
  return 0;
}

Action add(CLI::App& app) {
  auto o = std::make_shared<ForwardOpts>();
  auto* sub = app.add_subcommand("forward", "Run the model once over token ids; write logits (and loss) to safetensors");
  sub->footer(
      "The input file holds `input_ids` (I64 or I32, [B, T]) and optionally `targets` (same shape; -1 = ignore).\n"
      "The output holds `logits` (F32, [B, T, padded_vocab]), `loss` (F32, [1], mean cross-entropy over the\n"
      "whole padded vocabulary) when targets were given, and with --acts `act.<i>` (residual after block i).");
  sub->add_option("--model,-m", o->model, "Preset name, model directory, or weights file")->required();
  sub->add_option("--config", o->config, "config.json or preset for a bare weights file");
  sub->add_option("--inputs,-i", o->inputs, "safetensors file with input_ids [and targets]")->required();
  sub->add_option("--out,-o", o->out, "Output safetensors file")->required();
  sub->add_flag("--acts", o->acts, "Also write each block's output (act.<i>)");
  return [o] { return run(*o); };
}

}  // namespace
SAMBALM_REGISTER_COMMAND(20, add);
}  // namespace sambalm::cli
