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
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "cli/command.h"
#include "core/error.h"
#include "infer/decode_model.h"
#include "infer/generator.h"
#include "infer/membw.h"
#include "model/weights.h"

namespace sambalm::cli {
namespace {

struct BenchOpts {
  std::string model, config, batches = "1", contexts = "1K", fill = "real", json;
  int64_t decode_tokens = 32, prefill_tokens = 512, chunk = 512, max_context = 0, warmup = 2;
  bool bandwidth = false;
};

// "1,8,32" / "1K,16K,1M" (K = 1024, M = 1048576).
std::vector<int64_t> parse_list(const std::string& s, const char* what) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    int64_t mult = 1;
    if (!item.empty() && (item.back() == 'K' || item.back() == 'k')) mult = 1024, item.pop_back();
    if (!item.empty() && (item.back() == 'M' || item.back() == 'm')) mult = 1 << 20, item.pop_back();
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    SAMBALM_CHECK(used == item.size() && v > 0, "{}: '{}' is not a positive count (e.g. 1,8 or 1K,1M)", what, item);
    out.push_back(int64_t(v) * mult);
  }
  SAMBALM_CHECK(!out.empty(), "{}: empty list", what);
  return out;
}

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

int64_t current_rss_bytes() {
  std::ifstream in("/proc/self/statm");
  int64_t pages = 0, rss = 0;
  in >> pages >> rss;
  return rss * 4096;
}

// Resets the peak-RSS counter (Linux: clear_refs 5) so each configuration reports its own peak.
void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }

int run(const BenchOpts& o) {
  SAMBALM_CHECK(o.fill == "real" || o.fill == "jump", "--fill must be 'real' or 'jump', got '{}'", o.fill);
  const auto batches = parse_list(o.batches, "--batch"), contexts = parse_list(o.contexts, "--context");
  LoadedModel lm = load_model(o.model, o.config);
  const ModelConfig& cfg = lm.config;
  DecodeOptions dopt;
  dopt.chunk = o.chunk;
  dopt.max_batch = *std::max_element(batches.begin(), batches.end());
  dopt.max_context = o.max_context;
  DecodeModel dm(cfg, lm.params.entries(), lm.params.data(), dopt);
  const double wbytes = double(dm.weight_bytes_per_token());
  Bandwidth bw;
  if (o.bandwidth) bw = measure_bandwidth();

  nlohmann::json rows = nlohmann::json::array();
  std::printf("model %s (%s), %.1fM parameters, fp32 weights read per token %.1f MB, %d threads\n", cfg.name.c_str(),
              cfg.layer_pattern().c_str(), double(dm.param_floats()) / 1e6, wbytes / 1e6, omp_get_max_threads());
  if (o.bandwidth)
    std::printf("memory bandwidth: read %.1f GB/s, memcpy %.1f GB/s  =>  batch-1 decode bound %.1f tok/s\n",
                bw.read_gbs, bw.memcpy_gbs, bw.read_gbs * 1e9 / wbytes);
  std::printf("%6s %9s %5s %12s %12s %12s %12s %11s %11s\n", "batch", "context", "fill", "prefill t/s", "step ms",
              "decode t/s", "% of bound", "state MiB", "peak MiB");
  std::mt19937 rng(0);
  const int64_t V = std::min<int64_t>(cfg.vocab_size > 0 ? cfg.vocab_size : dm.vocab(), dm.vocab());
  std::vector<float> logits;
  for (int64_t B : batches) {
    for (int64_t ctx : contexts) {
      reset_peak_rss();
      std::vector<DecodeState> states;
      for (int64_t b = 0; b < B; ++b) states.push_back(dm.new_state());
      const int64_t fill = o.fill == "real" ? ctx : std::min(ctx, o.prefill_tokens);
      std::vector<int32_t> prompt(size_t(std::min<int64_t>(fill, 1 << 16)));
      double t0 = now_s();
      for (int64_t b = 0; b < B; ++b) {
        // Prefill in pieces of at most 64K ids so a 1M-token context needs no 1M-token prompt buffer.
        for (int64_t done = 0; done < fill;) {
          const int64_t n = std::min<int64_t>(fill - done, int64_t(prompt.size()));
          for (int64_t i = 0; i < n; ++i) prompt[i] = int32_t(rng() % V);
          dm.prefill(states[b], prompt.data(), n, nullptr, nullptr);
          done += n;
        }
      }
      const double prefill_s = now_s() - t0;
      for (auto& s : states) s.set_pos(ctx);
      std::vector<DecodeState*> ptrs;
      for (auto& s : states) ptrs.push_back(&s);
      logits.resize(size_t(B * dm.vocab()));
      std::vector<int32_t> tok(static_cast<size_t>(B), 0);
      std::vector<double> step_ms;
      for (int64_t i = 0; i < o.warmup + o.decode_tokens; ++i) {
        for (auto& t : tok) t = int32_t(rng() % V);
        const double ts = now_s();
        dm.step(ptrs.data(), B, tok.data(), logits.data());
        if (i >= o.warmup) step_ms.push_back((now_s() - ts) * 1e3);
      }
      std::sort(step_ms.begin(), step_ms.end());
      const double med = step_ms[step_ms.size() / 2];
      double mean = 0;
      for (double v : step_ms) mean += v / double(step_ms.size());
      const double tps = double(B) * 1e3 / mean, prefill_tps = double(B * fill) / prefill_s;
      const double bound = o.bandwidth ? bw.read_gbs * 1e9 / wbytes : 0;
      const double peak = double(peak_rss_bytes()) / (1 << 20), state_mib = double(states[0].bytes()) / (1 << 20);
      std::printf("%6lld %9lld %5s %12.1f %12.2f %12.2f %12s %11.1f %11.1f\n", (long long)B, (long long)ctx,
                  o.fill.c_str(), prefill_tps, med, tps,
                  bound > 0 && B == 1 ? fmt::format("{:.0f}%", 100 * tps / bound).c_str() : "-", state_mib, peak);
      std::fflush(stdout);
      rows.push_back({{"batch", B},
                      {"context", ctx},
                      {"fill", o.fill},
                      {"prefilled_tokens", fill},
                      {"prefill_tok_s", prefill_tps},
                      {"step_ms_median", med},
                      {"step_ms_mean", mean},
                      {"step_ms_min", step_ms.front()},
                      {"step_ms_max", step_ms.back()},
                      {"decode_tok_s", tps},
                      {"state_bytes_per_seq", states[0].bytes()},
                      {"peak_rss_bytes", peak_rss_bytes()},
                      {"rss_bytes", current_rss_bytes()}});
    }
  }
  if (!o.json.empty()) {
    nlohmann::json j = {{"model", cfg.name},
                        {"layer_pattern", cfg.layer_pattern()},
                        {"parameters", dm.param_floats()},
                        {"weight_bytes_per_token", dm.weight_bytes_per_token()},
                        {"threads", omp_get_max_threads()},
                        {"decode_tokens", o.decode_tokens},
                        {"chunk", o.chunk},
                        {"rows", rows}};
    if (o.bandwidth) j["bandwidth"] = {{"read_gbs", bw.read_gbs}, {"memcpy_gbs", bw.memcpy_gbs}};
    std::ofstream(o.json) << j.dump(2) << "\n";
  }
  return 0;
}

Action add(CLI::App& app) {
  auto o = std::make_shared<BenchOpts>();
  auto* sub = app.add_subcommand("bench", "Benchmark prefill and decoding (latency, throughput, memory)");
  sub->footer(
      "For each batch size and context length: prefill the context (chunked, timed), then time --decode-tokens\n"
      "one-token steps after --warmup steps. 'step ms' is the median step latency; 'decode t/s' = batch / mean\n"
      "step time. With --bandwidth, the memory read bandwidth is measured and batch-1 decoding is compared with\n"
      "its bound, weight bytes per token / read bandwidth. A preset name gives random weights.\n"
      "--fill jump prefills --prefill-tokens and then moves the position to the context length (decode cost\n"
      "does not depend on the position), so 1M-token contexts can be timed without a 1M-token prefill.");
  sub->add_option("--model,-m", o->model, "Preset name, model directory or weights file")->required();
  sub->add_option("--config", o->config, "config.json or preset for a bare weights file");
  sub->add_option("--batch", o->batches, "Batch sizes, e.g. 1,8,32")->capture_default_str();
  sub->add_option("--context", o->contexts, "Context lengths, e.g. 1K,16K,128K,1M")->capture_default_str();
  sub->add_option("--fill", o->fill, "real | jump (see below)")->capture_default_str();
  sub->add_option("--prefill-tokens", o->prefill_tokens, "Tokens prefilled with --fill jump")->capture_default_str();
  sub->add_option("--decode-tokens", o->decode_tokens, "Timed decode steps")->capture_default_str();
  sub->add_option("--warmup", o->warmup, "Untimed decode steps first")->capture_default_str();
  sub->add_option("--chunk", o->chunk, "Prefill chunk")->capture_default_str();
  sub->add_option("--max-context", o->max_context, "Cache of full-attention layers (0: block_size)");
  sub->add_flag("--bandwidth", o->bandwidth, "Measure memory bandwidth and show the decode bound");
  sub->add_option("--json", o->json, "Also write the results as JSON to this file");
  return [o] { return run(*o); };
}

}  // namespace
SAMBALM_REGISTER_COMMAND(60, add);
}  // namespace sambalm::cli
