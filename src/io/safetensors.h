// safetensors: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}},
// then the data block; offsets are relative to the data block. Reading maps the file and returns
// views into it after validating every entry (dtype known, size = numel x element size, offsets
// inside the data block, no two tensors overlapping).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/file.h"

namespace sambalm {

struct SafetensorsFile {
  std::string path;
  std::map<std::string, Tensor> tensors;  // views into the mapped file
  std::map<std::string, std::string> metadata;
  std::vector<std::string> order;  // names in file (offset) order

  bool has(const std::string& name) const { return tensors.count(name) != 0; }
  // Throws Error naming the file and the key when absent.
  const Tensor& get(const std::string& name) const;
};

SafetensorsFile read_safetensors(const std::string& path);
// Parses from memory (used by the fuzz target and by tests); `holder` keeps the bytes alive.
SafetensorsFile parse_safetensors(const uint8_t* data, size_t size, const std::string& path,
                                  std::shared_ptr<void> holder);

// Writes tensors (in the given order) atomically with optional string metadata.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace sambalm
