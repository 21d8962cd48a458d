// Model directories and model specs: resolving what a user names as a model (preset, directory,
// weights file, shard index, config file) into a config and parameters, and writing sambalm's own
// directory format. The file formats are read by the other readers of src/io/; the weight-name
// tables that map the originals' state_dicts onto the parameter layout are model/weights.h.
#pragma once

#include <string>

#include "core/dtype.h"
#include "model/config.h"
#include "model/params.h"

namespace sambalm {

struct LoadedModel {
  ModelConfig config;
  ParamStore params;
  std::string dir;             // the model directory ("" for a preset)
  std::string tokenizer_path;  // tokenizer.json or tokenizer.model found beside the weights, "bytes", or ""
  std::string weights_path;    // the file the weights came from ("" when randomly initialised)
};

// `spec` is one of:
//   - a preset name: random parameters (init_params, seed 0);
//   - a model directory: config.json + model.safetensors | model.safetensors.index.json (shards) |
//     pytorch_model.bin | pytorch_model.bin.index.json (shards) | a single *.pth;
//   - a weights file (.safetensors, .bin, .pth) or a shard index (*.index.json): config from
//     config.json beside it;
//   - a config .json file: random parameters (seed 0).
// `config_override` (a config.json path or a preset name) replaces the config found beside the weights.
struct LoadOptions {
  // Keep the GEMM matrices that the file stores in bf16, f16, q8 or q4 in that format in memory (inference:
  // generate, bench, forward, eval, serve); false converts every weight to float32 (training, convert).
  // Only sambalm-named safetensors (sambalm convert's output) keep packed matrices; other checkpoints
  // load as float32.
  bool keep_packed = false;
  // After loading, pack the matrices into this format ("f32", "bf16", "f16", "q8", "q4"; "" keeps them as
  // loaded): inference of a float32 model or of random weights in another format.
  std::string weights_dtype;
};
LoadedModel load_model(const std::string& spec, const std::string& config_override = "", const LoadOptions& opts = {});

// Just the config of `spec` (as load_model would resolve it), without reading weights.
ModelConfig resolve_config(const std::string& spec, const std::string& config_override = "");
// Just the weights path of `spec` (as load_model would resolve it, "" for random parameters: a
// preset, a config .json, or a name that is no file); throws Error for a directory without weights.
std::string resolve_weights(const std::string& spec);

// Writes `dir`/config.json (sambalm format) and `dir`/model.safetensors (sambalm names, `dtype`),
// each atomically; creates `dir` when needed.
void save_model_dir(const std::string& dir, const ModelConfig& cfg, const ParamStore& params, DType dtype = DType::F32);

}  // namespace sambalm
