// `sambalm info MODEL`: what a model is (block layout, parameters by component) and what it needs
// (memory for inference and for training); `sambalm info --list`: every preset and its status.
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/config_option.h"
#include "cli/options.h"
#include "core/error.h"
#include "io/model_dir.h"
#include "model/memory_estimate.h"
#include "model/presets.h"
#include "model/train_memory.h"
#include "model/weights.h"
#include "ops/device.h"

namespace sambalm::cli {
namespace {

// Ranges of the shape options: far beyond any machine, so that only nonsense is refused here; a
// combination whose memory exceeds 2^63 bytes is refused by estimate_memory with the figures given.
constexpr int64_t kMaxBatch = 1 << 24;
constexpr int64_t kMaxLength = int64_t(1) << 40;

struct InfoOpts {
  std::string model, config;
  int64_t batch = 1, seq_len = 0, context = 0;
  int world_size = 1, zero = 0;
  bool json = false, list = false;
  std::string device = "auto", precision = "auto";  // of the training run whose memory is planned
};

std::string thousands(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string human_bytes(int64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(b);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  return u == 0 ? fmt::format("{} B", b) : fmt::format("{:.2f} {}", v, units[u]);
}

// "0-3 6 8-11": block indices as ranges.
std::string index_ranges(const std::vector<int64_t>& idx) {
  std::string out;
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    while (j + 1 < idx.size() && idx[j + 1] == idx[j] + 1) ++j;
    if (!out.empty()) out += ' ';
    out += j > i ? fmt::format("{}-{}", idx[i], idx[j]) : fmt::format("{}", idx[i]);
    i = j + 1;
  }
  return out;
}

// Distinct block kinds in order of first appearance, with the blocks of each.
std::vector<std::pair<std::string, std::vector<int64_t>>> block_groups(const ModelConfig& cfg) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> groups;
  auto strings = cfg.block_strings();
  for (size_t i = 0; i < strings.size(); ++i) {
    auto it = std::find_if(groups.begin(), groups.end(), [&](auto& g) { return g.first == strings[i]; });
    if (it == groups.end()) it = groups.insert(groups.end(), {strings[i], {}});
    it->second.push_back(int64_t(i));
  }
  return groups;
}

int list_presets(bool as_json) {
  nlohmann::json arr = nlohmann::json::array();
  if (!as_json) std::printf("%-28s %-10s %15s  %s\n", "preset", "family", "parameters", "status");
  for (const auto& p : preset_table()) {
    std::string why = preset_refusal(p);
    if (as_json) {
      arr.push_back({{"name", p.name},
                     {"family", p.family},
                     {"param_count", p.param_count},
                     {"supported", why.empty()},
                     {"reason", why}});
      continue;
    }
    std::string status =
        why.empty() ? "supported: " + ModelConfig::from_preset(p.name).layer_pattern() : "refused: " + why;
    std::printf("%-28s %-10s %15s  %s\n", p.name, p.family, thousands(p.param_count).c_str(), status.c_str());
  }
  if (as_json) std::printf("%s\n", arr.dump(2).c_str());
  return 0;
}

int show(const InfoOpts& o) {
  if (o.list) return list_presets(o.json);
  SAMBALM_CHECK(!o.model.empty(), "info: give a MODEL (preset, model directory or config.json) or --list");
  check_config_option(o.model, o.config, "MODEL");
  ModelConfig cfg = resolve_config(o.model, o.config);
  ParamBreakdown pb = param_breakdown(cfg);
  MemoryEstimate m = estimate_memory(cfg, o.batch, o.seq_len, o.context);
  const DataParallelMemory dp = data_parallel_memory(m, o.world_size, o.zero);
  const bool distributed = o.world_size > 1 || o.zero > 0;
  auto groups = block_groups(cfg);
  const bool any_full = [&] {
    for (const auto& b : cfg.layout())
      for (const auto& s : b.sublayers)
        if ((s.kind == SublayerKind::Attention && s.window <= 0) || s.shares_kv) return true;
    return false;
  }();

  // What `train --device auto --precision auto` would use on this machine (the estimate is fp32's).
  const bool auto_gpu = cuda_available();
  // The training run's buffers as its device and precision plan them (default: what train uses here).
  const Device plan_device =
      o.device == "auto" ? (auto_gpu ? Device::CUDA : Device::CPU) : parse_device(o.device).device;
  const Precision plan_precision = parse_precision(o.precision, plan_device);
  const TrainMemory plan = training_memory(cfg, plan_device, plan_precision, o.batch, o.seq_len);
  const char* plan_memory = plan_device == Device::CUDA ? "GPU memory" : "CPU memory";
  if (o.json) {
    nlohmann::json j;
    j["name"] = cfg.name;
    j["config"] = cfg.to_json();
    j["layer_pattern"] = cfg.layer_pattern();
    j["blocks"] = cfg.block_strings();
    j["params"] = {{"embedding", pb.embedding}, {"head", pb.head}, {"mamba", pb.mamba},
                   {"attention", pb.attention}, {"mlp", pb.mlp},   {"norms", pb.norms},
                   {"total", pb.total}};
    j["inference"] = {{"weights_fp32_bytes", m.weights_fp32},
                      {"weights_bf16_bytes", m.weights_bf16},
                      {"decode_state_bytes_per_seq", m.decode_per_seq},
                      {"decode_mamba_bytes_per_seq", m.decode_mamba_per_seq},
                      {"decode_attention_bytes_per_seq", m.decode_attention_per_seq},
                      {"context", m.context}};
    j["training"] = {{"batch", m.batch},
                     {"seq_len", m.seq_len},
                     {"weights_bytes", m.train_weights},
                     {"grads_bytes", m.train_grads},
                     {"adamw_bytes", m.train_adam},
                     {"activations_bytes", m.train_activations},
                     {"total_bytes", m.train_total},
                     {"auto_device", auto_gpu ? "cuda" : "cpu"},
                     {"auto_precision", auto_gpu ? "bf16" : "fp32"}};
    j["training_plan"] = {{"device", plan_device == Device::CUDA ? "cuda" : "cpu"},
                          {"precision", precision_name(plan.precision)},
                          {"batch", plan.batch},
                          {"seq_len", plan.seq_len},
                          {"master_bytes", plan.master},
                          {"working_bytes", plan.working},
                          {"grads_bytes", plan.grads},
                          {"adamw_bytes", plan.adam},
                          {"activations_bytes", plan.activations},
                          {"total_bytes", plan.total}};
    if (distributed)
      j["training_per_process"] = {{"world_size", dp.world},
                                   {"zero", dp.zero},
                                   {"weights_bytes", dp.weights},
                                   {"grads_bytes", dp.grads},
                                   {"grad_shard_bytes", dp.grad_shard},
                                   {"adamw_bytes", dp.adam},
                                   {"activations_bytes", dp.activations},
                                   {"total_bytes", dp.total}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }

  std::printf("model       %s\n", cfg.name.c_str());
  std::printf("layout      %s, %lld blocks, d=%lld", cfg.layer_pattern().c_str(), (long long)cfg.n_layer,
              (long long)cfg.n_embd);
  if (cfg.has_attention())
    std::printf(", %lld heads of %lld (%lld kv groups)%s", (long long)cfg.n_head, (long long)cfg.head_size,
                (long long)cfg.n_query_groups,
                cfg.rope_n_elem() > 0 ? fmt::format(", RoPE {}", cfg.rope_n_elem()).c_str() : ", no position encoding");
  std::printf("\n            vocab %lld (padded %lld), %s head, %s, %s init\n", (long long)cfg.vocab_size,
              (long long)cfg.padded_vocab_size, cfg.tied_embeddings ? "tied" : "untied",
              cfg.norm == NormKind::RMSNorm ? "RMSNorm" : "LayerNorm", cfg.mamba_init ? "mamba" : "gpt_neox");
  for (const auto& [s, idx] : groups) std::printf("  %-28s blocks %s\n", s.c_str(), index_ranges(idx).c_str());

  std::printf("parameters\n");
  std::printf("  %-28s %15s\n", cfg.tied_embeddings ? "embedding (= LM head)" : "embedding",
              thousands(pb.embedding).c_str());
  if (pb.head) std::printf("  %-28s %15s\n", "LM head", thousands(pb.head).c_str());
  if (pb.mamba) std::printf("  %-28s %15s\n", "mamba", thousands(pb.mamba).c_str());
  if (pb.attention) std::printf("  %-28s %15s\n", "attention", thousands(pb.attention).c_str());
  if (pb.mlp) std::printf("  %-28s %15s\n", "mlp", thousands(pb.mlp).c_str());
  std::printf("  %-28s %15s\n", "norms", thousands(pb.norms).c_str());
  std::printf("  %-28s %15s\n", "total", thousands(pb.total).c_str());

  std::printf("inference memory\n");
  std::printf("  %-28s %15s\n", "weights fp32", human_bytes(m.weights_fp32).c_str());
  std::printf("  %-28s %15s\n", "weights bf16", human_bytes(m.weights_bf16).c_str());
  std::printf("  %-28s %15s", "decode state per sequence", human_bytes(m.decode_per_seq).c_str());
  std::printf("  (mamba conv+ssm %s, attention KV %s%s)\n", human_bytes(m.decode_mamba_per_seq).c_str(),
              human_bytes(m.decode_attention_per_seq).c_str(),
              any_full ? fmt::format(" at context {}", m.context).c_str() : "");
  std::printf("training memory, batch %lld x seq-len %lld, fp32 + AdamW (estimate)\n", (long long)m.batch,
              (long long)m.seq_len);
  std::printf("  %-28s %15s\n", "weights", human_bytes(m.train_weights).c_str());
  std::printf("  %-28s %15s\n", "gradients", human_bytes(m.train_grads).c_str());
  std::printf("  %-28s %15s\n", "AdamW moments", human_bytes(m.train_adam).c_str());
  std::printf("  %-28s %15s\n", "activations", human_bytes(m.train_activations).c_str());
  std::printf("  %-28s %15s\n", "total", human_bytes(m.train_total).c_str());
  std::printf("training %s, %s, batch %lld x seq-len %lld (the model's buffer plan)\n", plan_memory,
              plan.precision == Precision::BF16 ? "bf16 mixed precision" : "fp32", (long long)plan.batch,
              (long long)plan.seq_len);
  std::printf("  %-28s %15s\n", "fp32 master weights", human_bytes(plan.master).c_str());
  if (plan.working) std::printf("  %-28s %15s\n", "bf16 working copy", human_bytes(plan.working).c_str());
  std::printf("  %-28s %15s\n", "gradients (fp32)", human_bytes(plan.grads).c_str());
  std::printf("  %-28s %15s\n", "AdamW moments", human_bytes(plan.adam).c_str());
  std::printf("  %-28s %15s\n", "activations and scratch", human_bytes(plan.activations).c_str());
  std::printf("  %-28s %15s\n", "total", human_bytes(plan.total).c_str());
  if (plan_device == Device::CUDA) std::printf("  (plus the cuBLASLt workspace, 32 MiB, and the CUDA context)\n");
  if (distributed) {
    std::printf("training memory per process of %d (GPU or CPU), batch %lld each, %s (estimate)\n", dp.world,
                (long long)m.batch, dp.zero ? "ZeRO-1: AdamW state sharded" : "AdamW state on every process");
    std::printf("  %-28s %15s\n", "weights", human_bytes(dp.weights).c_str());
    std::printf("  %-28s %15s\n", "gradients", human_bytes(dp.grads).c_str());
    if (dp.zero) std::printf("  %-28s %15s\n", "gradient shard (reduced)", human_bytes(dp.grad_shard).c_str());
    std::printf("  %-28s %15s\n", dp.zero ? "AdamW moments (shard)" : "AdamW moments", human_bytes(dp.adam).c_str());
    std::printf("  %-28s %15s\n", "activations", human_bytes(dp.activations).c_str());
    std::printf("  %-28s %15s\n", "total", human_bytes(dp.total).c_str());
  }
  return 0;
}

Action add(CLI::App& app) {
  auto o = std::make_shared<InfoOpts>();
  auto* sub = app.add_subcommand("info", "Show a model's layout, parameter counts and memory needs; list presets");
  sub->footer(
      "MODEL is a preset name (see --list), a model directory (its config.json), a config.json file or a weights\n"
      "file with a config.json beside it (--config: the config of a bare weights file, or one that replaces a\n"
      "directory's config.json; refused with a preset or a config file). No weights are read: a directory\n"
      "holding only a config.json works. Sizes in a config.json above sane maxima (e.g. n_layer > 4096) are\n"
      "refused, and so is a memory figure over 2^63 bytes.\n\n"
      "Memory (P parameters, B batch, T seq-len, d n_embd, V padded vocab, all fp32):\n"
      "  weights        4P bytes (bf16: 2P)\n"
      "  decode state   per sequence: Mamba layers 4*((d_conv-1)*d_inner + d_inner*d_state); attention layers\n"
      "                 4*2*n_query_groups*head_size*cap, cap = window (sliding) or --context (full attention)\n"
      "  training       weights 4P + gradients 4P + AdamW moments 8P + activations\n"
      "  per process    --world-size N: the same on each of N processes (batch = each one's --batch); with --zero 1\n"
      "                 the moments shrink to 8*ceil(P/N), plus a reduced gradient shard of 4*ceil(P/N)\n"
      "  activations    4*B*T*(2d + 2V + per sublayer 2d + saved), saved = Mamba 9*d_inner + dt_rank +\n"
      "                 2*d_state + d_inner*d_state/64, attention 2*(n_head+2*n_query_groups)*head_size +\n"
      "                 n_head*head_size + n_head, MLP 3*hidden (an estimate; scratch buffers come on top)\n"
      "  training plan  the buffers `train` allocates on --device at --precision (default: what train uses\n"
      "                 here: bf16 on a GPU, else fp32 on the CPU), from the model's own buffer plan: fp32\n"
      "                 master 4P (+ bf16 working copy 2P) + fp32 gradients 4P + AdamW 8P + the training\n"
      "                 arena (bf16 activations, fp32 residual stream and statistics, logits, the backward's\n"
      "                 scratch). A GPU plan needs a build with the CUDA backend, not a GPU.");
  sub->add_option("model", o->model, "Preset, model directory or config.json");
  sub->add_option("--config", o->config,
                  "config.json or preset for a bare weights file (or replacing a directory's config.json)");
  sub->add_flag("--list", o->list, "List every preset with its status (supported, or refused and why)");
  sub->add_flag("--json", o->json, "Print JSON instead of text");
  in_range(sub->add_option("--batch,-b", o->batch, "Training batch size for the memory estimate")->default_val(1),
           int64_t(1), kMaxBatch);
  in_range(sub->add_option("--seq-len,-t", o->seq_len, "Training sequence length (default: the model's block_size)"),
           int64_t(1), kMaxLength);
  in_range(sub->add_option("--world-size", o->world_size,
                           "Processes of a data-parallel run: memory per process (mpirun -np N sambalm train)")
               ->default_val(1),
           1, 1 << 20);
  in_range(sub->add_option("--zero", o->zero, "ZeRO stage of that run (0, or 1: AdamW state sharded)")->default_val(0),
           0, 1);
  sub->add_option("--device", o->device,
                  "Device of the training run to plan memory for: cpu, cuda, cuda:N, or auto (a GPU when one is "
                  "visible to this build, else the CPU)")
      ->capture_default_str();
  sub->add_option("--precision", o->precision,
                  "Precision of that run: bf16 (GPU only), fp32, or auto (bf16 on a GPU, fp32 on the CPU)")
      ->check(CLI::IsMember({"bf16", "fp32", "auto"}))
      ->capture_default_str();
  in_range(sub->add_option("--context", o->context, "Context length for full-attention caches (default: block_size)"),
           int64_t(1), kMaxLength);
  return [o] { return show(*o); };
}

SAMBALM_REGISTER_COMMAND(90, add);

}  // namespace
}  // namespace sambalm::cli
