#include "io/state_dict.h"

#include <fmt/ranges.h>

#include <cstring>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "io/safetensors.h"
#include "io/shard_index.h"
#include "io/torch_checkpoint.h"

namespace sambalm {

namespace {

// One weights file. The format is decided by the first bytes, not the name: Hugging Face
// `pytorch_model.bin`, Fabric `.pth`, Lightning `.ckpt` and `.pt` are all torch.save output, and a
// renamed file still loads.
std::map<std::string, Tensor> read_one(const std::shared_ptr<MappedFile>& file, std::string* kind) {
  const std::string& path = file->path();
  const uint8_t* d = file->data();
  const size_t n = file->size();
  std::map<std::string, Tensor> out;
  if (looks_like_torch_checkpoint(d, n)) {
    TorchCheckpoint ck = parse_torch_checkpoint(d, n, path, file);
    *kind = fmt::format("torch.save {}{}", ck.format, ck.entry.empty() ? "" : ", '" + ck.entry + "' entry");
    for (auto& [name, t] : ck.tensors)
      if (!out.emplace(name, std::move(t)).second) fail("{}: weight '{}' appears twice", path, name);
    return out;
  }
  // safetensors: an 8-byte header length, then a JSON header starting with '{'.
  if (n >= 9 && d[8] == '{') {
    *kind = "safetensors";
    return parse_safetensors(d, n, path, file).tensors;
  }
  if (n > 262 && std::memcmp(d + 257, "ustar", 5) == 0)
    fail("{}: a tar archive (torch < 0.4 checkpoint format), which is not supported", path);
  fail("{}: unrecognised weights format: not safetensors, a torch.save zip archive or a legacy torch pickle", path);
}

StateDict open_sharded(const std::string& index_path) {
  const ShardIndex index = read_shard_index(index_path);
  StateDict sd;
  std::set<std::string> kinds;
  for (const std::string& shard : index.shards) {
    auto file = MappedFile::open((std::filesystem::path(index.dir) / shard).string());
    std::string kind;
    for (auto& [name, t] : read_one(file, &kind)) {
      auto it = index.weight_map.find(name);
      SAMBALM_CHECK(it != index.weight_map.end(), "{}: shard '{}' holds tensor '{}', which the index does not list",
                    index_path, shard, name);
      SAMBALM_CHECK(it->second == shard,
                    "{}: shard '{}' holds tensor '{}', which the index assigns to shard '{}' (a tensor in two shards, "
                    "or a shard of another checkpoint)",
                    index_path, shard, name, it->second);
      sd.tensors.emplace(name, std::move(t));
    }
    kinds.insert(kind);
    sd.files.push_back(std::move(file));
  }
  for (const auto& [name, shard] : index.weight_map)
    SAMBALM_CHECK(sd.tensors.count(name), "{}: the index lists tensor '{}' in shard '{}', which does not hold it",
                  index_path, name, shard);
  sd.kind =
      fmt::format("{} shard{} ({})", index.shards.size(), index.shards.size() == 1 ? "" : "s", fmt::join(kinds, ", "));
  return sd;
}

}  // namespace

void StateDict::release_pages(const void* p, size_t n) const {
  const auto* b = static_cast<const uint8_t*>(p);
  for (const auto& f : files)
    if (b >= f->data() && b < f->data() + f->size()) release_mapped_pages(f->data(), f->size(), p, n);
}

StateDict open_state_dict(const std::string& path) {
  if (is_shard_index_path(path)) return open_sharded(path);
  StateDict sd;
  auto file = MappedFile::open(path);
  sd.tensors = read_one(file, &sd.kind);
  sd.files.push_back(std::move(file));
  return sd;
}

std::map<std::string, Tensor> read_state_dict(const std::string& path) { return open_state_dict(path).tensors; }

}  // namespace sambalm
