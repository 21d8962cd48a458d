// A state_dict read from any weights file sambalm understands: safetensors, and PyTorch
// `torch.save` files (zip or legacy pickles: pytorch_model.bin, Fabric .pth). Returns name ->
// tensor (contiguous, any dtype); the model loader maps names and converts to float32.
#pragma once

#include <map>
#include <string>

#include "core/tensor.h"

namespace sambalm {

std::map<std::string, Tensor> read_state_dict(const std::string& path);

}  // namespace sambalm
