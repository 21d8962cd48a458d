// Weighted mixtures of training data, as lit_gpt's pretrain.py combines its datasets
// (`train_data_config = [("train_slim", 0.7), ("train_code", 0.3)]`): `--data a:0.7,b:0.3`.
//
// `--data` may also name a JSON file: [["path", 0.7], ["path2", 0.3]] (pretrain.py's
// train_data_config) or {"path": 0.7, "path2": 0.3} (sources in key order), relative paths from the
// file's directory. Other JSON is not a mixture (it may be a corpus).
//
// Window number g (g = G + k * world + rank for the k-th window of process rank, G the global count it was
// restored at) of the mixture picks its source with its
// own generator: u = (splitmix64 output started from mix(seed ^ mix(g + 0x3C6EF372FE94F82B))) >> 11, times 2^-53, a
// uniform double in [0, 1); the source is the first i with u * total < w_0 + ... + w_i (a zero weight
// is never picked). The window then comes from that source's own BatchSampler (data_loader.h), seeded
// from seed + 0x9E3779B97F4A7C15 * (i + 1): its draw number c_i, the count of earlier global windows
// that picked source i. In a distributed run every process computes the picks of the whole world's
// draws (a hash each), so the counts, and the stream, are those of one process: the state (the global
// window count and every source's count) is the same on every rank, saved in checkpoints, and a run
// resumed with any number of processes continues the same stream.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "train/data_loader.h"

namespace sambalm {

// `PATH:WEIGHT[,PATH:WEIGHT...]`, or a mixture file (`*.json` of either shape above), -> (path,
// weight) pairs; empty when `spec` is not such a list (one
// path, which may itself hold a ':' not followed by a number). Throws Error naming `option` for an
// item without a weight in a list, a weight that is negative or not finite, or weights all zero.
std::vector<std::pair<std::string, double>> parse_data_mixture(const std::string& spec, const std::string& option);

class MixtureSampler {
 public:
  struct Source {
    std::string name;
    double weight;
    TokenSource tokens;
  };
  // Weights are checked as parse_data_mixture does; `option` names them in errors.
  // rank/world: in a distributed run process `rank` takes the mixture's draws g = G + k * world + rank,
  // so the processes' streams are disjoint and together one process's.
  MixtureSampler(std::vector<Source> sources, uint64_t seed, const std::string& option = "--data", int rank = 0,
                 int world = 1);
  // The source the next window comes from and its start offset (advances the state).
  std::pair<size_t, int64_t> next(int64_t T);
  // B windows into inputs and targets [B, T].
  void next_batch(int32_t* inputs, int32_t* targets, int64_t B, int64_t T);
  const std::vector<Source>& sources() const { return sources_; }
  nlohmann::json state() const;
  // Throws Error when `s` is not a state of this mixture (other sources, sizes or weights).
  void restore(const nlohmann::json& s);

 private:
  std::vector<Source> sources_;
  std::vector<BatchSampler> samplers_;  // one process's view of each source (offset_at)
  std::vector<uint64_t> counts_;        // global windows drawn from each source
  std::vector<double> cumulative_;
  uint64_t seed_, windows_drawn_ = 0;  // global windows drawn by every process together
  size_t pick(uint64_t g) const;
  int rank_, world_;
  std::vector<int32_t> window_;
};

}  // namespace sambalm
