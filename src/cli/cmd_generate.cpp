// `sambalm generate`: text (or ids) in, a sampled continuation out — streamed to stdout as it is
// produced, or as JSON — with the prompt prefilled in chunks and O(1)-per-token decoding. Also a
// batch of prompts decoded together, an interactive mode that keeps the state between turns, and
// decode state files to stop and resume a conversation or a document.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/command.h"
#include "cli/device_option.h"
#include "cli/options.h"
#include "cli/run_env.h"
#include "cli/weights_option.h"
#include "core/error.h"
#include "infer/generator.h"
#include "infer/state_file.h"
#include "io/file.h"
#include "io/model_dir.h"
#include "model/weights.h"

namespace sambalm::cli {
namespace {

struct GenOpts {
  std::string model, config, tokenizer, prompt, prompt_file, prompt_ids, prompts_file, load_state, save_state;
  std::string weights_dtype, device, dtype, graphs;
  int64_t batch = 1, chunk = 512, max_context = 0, threads = 0;
  bool json = false, interactive = false, bos = false, ignore_eos = false, quiet = false;
  bool top_k_given = false, sampling_asked = false;
  GenerateOptions gen;
};

// Ctrl-C: the first stops the generation in progress (what was generated is kept and printed); the
// handler then steps aside, so a second Ctrl-C ends the program at once.
std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) {
  g_interrupted.store(true);
  std::signal(SIGINT, SIG_DFL);
}
// Installed without SA_RESTART: Ctrl-C at the interactive prompt interrupts the read and ends the session.
void catch_sigint() {
  g_interrupted.store(false);
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
}

std::string mib(int64_t bytes) { return fmt::format("{:.1f} MiB", double(bytes) / (1 << 20)); }

// Refuses a batch whose decode states, logits and scratch would not fit in the available memory,
// before allocating any of it.
void check_memory(const ModelConfig& cfg, int64_t max_context, int64_t batch) {
  const GenerationMemory m = estimate_generation_memory(cfg, max_context, batch);
  const int64_t avail = available_memory_bytes();
  if (avail <= 0 || m.total <= avail) return;
  fail(
      "generate: decoding {} sequence(s) needs about {}, more than the {} of memory available; lower --batch. "
      "Each sequence takes {}: its decode state {} (of which {} are attention caches: keys and values of the last "
      "window positions, or of --max-context for full attention, per attention layer), and {} of logits, "
      "sampler and scratch rows over the vocabulary",
      batch, mib(m.total), mib(avail), mib(m.per_sequence), mib(m.state_bytes), mib(m.attention_bytes),
      mib(m.per_sequence - m.state_bytes));
}

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t a = item.find_first_not_of(" \t"), b = item.find_last_not_of(" \t");
    SAMBALM_CHECK(a != std::string::npos, "--prompt-ids: empty item in '{}'", s);
    item = item.substr(a, b - a + 1);
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    SAMBALM_CHECK(used == item.size() && v >= 0 && v < (1LL << 31), "--prompt-ids: '{}' is not a token id", item);
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

std::string summary(const GenerationStats& s) {
  return fmt::format(
      "prompt tokens {}, generated tokens {}, prefill {:.1f} tok/s, decode {:.2f} tok/s, peak memory {:.1f} MiB",
      s.prompt_tokens, s.generated_tokens, s.prefill_tok_s(), s.decode_tok_s(), double(peak_rss_bytes()) / (1 << 20));
}

nlohmann::json stats_json(const GenerationStats& s) {
  return {{"prompt_tokens", s.prompt_tokens},     {"generated_tokens", s.generated_tokens},
          {"prefill_seconds", s.prefill_seconds}, {"decode_seconds", s.decode_seconds},
          {"prefill_tok_s", s.prefill_tok_s()},   {"decode_tok_s", s.decode_tok_s()},
          {"peak_rss_bytes", peak_rss_bytes()}};
}

void print_text(size_t, std::string_view t) {
  std::fwrite(t.data(), 1, t.size(), stdout);
  std::fflush(stdout);
}

// One line per turn. Lines starting with '/' are commands (a line starting with "//" is sent as text,
// less its first '/'); a failing command or turn is reported and the session goes on.
// `save` writes a session's state to a file (the CPU's or the GPU's model).
using SaveState = std::function<void(const std::string& path, const Session& s)>;

void interactive(Generator& g, Session& s, const SaveState& save, const GenOpts& o) {
  std::fprintf(stderr,
               "interactive: type a line; /reset forgets the context, /save FILE writes the state, /quit ends "
               "(Ctrl-C stops a reply)\n");
  std::string line;
  for (;;) {
    std::fprintf(stderr, "> ");
    catch_sigint();  // a Ctrl-C during the last reply made the handler step aside
    if (!std::getline(std::cin, line) || line == "/quit") break;
    try {
      if (line.rfind("//", 0) == 0) {
        line.erase(0, 1);
      } else if (line == "/reset") {
        s.state.reset();
        s.history.clear();
        s.pending.clear();
        std::fprintf(stderr, "context cleared\n");
        continue;
      } else if (line == "/save" || line.rfind("/save ", 0) == 0) {
        const size_t a = line.find_first_not_of(' ', 5);
        SAMBALM_CHECK(a != std::string::npos, "/save needs a file name: /save FILE");
        const std::string path = line.substr(a);
        save(path, s);
        std::fprintf(stderr, "saved %s (%lld tokens)\n", path.c_str(), (long long)s.history.size());
        continue;
      } else if (!line.empty() && line[0] == '/') {
        fail("unknown command '{}' (commands: /reset, /save FILE, /quit; start a line with // to send a '/')",
             line.substr(0, line.find(' ')));
      }
      std::vector<Session*> ss = {&s};
      auto r = g.run(ss, {g.encode(line + "\n", o.bos && s.history.empty(), "the turn")}, o.gen, print_text);
      std::printf("\n");
      std::fflush(stdout);
      if (r[0].stop_reason == "interrupted") std::fprintf(stderr, "[reply stopped]\n");
      if (!o.quiet) std::fprintf(stderr, "[%s; context %lld]\n", summary(g.stats()).c_str(), (long long)s.state.pos());
    } catch (const Error& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
    }
  }
}

// Prompt text from a file, or from standard input for "-".
std::string read_prompt_file(const std::string& path) {
  if (path != "-") return read_text_file(path);
  std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  SAMBALM_CHECK(!std::cin.bad(), "-f -: cannot read standard input");
  return text;
}

int run(GenOpts& o) {
  // Everything the command line alone can tell is checked before the model is read.
  const int sources = !o.prompt.empty() + !o.prompt_file.empty() + !o.prompt_ids.empty() + !o.prompts_file.empty();
  SAMBALM_CHECK(sources <= 1, "generate: give one of -p, -f, --prompt-ids, --prompts-file (got {})", sources);
  if (o.interactive) {
    SAMBALM_CHECK(!o.json, "generate: --json cannot be combined with -i (interactive turns are printed as text)");
    SAMBALM_CHECK(o.batch == 1 && o.prompts_file.empty(),
                  "generate: -i runs one conversation; --batch and --prompts-file cannot be combined with it");
    SAMBALM_CHECK(o.prompt_file != "-", "generate: -i reads the turns from standard input, so -f - cannot be used");
  }
  SAMBALM_CHECK(o.save_state.empty() || (o.batch == 1 && o.prompts_file.empty()),
                "generate: --save-state saves one sequence; it cannot be combined with --batch or --prompts-file");
  if (!o.save_state.empty()) check_writable(o.save_state, "--save-state");
  // Sampling is asked for by a temperature, --top-p or --min-p; unless --top-k says otherwise, it then
  // draws from the whole (filtered) distribution instead of mamba_ssm's greedy default (top-k 1).
  if (!o.top_k_given) o.gen.sampling.top_k = o.sampling_asked && o.gen.sampling.temperature > 0 ? 0 : 1;
  o.gen.stop_at_eos = !o.ignore_eos;
  o.gen.interrupt = &g_interrupted;
  const ModelConfig cfg0 = resolve_config(o.model, o.config);
  std::vector<CpuOnly> cpu_only;
  if (!o.weights_dtype.empty())
    cpu_only.push_back({"--weights-dtype " + o.weights_dtype,
                        "it is the CPU's packed weight format; --dtype sets the GPU's precision"});
  if (cfg0.sambay)
    cpu_only.push_back({"SambaY model '" + cfg0.name + "'", "its cross-decoder decodes on the CPU only"});
  const InferDevice where = resolve_infer_device(o.device, o.dtype, cpu_only);
  // The host's memory holds the decode states on the CPU only (a GPU's pool that does not fit is an
  // error when it is allocated).
  if (!where.cuda()) check_memory(cfg0, o.max_context, o.batch);
  apply_threads(o.threads);

  LoadedModel lm = load_model(o.model, o.config, {.keep_packed = !where.cuda(), .weights_dtype = o.weights_dtype});

  if (!where.cuda()) warn_if_packed_weights_are_slow(lm.params);
  if (lm.weights_path.empty())
    std::fprintf(stderr,
                 "warning: '%s' is a preset or a config, not trained weights: the parameters are random (seed 0), so "
                 "the text is noise. Pass a model directory or weights file for a trained model.\n",
                 o.model.c_str());
  std::unique_ptr<Tokenizer> tok;
  const std::string tok_path = o.tokenizer.empty() ? lm.tokenizer_path : o.tokenizer;
  if (!tok_path.empty()) tok = load_tokenizer(tok_path);
  // The sequences decoded together: one per line of --prompts-file, else --batch copies of the prompt.
  std::vector<std::string> prompt_lines;
  if (o.prompt_ids.empty() && !o.prompts_file.empty()) {
    std::istringstream in(read_text_file(o.prompts_file));
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) prompt_lines.push_back(line);
    SAMBALM_CHECK(!prompt_lines.empty(), "{}: no prompts (one per line expected)", o.prompts_file);
  }
  if (prompt_lines.size() > 1 && !where.cuda()) check_memory(lm.config, o.max_context, int64_t(prompt_lines.size()));
  DecodeOptions dopt;
  dopt.chunk = o.chunk;
  dopt.max_context = o.max_context;
  dopt.graphs = o.graphs == "on";
  // The pool of decode states and the step's buffers are sized once for that many sequences.
  dopt.max_batch = dopt.slots = prompt_lines.empty() ? o.batch : static_cast<int64_t>(prompt_lines.size());
  // The engine: the CPU's DecodeModel, or a GPU's DeviceDecodeModel (parameters uploaded once; the
  // logits of each call come back to the host, where the sampler runs).
  std::unique_ptr<DecodeModel> cpu_dm;
  std::unique_ptr<GpuDecoder> gpu;
  std::unique_ptr<Generator> gen;
  if (where.cuda()) {
    gpu = std::make_unique<GpuDecoder>(where, lm, dopt);
    if (!o.quiet) std::fprintf(stderr, "device %s\n", gpu->describe().c_str());
    gen = std::make_unique<Generator>(gpu->engine(), tok.get());
  } else {
    cpu_dm = std::make_unique<DecodeModel>(lm.config, lm.params.entries(), lm.params.data(), dopt);
    gen = std::make_unique<Generator>(*cpu_dm, tok.get());
  }
  Generator& g = *gen;
  const SaveState save = [&](const std::string& path, const Session& s) {
    if (gpu)
      save_decode_state(path, gpu->state_target(), s.state, s.history, s.pending.size());
    else
      save_decode_state(path, *cpu_dm, s.state, s.history, s.pending.size());
  };

  std::vector<std::vector<int32_t>> prompts;
  if (!o.prompt_ids.empty()) {
    prompts.push_back(parse_ids(o.prompt_ids));
  } else if (!prompt_lines.empty()) {
    for (size_t i = 0; i < prompt_lines.size(); ++i)
      prompts.push_back(g.encode(prompt_lines[i], o.bos, fmt::format("{} prompt {}", o.prompts_file, i + 1)));
  } else if (!o.prompt_file.empty()) {
    prompts.push_back(g.encode(read_prompt_file(o.prompt_file), o.bos,
                               o.prompt_file == "-" ? std::string("standard input") : o.prompt_file));
  } else if (sources == 1 || !o.interactive) {
    prompts.push_back(o.prompt.empty() && !o.bos ? std::vector<int32_t>{} : g.encode(o.prompt, o.bos, "--prompt"));
  }
  if (prompts.size() == 1 && o.batch > 1) prompts.assign(size_t(o.batch), prompts[0]);
  SAMBALM_CHECK(o.load_state.empty() || prompts.size() <= 1, "generate: --load-state resumes one sequence, not {}",
                prompts.size());

  std::vector<Session> sessions;
  for (size_t i = 0; i < std::max<size_t>(prompts.size(), 1); ++i) sessions.push_back(g.new_session());
  if (!o.load_state.empty()) {
    if (gpu)
      load_decode_state(o.load_state, gpu->state_target(), sessions[0].state, sessions[0].history,
                        &sessions[0].pending);
    else
      load_decode_state(o.load_state, *cpu_dm, sessions[0].state, sessions[0].history, &sessions[0].pending);
  }

  catch_sigint();
  bool interrupted = false;
  if (o.interactive) {
    if (!prompts.empty()) {
      std::vector<Session*> ss = {&sessions[0]};
      g.run(ss, prompts, o.gen, print_text);
      std::printf("\n");
    }
    interactive(g, sessions[0], save, o);
  } else {
    std::vector<Session*> ss;
    for (auto& s : sessions) ss.push_back(&s);
    const bool stream = !o.json && prompts.size() == 1 && tok;
    auto results = g.run(ss, prompts, o.gen, [&](size_t i, std::string_view t) {
      if (stream) print_text(i, t);
    });
    for (const auto& r : results) interrupted |= r.stop_reason == "interrupted";
    if (o.json) {
      nlohmann::json out = nlohmann::json::array();
      for (size_t i = 0; i < results.size(); ++i)
        out.push_back({{"prompt_ids", prompts[i]},
                       {"ids", results[i].ids},
                       {"text", results[i].text},
                       {"stop_reason", results[i].stop_reason}});
      nlohmann::json j = {{"results", out}, {"stats", stats_json(g.stats())}};
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else if (!tok) {
      // No tokenizer: the ids are the output.
      for (size_t i = 0; i < results.size(); ++i) {
        std::string ids;
        for (int32_t id : results[i].ids) ids += (ids.empty() ? "" : " ") + std::to_string(id);
        if (results.size() == 1)
          std::printf("%s\n", ids.c_str());
        else
          std::printf("[%zu] %s\n", i, ids.c_str());
      }
    } else if (stream) {
      std::printf("\n");
    } else {
      for (size_t i = 0; i < results.size(); ++i) std::printf("[%zu] %s\n", i, results[i].text.c_str());
    }
    std::fflush(stdout);
    if (interrupted) std::fprintf(stderr, "interrupted (Ctrl-C): the output above is what was generated so far\n");
    if (!o.quiet) std::fprintf(stderr, "%s\n", summary(g.stats()).c_str());
  }
  if (!o.save_state.empty()) {
    const Session& s = sessions[0];
    save(o.save_state, s);
    if (!o.quiet)
      std::fprintf(stderr, "saved decode state to %s (%lld tokens)\n", o.save_state.c_str(),
                   (long long)s.history.size());
  }
  return interrupted ? 130 : 0;  // 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
}

Action add(CLI::App& app) {
  auto o = std::make_shared<GenOpts>();
  constexpr int64_t kMaxI64 = std::numeric_limits<int64_t>::max();
  auto* sub = app.add_subcommand("generate", "Generate text: chunked prefill, O(1)-per-token decoding, sampling");
  sub->footer(
      "Sampling follows mamba_ssm: repetition penalty, then greedy if --temperature 0 or --top-k 1, else\n"
      "temperature, top-k, top-p, min-p, and a draw (seeded by --seed; sequence i of a batch uses seed + i).\n"
      "Greedy is the default; giving --temperature (> 0), --top-p or --min-p samples instead (--top-k then\n"
      "defaults to 0, no limit; mamba_ssm's script keeps top-k 1 and so stays greedy). An explicit --top-k wins.\n"
      "Generation stops at the tokenizer's EOS (unless --ignore-eos), at a --stop string (cut from the text) or\n"
      "after --max-tokens. Text streams to stdout as it becomes final (whole UTF-8 characters only); the summary\n"
      "line (prompt/generated tokens, prefill and decode tok/s, peak memory) goes to stderr. Ctrl-C stops the\n"
      "generation and prints what was generated (valid JSON with --json, stop_reason \"interrupted\"), exit 130.\n"
      "A preset name (e.g. mamba-130m) or a config .json as --model gives RANDOM weights (a warning says so):\n"
      "for text, pass a model directory (sambalm train's RUN/model, or sambalm convert's output).\n"
      "Memory: Mamba and sliding-window layers keep O(1) state per sequence; full-attention layers keep a cache\n"
      "of --max-context positions (default: the model's block_size): a run that would go beyond it is refused\n"
      "before it starts. A batch whose decode states would not fit in the available memory is refused too.\n"
      "--load-state FILE without a prompt continues the text where --save-state left it.\n"
      "Interactive (-i): one line per turn, the state kept between turns; /reset, /save FILE, /quit; a line\n"
      "starting with // is sent as text starting with /. Ctrl-C stops a reply, Ctrl-C at the prompt ends.\n"
      "Threads: OpenMP's idle threads spin briefly, then sleep (GOMP_SPINCOUNT=10000 unless OMP_WAIT_POLICY or\n"
      "GOMP_SPINCOUNT is set), which keeps decoding fast on idle and on shared cores alike.\n"
      "GPU (--device cuda): prefill and decoding run on the GPU in --dtype (bf16 by default; fp32 gives the\n"
      "CPU's tokens), the logits of the last position come back to the host, where the sampler runs. State files\n"
      "load and save across devices. --weights-dtype (the CPU's packed formats) and SambaY models run on the\n"
      "CPU only: with --device auto they choose the CPU, with --device cuda they are an error.");
  sub->add_option("--model,-m", o->model,
                  "Model directory or weights file; a preset name or config .json gives random weights")
      ->required();
  sub->add_option("--config", o->config, "config.json or preset for a bare weights file");
  sub->add_option("--tokenizer", o->tokenizer,
                  "tokenizer.json / tokenizer.model / 'bytes' (default: beside the model)");
  sub->add_option("--prompt,-p", o->prompt, "Prompt text");
  sub->add_option("--file,-f", o->prompt_file, "Read the prompt from a file ('-': standard input)");
  sub->add_option("--prompt-ids", o->prompt_ids, "Prompt as token ids, e.g. 1,2,3");
  sub->add_option("--prompts-file", o->prompts_file, "One prompt per line, decoded together as a batch");
  in_range<int64_t>(sub->add_option("--batch", o->batch, "Decode the prompt as this many sequences together"), 1, 65536)
      ->capture_default_str();
  sub->add_flag("--bos", o->bos, "Prepend the tokenizer's BOS token");
  in_range<int64_t>(sub->add_option("--max-tokens,-n", o->gen.max_tokens, "New tokens per sequence"), 0, 1 << 30)
      ->capture_default_str();
  auto sampling = [o](auto) { o->sampling_asked = true; };
  in_range(sub->add_option("--temperature", o->gen.sampling.temperature, "0 = greedy; > 0 samples (see below)"), 0.0,
           100.0)
      ->each(sampling);
  in_range<int64_t>(sub->add_option("--top-k", o->gen.sampling.top_k,
                                    "1 = greedy, 0 = no limit (default: 1, or 0 when sampling is asked for)"),
                    0, 1 << 30)
      ->each([o](auto) { o->top_k_given = true; });
  in_range(sub->add_option("--top-p", o->gen.sampling.top_p, "Nucleus sampling in (0, 1); 0 or 1 = off"), 0.0, 1.0)
      ->capture_default_str()
      ->each(sampling);
  in_range(sub->add_option("--min-p", o->gen.sampling.min_p, "Drop tokens below min-p x the top probability"), 0.0, 1.0)
      ->capture_default_str()
      ->each(sampling);
  in_range(sub->add_option("--repetition-penalty", o->gen.sampling.repetition_penalty,
                           "Penalty on ids already seen (1 = off)"),
           0.01, 100.0)
      ->capture_default_str();
  in_range<int64_t>(sub->add_option("--seed", o->gen.sampling.seed, "Random seed"), 0, kMaxI64)->capture_default_str();
  sub->add_option("--stop", o->gen.stop, "Stop string (repeatable)");
  sub->add_flag("--ignore-eos", o->ignore_eos, "Do not stop at the EOS token");
  in_range<int64_t>(sub->add_option("--max-prompt", o->gen.max_prompt_tokens, "Longest prompt accepted, in tokens"), 1,
                    1 << 30)
      ->capture_default_str();
  in_range<int64_t>(sub->add_option("--chunk", o->chunk, "Prefill chunk in tokens (bounds prefill memory)"), 1, 65536)
      ->capture_default_str();
  in_range<int64_t>(
      sub->add_option("--max-context", o->max_context, "Cache size of full-attention layers (0: block_size)"), 0,
      1 << 30);
  in_range<int64_t>(sub->add_option("--threads", o->threads, "OpenMP threads (default: all cores)"), 1, 1024);
  add_weights_dtype_option(sub, o->weights_dtype);
  add_device_options(sub, o->device, o->dtype);
  add_graphs_option(sub, o->graphs);
  sub->add_flag("--json", o->json, "Print ids, text and timings as JSON");
  sub->add_flag("--interactive,-i", o->interactive, "Chat-style loop keeping the state between turns");
  sub->add_option("--load-state", o->load_state, "Resume from a decode state file (a prompt is optional)");
  sub->add_option("--save-state", o->save_state, "Write the final decode state to a file");
  sub->add_flag("--quiet,-q", o->quiet, "No summary line");
  return [o] {
    bound_openmp_spinning();
    return run(*o);
  };
}

}  // namespace
SAMBALM_REGISTER_COMMAND(35, add);
}  // namespace sambalm::cli
