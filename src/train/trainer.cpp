#include "train/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numbers>
#include <random>
#include <sstream>

#include "core/error.h"
#include "io/file.h"
#include "io/json_field.h"
#include "io/model_dir.h"
#include "model/init.h"
#include "model/precision_model.h"
#include "model/weights.h"
#include "ops/device.h"
#include "ops/memory_ops.h"
#include "ops/profiler.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/communicator.h"
#include "train/data_parallel.h"
#include "train/lr_schedule.h"
#include "train/metrics.h"
#include "train/printable_text.h"
#include "train/progress.h"
#include "train/train_data.h"
#include "train/train_eval.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace sambalm {
namespace {

// Ctrl-C / SIGTERM: the first one asks the loop to save and stop after the current step; a second
// one falls back to the default action (immediate exit) for a user who does not want to wait.
std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) {
  g_stop_signal.store(sig);
  std::signal(sig, SIG_DFL);
}

struct SignalGuard {
  using Handler = void (*)(int);
  Handler old_int, old_term;
  SignalGuard() {
    g_stop_signal.store(0);
    old_int = std::signal(SIGINT, on_stop_signal);
    old_term = std::signal(SIGTERM, on_stop_signal);
  }
  ~SignalGuard() {
    std::signal(SIGINT, old_int);
    std::signal(SIGTERM, old_term);
  }
};

// Test hook: SAMBALM_TEST_INJECT_NAN_AT=S[:K] makes the loss of steps S .. S+K-1 (1-based step
// counts; K = forever when absent) NaN, to exercise the bad-step handling end to end.
bool inject_nan(int64_t step) {
  const char* e = std::getenv("SAMBALM_TEST_INJECT_NAN_AT");
  if (!e || !*e) return false;
  char* end = nullptr;
  const long long s = std::strtoll(e, &end, 10);
  long long k = -1;
  if (end && *end == ':') k = std::strtoll(end + 1, nullptr, 10);
  return step >= s && (k < 0 || step < s + k);
}

std::string fmt_si(double v) {
  if (v >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f}k", v / 1e3);
  return fmt::format("{:.0f}", v);
}

// The shape options, each with the config key it sets.
struct ShapeOption {
  const char* flag;
  const char* key;
  const std::optional<int64_t> TrainOptions::*value;
};
constexpr ShapeOption kShapeOptions[] = {
    {"--n-layer", "n_layer", &TrainOptions::n_layer},
    {"--n-embd", "n_embd", &TrainOptions::n_embd},
    {"--n-head", "n_head", &TrainOptions::n_head},
    {"--n-query-groups", "n_query_groups", &TrainOptions::n_query_groups},
    {"--intermediate-size", "intermediate_size", &TrainOptions::intermediate_size},
    {"--local-window", "local_window", &TrainOptions::local_window},
    {"--vocab-size", "vocab_size", &TrainOptions::vocab_size},
};

void set_vocab(ModelConfig& c, int64_t vocab) {
  c.vocab_size = vocab;
  const int64_t m = std::max<int64_t>(c.padding_multiple, 1);
  c.padded_vocab_size = (vocab + m - 1) / m * m;
}

// The config of a fresh model: --model (a preset or config.json) with the command-line overrides.
// The vocabulary is --vocab-size, else `data_vocab` (the data's tokenizer) when known. The name is
// --name, else the preset's name when nothing differs from it, else that name + "-custom".
ModelConfig build_config(const TrainOptions& o, std::optional<int64_t> data_vocab) {
  ModelConfig c = resolve_config(o.model);
  const json base = c.to_json();
  const int64_t old_embd = c.n_embd, old_head = c.n_head;
  if (o.n_layer) c.n_layer = *o.n_layer;
  if (o.n_embd) {
    c.n_embd = *o.n_embd;
    // Keep the MLP's width ratio unless it is given.
    if (!o.intermediate_size && old_embd > 0) c.intermediate_size = c.intermediate_size * c.n_embd / old_embd;
  }
  if (o.n_head) {
    if (!o.n_query_groups && c.n_query_groups == old_head) c.n_query_groups = *o.n_head;  // stays MHA
    c.n_head = *o.n_head;
  }
  if (o.n_query_groups) c.n_query_groups = *o.n_query_groups;
  if (o.intermediate_size) c.intermediate_size = *o.intermediate_size;
  if (o.local_window) c.local_window = *o.local_window;
  // (A vocabulary that stays as it was keeps the config's padding.)
  const std::optional<int64_t> vocab = o.vocab_size ? o.vocab_size : data_vocab;
  if (vocab && *vocab != c.vocab_size) set_vocab(c, *vocab);
  if (c.n_head > 0 && (o.n_embd || o.n_head)) c.head_size = c.n_embd / c.n_head;
  c.validate();
  json now = c.to_json(), was = base;
  for (json* j : {&now, &was}) j->erase("name"), j->erase("block_size");
  if (!o.name.empty())
    c.name = o.name;
  else if (now != was && !c.name.ends_with("-custom"))
    c.name += "-custom";
  return c;
}

// --init-from DIR fine-tunes DIR's shape: a shape option that says otherwise is an error (one that
// agrees is harmless).
void check_init_from_shape(const TrainOptions& o, const ModelConfig& have) {
  const json h = have.to_json();
  for (const ShapeOption& s : kShapeOptions) {
    const auto& v = o.*(s.value);
    if (v && (!h.contains(s.key) || h[s.key] != *v))
      fail(
          "{} {}: --init-from {} has {} = {}, and fine-tuning keeps the model's shape; drop {} (or train a new "
          "shape from scratch with --model)",
          s.flag, *v, o.init_from, s.key, h.contains(s.key) ? h[s.key].dump() : "nothing", s.flag);
  }
}

// --resume continues the checkpoint's model: its shape must be what the command line asks for.
// The options the user typed are compared first, so the message names one of them rather than a
// field derived from it (dt_rank follows n_embd).
void check_resume_shape(const TrainOptions& o, const ModelConfig& want_cfg, const ModelConfig& have_cfg,
                        const std::string& ckpt) {
  const json want = want_cfg.to_json(), have = have_cfg.to_json();
  for (const ShapeOption& s : kShapeOptions) {
    const auto& v = o.*(s.value);
    if (v && (!have.contains(s.key) || have[s.key] != *v))
      fail("--resume: {} {} differs from the checkpoint {}, which has {} = {}; a resumed run keeps its model's shape",
           s.flag, *v, ckpt, s.key, have.contains(s.key) ? have[s.key].dump() : "nothing");
  }
  for (auto it = want.begin(); it != want.end(); ++it)
    if (it.key() != "block_size" && it.key() != "name" && (!have.contains(it.key()) || have[it.key()] != *it))
      fail("--resume: --model {} gives {} = {}, the checkpoint {} has {}; a resumed run keeps its model", o.model,
           it.key(), it->dump(), ckpt, have.contains(it.key()) ? have[it.key()].dump() : "nothing");
}

// --model trains from random weights; given a directory of trained weights, the user almost
// certainly meant --init-from.
void refuse_trained_model_as_model(const TrainOptions& o) {
  if (o.model.empty() || !o.init_from.empty()) return;
  std::string weights;
  try {
    weights = resolve_weights(o.model);
  } catch (const Error&) {
  }
  if (weights.empty()) return;
  const bool dir = fs::is_directory(o.model);
  fail(
      "--model {}: holds trained weights ({}), but --model starts from random weights; use --init-from {} to "
      "train from these weights{}",
      o.model, weights, o.model,
      dir ? fmt::format(", or --model {} for a fresh model of this shape", (fs::path(o.model) / "config.json").string())
          : "");
}

// The options a checkpoint records, and what a resumed run does when the command line differs.
json run_options(const TrainOptions& o, int64_t T, int world) {
  return {{"seed", o.seed}, {"batch", o.batch},    {"grad_accum", o.grad_accum},
          {"seq_len", T},   {"world_size", world}, {"zero", o.zero}};
}

// Notes (stderr) for options changed between a run and its resumption. The seed is kept: the
// batch order and sampling RNG are restored from the checkpoint, and the validation windows are
// drawn from the run's seed so that losses stay comparable. Batch, accumulation and length change
// from the resumed step on.
void note_resume_changes(const json& saved, const TrainOptions& o, int64_t T, int64_t step, uint64_t& seed, int world,
                         bool print) {
  if (!saved.is_object()) return;
  const std::string_view src = "the checkpoint's training options";
  if (saved.contains("seed") && json_count(saved, "seed", src) != o.seed) {
    seed = json_count(saved, "seed", src);
    if (print)
      std::fprintf(stderr,
                   "note: --seed %llu differs from the run's seed %llu; a resumed run keeps seed %llu (the batch "
                   "order, validation windows and samples continue as they were)\n",
                   (unsigned long long)o.seed, (unsigned long long)seed, (unsigned long long)seed);
  }
  if (!print) return;
  // Another number of processes with the same global batch and length: the same run, split otherwise.
  // Sizes bounded before they are multiplied (a damaged checkpoint must not overflow them).
  auto size = [&](const char* key, int64_t def) {
    const int64_t v = json_int64_or(saved, key, def, src);
    SAMBALM_CHECK(v >= 0 && v <= (int64_t(1) << 20), "{}: '{}' is {}, out of range", src, key, v);
    return v;
  };
  const int64_t saved_world = size("world_size", 1), saved_batch = size("batch", 0), saved_accum = size("grad_accum", 0);
  const bool has_batch = saved.contains("batch") && saved.contains("grad_accum");
  if (saved_world != world && has_batch && saved_batch * saved_accum * saved_world == o.batch * o.grad_accum * world &&
      json_int64_or(saved, "seq_len", T, src) == T) {
    std::fprintf(stderr,
                 "note: the checkpoint was written by %lld processes, this run has %d; the global batch of %lld "
                 "sequences stays the same (--batch %lld x --grad-accum %lld x %d), so the run continues as it was\n",
                 (long long)saved_world, world, (long long)(o.batch * o.grad_accum * world), (long long)o.batch,
                 (long long)o.grad_accum, world);
    return;
  }
  if (saved_world != world && has_batch)
    std::fprintf(stderr,
                 "note: the checkpoint was written by %lld processes with a global batch of %lld sequences; this run "
                 "has %d, so each step from step %lld on uses %lld (--batch x --grad-accum x processes; --global-batch "
                 "keeps it)\n",
                 (long long)saved_world,
                 (long long)(saved_batch * saved_accum * saved_world), world,
                 (long long)step, (long long)(o.batch * o.grad_accum * world));
  const std::pair<const char*, int64_t> changed[] = {{"batch", o.batch}, {"grad_accum", o.grad_accum}, {"seq_len", T}};
  for (const auto& [key, now] : changed) {
    if (!saved.contains(key) || json_int64(saved, key, src) == now) continue;
    std::string flag = std::string("--") + key;
    std::replace(flag.begin(), flag.end(), '_', '-');
    std::fprintf(stderr,
                 "note: %s %lld differs from the checkpoint's %lld: the weights, optimizer state, learning-rate "
                 "schedule and data position continue from step %lld, and each step from here on uses %s %lld "
                 "(the run is no longer identical to one without a break)\n",
                 flag.c_str(), (long long)now, (long long)json_int64(saved, key, src), (long long)step, flag.c_str(),
                 (long long)now);
  }
}

// Test hook: SAMBALM_TEST_FAIL_AT=S throws an Error after step S's update, to exercise the
// checkpoint saved when a run stops on an error.
bool inject_failure(int64_t step) {
  const char* e = std::getenv("SAMBALM_TEST_FAIL_AT");
  return e && *e && std::strtoll(e, nullptr, 10) == step;
}

// Test hooks for distributed failures: SAMBALM_TEST_KILL_RANK=R:S makes rank R SIGKILL itself in
// step S (after its backward, before the gradients are reduced); SAMBALM_TEST_HANG_RANK=R:S makes it
// sleep there instead (a hung rank, for the watchdog).
bool rank_hook(const char* var, int rank, int64_t step) {
  const char* e = std::getenv(var);
  if (!e || !*e) return false;
  char* end = nullptr;
  const long r = std::strtol(e, &end, 10);
  return end && *end == ':' && r == rank && std::strtoll(end + 1, nullptr, 10) == step;
}

void distributed_failure_hooks(int rank, int64_t step) {
  if (rank_hook("SAMBALM_TEST_KILL_RANK", rank, step)) ::raise(SIGKILL);
  if (rank_hook("SAMBALM_TEST_HANG_RANK", rank, step))
    for (;;) ::pause();
}

std::string rng_state(const std::mt19937_64& rng) {
  std::ostringstream s;
  s << rng;
  return s.str();
}

}  // namespace

TrainResult train(const TrainOptions& opts, Communicator* communicator) {
  std::unique_ptr<Communicator> own_comm;
  if (!communicator) own_comm = single_process_communicator();
  Communicator& comm = communicator ? *communicator : *own_comm;
  const int world = comm.size(), rank = comm.rank();
  const bool leader = rank == 0;  // alone writes progress, metrics, samples and checkpoints
  TrainOptions eff = opts;        // with the resolved --grad-accum (--global-batch) and seed (--resume)
  const TrainOptions& o = eff;
  const bool show = !o.quiet && leader;
  SAMBALM_CHECK(!o.out.empty(), "--out: a run directory is required");
  SAMBALM_CHECK(!o.model.empty() || !o.init_from.empty() || o.resume, "--model or --init-from: which model to train?");
  SAMBALM_CHECK(o.batch > 0, "--batch must be positive, found {}", o.batch);
  SAMBALM_CHECK(o.grad_accum > 0, "--grad-accum must be positive, found {}", o.grad_accum);
  SAMBALM_CHECK(o.steps > 0, "--steps must be positive, found {}", o.steps);
  SAMBALM_CHECK(o.lr >= 0 && std::isfinite(o.lr), "--lr must be a finite non-negative number, found {}", o.lr);
  SAMBALM_CHECK(!o.min_lr || (*o.min_lr >= 0 && std::isfinite(*o.min_lr)),
                "--min-lr must be a finite non-negative number, found {}", o.min_lr.value_or(0));
  SAMBALM_CHECK(o.weight_decay >= 0, "--weight-decay must not be negative, found {}", o.weight_decay);
  SAMBALM_CHECK(o.grad_clip >= 0, "--grad-clip must not be negative (0: off), found {}", o.grad_clip);
  SAMBALM_CHECK(o.temperature >= 0, "--temperature must not be negative (0: greedy), found {}", o.temperature);
  SAMBALM_CHECK(o.seq_len >= 0, "--seq-len must be positive, found {}", o.seq_len);
  SAMBALM_CHECK(o.eval_batches > 0, "--eval-batches must be positive, found {}", o.eval_batches);
  for (int64_t L : o.eval_lengths) SAMBALM_CHECK(L > 0, "--eval-lengths: lengths must be positive, found {}", L);
  SAMBALM_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1,
                "--beta1/--beta2 must be in [0, 1), found {} / {}", o.beta1, o.beta2);
  SAMBALM_CHECK(o.eps > 0, "--eps must be positive, found {}", o.eps);
  SAMBALM_CHECK(o.max_bad_steps > 0, "--max-bad-steps must be positive, found {}", o.max_bad_steps);
  SAMBALM_CHECK(o.final_eval == "sampled" || o.final_eval == "full" || o.final_eval == "none",
                "--final-eval must be sampled, full or none, found '{}'", o.final_eval);
  // Before any data is read: bf16 on the CPU, or an unknown --device or --precision, is an error.
  parse_precision(o.precision, parse_device(o.device).device);
  SAMBALM_CHECK(o.zero == 0 || o.zero == 1, "--zero {}: stage 0 (off) and 1 (sharded optimizer state) exist", o.zero);
  SAMBALM_CHECK(o.zero == 0 || comm.distributed(),
                "--zero 1 shards the optimizer state over the processes of a distributed run, and this is one process "
                "{}",
                mpi_available() ? "(launch it as `mpirun -np N sambalm train ... --zero 1`, N > 1)"
                                : "and this sambalm was built without MPI (install libopenmpi-dev and rebuild)");
  if (o.global_batch > 0) {
    const int64_t per = o.batch * world;
    SAMBALM_CHECK(o.global_batch % per == 0,
                  "--global-batch {}: not a multiple of --batch {} x {} process{} = {} sequences; the global batch is "
                  "--batch x --grad-accum x the number of processes (choose a --global-batch or --batch that divides)",
                  o.global_batch, o.batch, world, world == 1 ? "" : "es", per);
    SAMBALM_CHECK(opts.grad_accum == 1 || opts.grad_accum == o.global_batch / per,
                  "--grad-accum {} contradicts --global-batch {} (--batch {} x {} process{} gives --grad-accum {}); "
                  "give one of them",
                  opts.grad_accum, o.global_batch, o.batch, world, world == 1 ? "" : "es", o.global_batch / per);
    eff.grad_accum = o.global_batch / per;
  }
  refuse_trained_model_as_model(o);
  if (!o.init_from.empty()) check_init_from_shape(o, resolve_config(o.init_from, o.model));

  // Run directory: created and probed for writing before any work.
  std::error_code ec;
  fs::create_directories(o.out, ec);
  SAMBALM_CHECK(!ec && fs::is_directory(o.out), "--out {}: cannot create the run directory: {}", o.out,
                ec ? ec.message() : "not a directory");
  SAMBALM_CHECK(::access(o.out.c_str(), W_OK) == 0, "--out {}: the run directory is not writable", o.out);
  const std::string metrics_path = (fs::path(o.out) / "metrics.jsonl").string();

  // Model and parameters: fresh, fine-tuned, or resumed.
  std::optional<std::string> resume_from;
  if (o.resume) {
    resume_from = latest_checkpoint(o.out);
    SAMBALM_CHECK(resume_from.has_value(), "--resume: no complete checkpoint under {}/checkpoints", o.out);
  } else {
    SAMBALM_CHECK(!latest_checkpoint(o.out).has_value(),
                  "--out {}: already holds checkpoints; pass --resume to continue that run or choose another directory",
                  o.out);
  }
  ModelConfig cfg;
  ParamStore params;
  if (resume_from) {
    LoadedModel lm = load_model(*resume_from);
    cfg = lm.config;
    params = std::move(lm.params);
  } else if (!o.init_from.empty()) {
    LoadedModel lm = load_model(o.init_from, o.model);
    cfg = lm.config;
    params = std::move(lm.params);
    if (!o.name.empty()) cfg.name = o.name;
  } else {
    cfg = build_config(o, std::nullopt);  // the vocabulary follows the data, once it is read
  }
  const int64_t T = o.seq_len > 0 ? o.seq_len : cfg.block_size;
  SAMBALM_CHECK(T > 0, "--seq-len must be positive, found {}", T);

  // A resumed run keeps its seed (see note_resume_changes): the data is read with it.
  std::optional<TrainerState> resumed_state;
  if (resume_from) {
    resumed_state = load_trainer_state(*resume_from, params.size());
    uint64_t seed = o.seed;
    note_resume_changes(resumed_state->extra.value("options", json()), o, T, resumed_state->step, seed, world, leader);
    eff.seed = seed;
    if (leader && !o.name.empty() && o.name != cfg.name)
      std::fprintf(stderr, "note: --name %s: a resumed run keeps its model's name %s\n", o.name.c_str(),
                   cfg.name.c_str());
  }

  // Data; a fresh model's vocabulary is the data's unless --vocab-size says otherwise.
  TrainData data(eff, T, rank, world);
  if (resume_from) {
    if (!o.model.empty() && o.init_from.empty()) {
      ModelConfig want = build_config(o, cfg.vocab_size);  // vocabulary: as given, else the checkpoint's
      check_resume_shape(o, want, cfg, *resume_from);
    }
  } else if (o.init_from.empty()) {
    cfg = build_config(o, data.vocab_size());
    data.check_model(cfg);  // before the (possibly large) initialisation
    params = ParamStore(param_specs(cfg));
    init_params(cfg, params, o.seed);
  }
  cfg.block_size = T;
  data.check_model(cfg);
  const std::map<std::string, std::string> tokenizer_files = data.tokenizer_files();

  // Optimizer, schedule, model, buffers.
  // The device holds the parameters, gradients and moments; the host copy of the parameters is
  // brought up to date (pull) before a checkpoint, a sample or the final model is written.
  Backend backend(parse_device(o.device));
  const Context& ctx = backend.context();
  const Precision precision = parse_precision(o.precision, ctx.device);
  const int64_t n_params = static_cast<int64_t>(params.size());
  // Every rank starts from rank 0's weights (a fresh init is the same everywhere; this makes sure).
  comm.set_phase("start-up: weights from rank 0");
  comm.broadcast(params.data(), n_params * int64_t(sizeof(float)), 0);
  const ops::Mirror<float> dparams(ctx, params.data(), n_params);
  DataParallelOptimizer opt(comm, params.size(), AdamWOptions{o.beta1, o.beta2, o.eps, o.weight_decay},
                            decay_ranges(params.entries(), o.decay_all), ctx, o.zero,
                            std::max<int64_t>(1, std::llround(o.bucket_mb * double(1 << 20) / sizeof(float))));
  LrSchedule sched{o.lr, o.min_lr.value_or(o.lr / 10), o.warmup.value_or(o.steps / 10), o.steps, true};
  // fp32: the model reads dparams; bf16: a bf16 working copy of it, refreshed after each update.
  const std::unique_ptr<PrecisionModel> model =
      make_precision_model(precision, cfg, params.entries(), ctx, dparams.get(), n_params);
  std::vector<float> grads(params.size(), 0.0f);
  const ops::Mirror<float> dgrads(ctx, grads.data(), n_params);
  // --profile: the step's regions timed on the backend's stream (ops/profiler.h); off, no profiler exists.
  std::unique_ptr<Profiler> profiler;
  if (o.profile) {
    profiler = std::make_unique<Profiler>(ctx);
    Profiler::set_active(profiler.get());
  }
  double norm_host = 0;
  const ops::Mirror<double> norm_scratch(ctx, &norm_host, 1);  // the gradient norm's sum on the device
  std::vector<int32_t> x(o.batch * T), y(o.batch * T);
  std::mt19937_64 rng(eff.seed ^ 0x5eed5a3b1e5ULL);

  int64_t step = 0, tokens_seen = 0, bad_in_row = 0;
  double elapsed_before = 0;
  if (resumed_state) {
    TrainerState& st = *resumed_state;
    step = st.step;
    opt.set_t(st.adam_t);
    opt.set_full_moments(st.exp_avg, st.exp_avg_sq);
    data.restore(st.data);
    std::istringstream(st.rng) >> rng;
    tokens_seen = st.extra.value("tokens_seen", int64_t{0});
    bad_in_row = st.extra.value("bad_in_row", int64_t{0});
    elapsed_before = st.extra.value("elapsed_s", 0.0);
    if (leader) truncate_metrics(metrics_path, step);
  } else if (leader) {
    std::remove(metrics_path.c_str());  // a fresh run in an existing directory starts a fresh log
  }
  SAMBALM_CHECK(step < o.steps || !resume_from, "--resume: the checkpoint is at step {}, already --steps {}", step,
                o.steps);

  // What a person sees first.
  const double bits = 1.0 / std::numbers::ln2;
  const char* bits_name = data.is_bytes() ? "bits/byte" : "bits/token";
  const int64_t global_batch = o.batch * o.grad_accum * world;  // sequences per optimizer step
  if (show) {
    std::printf("model %s: %s, %lld parameters, d=%lld, vocab %lld (padded %lld)\n", cfg.name.c_str(),
                cfg.layer_pattern().c_str(), (long long)cfg.num_params(), (long long)cfg.n_embd,
                (long long)cfg.vocab_size, (long long)cfg.padded_vocab_size);
    std::printf("data %s\n", data.describe().c_str());
    const std::string procs =
        comm.distributed() ? fmt::format(" x {} processes ({}{})", world, comm.backend(), o.zero ? ", ZeRO-1" : "") : "";
    std::printf(
        "device %s, %s\n", backend.describe().c_str(),
        precision == Precision::BF16 ? "bf16 mixed precision (fp32 master weights, optimizer and gradients)" : "fp32");
    std::printf(
        "train %lld steps x %lld x %lld tokens x %lld accum%s = %s tokens (global batch %lld sequences); lr %g -> %g "
        "(warmup %lld), wd %g, clip %g%s\n",
        (long long)o.steps, (long long)o.batch, (long long)T, (long long)o.grad_accum, procs.c_str(),
        fmt_si(double(o.steps) * global_batch * T).c_str(), (long long)global_batch, sched.lr, sched.min_lr,
        (long long)sched.warmup, o.weight_decay, o.grad_clip,
        resume_from ? fmt::format("; resuming from step {}", step).c_str() : "");
    std::fflush(stdout);
  }
  std::optional<MetricsLog> metrics_file;  // rank 0 only
  if (leader) metrics_file.emplace(metrics_path);
  auto log_metrics = [&](const json& rec) {
    if (metrics_file) metrics_file->append(rec);
  };
  std::ofstream samples_file;
  if (leader) samples_file.open((fs::path(o.out) / "samples.txt").string(), std::ios::app);

  TrainResult result;
  const auto run_t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return elapsed_before + std::chrono::duration<double>(std::chrono::steady_clock::now() - run_t0).count();
  };
  int64_t saved_step = -1;  // the step of the newest checkpoint this invocation wrote
  // Every rank calls it (with ZeRO-1 the moments are gathered); rank 0 writes the full state.
  auto save = [&](const char* why) {
    dparams.pull();
    comm.set_phase(fmt::format("checkpoint of step {}", step));
    TrainerState st;
    st.step = step;
    st.adam_t = opt.t();
    st.exp_avg = opt.full_m();
    st.exp_avg_sq = opt.full_v();
    st.data = data.state();
    st.rng = rng_state(rng);
    st.extra = {{"tokens_seen", tokens_seen},
                {"bad_in_row", bad_in_row},
                {"elapsed_s", elapsed()},
                {"reason", why},
                {"options", run_options(eff, T, world)}};
    result.checkpoint = leader ? save_checkpoint(o.out, cfg, params, st, o.keep_last, tokenizer_files)
                               : (fs::path(o.out) / "checkpoints" / checkpoint_name(step)).string();
    saved_step = step;
    return result.checkpoint;
  };

  // Under mpirun stdout is a pseudo-terminal whatever the job's output goes to: plain lines.
  Progress progress(o.steps, step, o.log_every, world > 1);
  auto say = [&](const std::string& s) {
    if (show) progress.message(s);
  };

  // The mean loss over validation windows: each rank scores a contiguous share, the sums are added.
  auto eval_shared = [&](const std::vector<int32_t>& windows, int64_t L, int64_t batch) {
    const int64_t n = count_windows(windows, L), first = n * rank / world, last = n * (rank + 1) / world;
    double sum = eval_windows_sum(*model, windows, L, batch, first, last - first);
    comm.all_reduce_sum(&sum, 1);
    return sum / double(n);
  };

  // Validation at the training length and every --eval-lengths length. Sampled: the fixed windows
  // (keys val_loss, val_ppl, val_bpb|val_bpt, val_loss_<L>); full: every window of the validation
  // split (keys full_val_*). Returns the loss at the training length.
  auto evaluate = [&](json& rec, bool full) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string pre = full ? "full_val" : "val";
    auto windows = [&](int64_t L) { return full ? data.full_val_windows(L) : data.val_windows(L); };
    comm.set_phase(fmt::format("validation at step {}", step));
    const double loss = eval_shared(windows(T), T, o.batch);
    rec[pre + "_loss"] = loss;
    rec[pre + "_ppl"] = std::exp(loss);
    rec[pre + (data.is_bytes() ? "_bpb" : "_bpt")] = loss * bits;
    std::string line = fmt::format("step {}: {} loss {:.4f} | ppl {:.3f} | {} {:.4f}", step,
                                   full ? "full validation" : "val", loss, std::exp(loss), bits_name, loss * bits);
    for (int64_t L : o.eval_lengths) {
      if (L == T) continue;
      const double l = eval_shared(windows(L), L, std::max<int64_t>(1, o.batch * T / L));
      rec[fmt::format("{}_loss_{}", pre, L)] = l;
      line += fmt::format(" | @{} {:.4f}", L, l);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rec[pre + "_s"] = secs;
    say(line + fmt::format(" ({:.1f}s)", secs));
    return loss;
  };

  auto sample = [&]() {
    std::vector<int32_t> prompt = data.prompt_ids(o.prompt);
    const size_t n_prompt = prompt.size();
    // Only ids the tokenizer can decode are drawn (the model's vocabulary may be larger). Sampling
    // decodes on the CPU from the host copy of the parameters.
    dparams.pull();
    auto gen = sample_continuation(cfg, params.entries(), params.data(), prompt, o.sample_tokens, o.temperature,
                                   std::min<int64_t>(cfg.vocab_size, data.sample_vocab()), rng());
    // An untrained model draws control bytes: escaped, so that neither the terminal nor `cat
    // samples.txt` acts on them.
    const std::string text = printable_text(data.decode(prompt) + data.decode(gen));
    say(fmt::format("--- sample at step {} ---\n{}\n---", step, text));
    samples_file << fmt::format("=== step {} (prompt: {} tokens, temperature {}) ===\n{}\n", step, n_prompt,
                                o.temperature, text);
    samples_file.flush();
  };

  SignalGuard signals;
  if (!resume_from && o.eval_every > 0) {
    json rec = {{"step", 0}};
    evaluate(rec, false);
    log_metrics(rec);
  }

  const int64_t first_step = step;
  double last_loss = NAN;
  // An error in the middle of the run (a full disk, an evaluation or sample that fails) saves a
  // checkpoint before it ends the run, as Ctrl-C does, unless it struck inside a step's update
  // (then the state is between two steps and the newest checkpoint is the last good one).
  bool in_update = false;
  std::string stop_error;  // the run gave up (non-finite losses): no new checkpoint
  try {
    while (step < o.steps) {
      in_update = true;
      const auto t0 = std::chrono::steady_clock::now();
      const double lr = sched.at(step);
      if (profiler) profiler->begin_step();
      ops::fill_zero(ctx, dgrads.get(), n_params);
      profile_mark("optimizer zero grads");
      double loss = 0;
      for (int64_t a = 0; a < o.grad_accum; ++a) {
        data.next_batch(x.data(), y.data(), o.batch);
        profile_mark("data");
        loss += model->forward(x.data(), y.data(), o.batch, T, 1.0 / double(o.grad_accum)) / double(o.grad_accum);
        model->backward(dgrads.get());
      }
      ++step;
      tokens_seen += global_batch * T;
      if (comm.distributed()) {
        distributed_failure_hooks(rank, step);
        comm.set_phase(fmt::format("gradients of step {}", step));
        comm.all_reduce_sum(&loss, 1);  // the mean over the global batch: every rank's is over as many tokens
        loss /= double(world);
      }
      if (inject_nan(step)) {
        const float nan = NAN;
        loss = NAN;
        ops::upload(ctx, dgrads.get(), &nan, sizeof(float));
      }
      const double norm = opt.reduce_and_clip(dgrads.get(), o.grad_clip, norm_scratch.get());
      profile_mark("optimizer grad reduce+norm+clip");
      const bool bad = !std::isfinite(loss) || !std::isfinite(norm);
      if (!bad) {
        opt.step(dparams.get(), dgrads.get(), lr);
        profile_mark("optimizer adamw");
        model->weights_changed();
        profile_mark("optimizer bf16 weight refresh");
        bad_in_row = 0;
        last_loss = loss;
      } else {
        ++bad_in_row;
      }
      if (profiler) profiler->end_step();
      in_update = false;
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double tps = double(global_batch * T) / std::max(dt, 1e-9);
      json rec = {{"step", step},
                  {"loss", bad ? json(nullptr) : json(loss)},
                  {"lr", lr},
                  {"tokens_per_s", tps},
                  {"grad_norm", std::isfinite(norm) ? json(norm) : json(nullptr)},
                  {"tokens", tokens_seen},
                  {"global_batch", global_batch},
                  {"time_s", elapsed()}};
      if (bad) {
        rec["skipped"] = true;
        say(fmt::format("step {}: loss {} / gradient norm {} is not finite: update skipped ({} in a row, limit {})",
                        step, loss, norm, bad_in_row, o.max_bad_steps));
        if (bad_in_row >= o.max_bad_steps) {
          log_metrics(rec);
          auto last = latest_checkpoint(o.out);
          stop_error = fmt::format(
              "training stopped at step {}: the loss was NaN/Inf for {} steps in a row (--max-bad-steps {}); "
              "the last good checkpoint is {}. Try a lower --lr or a smaller --grad-clip.",
              step, bad_in_row, o.max_bad_steps, last ? *last : std::string("(none saved yet)"));
          break;
        }
      }
      if (show)
        progress.update(step, fmt::format("loss {:.4f} lr {:.2e} | {} tok/s", bad ? NAN : loss, lr, fmt_si(tps)));

      const bool last = step == o.steps;
      if ((o.eval_every > 0 && step % o.eval_every == 0) || (last && o.final_eval == "sampled"))
        result.final_val_loss = evaluate(rec, false);
      if (last && o.final_eval == "full") result.final_val_loss = evaluate(rec, true);
      log_metrics(rec);
      if (leader && o.sample_every > 0 && (step % o.sample_every == 0 || last)) sample();
      if (inject_failure(step)) fail("test failure injected at step {} (SAMBALM_TEST_FAIL_AT)", step);

      // Every rank stops at the same step: a signal seen by any of them stops all.
      double stop_flag = g_stop_signal.load() != 0 || (o.stop_after > 0 && step - first_step >= o.stop_after);
      if (comm.distributed()) comm.all_reduce_max(&stop_flag, 1);
      const bool stop_now = stop_flag != 0;
      // No periodic checkpoint on a skipped step: the newest checkpoint stays the last good one.
      if (last || stop_now || (o.save_every > 0 && step % o.save_every == 0 && !bad)) {
        const std::string dir = save(last ? "final" : stop_now ? "stopped" : "periodic");
        if (!last && !stop_now) say(fmt::format("step {}: saved {}", step, dir));
      }
      if (stop_now && !last) {
        progress.finish();
        result.interrupted = true;
        result.signalled = g_stop_signal.load() != 0;
        say(fmt::format("{} at step {}: checkpoint {} saved; continue with the same command and --resume",
                        g_stop_signal.load() ? "interrupted" : "stopped (--stop-after)", step, result.checkpoint));
        break;
      }
    }
  } catch (const std::exception&) {
    progress.finish();
    std::fflush(stdout);
    // With other ranks possibly inside a collective, no new checkpoint can be gathered: the caller
    // ends the job, and the newest checkpoint is the last complete one.
    if (world > 1) throw;
    if (!in_update && step > first_step && saved_step != step) {
      try {
        const std::string dir = save("error");
        if (step == o.steps)
          std::fprintf(stderr,
                       "step %lld (the last): checkpoint %s saved before stopping on the error below; it is a model "
                       "directory holding the final weights\n",
                       (long long)step, dir.c_str());
        else
          std::fprintf(stderr,
                       "step %lld: checkpoint %s saved before stopping on the error below; once it is fixed, "
                       "continue with the same command and --resume\n",
                       (long long)step, dir.c_str());
      } catch (const std::exception& e2) {
        std::fprintf(stderr, "step %lld: no checkpoint could be saved either: %s\n", (long long)step, e2.what());
      }
    } else if (saved_step == step && step > first_step) {
      std::fprintf(stderr, "step %lld: checkpoint %s holds this step; continue with the same command and --resume\n",
                   (long long)step, result.checkpoint.c_str());
    }
    throw;
  }
  progress.finish();
  if (!stop_error.empty()) fail("{}", stop_error);
  if (profiler) {
    Profiler::set_active(nullptr);
    if (leader && profiler->steps_reported() > 0) {
      const std::string path = (fs::path(o.out) / "profile.json").string();
      write_file_atomic(path, profiler->json());
      if (!o.quiet) std::printf("%swritten to %s\n", profiler->table().c_str(), path.c_str());
    }
  }
  result.steps_done = step;
  result.last_loss = last_loss;
  if (step == o.steps && leader) {
    // The final model also as a plain model directory at RUN/model (what generate/eval take).
    const std::string dir = (fs::path(o.out) / "model").string();
    dparams.pull();
    save_model_dir(dir, cfg, params);
    for (const auto& [file, bytes] : tokenizer_files) write_file_atomic((fs::path(dir) / file).string(), bytes);
  }
  return result;
}

}  // namespace sambalm
