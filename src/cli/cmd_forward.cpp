// `sambalm forward`: run the model over given token ids and write the logits (and the loss when
// targets are given) to a safetensors file. The harness for comparing with reference
// implementations, and a way to score text with a model.
//
// Memory: the rows run in micro-batches (--batch-size), so activations are bounded by one
// micro-batch whatever the input's size, and the logits are streamed to the output file as each
// micro-batch finishes (never held whole). Rows are independent, so the outputs equal one pass over
// all rows (up to float rounding where a kernel's strategy depends on the batch shape).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/config_option.h"
#include "cli/device_option.h"
#include "cli/options.h"
#include "cli/weights_option.h"
#include "core/error.h"
#include "io/file.h"
#include "io/model_dir.h"
#include "io/safetensors.h"
#include "model/memory_estimate.h"
#include "model/precision_model.h"
#include "model/weights.h"
#include "ops/device.h"
#include "ops/ops.h"

namespace sambalm::cli {
namespace {

// Activations of one micro-batch when --batch-size is not given.
constexpr int64_t kAutoBatchBytes = int64_t(1) << 30;
constexpr int64_t kMaxBatchSize = 1 << 20;

struct ForwardOpts {
  std::string model, config, inputs, out, device, dtype, precision, weights_dtype;
  int64_t batch_size = 0;  // 0 = automatic
  bool acts = false, no_logits = false, row_losses = false;
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

// A safetensors file of F32 tensors written front to back: the header first (all shapes are known),
// then each tensor's values in the declared order, in as many pieces as the caller likes.
class F32SafetensorsStream {
 public:
  F32SafetensorsStream(const std::string& path, const std::vector<std::pair<std::string, Shape>>& tensors) : w_(path) {
    nlohmann::json header = nlohmann::json::object();
    for (const auto& [name, shape] : tensors) {
      const uint64_t n = static_cast<uint64_t>(shape_numel(shape)) * sizeof(float);
      header[name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {total_, total_ + n}}};
      total_ += n;
    }
    std::string h = header.dump();
    while ((8 + h.size()) % 8) h.push_back(' ');  // data starts 8-byte aligned
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(h.size()) >> (8 * i));
    w_.write(len, 8);
    w_.write(h.data(), h.size());
    start_ = w_.written();
  }
  void write(const float* data, size_t n) { w_.write(data, n * sizeof(float)); }
  void commit() {
    SAMBALM_CHECK(w_.written() - start_ == total_, "internal: wrote {} data bytes, declared {}", w_.written() - start_,
                  total_);
    w_.commit();
  }

 private:
  AtomicWriter w_;
  uint64_t total_ = 0;
  size_t start_ = 0;
};

int64_t auto_batch_size(const ModelConfig& cfg, int64_t Tn, int64_t B) {
  // The training estimate's activations are what a forward keeps (it saves them for a backward).
  const int64_t per_row = estimate_memory(cfg, 1, Tn).train_activations;
  return std::clamp<int64_t>(kAutoBatchBytes / std::max<int64_t>(per_row, 1), 1, B);
}

// n floats of the model's memory readable on the host: the model's own buffer on the CPU, else a copy
// into `host`.
const float* host_view(const Context& ctx, const float* p, int64_t n, std::vector<float>& host) {
  if (ctx.device == Device::CPU) return p;
  host.resize(static_cast<size_t>(n));
  ops::download(ctx, host.data(), p, sizeof(float) * host.size());
  return host.data();
}

int run(const ForwardOpts& o) {
  check_config_option(o.model, o.config, "--model");
  // Packed (bf16/f16/q8) matrices run on the CPU only for now: on a GPU every weight loads as float32,
  // and --weights-dtype chooses the CPU (an error with --device cuda).
  std::vector<CpuOnly> cpu_only;
  if (!o.weights_dtype.empty())
    cpu_only.push_back({"--weights-dtype " + o.weights_dtype,
                        "it is the CPU's packed weight format; --dtype sets the GPU's precision"});
  // --precision is --dtype's other name (train's): the value given, named as given in errors.
  SAMBALM_CHECK(o.precision.empty() || o.dtype == "auto" || o.dtype == o.precision,
                "--dtype {} and --precision {}: one option under two names, give one", o.dtype, o.precision);
  const InferDevice where = o.precision.empty() ? resolve_infer_device(o.device, o.dtype, cpu_only)
                                                : resolve_infer_device(o.device, o.precision, cpu_only, "--precision");
  const bool on_cpu = !where.cuda();
  LoadedModel lm = load_model(o.model, o.config, {.keep_packed = on_cpu, .weights_dtype = o.weights_dtype});
  warn_if_packed_weights_are_slow(lm.params);
  auto in = read_safetensors(o.inputs);
  int64_t B = 0, Tn = 0;
  std::vector<int32_t> ids = read_ids(in, "input_ids", &B, &Tn);
  SAMBALM_CHECK(B > 0 && Tn > 0, "{}: 'input_ids' is empty ([{}, {}])", o.inputs, B, Tn);
  std::vector<int32_t> targets;
  if (in.has("targets")) {
    int64_t B2 = 0, T2 = 0;
    targets = read_ids(in, "targets", &B2, &T2);
    SAMBALM_CHECK(B2 == B && T2 == Tn, "{}: 'targets' shape [{}, {}] differs from input_ids [{}, {}]", o.inputs, B2, T2,
                  B, Tn);
  }
  SAMBALM_CHECK(!o.row_losses || !targets.empty(), "--row-losses: {} holds no 'targets', so there is no loss",
                o.inputs);
  SAMBALM_CHECK(!o.no_logits || !targets.empty() || o.acts,
                "--no-logits: {} holds no 'targets', so there would be nothing to write", o.inputs);

  const int64_t V = lm.config.padded_vocab_size, d = lm.config.n_embd, L = lm.config.n_layer;
  for (size_t i = 0; i < ids.size(); ++i)
    SAMBALM_CHECK(ids[i] >= 0 && ids[i] < V, "{}: input_ids[{}][{}] = {} is outside the vocabulary [0, {})", o.inputs,
                  int64_t(i) / Tn, int64_t(i) % Tn, ids[i], V);
  for (size_t i = 0; i < targets.size(); ++i)
    SAMBALM_CHECK(targets[i] < V, "{}: targets[{}][{}] = {} is outside the vocabulary [0, {}) (-1 = ignore)", o.inputs,
                  int64_t(i) / Tn, int64_t(i) % Tn, targets[i], V);
  const int64_t mb = o.batch_size > 0 ? std::min(o.batch_size, B) : auto_batch_size(lm.config, Tn, B);

  std::vector<std::pair<std::string, Shape>> decl;
  if (!o.no_logits) decl.push_back({"logits", {B, Tn, V}});
  if (!targets.empty()) decl.push_back({"loss", {1}});
  if (o.row_losses) decl.push_back({"row_losses", {B}});
  if (o.acts)
    for (int64_t i = 0; i < L; ++i) decl.push_back({"act." + std::to_string(i), {B, Tn, d}});
  // The device is opened before the output file exists, so a bad --device leaves no file behind.
  const Precision precision = where.precision;
  Backend backend(where.spec);
  const Context& ctx = backend.context();
  const ops::Mirror<float> params(ctx, lm.params.data(), static_cast<int64_t>(lm.params.size()));
  F32SafetensorsStream out(o.out, decl);
  const std::unique_ptr<PrecisionModel> model = make_precision_model(
      precision, lm.config, lm.params.entries(), ctx, params.get(), static_cast<int64_t>(lm.params.size()));
  std::vector<float> logits, act;  // one micro-batch on the host (GPU runs)
  std::vector<float> pos_loss, row_loss(static_cast<size_t>(B));
  std::vector<std::vector<float>> acts(o.acts ? static_cast<size_t>(L) : 0);
  double loss_sum = 0;
  int64_t loss_count = 0;
  for (int64_t r0 = 0; r0 < B; r0 += mb) {
    const int64_t b = std::min(mb, B - r0), n = b * Tn;
    model->forward(ids.data() + r0 * Tn, nullptr, b, Tn);
    const float* lg = model->logits_on_host(logits);
    if (!o.no_logits) out.write(lg, static_cast<size_t>(n * V));
    if (!targets.empty()) {
      const int32_t* tg = targets.data() + r0 * Tn;
      pos_loss.assign(static_cast<size_t>(n), 0.0f);
      const double mean = ops::cross_entropy_forward_backward(cpu_context(), static_cast<float*>(nullptr),
                                                              pos_loss.data(), lg, tg, n, V, 1.0);
      int64_t count = 0;
      for (int64_t r = 0; r < b; ++r) {
        double s = 0;
        int64_t c = 0;
        for (int64_t t = 0; t < Tn; ++t)
          if (tg[r * Tn + t] >= 0) s += pos_loss[static_cast<size_t>(r * Tn + t)], ++c;
        row_loss[static_cast<size_t>(r0 + r)] = c ? float(s / double(c)) : std::numeric_limits<float>::quiet_NaN();
        count += c;
      }
      loss_sum += mean * double(count);
      loss_count += count;
    }
    for (int64_t i = 0; i < L && o.acts; ++i) {
      const float* a = host_view(ctx, model->block_output(i), n * d, act);
      acts[static_cast<size_t>(i)].insert(acts[static_cast<size_t>(i)].end(), a, a + n * d);
    }
  }
  // PyTorch's cross_entropy(ignore_index=-1) with every target ignored is 0/0 = NaN: so is ours.
  const float loss = loss_count ? float(loss_sum / double(loss_count)) : std::numeric_limits<float>::quiet_NaN();
  if (!targets.empty()) out.write(&loss, 1);
  if (o.row_losses) out.write(row_loss.data(), row_loss.size());
  for (const auto& a : acts) out.write(a.data(), a.size());
  out.commit();
  if (!targets.empty()) {
    if (loss_count)
      std::printf("loss %.6f  (%lld x %lld tokens, %lld scored)\n", double(loss), (long long)B, (long long)Tn,
                  (long long)loss_count);
    else
      std::printf("loss nan  (%lld x %lld tokens, none scored: every target is -1)\n", (long long)B, (long long)Tn);
  }
  std::printf("wrote %s\n", o.out.c_str());
  return 0;
}

Action add(CLI::App& app) {
  auto o = std::make_shared<ForwardOpts>();
  auto* sub = app.add_subcommand("forward", "Run the model over token ids; write logits (and loss) to safetensors");
  sub->footer(fmt::format(
      "The input file holds `input_ids` (I64 or I32, [B, T]) and optionally `targets` (same shape; -1 = ignore).\n"
      "The output holds `logits` (F32, [B, T, padded_vocab]; left out with --no-logits), `loss` (F32, [1], mean\n"
      "cross-entropy over the whole padded vocabulary and every target that is not -1; NaN when every target\n"
      "is -1, as PyTorch gives) when targets were given, with --row-losses `row_losses` (F32, [B], each row's\n"
      "mean; NaN for a row with no target), and with --acts `act.<i>` (residual after block i).\n\n"
      "Rows run in micro-batches of --batch-size rows (default: as many as keep activations near {} MiB,\n"
      "at least 1); the outputs are those of one pass over all rows. Logits are streamed to the file as each\n"
      "micro-batch finishes; --acts keeps every block's output in memory until the end.\n"
      "Example (score a large file, loss only):\n"
      "  sambalm forward -m run/model -i val.safetensors -o scores.safetensors --no-logits --row-losses\n"
      "GPU (--device cuda): the forward runs on the GPU in --dtype (or --precision, its other name); in bf16 the\n"
      "logits are written as F32 from bf16. --weights-dtype (the CPU's packed formats) runs on the CPU only:\n"
      "--device auto then chooses the CPU, --device cuda is an error.",
      kAutoBatchBytes >> 20));
  sub->add_option("--model,-m", o->model, "Preset name, model directory, or weights file")->required();
  sub->add_option("--config", o->config,
                  "config.json or preset for a bare weights file (or replacing a directory's config.json)");
  sub->add_option("--inputs,-i", o->inputs, "safetensors file with input_ids [and targets]")->required();
  sub->add_option("--out,-o", o->out, "Output safetensors file")->required();
  in_range(sub->add_option("--batch-size", o->batch_size, "Rows per micro-batch (default: automatic, see below)"),
           int64_t(1), kMaxBatchSize);
  sub->add_flag("--no-logits", o->no_logits, "Do not write logits (scoring: loss and --row-losses only)");
  sub->add_flag("--row-losses", o->row_losses, "Also write each row's mean loss (row_losses, [B]); needs targets");
  sub->add_flag("--acts", o->acts, "Also write each block's output (act.<i>)");
  add_weights_dtype_option(sub, o->weights_dtype);
  add_device_options(sub, o->device, o->dtype);
  sub->add_option("--precision", o->precision, "The same as --dtype (the name `sambalm train` gives it)")
      ->check(CLI::IsMember({"bf16", "fp32", "auto"}));
  return [o] { return run(*o); };
}

}  // namespace
SAMBALM_REGISTER_COMMAND(20, add);
}  // namespace sambalm::cli
