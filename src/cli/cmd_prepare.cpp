// `sambalm prepare`: text corpora -> train/validation token shards.
#include <unistd.h>

#include <cstdio>

#include "cli/command.h"
#include "cli/options.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "train/prepare_data.h"

namespace sambalm::cli {
namespace {

struct PrepareOpts {
  std::string tokenizer;
  PrepareOptions p;
  bool no_eos = false, quiet = false;
  std::optional<int64_t> sep_token;
};

// Progress on stderr: one line redrawn in place on a terminal, else a plain line every ~2 s.
class ProgressPrinter {
 public:
  ProgressPrinter() : tty_(isatty(2)) {}
  void operator()(const PrepareProgress& p) {
    if (!p.done && !tty_ && p.seconds - last_ < 2.0) return;
    last_ = p.seconds;
    const double s = std::max(p.seconds, 1e-9);
    std::string line = fmt::format(
        "prepare: {:.1f}/{:.1f} MB  {:5.1f}%  {:.1f} MB/s  {:.2f} M tokens/s  {} docs  {:.1f}s", p.bytes_done / 1e6,
        p.bytes_total / 1e6, p.bytes_total ? 100.0 * double(p.bytes_done) / double(p.bytes_total) : 100.0,
        p.bytes_done / 1e6 / s, p.tokens / 1e6 / s, p.documents, p.seconds);
    if (tty_)
      std::fprintf(stderr, "\r%s\033[K%s", line.c_str(), p.done ? "\n" : "");
    else
      std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
  }

 private:
  bool tty_;
  double last_ = -1e9;
};

Action add(CLI::App& app) {
  auto o = std::make_shared<PrepareOpts>();
  auto& sep_token = o->sep_token;
  auto* sub = app.add_subcommand("prepare", "Tokenize text corpora into train/validation token shards");
  sub->footer(
      "Inputs: plain-text files (one document each), JSON Lines files (.jsonl/.json, also compressed:\n"
      ".jsonl.zst, .jsonl.gz; one document per line, its --text-field), or directories of them (searched\n"
      "recursively, files in sorted path order, for .txt .text .md .rst and .jsonl .json with or without\n"
      ".zst/.gz). JSON Lines are streamed: memory stays bounded whatever the input size.\n"
      "SlimPajama-style trees: --split picks the train/ or validation/ folder, --percentage the leading\n"
      "fraction of the sorted file list, --group-by a field (e.g. meta.redpajama_set_name) whose value\n"
      "sends each document to OUT/<value>/ (characters other than A-Z a-z 0-9 . - _ become '_').\n"
      "A bad JSON line (not JSON, no text field, not UTF-8) stops with FILE:LINE, unless --skip-bad-lines.\n"
      "Documents are tokenized on all cores, in input order, each followed by the tokenizer's EOS (if any).\n"
      "The first int(train_fraction * n) tokens go to OUT/train_NNNNNN.bin, the rest to OUT/val_NNNNNN.bin\n"
      "(format: docs/FORMATS.md, 'Token shards'), with OUT/meta.json. Same inputs and options, same bytes.\n"
      "Interrupted (killed, Ctrl-C, power loss)? Run the same command again: it continues from OUT/prepare.state.json\n"
      "(finished input files and shards are kept, shards checked against their recorded CRC-32) and writes the\n"
      "same bytes as an uninterrupted run.\n"
      "--format litpkd writes lit_gpt PackedDataset chunks instead (OUT/train_NNNNNNNNNN.bin, ...), which the\n"
      "original Samba trainer reads; 'sambalm train' reads both.\n"
      "Examples:\n"
      "  sambalm prepare --tokenizer models/mamba-130m --out data/shards data/corpus.txt\n"
      "  sambalm prepare -t bytes --out data/enwik8 data/enwik8\n"
      "  sambalm prepare -t models/samba-421m --out data/slim_train --split train --train-fraction 1 \\\n"
      "      --group-by meta.redpajama_set_name SlimPajama-627B");
  sub->add_option("inputs", o->p.inputs, "Text/JSONL files or directories")->required();
  sub->add_option("--tokenizer,-t", o->tokenizer,
                  "Tokenizer: 'bytes', a tokenizer.json, a tokenizer.model, or a model directory holding one")
      ->required();
  sub->add_option("--out,-o", o->p.output_dir, "Output directory for the shards")->required();
  in_range(
      sub->add_option("--train-fraction", o->p.train_fraction, "Share of the tokens that train (the rest validate)")
          ->default_val(0.9),
      0.0, 1.0);
  in_range(
      sub->add_option("--shard-tokens", o->p.shard_tokens, "Tokens per shard file at most")->default_val(100000000),
      int64_t{1}, int64_t{1} << 31);
  sub->add_option("--format", o->p.format,
                  "Output: 'sambalm' token shards, or 'litpkd' lit_gpt PackedDataset chunks "
                  "(train_NNNNNNNNNN.bin, val_NNNNNNNNNN.bin; docs/FORMATS.md)")
      ->default_val("sambalm")
      ->check(CLI::IsMember({"sambalm", "litpkd"}));
  in_range(sub->add_option("--chunk-size", o->p.chunk_size,
                           "litpkd: tokens per chunk file (prepare_slimpajama.py's 2049 * 1024)")
               ->default_val(2049 * 1024),
           int64_t{1}, int64_t{1} << 31);
  in_range(sub->add_option_function<int64_t>(
               "--sep-token", [&sep_token](const int64_t& v) { sep_token = v; },
               "litpkd: id that fills the last chunk's unused tail (default: the tokenizer's BOS, else EOS)"),
           int64_t{0}, int64_t{INT32_MAX});
  sub->add_option("--text-field", o->p.text_field, "JSON Lines field that holds the text (a.b: nested)")
      ->default_val("text");
  sub->add_option("--split", o->p.split, "Read this subfolder of input directories where present (train, validation)");
  in_range(sub->add_option("--percentage", o->p.percentage,
                           "Leading fraction (above 0) of the sorted input file list to read")
               ->default_val(1.0),
           0.0, 1.0);
  sub->add_option("--group-by", o->p.group_by,
                  "JSON field (a.b: nested) whose value names each document's output subdirectory");
  sub->add_flag("--skip-bad-lines", o->p.skip_bad_lines, "Skip and count bad JSON lines instead of stopping");
  in_range(sub->add_option("--threads", o->p.threads, "Threads (0: all cores)")->default_val(0), 0, 4096);
  in_range(sub->add_option("--workers", o->p.threads, "Same as --threads (the name prepare_slimpajama.py users know)"),
           0, 4096);
  in_range(sub->add_option("--checkpoint-seconds", o->p.checkpoint_seconds,
                           "Seconds between records of progress that a killed run resumes from (0: every input file)")
               ->default_val(30),
           0.0, 86400.0);
  sub->add_flag("--no-eos", o->no_eos, "Do not append EOS after each document");
  sub->add_flag("--overwrite", o->p.overwrite, "Replace shards already in the output directory");
  sub->add_flag("--quiet,-q", o->quiet, "No progress output");
  return [o] {
    auto tok = load_tokenizer(o->tokenizer);
    PrepareOptions p = o->p;
    p.tokenizer_name = o->tokenizer;
    p.append_eos = !o->no_eos;
    if (o->sep_token) p.sep_token = int32_t(*o->sep_token);
    if (!o->quiet) p.progress = ProgressPrinter();
    p.notice = [](const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); };
    PrepareResult r = prepare_shards(*tok, p);
    std::printf(
        "%s: %llu documents, %llu bytes -> %llu train tokens (%zu shards), %llu validation tokens (%zu shards)"
        " in %.2f s (%.2f M tokens/s)\n",
        p.output_dir.c_str(), (unsigned long long)r.documents, (unsigned long long)r.input_bytes,
        (unsigned long long)r.train_tokens, r.train_shards.size(), (unsigned long long)r.val_tokens,
        r.val_shards.size(), r.seconds, double(r.train_tokens + r.val_tokens) / 1e6 / std::max(r.seconds, 1e-9));
    if (!r.groups.empty()) {
      std::string names;
      for (const auto& g : r.groups) names += (names.empty() ? "" : ", ") + g;
      std::printf("groups (%zu, one subdirectory each): %s\n", r.groups.size(), names.c_str());
    }
    if (r.bad_lines > 0)
      std::fprintf(stderr, "prepare: skipped %llu bad line%s (first: %s)\n", (unsigned long long)r.bad_lines,
                   r.bad_lines == 1 ? "" : "s", r.first_bad_line.c_str());
    return 0;
  };
}

}  // namespace
SAMBALM_REGISTER_COMMAND(25, add);
}  // namespace sambalm::cli
