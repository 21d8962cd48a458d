// The token sequence an evaluation reads: a text file tokenized with the model's tokenizer, one token
// shard (`*.bin` as `sambalm prepare` writes), or a `sambalm prepare` directory (the shards of one
// split, concatenated in name order). Shards stay memory-mapped; windows are copied out on demand.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/shards.h"
#include "tokenizer/tokenizer.h"

namespace sambalm {

class EvalTokens {
 public:
  // `path`: a directory (shards of `split`), a file starting with the shard magic, or a text file
  // (tokenized by `tok`; Error when tok is null). Empty data is an Error naming the path.
  static EvalTokens open(const std::string& path, const Tokenizer* tok, const std::string& split = "val");

  int64_t size() const { return n_; }
  bool is_text() const { return !text_ids_.empty(); }
  const std::string& name() const { return name_; }
  // Copies ids [offset, offset + n) into out (Error outside [0, size())).
  void read(int64_t offset, int64_t n, int32_t* out) const;
  // The largest id + 1 the source may hold (the shards' vocabulary, or the tokenizer's).
  int64_t vocab_size() const { return vocab_; }

 private:
  std::string name_;
  int64_t n_ = 0, vocab_ = 0;
  std::vector<int32_t> text_ids_;
  std::vector<Shard> shards_;
  std::vector<int64_t> starts_;  // first global index of each shard
};

}  // namespace sambalm
