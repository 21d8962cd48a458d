// Sharded checkpoints: a checkpoint too large for one file is saved by Hugging Face as shards
// (model-00001-of-00003.safetensors ..., or pytorch_model-00001-of-00002.bin ...) plus an index,
// model.safetensors.index.json / pytorch_model.bin.index.json:
//   {"metadata": {"total_size": N}, "weight_map": {"tensor.name": "model-00001-of-00003.safetensors", ...}}
// The index is read as untrusted input, like the weights themselves: a shard name comes from the
// file, so it must be a plain file name in the index's own directory (no absolute path, no '..', no
// separator), or a crafted index could make the loader map any file on the machine.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace sambalm {

struct ShardIndex {
  std::string path;                               // the index file
  std::string dir;                                // its directory, where every shard lies
  std::map<std::string, std::string> weight_map;  // tensor name -> shard file name
  std::vector<std::string> shards;                // the distinct shard file names, sorted
};

// True for a file named `*.index.json`: how a weights path is told to be an index rather than a
// config (`.json`) or a weights file.
bool is_shard_index_path(const std::string& path);

// Reads and validates an index: a JSON object whose `weight_map` is a non-empty object of tensor
// name -> shard file name (each name once), `metadata` an object when present (its `total_size` is
// informative and not checked), every shard a plain file name that exists beside the index. Throws
// Error naming the index, the key and what was expected.
ShardIndex read_shard_index(const std::string& path);

}  // namespace sambalm
