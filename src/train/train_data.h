// The trainer's view of its data (on the data loader, data_loader.h): training batches of random
// windows, fixed validation windows, the tokenizer for samples. From --data / --val-data /
// --tokenizer / --val-fraction:
//   --data DIR       a `sambalm prepare` directory: train_*.bin and val_*.bin shards (tokenizer from
//                    --tokenizer, else the one meta.json names, when it can be loaded)
//   --data FILE.bin  one token shard or lit_gpt PackedDataset chunk (needs --val-data)
//   --data PREFIX    a path that does not exist: the files in its directory whose name starts with its
//                    last component, as lit_gpt's pretrain.py selects PackedDataset chunks
//                    (`data/slim/train_slim`; needs --val-data, e.g. `data/slim/validation`)
//   PackedDataset chunks record no vocabulary: --vocab-size, else the tokenizer's, gives it.
//   --data A:0.7,B:0.3  a weighted mixture of such sources (each a directory's train split, a file
//                    or a prefix), windows drawn by weight (train/mixture.h); needs --val-data
//   --data FILE      raw text: with --tokenizer bytes its bytes are the ids, else it is tokenized
//                    whole; the first int((1 - val_fraction) * n) tokens train, the rest validate
//                    (the split of the reference recipe), unless --val-data gives the validation text
// Windows hold seq_len + 1 tokens: inputs are the first seq_len, targets the last seq_len.
//   training:   BatchSampler (uniform random starts, seeded from --seed; its state is checkpointed)
//   validation: eval_batches * batch windows drawn once from a sampler seeded from --seed and the
//               window length (the same windows at every evaluation); or every non-overlapping
//               window from offset 0 (the full validation, the tail left out)
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "model/config.h"
#include "tokenizer/tokenizer.h"
#include "train/data_loader.h"
#include "train/mixture.h"
#include "train/trainer.h"

namespace sambalm {

class TrainData {
 public:
  // Loads the data and checks there are enough tokens for a window in each split. Errors name the
  // option and file. rank/world: this process's share of the training windows in a data-parallel run
  // (data_loader.h); the state saved and restored is the world's, so any world size can resume it.
  TrainData(const TrainOptions& o, int64_t seq_len, int rank = 0, int world = 1);
  // Checks the data fits the model: no id (of the data or of the tokenizer) outside its vocabulary.
  void check_model(const ModelConfig& cfg) const;

  // B windows of the training split: x, y are [B, seq_len].
  void next_batch(int32_t* x, int32_t* y, int64_t B);
  nlohmann::json state() const;
  void restore(const nlohmann::json& s);

  // The fixed validation windows of length L (+1), concatenated (cached per L): --eval-batches x
  // --batch x world of them, the same on every rank (each scores a share).
  const std::vector<int32_t>& val_windows(int64_t L);
  // Every non-overlapping (L+1)-window of the validation split from offset 0.
  std::vector<int32_t> full_val_windows(int64_t L) const;

  bool is_bytes() const { return tok_ && tok_->kind() == "bytes"; }
  std::string describe() const;
  // The sample prompt: `prompt` encoded, or the first tokens of the validation split when empty.
  std::vector<int32_t> prompt_ids(const std::string& prompt) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  // The data's vocabulary: ids the tokenizer (when known) or the token sources can hold. A fresh
  // model takes it as its vocab_size unless --vocab-size is given.
  int64_t vocab_size() const;
  // Ids a training sample may draw: the tokenizer's (it cannot decode others), else the data's.
  int64_t sample_vocab() const;
  // The tokenizer's files as they go into a model directory (file name -> bytes), so that the
  // model directory works without --tokenizer: tokenizer.json / tokenizer.model (with
  // tokenizer_config.json, special_tokens_map.json when beside it), or for the bytes tokenizer a
  // tokenizer_config.json naming it (docs/FORMATS.md). Empty when the tokenizer is unknown.
  std::map<std::string, std::string> tokenizer_files() const;
  int64_t train_tokens() const;
  int64_t val_tokens() const { return val_.size(); }

 private:
  const TrainOptions& o_;
  int64_t T_;
  int world_;
  std::unique_ptr<Tokenizer> tok_;  // null: shards whose tokenizer is unknown (samples print ids)
  TokenSource train_, val_;
  std::optional<BatchSampler> sampler_;    // set once the sources are checked
  std::optional<MixtureSampler> mixture_;  // --data PATH:W,...: batches come from it instead
  std::vector<const TokenSource*> all_sources() const;
  std::map<int64_t, std::vector<int32_t>> val_cache_;
};

}  // namespace sambalm
