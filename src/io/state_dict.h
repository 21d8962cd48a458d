// A state_dict read from any weights file sambalm understands: safetensors, PyTorch `torch.save`
// files (zip or legacy pickles: pytorch_model.bin, Fabric .pth), and sharded checkpoints (a
// `*.index.json` naming shards of either kind, io/shard_index.h). Returns name -> tensor
// (contiguous, any dtype); the model loader maps names and converts to float32.
//
// Tensors are views into memory-mapped files wherever the layout allows, so reading costs address
// space, not memory: a page is read from disk when a tensor's values are first touched.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/file.h"

namespace sambalm {

struct StateDict {
  std::map<std::string, Tensor> tensors;
  std::vector<std::shared_ptr<MappedFile>> files;  // the maps the tensors view: one, or one per shard
  std::string kind;                                // for messages: "safetensors", "3 shards (safetensors)", ...

  // Drops the pages of [p, p + n) from the map that holds them (release_mapped_pages): a converter
  // calls it after copying a tensor so that the source and the copy are never both resident.
  void release_pages(const void* p, size_t n) const;
};

// Sharded checkpoints: every shard the index names is mapped once, and must hold exactly the
// tensors the index assigns to it. A tensor the index lists but its shard lacks, a shard tensor the
// index does not list, or one the index assigns to another shard (a tensor in two shards) is an
// error naming the index, the shard and the tensor: the shards and the index are written together,
// so any disagreement means files of different checkpoints, and guessing could load wrong weights.
StateDict open_state_dict(const std::string& path);

// open_state_dict(path).tensors (each tensor keeps its map alive).
std::map<std::string, Tensor> read_state_dict(const std::string& path);

}  // namespace sambalm
