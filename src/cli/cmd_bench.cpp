// `sambalm bench`: prefill throughput and decode latency/throughput for chosen batch sizes and context
// lengths, in the spirit of mamba_ssm's benchmarks/benchmark_generation_mamba_simple.py (random
// prompt, timed prefill, then timed one-token steps). Prints a table, optionally JSON.
//
// Context fill:
//   real  every context token is prefilled (chunked) and timed: the prefill throughput column;
//   jump  `--prefill-tokens` are prefilled (timed), then the position jumps to the context length.
//         A decode step's work and memory depend only on the window and the state sizes, never on
//         how far the position is, so this measures decoding at 1M tokens without a 1M-token prefill;
//         the keys in the ring buffers then come from earlier positions (fine for timing, not for text).
//         Full-attention caches (SambaY's shared one too) are read up to the position, zero-filled past
//         the prefilled tokens: the same work as a real context of that length.
// The prefill asks for the last token's logits, as a generation does: SambaY's cross-decoder then runs
// on that token alone (--cross-decoder all runs it on every token, to measure what that saves).
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "cli/command.h"
#include "cli/device_option.h"
#include "cli/list_options.h"
#include "cli/options.h"
#include "cli/run_env.h"
#include "cli/weights_option.h"
#include "core/error.h"
#include "infer/decode_model.h"
#include "infer/generator.h"
#include "infer/membw.h"
#include "io/file.h"
#include "io/model_dir.h"
#include "model/weights.h"

namespace sambalm::cli {
namespace {

struct BenchOpts {
  std::string model, config, batches = "1", contexts = "1K", fill = "real", json, cross_decoder = "last";
  std::string weights_dtype, device, dtype, graphs;
  int64_t decode_tokens = 32, prefill_tokens = 512, chunk = 512, max_context = 0, warmup = 2, threads = 0;
  bool bandwidth = false, interleave = false;
};

constexpr int64_t kMaxBatch = 65536, kMaxContext = int64_t(1) << 40;

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

int64_t current_rss_bytes() {
  std::ifstream in("/proc/self/statm");
  int64_t pages = 0, rss = 0;
  in >> pages >> rss;
  return rss * 4096;
}

// Resets the peak-RSS counter (Linux: clear_refs 5) so each configuration reports its own peak.
void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }

double cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// One (batch, context) configuration: its states, filled to the context, and its step timings.
struct Config {
  int64_t batch = 1, context = 0, filled = 0;
  double prefill_s = 0;
  double prefill_cpu_s = 0;   // process CPU time of the prefill (all threads)
  double prefill_all_s = -1;  // --cross-decoder both: the same prefill with the cross-decoder on every token
  double prefill_all_cpu_s = -1;
  std::vector<DecodeState> states;
  std::vector<double> step_ms, cpu_ms;  // wall / process CPU time (all threads) per timed step
  std::vector<double> read_ms;          // --bandwidth: reading the weight bytes once, right after each step
  int64_t peak_rss = 0, rss = 0;
};

class Bench {
 public:
  // `dm`: the CPU's model (the cross-decoder switch and --bandwidth use it), null on a GPU.
  Bench(const BenchOpts& o, DecodeEngine& engine, DecodeModel* dm, int64_t vocab)
      : o_(o), eng_(engine), dm_(dm), V_(vocab) {}

  // New states for `B` sequences, prefilled (timed) to the context or jumped to it.
  Config prepare(int64_t B, int64_t ctx) {
    Config c;
    c.batch = B;
    c.context = ctx;
    for (int64_t b = 0; b < B; ++b) c.states.push_back(eng_.new_state());
    c.filled = o_.fill == "real" ? ctx : std::min(ctx, o_.prefill_tokens);
    std::vector<int32_t> prompt(size_t(std::max<int64_t>(1, std::min<int64_t>(c.filled, 1 << 16))));
    last_.resize(size_t(eng_.vocab()));
    const double t0 = now_s(), c0 = cpu_s();
    for (auto& st : c.states) {
      // Prefill in pieces of at most 64K ids so a 1M-token context needs no 1M-token prompt buffer.
      for (int64_t done = 0; done < c.filled;) {
        const int64_t n = std::min<int64_t>(c.filled - done, int64_t(prompt.size()));
        for (int64_t i = 0; i < n; ++i) prompt[size_t(i)] = int32_t(rng_() % uint32_t(V_));
        done += n;
        eng_.prefill(st, prompt.data(), n, nullptr, done == c.filled ? last_.data() : nullptr);
      }
    }
    c.prefill_s = now_s() - t0;
    c.prefill_cpu_s = cpu_s() - c0;
    for (auto& st : c.states) st.set_pos(ctx);
    return c;
  }

  // prepare(), and with --cross-decoder both (SambaY) first the same prefill without the skip, timed
  // and thrown away, so both prefills see the machine in about the same state.
  Config prepare_compared(int64_t B, int64_t ctx, bool compare) {
    double all_s = -1, all_cpu_s = -1;
    if (compare) {
      SAMBALM_CHECK(dm_ != nullptr, "bench: --cross-decoder both runs on the CPU only");
      dm_->set_cross_decoder_skip(false);
      const Config all = prepare(B, ctx);
      all_s = all.prefill_s;
      all_cpu_s = all.prefill_cpu_s;
      dm_->set_cross_decoder_skip(true);
    }
    Config c = prepare(B, ctx);
    c.prefill_all_s = all_s;
    c.prefill_all_cpu_s = all_cpu_s;
    return c;
  }

  // One decode step of every sequence of `c` (random tokens); records its times when `timed`.
  void step(Config& c, bool timed) {
    const auto B = size_t(c.batch);
    ptrs_.clear();
    for (auto& st : c.states) ptrs_.push_back(&st);
    tok_.resize(B);
    logits_.resize(B * size_t(eng_.vocab()));
    for (auto& t : tok_) t = int32_t(rng_() % uint32_t(V_));
    const double w0 = now_s(), c0 = cpu_s();
    // On a GPU the step returns once its logits are on the host: the time is the whole step's.
    eng_.step(ptrs_.data(), c.batch, tok_.data(), logits_.data());
    const double w1 = now_s(), c1 = cpu_s();
    if (!timed) return;
    c.step_ms.push_back((w1 - w0) * 1e3);
    c.cpu_ms.push_back((c1 - c0) * 1e3);
    // The bound measured in place: the same number of bytes the step must read, read from the
    // weights themselves right after it, so both see the machine in the same state.
    if (o_.bandwidth) c.read_ms.push_back(read_weights_seconds() * 1e3);
  }

 private:
  // float32 weights: one read of the step's bytes from the parameter buffer. Packed ones (bf16, f16,
  // q8): the float buffer and each packed matrix (data and scales) read as floats, the times added.
  double read_weights_seconds() {
    SAMBALM_CHECK(dm_ != nullptr, "bench: --bandwidth runs on the CPU only");
    const DecodeModel& dm = *dm_;
    if (dm.param_floats() == dm.param_count()) return read_seconds(dm.params(), dm.weight_bytes_per_token() / 4);
    double t = read_seconds(dm.params(), dm.param_floats());
    for (const auto& e : dm.entries()) {
      if (!e.packed) continue;
      // An untied embedding: one row per token, too little to time.
      if (e.name == "embedding.weight" && !dm.config().tied_embeddings) continue;
      const PackedMatrix& m = *e.packed;
      t += read_seconds(static_cast<const float*>(m.data),
                        (m.bytes() - (m.scales ? 4 * m.rows * m.blocks_per_row() : 0)) / 4);
      if (m.scales) t += read_seconds(m.scales, m.rows * m.blocks_per_row());
    }
    return t;
  }

  const BenchOpts& o_;
  DecodeEngine& eng_;
  DecodeModel* dm_;
  int64_t V_;
  std::mt19937 rng_{0};
  std::vector<DecodeState*> ptrs_;
  std::vector<int32_t> tok_;
  std::vector<float> logits_, last_;
};

int run(const BenchOpts& o) {
  SAMBALM_CHECK(o.fill == "real" || o.fill == "jump", "--fill must be 'real' or 'jump', got '{}'", o.fill);
  const auto batches = parse_int_list(o.batches, "--batch", 1, kMaxBatch);
  const auto contexts = parse_int_list(o.contexts, "--context", 1, kMaxContext);
  if (!o.json.empty()) check_writable(o.json, "--json");
  InferDevice where;
  {
    // Every configuration of one batch size holds its states at once with --interleave.
    const ModelConfig cfg = resolve_config(o.model, o.config);
    std::vector<CpuOnly> cpu_only;
    if (!o.weights_dtype.empty())
      cpu_only.push_back({"--weights-dtype " + o.weights_dtype,
                          "it is the CPU's packed weight format; --dtype sets the GPU's precision"});
    if (cfg.sambay)
      cpu_only.push_back({"SambaY model '" + cfg.name + "'", "its cross-decoder decodes on the CPU only"});
    if (o.bandwidth) cpu_only.push_back({"--bandwidth", "it measures the host's memory bandwidth"});
    where = resolve_infer_device(o.device, o.dtype, cpu_only);
    const int64_t B = *std::max_element(batches.begin(), batches.end());
    const int64_t copies = o.interleave ? int64_t(contexts.size()) : 1;
    const GenerationMemory m = estimate_generation_memory(cfg, o.max_context, B);
    // A full-attention cache (SambaY's shared one too) must hold the context and the steps: say so
    // before minutes of loading and prefilling, not at the first step past it.
    const int64_t cache = DecodeLayout::make(cfg, o.max_context > 0 ? o.max_context : cfg.block_size)->max_context;
    const int64_t longest = *std::max_element(contexts.begin(), contexts.end());
    SAMBALM_CHECK(cache <= 0 || longest + o.warmup + o.decode_tokens <= cache,
                  "bench: context {} + {} warm-up + {} decode steps exceed the full-attention cache of {} positions: "
                  "raise --max-context",
                  longest, o.warmup, o.decode_tokens, cache);
    const int64_t need = m.total > std::numeric_limits<int64_t>::max() / copies ? m.total : m.total * copies;
    const int64_t avail = available_memory_bytes();
    // The host's memory holds the decode states on the CPU only (on a GPU a pool that does not fit is
    // an error when it is allocated).
    SAMBALM_CHECK(where.cuda() || avail <= 0 || need <= avail,
                  "bench: batch {}{} needs about {:.1f} MiB of decode states and scratch ({:.1f} MiB per sequence), "
                  "more than the {:.1f} MiB of memory available; lower --batch{}",
                  B, copies > 1 ? fmt::format(" x {} interleaved contexts", copies) : "", double(need) / (1 << 20),
                  double(m.per_sequence) / (1 << 20), double(avail) / (1 << 20),
                  copies > 1 ? " or give fewer contexts" : "");
  }
  apply_threads(o.threads);
  LoadedModel lm = load_model(o.model, o.config, {.keep_packed = !where.cuda(), .weights_dtype = o.weights_dtype});
  if (!where.cuda()) warn_if_packed_weights_are_slow(lm.params);
  const ModelConfig& cfg = lm.config;
  DecodeOptions dopt;
  dopt.chunk = o.chunk;
  dopt.max_batch = *std::max_element(batches.begin(), batches.end());
  dopt.max_context = o.max_context;
  dopt.graphs = o.graphs == "on";
  // Interleaved, every context's states live at once; otherwise one context's at a time.
  dopt.slots = dopt.max_batch * (o.interleave ? static_cast<int64_t>(contexts.size()) : 1);
  // The engine: the CPU's DecodeModel, or a GPU's DeviceDecodeModel (its states in device memory).
  std::unique_ptr<DecodeModel> cpu_dm;
  std::unique_ptr<GpuDecoder> gpu;
  if (where.cuda()) {
    gpu = std::make_unique<GpuDecoder>(where, lm, dopt);
  } else {
    cpu_dm = std::make_unique<DecodeModel>(cfg, lm.params.entries(), lm.params.data(), dopt);
    cpu_dm->set_cross_decoder_skip(o.cross_decoder != "all");
  }
  std::unique_ptr<DecodeEngine> cpu_engine;
  if (cpu_dm) cpu_engine = std::make_unique<DecodeEngineOf<DecodeModel>>(*cpu_dm);
  DecodeEngine& engine = gpu ? gpu->engine() : *cpu_engine;
  const bool compare = cfg.sambay && o.cross_decoder == "both";
  const int64_t n_params = cpu_dm ? cpu_dm->param_count() : static_cast<int64_t>(lm.params.size());
  // Weight bytes a batch-1 step reads: on the GPU every parameter once in the compute dtype (norms and
  // the scan's constants read as fp32 are too few to count), the untied embedding one row.
  double wbytes = cpu_dm ? double(cpu_dm->weight_bytes_per_token()) : 0.0;
  if (gpu) {
    const double elem = gpu->precision() == Precision::BF16 ? 2.0 : 4.0;
    for (const auto& e : lm.params.entries()) {
      const double bytes = double(e.numel()) * elem;
      wbytes += !cfg.tied_embeddings && e.name == "embedding.weight" ? bytes / double(e.shape[0]) : bytes;
    }
  }
  Bandwidth bw;
  if (o.bandwidth) bw = measure_bandwidth();

  if (gpu)
    std::printf(
        "model %s (%s), %.1fM parameters, device %s, parameters in device memory %.1f MB, weights read per "
        "token %.1f MB, CUDA graphs %s, %d host threads\n",
        cfg.name.c_str(), cfg.layer_pattern().c_str(), double(n_params) / 1e6, gpu->describe().c_str(),
        double(gpu->param_bytes()) / 1e6, wbytes / 1e6, o.graphs.c_str(), omp_get_max_threads());
  else
    std::printf("model %s (%s), %.1fM parameters, weights (%s) read per token %.1f MB, %d threads\n", cfg.name.c_str(),
                cfg.layer_pattern().c_str(), double(n_params) / 1e6, cpu_dm->weight_formats().c_str(), wbytes / 1e6,
                omp_get_max_threads());

  if (o.bandwidth)
    std::printf(
        "memory bandwidth (512 MiB buffer, before decoding): read %.1f GB/s, memcpy %.1f GB/s; '%% bound'\n"
        "compares each step with a read of its %.1f MB of weights timed right after it\n",
        bw.read_gbs, bw.memcpy_gbs, wbytes / 1e6);
  if (o.interleave) std::printf("interleaved: each round times one step of every context, in a rotated order\n");
  std::printf("%6s %9s %5s %12s %10s %10s %10s %11s %10s %10s %10s\n", "batch", "context", "fill", "prefill t/s",
              "step ms", "min ms", "cpu ms", "decode t/s", "% bound", "state MiB", "peak MiB");
  const int64_t V = std::min<int64_t>(cfg.vocab_size > 0 ? cfg.vocab_size : engine.vocab(), engine.vocab());
  Bench bench(o, engine, cpu_dm.get(), V);
  nlohmann::json rows = nlohmann::json::array();

  auto report = [&](const Config& c) {
    const double med = median(c.step_ms), cpu_med = median(c.cpu_ms);
    double mean = 0;
    for (double v : c.step_ms) mean += v / double(c.step_ms.size());
    const double mn = *std::min_element(c.step_ms.begin(), c.step_ms.end());
    const double mx = *std::max_element(c.step_ms.begin(), c.step_ms.end());
    const double tps = double(c.batch) * 1e3 / mean;
    const double prefill_tps = c.prefill_s > 0 ? double(c.batch * c.filled) / c.prefill_s : 0.0;
    // Batch-1 bound: the median time to read the weight bytes, measured next to the steps.
    const double read_med = median(c.read_ms), bound = read_med > 0 ? 1e3 / read_med : 0;
    const double state_mib = double(c.states[0].bytes()) / (1 << 20);
    std::printf("%6lld %9lld %5s %12.1f %10.2f %10.2f %10.2f %11.2f %10s %10.1f %10.1f\n", (long long)c.batch,
                (long long)c.context, o.fill.c_str(), prefill_tps, med, mn, cpu_med, tps,
                bound > 0 && c.batch == 1 ? fmt::format("{:.0f}%", 100 * tps / bound).c_str() : "-", state_mib,
                double(c.peak_rss) / (1 << 20));
    const double prefill_all_tps = c.prefill_all_s > 0 ? double(c.batch * c.filled) / c.prefill_all_s : 0.0;
    if (c.prefill_all_s > 0)
      std::printf(
          "%6s cross-decoder on every prompt token: prefill %.1f t/s; skipping it saves %.1f%% of the "
          "time, %.1f%% of the CPU time\n",
          "", prefill_all_tps, 100 * (1 - c.prefill_s / c.prefill_all_s),
          100 * (1 - c.prefill_cpu_s / c.prefill_all_cpu_s));
    std::fflush(stdout);
    rows.push_back({{"batch", c.batch},
                    {"context", c.context},
                    {"fill", o.fill},
                    {"interleaved", o.interleave},
                    {"prefilled_tokens", c.filled},
                    {"prefill_tok_s", prefill_tps},
                    {"cross_decoder", cfg.sambay ? o.cross_decoder : "-"},
                    {"prefill_all_tok_s", prefill_all_tps},
                    {"prefill_cpu_s", c.prefill_cpu_s},
                    {"prefill_all_cpu_s", c.prefill_all_cpu_s},
                    {"step_ms_median", med},
                    {"step_ms_mean", mean},
                    {"step_ms_min", mn},
                    {"step_ms_max", mx},
                    {"step_cpu_ms_median", cpu_med},
                    {"weights_read_ms_median", read_med},
                    {"bound_tok_s", bound},
                    {"decode_tok_s", tps},
                    {"state_bytes_per_seq", c.states[0].bytes()},
                    {"peak_rss_bytes", c.peak_rss},
                    {"rss_bytes", c.rss}});
  };

  for (int64_t B : batches) {
    if (!o.interleave) {
      for (int64_t ctx : contexts) {
        reset_peak_rss();
        Config c = bench.prepare_compared(B, ctx, compare);
        for (int64_t i = 0; i < o.warmup + o.decode_tokens; ++i) bench.step(c, i >= o.warmup);
        c.peak_rss = peak_rss_bytes();
        c.rss = current_rss_bytes();
        report(c);
      }
      continue;
    }
    // Interleaved: every context's states exist at once; round r times one step of each context,
    // starting at context r mod n, so slow drifts and bursts of load on a shared machine fall on
    // all contexts alike instead of on whichever one happened to run during them.
    reset_peak_rss();
    std::vector<Config> cs;
    for (int64_t ctx : contexts) cs.push_back(bench.prepare_compared(B, ctx, compare));
    const size_t n = cs.size();
    for (int64_t r = 0; r < o.warmup + o.decode_tokens; ++r)
      for (size_t k = 0; k < n; ++k) bench.step(cs[(size_t(r) + k) % n], r >= o.warmup);
    const int64_t peak = peak_rss_bytes(), rss = current_rss_bytes();
    double lo = 1e300, hi = 0;
    for (auto& c : cs) {
      c.peak_rss = peak;  // one process: the peak covers all contexts together
      c.rss = rss;
      report(c);
      lo = std::min(lo, median(c.step_ms));
      hi = std::max(hi, median(c.step_ms));
    }
    if (n > 1)
      std::printf("%6s spread of the step medians over the contexts (max/min - 1): %.1f%%\n", "", 100 * (hi / lo - 1));
  }
  if (!o.json.empty()) {
    nlohmann::json j = {
        {"model", cfg.name},
        {"layer_pattern", cfg.layer_pattern()},
        {"local_window", cfg.local_window},
        {"device", gpu ? gpu->describe() : std::string("cpu")},
        {"parameters", n_params},
        {"weight_bytes_per_token", cpu_dm ? nlohmann::json(cpu_dm->weight_bytes_per_token()) : nlohmann::json()},
        {"weight_formats", cpu_dm ? cpu_dm->weight_formats() : std::string(precision_name(where.precision))},
        {"threads", omp_get_max_threads()},
        {"decode_tokens", o.decode_tokens},
        {"warmup", o.warmup},
        {"chunk", o.chunk},
        {"interleaved", o.interleave},
        {"rows", rows}};
    if (o.bandwidth) j["bandwidth"] = {{"read_gbs", bw.read_gbs}, {"memcpy_gbs", bw.memcpy_gbs}};
    write_file_atomic(o.json, j.dump(2) + "\n");
  }
  return 0;
}

Action add(CLI::App& app) {
  auto o = std::make_shared<BenchOpts>();
  auto* sub = app.add_subcommand("bench", "Benchmark prefill and decoding (latency, throughput, memory)");
  sub->footer(
      "For each batch size and context length: prefill the context (chunked, timed), then time --decode-tokens\n"
      "one-token steps after --warmup steps. 'step ms' is the median step latency; 'decode t/s' = batch / mean\n"
      "step time. With --bandwidth, each timed step is followed by a timed read of the weight bytes a\n"
      "step must read (the weights themselves, all threads): batch-1 decoding is compared with that bound\n"
      "(median read time vs mean step time), measured in place so that both see the machine alike; the\n"
      "bandwidth of a 512 MiB buffer is printed beside it. A preset name gives random weights.\n"
      "--fill jump prefills --prefill-tokens and then moves the position to the context length (decode cost\n"
      "does not depend on the position, except through full-attention caches, which are read up to it\n"
      "either way), so 1M-token contexts can be timed without a 1M-token prefill.\n"
      "The prefill asks for the last token's logits, as generate does; for SambaY the cross-decoder then runs\n"
      "on that token only (--cross-decoder last), or on every prompt token with --cross-decoder all; 'both'\n"
      "times the prefill both ways (without the skip first) and prints what the skip saves.\n"
      "'state MiB' is one sequence's decode state (sized by --max-context).\n"
      "--interleave builds the states of all contexts first, then each round times one step of every context\n"
      "(in an order rotated each round): machine noise then falls on all contexts alike, which is how to compare\n"
      "per-token time across contexts on a shared machine. 'min ms' is the fastest step; 'cpu ms' the median\n"
      "process CPU time of a step (all threads; excludes time the OS gave to other processes).\n"
      "OpenMP's idle threads spin briefly and then sleep (GOMP_SPINCOUNT=10000 unless OMP_WAIT_POLICY or\n"
      "GOMP_SPINCOUNT is set), which keeps timings sane on cores shared with other work.\n"
      "GPU (--device cuda): the same table, the first line naming the device and --dtype; a step's time includes\n"
      "bringing its logits to the host. 'cpu ms' and 'peak MiB' are the host process's. --weights-dtype,\n"
      "--bandwidth and SambaY models run on the CPU only: --device auto then chooses the CPU, --device cuda\n"
      "is an error.");
  sub->add_option("--model,-m", o->model, "Preset name, model directory or weights file")->required();
  sub->add_option("--config", o->config, "config.json or preset for a bare weights file");
  sub->add_option("--batch", o->batches, "Batch sizes, e.g. 1,8,32")
      ->check(int_list_in("--batch", 1, kMaxBatch))
      ->capture_default_str();
  sub->add_option("--context", o->contexts, "Context lengths, e.g. 1K,16K,128K,1M")
      ->check(int_list_in("--context", 1, kMaxContext))
      ->capture_default_str();
  sub->add_option("--fill", o->fill, "real | jump (see below)")
      ->check(CLI::IsMember({"real", "jump"}))
      ->capture_default_str();
  in_range<int64_t>(sub->add_option("--prefill-tokens", o->prefill_tokens, "Tokens prefilled with --fill jump"), 0,
                    1 << 30)
      ->capture_default_str();
  sub->add_option("--cross-decoder", o->cross_decoder,
                  "SambaY prefill: last (the cross-decoder on the last token only) | all (on every token) | both")
      ->check(CLI::IsMember({"last", "all", "both"}))
      ->capture_default_str();
  in_range<int64_t>(sub->add_option("--decode-tokens", o->decode_tokens, "Timed decode steps"), 1, 1 << 20)
      ->capture_default_str();
  in_range<int64_t>(sub->add_option("--warmup", o->warmup, "Untimed decode steps first"), 0, 1 << 20)
      ->capture_default_str();
  in_range<int64_t>(sub->add_option("--chunk", o->chunk, "Prefill chunk"), 1, 65536)->capture_default_str();
  in_range<int64_t>(sub->add_option("--max-context", o->max_context, "Cache of full-attention layers (0: block_size)"),
                    0, 1 << 30);
  in_range<int64_t>(sub->add_option("--threads", o->threads, "OpenMP threads (default: all cores)"), 1, 1024);
  add_weights_dtype_option(sub, o->weights_dtype);
  add_device_options(sub, o->device, o->dtype);
  add_graphs_option(sub, o->graphs);
  sub->add_flag("--bandwidth", o->bandwidth, "Measure memory bandwidth and show the decode bound");
  sub->add_flag("--interleave", o->interleave,
                "Hold every context's states at once and time their steps round-robin (see below)");
  sub->add_option("--json", o->json, "Also write the results as JSON to this file (checked before the run)");
  return [o] {
    bound_openmp_spinning();
    return run(*o);
  };
}

}  // namespace
SAMBALM_REGISTER_COMMAND(60, add);
}  // namespace sambalm::cli
