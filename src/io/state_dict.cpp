#include "io/state_dict.h"

#include "core/error.h"
#include "io/safetensors.h"

namespace sambalm {

std::map<std::string, Tensor> read_state_dict(const std::string& path) {
  // PyTorch pickles (.pth / .bin) are handled by the torch checkpoint reader (io/torch_*).
  auto f = read_safetensors(path);
  return f.tensors;
}

}  // namespace sambalm
