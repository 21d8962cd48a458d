// `sambalm generate`: text (or ids) in, a sampled continuation out — streamed to stdout as it is
// produced, or as JSON — with the prompt prefilled in chunks and O(1)-per-token decoding. Also a
// batch of prompts decoded together, an interactive mode that keeps the state between turns, and
// decode state files to stop and resume a conversation or a document.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/command.h"
#include "core/error.h"
#include "infer/generator.h"
#include "infer/state_file.h"
#include "io/file.h"
#include "model/weights.h"

namespace sambalm::cli {
namespace {

struct GenOpts {
  std::string model, config, tokenizer, prompt, prompt_file, prompt_ids, prompts_file, load_state, save_state;
  int64_t batch = 1, chunk = 512, max_context = 0;
  bool json = false, interactive = false, bos = false, ignore_eos = false, quiet = false;
  GenerateOptions gen;
};

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

void interactive(Generator& g, Session& s, DecodeModel& dm, const GenOpts& o) {
  std::fprintf(stderr, "interactive: type a line; /reset forgets the context, /save FILE writes the state, /quit\n");
  std::string line;
  for (;;) {
    std::fprintf(stderr, "> ");
    if (!std::getline(std::cin, line) || line == "/quit") break;
    if (line == "/reset") {
      s.state.reset();
      s.history.clear();
      s.pending.clear();
      continue;
    }
    if (line.rfind("/save ", 0) == 0) {
      g.flush_pending(s);
      save_decode_state(line.substr(6), dm, s.state, s.history);
      std::fprintf(stderr, "saved %s (%lld tokens)\n", line.substr(6).c_str(), (long long)s.state.pos());
      continue;
    }
    try {
      std::vector<Session*> ss = {&s};
      auto r = g.run(ss, {g.encode(line + "\n", o.bos && s.history.empty())}, o.gen, [](size_t, std::string_view t) {
        std::fwrite(t.data(), 1, t.size(), stdout);
        std::fflush(stdout);
      });
      std::printf("\n");
      std::fflush(stdout);
      if (!o.quiet) std::fprintf(stderr, "[%s; context %lld]\n", summary(g.stats()).c_str(), (long long)s.state.pos());
    } catch (const Error& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
    }
  }
}

int run(GenOpts& o) {
  LoadedModel lm = load_model(o.model, o.config);
  std::unique_ptr<Tokenizer> tok;
  const std::string tok_path = o.tokenizer.empty() ? lm.tokenizer_path : o.tokenizer;
  if (!tok_path.empty()) tok = load_tokenizer(tok_path);
  DecodeOptions dopt;
  dopt.chunk = o.chunk;
  dopt.max_batch = o.batch;
  dopt.max_context = o.max_context;
  DecodeModel dm(lm.config, lm.params.entries(), lm.params.data(), dopt);
  Generator g(dm, tok.get());
  o.gen.stop_at_eos = !o.ignore_eos;

  const int sources = !o.prompt.empty() + !o.prompt_file.empty() + !o.prompt_ids.empty() + !o.prompts_file.empty();
  SAMBALM_CHECK(sources <= 1, "generate: give one of -p, -f, --prompt-ids, --prompts-file (got {})", sources);
  std::vector<std::vector<int32_t>> prompts;
  if (!o.prompt_ids.empty()) {
    prompts.push_back(parse_ids(o.prompt_ids));
  } else if (!o.prompts_file.empty()) {
    std::istringstream in(read_text_file(o.prompts_file));
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) prompts.push_back(g.encode(line, o.bos));
    SAMBALM_CHECK(!prompts.empty(), "{}: no prompts (one per line expected)", o.prompts_file);
  } else if (!o.prompt_file.empty()) {
    prompts.push_back(g.encode(read_text_file(o.prompt_file), o.bos));
  } else if (sources == 1 || !o.interactive) {
    prompts.push_back(o.prompt.empty() && !o.bos ? std::vector<int32_t>{} : g.encode(o.prompt, o.bos));
  }
  if (prompts.size() == 1 && o.batch > 1) prompts.assign(size_t(o.batch), prompts[0]);
  SAMBALM_CHECK(o.load_state.empty() || prompts.size() <= 1, "generate: --load-state resumes one sequence, not {}",
                prompts.size());

  std::vector<Session> sessions;
  for (size_t i = 0; i < std::max<size_t>(prompts.size(), 1); ++i) sessions.push_back(g.new_session());
  if (!o.load_state.empty()) load_decode_state(o.load_state, dm, sessions[0].state, sessions[0].history);

  if (o.interactive) {
    SAMBALM_CHECK(prompts.size() <= 1, "generate: -i runs one conversation, not a batch");
    if (!prompts.empty()) {
      std::vector<Session*> ss = {&sessions[0]};
      g.run(ss, prompts, o.gen, [](size_t, std::string_view t) { std::fwrite(t.data(), 1, t.size(), stdout); });
      std::printf("\n");
    }
    interactive(g, sessions[0], dm, o);
  } else {
    std::vector<Session*> ss;
    for (auto& s : sessions) ss.push_back(&s);
    const bool stream = !o.json && prompts.size() == 1;
    auto results = g.run(ss, prompts, o.gen, [&](size_t, std::string_view t) {
      if (!stream) return;
      std::fwrite(t.data(), 1, t.size(), stdout);
      std::fflush(stdout);
    });
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
    if (!o.quiet) std::fprintf(stderr, "%s\n", summary(g.stats()).c_str());
  }
  if (!o.save_state.empty()) {
    SAMBALM_CHECK(sessions.size() == 1, "generate: --save-state saves one sequence, not {}", sessions.size());
    g.flush_pending(sessions[0]);
    save_decode_state(o.save_state, dm, sessions[0].state, sessions[0].history);
    if (!o.quiet)
      std::fprintf(stderr, "saved decode state to %s (%lld tokens)\n", o.save_state.c_str(),
                   (long long)sessions[0].state.pos());
  }
  return 0;
}

Action add(CLI::App& app) {
  auto o = std::make_shared<GenOpts>();
  o->gen.sampling.top_k = 1;  // greedy unless asked, as mamba_ssm's generation benchmark
  auto* sub = app.add_subcommand("generate", "Generate text: chunked prefill, O(1)-per-token decoding, sampling");
  sub->footer(
      "Sampling follows mamba_ssm: repetition penalty, then greedy if --temperature 0 or --top-k 1 (the default),\n"
      "else temperature, top-k, top-p, min-p, and a draw (seeded by --seed; sequence i of a batch uses seed + i).\n"
      "Generation stops at the tokenizer's EOS (unless --ignore-eos), at a --stop string (cut from the text) or\n"
      "after --max-tokens. Text streams to stdout as it becomes final (whole UTF-8 characters only); the summary\n"
      "line (prompt/generated tokens, prefill and decode tok/s, peak memory) goes to stderr.\n"
      "Memory: Mamba and sliding-window layers keep O(1) state per sequence; full-attention layers keep a cache\n"
      "of --max-context positions (default: the model's block_size), and going beyond it is an error.\n"
      "Interactive (-i): one line per turn, the state kept between turns; /reset, /save FILE, /quit.");
  sub->add_option("--model,-m", o->model, "Model directory, weights file or preset name")->required();
  sub->add_option("--config", o->config, "config.json or preset for a bare weights file");
  sub->add_option("--tokenizer", o->tokenizer,
                  "tokenizer.json / tokenizer.model / 'bytes' (default: beside the model)");
  sub->add_option("--prompt,-p", o->prompt, "Prompt text");
  sub->add_option("--file,-f", o->prompt_file, "Read the prompt from a file");
  sub->add_option("--prompt-ids", o->prompt_ids, "Prompt as token ids, e.g. 1,2,3");
  sub->add_option("--prompts-file", o->prompts_file, "One prompt per line, decoded together as a batch");
  sub->add_option("--batch", o->batch, "Decode the prompt as this many sequences together")->check(CLI::PositiveNumber);
  sub->add_flag("--bos", o->bos, "Prepend the tokenizer's BOS token");
  sub->add_option("--max-tokens,-n", o->gen.max_tokens, "New tokens per sequence")->capture_default_str();
  sub->add_option("--temperature", o->gen.sampling.temperature, "0 = greedy")->capture_default_str();
  sub->add_option("--top-k", o->gen.sampling.top_k, "1 = greedy, 0 = no limit")->capture_default_str();
  sub->add_option("--top-p", o->gen.sampling.top_p, "Nucleus sampling in (0, 1); 0 or 1 = off")->capture_default_str();
  sub->add_option("--min-p", o->gen.sampling.min_p, "Drop tokens below min-p x the top probability")
      ->capture_default_str();
  sub->add_option("--repetition-penalty", o->gen.sampling.repetition_penalty, "Penalty on ids already seen (1 = off)")
      ->capture_default_str();
  sub->add_option("--seed", o->gen.sampling.seed, "Random seed")->capture_default_str();
  sub->add_option("--stop", o->gen.stop, "Stop string (repeatable)");
  sub->add_flag("--ignore-eos", o->ignore_eos, "Do not stop at the EOS token");
  sub->add_option("--max-prompt", o->gen.max_prompt_tokens, "Longest prompt accepted, in tokens")
      ->capture_default_str();
  sub->add_option("--chunk", o->chunk, "Prefill chunk in tokens (bounds prefill memory)")->capture_default_str();
  sub->add_option("--max-context", o->max_context, "Cache size of full-attention layers (0: block_size)");
  sub->add_flag("--json", o->json, "Print ids, text and timings as JSON");
  sub->add_flag("--interactive,-i", o->interactive, "Chat-style loop keeping the state between turns");
  sub->add_option("--load-state", o->load_state, "Resume from a decode state file");
  sub->add_option("--save-state", o->save_state, "Write the final decode state to a file");
  sub->add_flag("--quiet,-q", o->quiet, "No summary line");
  return [o] { return run(*o); };
}

}  // namespace
SAMBALM_REGISTER_COMMAND(35, add);
}  // namespace sambalm::cli
