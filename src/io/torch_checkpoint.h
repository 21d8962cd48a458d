// PyTorch checkpoints (`torch.save` output) read without running Python: the zip format of torch
// >= 1.6 and the legacy format before it, through the restricted unpickler (io/torch_unpickler.h).
//
// Zip: `<top>/data.pkl` (the pickle; `<top>` is any folder name), `<top>/data/<key>` (one entry per
// storage, raw little-endian bytes, stored uncompressed), `<top>/byteorder` ("little" when present),
// `<top>/version`. Legacy: five things back to back: a pickled magic number, a pickled protocol
// version (1001), a pickled sys_info dict, the pickle, a pickled list of storage keys, then for each
// key an int64 element count and the raw storage bytes.
//
// The state_dict is the root dict, or its `model` entry (Lightning Fabric: `model`, `optimizer`,
// `hparams`, ... of which only `model` is read) or its `state_dict` entry (Lightning). Each tensor
// becomes a contiguous Tensor: a view into the mapped file when its storage slice is contiguous and
// aligned, a copy otherwise (non-contiguous strides, or a legacy storage at an unaligned offset).
// Tensors that share one storage slice (tied weights) share one Tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace sambalm {

struct TorchCheckpoint {
  std::string path;
  std::string format;  // "zip" or "legacy"
  std::string entry;   // where the state_dict was: "" (the root), "model" or "state_dict"
  std::vector<std::pair<std::string, Tensor>> tensors;  // in the order of the pickle
};

// True when the bytes start like a torch.save file (a zip archive or a protocol-2+ pickle).
bool looks_like_torch_checkpoint(const uint8_t* data, size_t size);

TorchCheckpoint read_torch_checkpoint(const std::string& path);
// Parses from memory (the fuzz targets, tests); `holder` keeps `data` alive for the returned views.
TorchCheckpoint parse_torch_checkpoint(const uint8_t* data, size_t size, const std::string& path,
                                       std::shared_ptr<void> holder);

// Drops the pages of [p, p + n) that lie wholly inside the read-only file map [map, map + map_size)
// from this process (madvise MADV_DONTNEED); they are read back from the page cache if touched
// again. Lets a converter keep only one tensor's source pages resident at a time. Does nothing for
// memory outside the map, so it is safe to call with a copied tensor.
void release_mapped_pages(const uint8_t* map, size_t map_size, const void* p, size_t n);

}  // namespace sambalm
