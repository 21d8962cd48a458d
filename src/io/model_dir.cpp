// Model directories: resolving a model spec (preset, directory, weights file, config file) into a
// config and parameters, and writing sambalm's own directory format.
#include "io/model_dir.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "io/shard_index.h"
#include "io/state_dict.h"
#include "model/init.h"
#include "model/packed_weights.h"
#include "model/presets.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

namespace sambalm {

namespace fs = std::filesystem;

namespace {

bool is_json_file(const fs::path& p) { return p.extension() == ".json"; }

// A config given as a preset name or a config.json path.
ModelConfig config_from(const std::string& what) {
  if (find_preset(what)) return ModelConfig::from_preset(what);
  std::error_code ec;
  if (fs::is_regular_file(what, ec)) return ModelConfig::from_json_file(what);
  if (fs::is_directory(what, ec) && fs::is_regular_file(fs::path(what) / "config.json", ec))
    return ModelConfig::from_json_file((fs::path(what) / "config.json").string());
  return ModelConfig::from_preset(what);  // unknown: the error suggests close preset names
}

// The weights file of a model directory. A single file is preferred over an index of shards (a
// repository may hold both a merged file and its shards), safetensors over torch.save pickles.
std::string find_weights(const fs::path& dir) {
  for (const char* name :
       {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"})
    if (fs::is_regular_file(dir / name)) return (dir / name).string();
  std::vector<std::string> pth;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && (e.path().extension() == ".pth" || e.path().extension() == ".pt"))
      pth.push_back(e.path().filename().string());
  std::sort(pth.begin(), pth.end());
  if (pth.size() == 1) return (dir / pth[0]).string();
  SAMBALM_CHECK(pth.empty(), "{}: several checkpoint files ({}); pass the one to load as the model", dir.string(),
                fmt::join(pth, ", "));
  fail(
      "{}: no weights found: expected model.safetensors, model.safetensors.index.json (shards), pytorch_model.bin, "
      "pytorch_model.bin.index.json (shards) or a single .pth file",
      dir.string());
}

std::string find_tokenizer(const fs::path& dir) {
  for (const char* name : {"tokenizer.json", "tokenizer.model"})
    if (fs::is_regular_file(dir / name)) return (dir / name).string();
  if (dir_has_bytes_tokenizer(dir.string())) return "bytes";  // a model trained on bytes
  return "";
}

ModelConfig config_beside(const fs::path& dir, const std::string& config_override, const std::string& what) {
  if (!config_override.empty()) return config_from(config_override);
  fs::path cfg = dir / "config.json";
  SAMBALM_CHECK(fs::is_regular_file(cfg),
                "{}: no config.json beside the weights; pass a config (a config.json or a "
                "preset name)",
                what);
  return ModelConfig::from_json_file(cfg.string());
}

struct Resolved {
  ModelConfig config;
  std::string dir, weights, tokenizer;
};

// `need_weights` false: only the config is wanted (`info`), so a directory holding just a
// config.json resolves too.
Resolved resolve(const std::string& spec, const std::string& config_override, bool need_weights = true) {
  SAMBALM_CHECK(!spec.empty(), "no model given: expected a preset name, a model directory or a weights file");
  std::error_code ec;
  Resolved r;
  if (fs::is_directory(spec, ec)) {
    fs::path dir(spec);
    r.dir = spec;
    if (need_weights) r.weights = find_weights(dir);
    r.tokenizer = find_tokenizer(dir);
    r.config = config_beside(dir, config_override, spec);
    return r;
  }
  if (fs::is_regular_file(spec, ec)) {
    fs::path file(spec);
    fs::path dir = file.has_parent_path() ? file.parent_path() : fs::path(".");
    r.dir = dir.string();
    r.tokenizer = find_tokenizer(dir);
    if (is_json_file(file) && !is_shard_index_path(spec)) {
      r.config = config_override.empty() ? ModelConfig::from_json_file(spec) : config_from(config_override);
      return r;
    }
    r.weights = spec;
    r.config = config_beside(dir, config_override, spec);
    return r;
  }
  if (!find_preset(spec)) {
    if (spec.find('/') != std::string::npos || spec.find('.') == 0)
      fail("{}: no such file or directory (and not a preset name)", spec);
    try {
      ModelConfig::from_preset(spec);
    } catch (const Error& e) {
      fail("'{}' is not a model directory, a file or a preset name: {}", spec, e.what());
    }
  }
  r.config = config_override.empty() ? ModelConfig::from_preset(spec) : config_from(config_override);
  return r;
}

}  // namespace

std::string resolve_weights(const std::string& spec) {
  std::error_code ec;
  if (fs::is_directory(spec, ec)) return find_weights(spec);
  if (fs::is_regular_file(spec, ec) && (!is_json_file(spec) || is_shard_index_path(spec))) return spec;
  return "";
}

ModelConfig resolve_config(const std::string& spec, const std::string& config_override) {
  return resolve(spec, config_override, /*need_weights=*/false).config;
}

namespace {
// Weights holding NaN or Inf decode to garbage without any other sign: refuse them once, at load
// (one pass over the float32 copy, a fraction of the time it took to read them).
void check_finite_params(const ParamStore& params, const std::string& source) {
  for (const auto& e : params.entries()) {
    if (e.packed) continue;  // checked as they were taken (take_packed)
    const float* p = params.data() + e.offset;
    for (int64_t i = 0; i < e.numel(); ++i)
      if (!std::isfinite(p[i]))
        fail(
            "{}: weight '{}' holds a non-finite value ({} at flat index {}); the model cannot produce "
            "meaningful output",
            source, e.name, p[i], i);
  }
}
}  // namespace

LoadedModel load_model(const std::string& spec, const std::string& config_override, const LoadOptions& opts) {
  Resolved r = resolve(spec, config_override);
  LoadedModel m;
  m.config = r.config;
  m.dir = r.dir;
  m.tokenizer_path = r.tokenizer;
  m.weights_path = r.weights;
  const MatrixFormat want = opts.weights_dtype.empty() ? MatrixFormat::F32 : parse_matrix_format(opts.weights_dtype);
  if (r.weights.empty() && want != MatrixFormat::F32) {
    // Random weights drawn straight into the packed format: no float32 copy of all the matrices.
    m.params = init_params_packed(m.config, 0, want);
    return m;
  }
  if (r.weights.empty()) {
    m.params = ParamStore(param_specs(m.config));
    init_params(m.config, m.params, 0);
  } else {
    auto sd = read_state_dict(r.weights);
    // Matrices stored in bf16/f16/q8 under sambalm's names stay in the mapped file, in their format.
    std::shared_ptr<PackedWeights> packed;
    if (sd.count("embedding.weight")) packed = take_packed(sd, r.weights);
    m.params = load_params(m.config, sd, r.weights, nullptr, packed);
    check_finite_params(m.params, r.weights);
    if (packed && !opts.keep_packed) m.params = unpack_params(m.params);
  }
  if (!opts.weights_dtype.empty() && (want != MatrixFormat::F32 || m.params.packed()))
    m.params = pack_params(m.params, want);
  return m;
}

void save_model_dir(const std::string& dir, const ModelConfig& cfg, const ParamStore& params, DType dtype) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  SAMBALM_CHECK(!ec && fs::is_directory(dir), "{}: cannot create the model directory: {}", dir, ec.message());
  auto tensors = export_params(cfg, params, WeightFormat::Sambalm, dtype);
  write_safetensors((fs::path(dir) / "model.safetensors").string(), tensors,
                    {{"format", "pt"}, {"producer", "sambalm"}});
  write_file_atomic((fs::path(dir) / "config.json").string(), cfg.to_json().dump(2) + "\n");
}

}  // namespace sambalm
