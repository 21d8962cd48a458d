// `sambalm prepare`: text corpora -> token shards (train_NNNNNN.bin, val_NNNNNN.bin, meta.json).
//
// Inputs are files or directories (searched recursively, files in byte-wise name order). A file
// ending in .jsonl or .json is JSON Lines: each non-empty line is an object whose `text` field (a
// string) is one document. Any other file is plain text, one document per file; in directories only
// .txt, .text, .md and .rst files are read. Documents are tokenized in parallel (one large document
// is cut where Tokenizer::document_pieces allows, which gives the same ids), in input order,
// each followed by the tokenizer's EOS when it has one. The token stream is then split: the first
// int(train_fraction * n) tokens train, the rest validate, as the bytes split of the reference recipe.
// The output depends only on the inputs and options (not on the thread count).
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
  bool append_eos = true;
  bool overwrite = false;  // replace shards already in output_dir (else an Error)
  int threads = 0;         // 0: OpenMP's default
  // "sambalm": token shards (shard_tokens each); "litpkd": lit_gpt PackedDataset chunk files
  // train_NNNNNNNNNN.bin / val_NNNNNNNNNN.bin of chunk_size tokens each, the last chunk of a split
  // filled with sep_token (default: the tokenizer's BOS, as prepare_slimpajama.py, else its EOS).
  std::string format = "sambalm";
  int64_t chunk_size = 2049 * 1024;
  std::optional<int32_t> sep_token;
  std::function<void(const PrepareProgress&)> progress;
};

struct PrepareResult {
  uint64_t documents = 0, input_bytes = 0, train_tokens = 0, val_tokens = 0;
  std::vector<std::string> train_shards, val_shards;
  double seconds = 0;
};

// The files `inputs` name, directories expanded, in the order they are read.
std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs);

PrepareResult prepare_shards(const Tokenizer& tok, const PrepareOptions& o);

}  // namespace sambalm
