// `sambalm prepare`: text corpora -> token shards (train_NNNNNN.bin, val_NNNNNN.bin, meta.json).
//
// Inputs are files or directories (searched recursively, files in byte-wise name order). A file
// ending in .jsonl or .json, optionally compressed (.zst, .gz), is JSON Lines, read as a stream: each
// non-empty line is an object whose text field (a string; a dotted path reaches into nested objects)
// is one document. Any other file is plain text, one document per file; in directories only .txt,
// .text, .md and .rst files are read. `split` picks that subfolder of an input directory (SlimPajama's
// train/ and validation/), `percentage` the leading fraction of the sorted file list (as
// prepare_slimpajama.py does), `group_by` a field whose value sends a document to its own
// subdirectory of the output (each a complete shard set with its meta.json). Documents are tokenized in parallel (one
// large document is cut where Tokenizer::document_pieces allows, which gives the same ids), in input order, each
// followed by the tokenizer's EOS when it has one. The token stream is then split: the first int(train_fraction * n)
// tokens train, the rest validate, as the bytes split of the reference recipe. The output depends only on the inputs
// and options (not on the thread count).
//
// Resumable: OUT/prepare.state.json records, while a run is under way, the input files whose tokens
// are safely written and the shards finished since; the same command run again after a kill continues
// from there (see PrepareOptions::checkpoint_seconds). No shard is ever partial under its final name.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace sambalm {

struct PrepareProgress {
  uint64_t bytes_done = 0, bytes_total = 0, tokens = 0, documents = 0;
  double seconds = 0;
  bool done = false;
};

struct PrepareOptions {
  std::vector<std::string> inputs;
  std::string output_dir;
  std::string tokenizer_name;  // recorded in meta.json
  double train_fraction = 0.9;
  int64_t shard_tokens = 100'000'000;
  std::string text_field = "text";
  std::string split;            // "" or a subfolder name (train, validation) of input directories
  double percentage = 1.0;      // leading fraction of the file list, in (0, 1]
  std::string group_by;         // "" or a JSON field (dotted path) naming each document's group
  bool skip_bad_lines = false;  // count and skip bad JSON lines instead of stopping
  bool append_eos = true;
  bool overwrite = false;  // replace shards already in output_dir (else an Error)
  int threads = 0;         // 0: OpenMP's default
  // "sambalm": token shards (shard_tokens each); "litpkd": lit_gpt PackedDataset chunk files
  // train_NNNNNNNNNN.bin / val_NNNNNNNNNN.bin of chunk_size tokens each, the last chunk of a split
  // filled with sep_token (default: the tokenizer's BOS, as prepare_slimpajama.py, else its EOS).
  std::string format = "sambalm";
  int64_t chunk_size = 2049 * 1024;
  std::optional<int32_t> sep_token;
  // Seconds between checkpoints of an interrupted run's progress (taken at the end of an input file;
  // 0: after every file). A run killed at any moment and started again with the same inputs and
  // options continues from its last checkpoint and writes the same bytes as an uninterrupted one.
  double checkpoint_seconds = 30;
  std::function<void(const PrepareProgress&)> progress;
  std::function<void(const std::string&)> notice;  // one-line notes (a resumed run says so)
};

struct PrepareResult {
  uint64_t documents = 0, input_bytes = 0, train_tokens = 0, val_tokens = 0;
  std::vector<std::string> train_shards, val_shards;  // every group's, in group name order
  std::vector<std::string> groups;                    // group_by: the subdirectory names, sorted
  uint64_t bad_lines = 0;                             // skip_bad_lines: lines skipped
  std::string first_bad_line;                         // ... and the first one's error
  size_t resumed_files = 0;                           // input files an interrupted run had finished
  double seconds = 0;
};

// The files `inputs` name, directories expanded, in the order they are read.
std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs, const std::string& split = "",
                                       double percentage = 1.0);

// A group value as a directory name: ASCII letters, digits, '.', '-', '_' kept, other bytes '_'.
std::string sanitize_group_name(const std::string& value);

PrepareResult prepare_shards(const Tokenizer& tok, const PrepareOptions& o);

}  // namespace sambalm
