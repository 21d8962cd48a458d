// libFuzzer target: a sharded checkpoint's index (model.safetensors.index.json, src/io/shard_index.cpp)
// on arbitrary bytes, read the way the weights loader reads it (open_state_dict): the index is checked,
// then each shard it names is opened and its tensors matched against the index's weight_map. The
// directory holds two small valid shards (a, b in the first, c in the second) so that the checks
// past the index itself are reached; any other shard name refers to a file that is not there.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "io/state_dict.h"

namespace {

void write(const std::string& path, const std::string& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size() || std::fclose(f) != 0) __builtin_trap();
}

// A safetensors file of float32 tensors of 2 elements each.
std::string safetensors(std::initializer_list<const char*> names) {
  std::string h = "{";
  size_t off = 0;
  for (const char* n : names) {
    h += (h.size() > 1 ? "," : "") + std::string("\"") + n + "\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[" +
         std::to_string(off) + "," + std::to_string(off + 8) + "]}";
    off += 8;
  }
  h += "}";
  h += std::string((8 - h.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  const uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = char(n >> (8 * i));
  return out + h + std::string(off, '\x01');
}

std::string make_dir() {
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("sambalm-fuzz-index-" + std::to_string(getpid()))).string();
  std::filesystem::create_directories(dir);
  write(dir + "/model-00001-of-00002.safetensors", safetensors({"a", "b"}));
  write(dir + "/model-00002-of-00002.safetensors", safetensors({"c"}));
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = make_dir();
  const std::string index = dir + "/model.safetensors.index.json";
  write(index, std::string(reinterpret_cast<const char*>(data), size));
  size_t sum = 0;
  try {
    sambalm::StateDict sd = sambalm::open_state_dict(index);
    for (const auto& [name, t] : sd.tensors) sum += name.size() + t.nbytes();
  } catch (const sambalm::Error&) {
  }
  return sum == SIZE_MAX ? 1 : 0;
}
