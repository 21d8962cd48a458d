#include "io/state_dict.h"

#include <cstring>

#include "core/error.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "io/torch_checkpoint.h"

namespace sambalm {

// The format is decided by the first bytes, not the name: Hugging Face `pytorch_model.bin`, Fabric
// `.pth`, Lightning `.ckpt` and `.pt` are all torch.save output, and a renamed file still loads.
std::map<std::string, Tensor> read_state_dict(const std::string& path) {
  auto file = MappedFile::open(path);
  const uint8_t* d = file->data();
  const size_t n = file->size();
  std::map<std::string, Tensor> out;
  if (looks_like_torch_checkpoint(d, n)) {
    TorchCheckpoint ck = parse_torch_checkpoint(d, n, path, file);
    for (auto& [name, t] : ck.tensors)
      if (!out.emplace(name, std::move(t)).second) fail("{}: weight '{}' appears twice", path, name);
    return out;
  }
  // safetensors: an 8-byte header length, then a JSON header starting with '{'.
  if (n >= 9 && d[8] == '{') return parse_safetensors(d, n, path, file).tensors;
  if (n > 262 && std::memcmp(d + 257, "ustar", 5) == 0)
    fail("{}: a tar archive (torch < 0.4 checkpoint format), which is not supported", path);
  fail("{}: unrecognised weights format: not safetensors, a torch.save zip archive or a legacy torch pickle", path);
}

}  // namespace sambalm
