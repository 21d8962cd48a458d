// The trainer's view of its data: training batches of random windows, fixed validation windows,
// the tokenizer for samples. Built from --data / --val-data / --tokenizer / --val-fraction.
//
// A raw text file is tokenized whole (with --tokenizer bytes its bytes are the ids) and split: the
// first int((1 - val_fraction) * n) tokens train, the rest validate (the split of the reference
// recipe). Windows hold seq_len + 1 tokens: inputs are the first seq_len, targets the last seq_len.
//   training:   offsets uniform in [0, n_train - (seq_len + 1)], drawn from a seeded generator whose
//               state is saved in checkpoints (so a resumed run draws the same batches)
//   validation: eval_batches * batch windows at offsets drawn once from a generator seeded from
//               --seed and the window length (the same windows at every evaluation); or every
//               non-overlapping window from offset 0 (the full validation, the tail left out)
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "model/config.h"
#include "tokenizer/tokenizer.h"
#include "train/trainer.h"

namespace sambalm {

class TrainData {
 public:
  // Loads and checks the data against the model: enough tokens for a window in each split, no id
  // outside the model's vocabulary. Errors name the option and file.
  TrainData(const TrainOptions& o, int64_t seq_len, const ModelConfig& cfg);

  // B windows of the training split: x, y are [B, seq_len].
  void next_batch(int32_t* x, int32_t* y, int64_t B);
  nlohmann::json state() const;
  void restore(const nlohmann::json& s);

  // The fixed validation windows of length L (+1), concatenated (cached per L).
  const std::vector<int32_t>& val_windows(int64_t L);
  // Every non-overlapping (L+1)-window of the validation split from offset 0.
  std::vector<int32_t> full_val_windows(int64_t L) const;

  bool is_bytes() const { return tok_->kind() == "bytes"; }
  std::string describe() const;
  // The sample prompt: `prompt` encoded, or the first tokens of the validation split when empty.
  std::vector<int32_t> prompt_ids(const std::string& prompt) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  int64_t train_tokens() const { return static_cast<int64_t>(train_.size()); }
  int64_t val_tokens() const { return static_cast<int64_t>(val_.size()); }

 private:
  void window(const std::vector<int32_t>& src, int64_t off, int64_t L, int32_t* x, int32_t* y) const;

  const TrainOptions& o_;
  int64_t T_;
  std::unique_ptr<Tokenizer> tok_;
  std::vector<int32_t> train_, val_;
  std::string source_;
  std::mt19937_64 rng_;
  std::map<int64_t, std::vector<int32_t>> val_cache_;
};

}  // namespace sambalm
