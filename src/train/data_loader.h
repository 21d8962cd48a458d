// Training and evaluation data over token shards or raw byte files.
//
//   TokenSource        a read-only sequence of ids: the shards of one split of a `sambalm prepare`
//                      directory (memory-mapped, concatenated in name order), one shard file, the
//                      lit_gpt PackedDataset chunks a file prefix selects, or a
//                      raw file whose bytes are the ids (vocab 256), whole or split by fraction:
//                      train = the first int(train_fraction * n) bytes, val = the rest.
//   BatchSampler       random windows of T + 1 tokens for training (as lit_gpt's PackedDataset):
//                      start offsets uniform in [0, n - (T + 1)], reproducible from a seed and
//                      resumable from a small state (seed, number of windows drawn).
//   SequentialWindows  evaluation: every non-overlapping window of T + 1 tokens from offset 0, in
//                      order; a tail shorter than a window is left out.
// A window w gives inputs w[0..T) and targets w[1..T+1); batches are row-major [B, T].
//
// Random offsets (documented so other tools can reproduce them): window number k of this sampler
// (k = 0, 1, ...) is global draw g = G + k * world + rank, where G is the global draw count it was
// restored at (0 for a fresh run). Its generator is splitmix64 started from
// x = mix(seed ^ mix(g + 0x632BE59BD9B4E019)), where mix is splitmix64's output function; draws r
// from it until r >= (2^64 - m) mod m, with m = n - T the number of valid starts, and takes r mod m
// (an exactly uniform start).
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sambalm {

class TokenSource {
 public:
  enum class Split { kAll, kTrain, kVal };

  // The shards `<dir>/<split>_*.bin` ("train" or "val"). Each may be a sambalm token shard or a
  // lit_gpt PackedDataset chunk (`sambalm prepare --format litpkd`); `vocab_size` is the vocabulary
  // of PackedDataset chunks (they record none; 0 when unknown, an Error if one is met).
  static TokenSource shards(const std::string& dir, const std::string& split, int32_t vocab_size = 0);
  // One shard file (either kind).
  static TokenSource shard_file(const std::string& path, int32_t vocab_size = 0);
  // The files whose name starts with the last component of `prefix`, in its directory, in name
  // order: how lit_gpt's pretrain.py selects a dataset's chunks (`data/slim/train_slim*`).
  // `option` names the command-line option in errors.
  static TokenSource prefix(const std::string& prefix, int32_t vocab_size, const std::string& option);
  // The bytes of any file as ids 0..255, whole or one side of the split at int(train_fraction * n).
  static TokenSource bytes(const std::string& path, Split split = Split::kAll, double train_fraction = 0.9);
  // Ids held in memory (e.g. text tokenized on the fly); ids must be in [0, vocab_size).
  static TokenSource memory(std::vector<int32_t> ids, int32_t vocab_size, std::string name);

  int64_t size() const;
  int32_t vocab_size() const;
  // What it reads, for messages: "data/train_000000.bin + 2 more", "corpus.txt (bytes, train split)".
  const std::string& name() const;
  // Copies ids [offset, offset + n) into out; throws Error when the range is outside [0, size()).
  void read(int64_t offset, int64_t n, int32_t* out) const;
  // Throws Error naming the source unless it holds at least one window of T + 1 tokens.
  void require_window(int64_t T) const;

  struct Impl;

 private:
  std::shared_ptr<const Impl> impl_;
};

// Where a BatchSampler is: enough to continue exactly where it stopped. windows_drawn counts the
// draws of every rank together (the global draw count), so a run resumed with another number of
// processes continues the same stream: between two steps every rank has drawn as many windows.
struct SamplerState {
  uint64_t seed = 0;
  uint64_t windows_drawn = 0;
};
nlohmann::json to_json(const SamplerState& s);
// Throws Error when `j` is not a sampler state.
SamplerState sampler_state_from_json(const nlohmann::json& j);

class BatchSampler {
 public:
  // rank/world: processes of a distributed run each take every world-th draw, so together they see
  // the same windows one process would (the same set per step when the global batch is the same).
  BatchSampler(TokenSource src, uint64_t seed, int rank = 0, int world = 1);
  // Fills inputs and targets [B, T] with B random windows.
  void next_batch(int32_t* inputs, int32_t* targets, int64_t B, int64_t T);
  // The start of the next random window (advances the state).
  int64_t next_offset(int64_t T);
  // The start of the window of global draw g (the state is not used or moved).
  int64_t offset_at(uint64_t g, int64_t T) const;
  SamplerState state() const { return {seed_, base_ + local_ * uint64_t(world_)}; }
  void restore(const SamplerState& s) { seed_ = s.seed, base_ = s.windows_drawn, local_ = 0; }
  const TokenSource& source() const { return src_; }

 private:
  TokenSource src_;
  uint64_t seed_ = 0, base_ = 0, local_ = 0;  // global draws before this process's first, its own since
  int rank_, world_;
  std::vector<int32_t> window_;
};

class SequentialWindows {
 public:
  SequentialWindows(TokenSource src, int64_t T);
  int64_t num_windows() const { return count_; }
  int64_t position() const { return next_; }
  void seek(int64_t window);
  // Window i into inputs[T], targets[T].
  void window(int64_t i, int32_t* inputs, int32_t* targets) const;
  // Up to B next windows ([B, T] each); returns how many were written (0 when done).
  int64_t next_batch(int32_t* inputs, int32_t* targets, int64_t B);

 private:
  TokenSource src_;
  int64_t T_, count_, next_ = 0;
  mutable std::vector<int32_t> window_;
};

}  // namespace sambalm
