// `sambalm eval ppl | passkey | mc`: evaluation through the decoding path (chunked prefill with the
// state carried, so memory is bounded at any length): perplexity window by window at chosen context
// lengths, passkey retrieval at lengths x depths, and multiple-choice tasks by log-likelihood.
// The measurements live in src/eval/ (docs/EVAL.md); this file reads options and prints results.
#include <cmath>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/list_options.h"
#include "cli/options.h"
#include "cli/run_env.h"
#include "cli/weights_option.h"
#include "core/error.h"
#include "eval/multiple_choice.h"
#include "eval/passkey.h"
#include "eval/perplexity.h"
#include "infer/generator.h"
#include "io/file.h"
#include "io/model_dir.h"

namespace sambalm::cli {
namespace {

constexpr int64_t kMaxLength = int64_t(1) << 30;  // tokens per window / prompt
constexpr int64_t kMaxI64 = std::numeric_limits<int64_t>::max();

struct CommonOpts {
  std::string model, config, tokenizer, weights_dtype;
  int64_t chunk = 512, threads = 0;
  bool json = false, quiet = false;
};

struct PplOpts {
  CommonOpts c;
  std::string data, split = "val", lengths;
  int64_t stride = 0, max_windows = 0;
};

struct PasskeyOpts {
  CommonOpts c;
  std::string lengths, depths = "0,0.25,0.5,0.75,1", write_data;
  int64_t trials = 5, seed = 0;
};

struct McOpts {
  CommonOpts c;
  std::string tasks;
  int64_t fewshot = 0, limit = 0, seed = 1234;
};

// The model, its tokenizer (--tokenizer, else the one beside the model; may be null) and a decoding
// driver with one decode state whose full-attention caches hold `max_context` positions.
struct Loaded {
  LoadedModel lm;
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<DecodeModel> dm;
};

// max_context < 0: no decoding driver (only the model's tokenizer is wanted).
Loaded load(const CommonOpts& o, int64_t max_context) {
  apply_threads(o.threads);
  Loaded l;
  l.lm = load_model(o.model, o.config, {.keep_packed = true, .weights_dtype = o.weights_dtype});
  warn_if_packed_weights_are_slow(l.lm.params);
  if (l.lm.weights_path.empty())
    std::fprintf(stderr, "warning: '%s' is a preset or a config, not trained weights: the parameters are random\n",
                 o.model.c_str());
  const std::string tok_path = o.tokenizer.empty() ? l.lm.tokenizer_path : o.tokenizer;
  if (!tok_path.empty()) l.tok = load_tokenizer(tok_path);
  if (max_context < 0) return l;
  DecodeOptions d;
  d.chunk = o.chunk;
  d.max_context = max_context;
  d.max_batch = d.slots = 1;
  l.dm = std::make_unique<DecodeModel>(l.lm.config, l.lm.params.entries(), l.lm.params.data(), d);
  return l;
}

const Tokenizer& need_tokenizer(const Loaded& l, const char* what) {
  SAMBALM_CHECK(l.tok != nullptr, "eval {}: needs a tokenizer (none beside the model; pass --tokenizer)", what);
  return *l.tok;
}

nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

void print_json(const nlohmann::json& j) {
  std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

// ---- ppl ------------------------------------------------------------------------------------------

int run_ppl(const PplOpts& o) {
  const ModelConfig cfg = resolve_config(o.c.model, o.c.config);
  const auto lengths =
      o.lengths.empty() ? std::vector<int64_t>{cfg.block_size} : parse_int_list(o.lengths, "--lengths", 2, kMaxLength);
  const int64_t max_len = *std::max_element(lengths.begin(), lengths.end());
  const int64_t min_len = *std::min_element(lengths.begin(), lengths.end());
  SAMBALM_CHECK(min_len >= 2, "--lengths: must be at least 2, got {} (the model's block_size)", min_len);
  SAMBALM_CHECK(o.stride <= min_len, "--stride {} is longer than the length {}: it must be in [1, length]", o.stride,
                min_len);
  Loaded l = load(o.c, max_len);
  EvalTokens data = EvalTokens::open(o.data, l.tok.get(), o.split);
  SAMBALM_CHECK(data.size() >= max_len + 1,
                "{}: {} tokens, too few for a window of length {} (it needs length + 1 = {} tokens)", data.name(),
                data.size(), max_len, max_len + 1);
  Scorer scorer(*l.dm);
  nlohmann::json results = nlohmann::json::array();
  if (!o.c.json)
    std::printf("%10s %10s %8s %12s %10s %12s %10s %10s\n", "length", "stride", "windows", "tokens", "loss",
                "perplexity", "bits/tok", "bits/byte");
  for (int64_t L : lengths) {
    const int64_t S = o.stride > 0 ? o.stride : L;
    const auto r = evaluate_perplexity(scorer, data, l.tok.get(), L, S, o.max_windows, [&](const PerplexityResult& p) {
      if (!o.c.quiet)
        std::fprintf(stderr, "ppl: length %lld window %lld: mean loss so far %.4f\n", (long long)L,
                     (long long)p.windows, p.mean_loss());
    });
    if (o.c.json) {
      results.push_back({{"length", L},
                         {"stride", S},
                         {"windows", r.windows},
                         {"tokens", r.tokens},
                         {"loss", r.mean_loss()},
                         {"perplexity", r.perplexity()},
                         {"bits_per_token", r.bits_per_token()},
                         {"bytes", r.bytes},
                         {"bits_per_byte", number_or_null(r.bits_per_byte())}});
    } else {
      const std::string bpb = std::isfinite(r.bits_per_byte()) ? fmt::format("{:.4f}", r.bits_per_byte()) : "-";
      std::printf("%10lld %10lld %8lld %12lld %10.4f %12.4f %10.4f %10s\n", (long long)L, (long long)S,
                  (long long)r.windows, (long long)r.tokens, r.mean_loss(), r.perplexity(), r.bits_per_token(),
                  bpb.c_str());
      std::fflush(stdout);
    }
  }
  if (o.c.json) print_json({{"model", o.c.model}, {"data", data.name()}, {"results", results}});
  return 0;
}

// ---- passkey --------------------------------------------------------------------------------------

void write_passkey_data(const std::string& path, const Tokenizer& tok, const std::vector<int64_t>& lengths,
                        const std::vector<double>& depths, int64_t trials, uint64_t seed) {
  AtomicWriter w(path);
  int64_t n = 0;
  for (size_t li = 0; li < lengths.size(); ++li)
    for (size_t di = 0; di < depths.size(); ++di)
      for (int64_t t = 0; t < trials; ++t) {
        const std::string key = passkey_key(seed, li, di, t);
        const PasskeyPrompt p = make_passkey_prompt(tok, lengths[li], depths[di], key);
        const std::string answer = passkey_answer(key);
        const nlohmann::json j = {{"text", p.text + answer},
                                  {"prompt", p.text},
                                  {"answer", answer},
                                  {"key", key},
                                  {"length", lengths[li]},
                                  {"depth", depths[di]},
                                  {"prompt_tokens", p.ids.size()},
                                  {"key_token", p.key_token},
                                  {"filler_begin", p.filler_begin},
                                  {"filler_end", p.filler_end}};
        const std::string line = j.dump() + "\n";
        w.write(line.data(), line.size());
        ++n;
      }
  w.commit();
  std::printf("wrote %s (%lld examples; `sambalm prepare` reads their \"text\" field)\n", path.c_str(), (long long)n);
}

int run_passkey(const PasskeyOpts& o) {
  const auto lengths = parse_int_list(o.lengths, "--lengths", 2, kMaxLength);
  const auto depths = parse_number_list(o.depths, "--depths", 0.0, 1.0);
  const int64_t max_len = *std::max_element(lengths.begin(), lengths.end());
  if (!o.write_data.empty()) check_writable(o.write_data, "--write-data");
  // The prompt and the answer's few tokens; writing data needs only the tokenizer.
  Loaded l = load(o.c, o.write_data.empty() ? max_len + 64 : -1);
  const Tokenizer& tok = need_tokenizer(l, "passkey");
  if (!o.write_data.empty()) {
    write_passkey_data(o.write_data, tok, lengths, depths, o.trials, uint64_t(o.seed));
    return 0;
  }
  Generator gen(*l.dm, &tok);
  nlohmann::json trials = nlohmann::json::array();
  const auto cells =
      evaluate_passkey(gen, tok, lengths, depths, o.trials, uint64_t(o.seed), [&](const PasskeyTrial& t) {
        if (o.c.json)
          trials.push_back({{"length", t.length},
                            {"depth", t.depth},
                            {"trial", t.trial},
                            {"prompt_tokens", t.prompt_tokens},
                            {"key", t.key},
                            {"generated", t.generated},
                            {"correct", t.correct}});
        if (!o.c.quiet)
          std::fprintf(stderr, "passkey: length %lld depth %g trial %lld: key %s, got '%s' (%s)\n", (long long)t.length,
                       t.depth, (long long)t.trial, t.key.c_str(), t.generated.c_str(),
                       t.correct ? "correct" : "wrong");
      });
  int64_t correct = 0, total = 0;
  for (const auto& c : cells) correct += c.correct, total += c.trials;
  if (o.c.json) {
    nlohmann::json cj = nlohmann::json::array();
    for (const auto& c : cells)
      cj.push_back({{"length", c.length},
                    {"depth", c.depth},
                    {"trials", c.trials},
                    {"correct", c.correct},
                    {"accuracy", c.accuracy()}});
    print_json(
        {{"model", o.c.model}, {"results", cj}, {"accuracy", double(correct) / double(total)}, {"trials", trials}});
    return 0;
  }
  std::printf("passkey accuracy (%lld trials per cell), rows: length, columns: depth\n", (long long)o.trials);
  std::printf("%10s", "length");
  for (double d : depths) std::printf(" %7g", d);
  std::printf("\n");
  for (size_t li = 0; li < lengths.size(); ++li) {
    std::printf("%10lld", (long long)lengths[li]);
    for (size_t di = 0; di < depths.size(); ++di) std::printf(" %7.2f", cells[li * depths.size() + di].accuracy());
    std::printf("\n");
  }
  std::printf("overall %.4f (%lld of %lld)\n", double(correct) / double(total), (long long)correct, (long long)total);
  return 0;
}

// ---- mc -------------------------------------------------------------------------------------------

int run_mc(const McOpts& o) {
  const auto items = read_mc_tasks(o.tasks);
  SAMBALM_CHECK(o.fewshot < int64_t(items.size()), "--fewshot {}: {} has {} items, so at most {} others", o.fewshot,
                o.tasks, items.size(), items.size() - 1);
  Loaded l = load(o.c, 0);
  const Tokenizer& tok = need_tokenizer(l, "mc");
  Scorer scorer(*l.dm);
  const McResult r = evaluate_mc(scorer, tok, items, o.fewshot, o.limit, uint64_t(o.seed));
  if (o.c.json) {
    nlohmann::json it = nlohmann::json::array();
    for (const auto& x : r.items)
      it.push_back({{"loglik", x.loglik}, {"label", x.label}, {"pred", x.pred}, {"pred_norm", x.pred_norm}});
    print_json({{"model", o.c.model},
                {"tasks", o.tasks},
                {"items", r.items.size()},
                {"fewshot", o.fewshot},
                {"acc", r.acc},
                {"acc_stderr", r.acc_stderr},
                {"acc_norm", r.acc_norm},
                {"acc_norm_stderr", r.acc_norm_stderr},
                {"results", it}});
    return 0;
  }
  std::printf("%s: %zu items, %lld-shot\n", o.tasks.c_str(), r.items.size(), (long long)o.fewshot);
  std::printf("acc      %.4f +- %.4f\n", r.acc, r.acc_stderr);
  std::printf("acc_norm %.4f +- %.4f\n", r.acc_norm, r.acc_norm_stderr);
  return 0;
}

// ---- options --------------------------------------------------------------------------------------

void add_common(CLI::App* sub, CommonOpts& c) {
  sub->add_option("--model,-m", c.model, "Model directory or weights file (a preset gives random weights)")->required();
  sub->add_option("--config", c.config, "config.json or preset for a bare weights file");
  sub->add_option("--tokenizer", c.tokenizer, "tokenizer.json / tokenizer.model / 'bytes' (default: beside the model)");
  in_range<int64_t>(sub->add_option("--chunk", c.chunk, "Prefill chunk in tokens (bounds memory at any length)"), 1,
                    65536)
      ->capture_default_str();
  in_range<int64_t>(sub->add_option("--threads", c.threads, "OpenMP threads (default: all cores)"), 1, 1024);
  add_weights_dtype_option(sub, c.weights_dtype);
  sub->add_flag("--json", c.json, "Print the results as one JSON object");
  sub->add_flag("--quiet,-q", c.quiet, "No progress lines on stderr");
}

Action add(CLI::App& app) {
  auto ppl = std::make_shared<PplOpts>();
  auto pk = std::make_shared<PasskeyOpts>();
  auto mc = std::make_shared<McOpts>();
  auto* ev =
      app.add_subcommand("eval", "Evaluate a model: perplexity at any length, passkey retrieval, multiple choice");
  ev->require_subcommand(1);
  ev->footer(
      "Every evaluation runs the decoding path: prompts and windows are prefilled in chunks of --chunk tokens with\n"
      "the state carried, so memory does not grow with the length. Details and formats: docs/EVAL.md.");

  auto* p = ev->add_subcommand("ppl", "Perplexity, loss, bits per token and per byte at context lengths");
  p->footer(
      "Windows: a window of length L is L + 1 tokens (inputs w[0..L), targets w[1..L+1)); windows start every\n"
      "--stride tokens (default L) while a whole window fits, at most --max-windows. The first window scores all\n"
      "its L targets, each later one only its last stride targets, so every token is scored once, with at least\n"
      "L - stride tokens of context after the first window. Each window starts from an empty state.\n"
      "Data: a text file (tokenized with the model's tokenizer; bits per byte counts the bytes of the decoded\n"
      "text of the scored tokens), one token shard (.bin), or a `sambalm prepare` directory (--split).\n"
      "Example: sambalm eval ppl -m run/model -d data/val.txt --lengths 4K,16K,64K --max-windows 8");
  add_common(p, ppl->c);
  p->add_option("--data,-d", ppl->data, "Text file, token shard, or `sambalm prepare` directory")->required();
  p->add_option("--split", ppl->split, "Split of a prepare directory")
      ->check(CLI::IsMember({"val", "train"}))
      ->capture_default_str();
  p->add_option("--lengths", ppl->lengths, "Context lengths, e.g. 4096,16K (default: the model's block_size)")
      ->check(int_list_in("--lengths", 2, kMaxLength));
  in_range<int64_t>(p->add_option("--stride", ppl->stride, "Window stride (default: the length; at most the length)"),
                    1, kMaxLength);
  in_range<int64_t>(p->add_option("--max-windows", ppl->max_windows, "Windows per length at most (0: all)"), 0, kMaxI64)
      ->capture_default_str();

  auto* k = ev->add_subcommand("passkey", "Passkey retrieval accuracy per length x depth (greedy decoding)");
  k->footer(
      "Each prompt: an intro line, filler sentences repeated to the target token length with the line\n"
      "\"The pass key is NNNNN. Remember it. NNNNN is the pass key.\" at the given depth of the filler (0: first,\n"
      "1: last), then \"What is the pass key? The pass key is\". A trial is correct when the first number the\n"
      "model generates (greedy, a few tokens) is the key. Keys come from --seed.\n"
      "--write-data FILE.jsonl writes the prompts with their answers instead of evaluating: one JSON object per\n"
      "line whose \"text\" is prompt + answer, the format `sambalm prepare` reads; fine-tune with\n"
      "  sambalm prepare -t MODEL --out pk FILE.jsonl && sambalm train --init-from MODEL --data pk ...\n"
      "(use another --seed for the evaluation than for the training data).");
  add_common(k, pk->c);
  k->add_option("--lengths", pk->lengths, "Prompt lengths in tokens, e.g. 1K,4K,16K")
      ->required()
      ->check(int_list_in("--lengths", 2, kMaxLength));
  k->add_option("--depths", pk->depths, "Depths of the key in the filler, fractions")
      ->check(number_list_in("--depths", 0.0, 1.0))
      ->capture_default_str();
  in_range<int64_t>(k->add_option("--trials", pk->trials, "Prompts (keys) per length and depth"), 1, 1000000)
      ->capture_default_str();
  in_range<int64_t>(k->add_option("--seed", pk->seed, "Seed of the keys"), 0, kMaxI64)->capture_default_str();
  k->add_option("--write-data", pk->write_data, "Write the prompts and answers as JSONL training data and stop");

  auto* m = ev->add_subcommand("mc", "Multiple choice by log-likelihood: acc and acc_norm");
  m->footer(
      "Tasks: JSON Lines, one {\"context\": \"...\", \"choices\": [\"...\", ...], \"label\": i} per line (optional\n"
      "\"target_delimiter\", default \" \"). Each choice is scored as the continuation delimiter + choice of the\n"
      "context; acc: the most likely choice is the label; acc_norm: the same with each log-likelihood divided by\n"
      "its choice's length in bytes (lm-evaluation-harness's definitions). --fewshot K puts K other items\n"
      "(context, delimiter, correct choice; drawn with --seed) before each context, separated by blank lines.\n"
      "Example: sambalm eval mc -m run/model --tasks data/tasks/sample_mc.jsonl");
  add_common(m, mc->c);
  m->add_option("--tasks", mc->tasks, "Task file (JSON Lines)")->required();
  in_range<int64_t>(m->add_option("--fewshot", mc->fewshot, "Examples before each item"), 0, 1000)
      ->capture_default_str();
  in_range<int64_t>(m->add_option("--limit", mc->limit, "Items to score at most (0: all)"), 0, kMaxI64)
      ->capture_default_str();
  in_range<int64_t>(m->add_option("--seed", mc->seed, "Seed of the few-shot draw"), 0, kMaxI64)->capture_default_str();

  return [p, k, m, ppl, pk, mc] {
    bound_openmp_spinning();
    if (p->parsed()) return run_ppl(*ppl);
    if (k->parsed()) return run_passkey(*pk);
    return run_mc(*mc);
  };
}

}  // namespace
SAMBALM_REGISTER_COMMAND(38, add);
}  // namespace sambalm::cli
