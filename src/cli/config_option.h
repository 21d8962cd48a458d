// `--config` beside a model argument, checked before any work starts. --config gives the
// architecture of weights that carry none (a bare .pth / .bin / .safetensors) or replaces a model
// directory's config.json. A preset name or a config.json is a config already: --config with one of
// them would silently describe a different model than the one named, so it is refused.
#pragma once

#include <filesystem>
#include <string>

#include "core/error.h"
#include "io/shard_index.h"
#include "model/presets.h"

namespace sambalm::cli {

// `model_option` names the model argument in messages ("MODEL", "--model", "SRC").
inline void check_config_option(const std::string& model, const std::string& config, const std::string& model_option) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool is_file = fs::is_regular_file(model, ec);
  const bool is_config_file = is_file && fs::path(model).extension() == ".json" && !is_shard_index_path(model);
  if (!config.empty()) {
    if (!is_file && !fs::is_directory(model, ec) && find_preset(model))
      fail(
          "--config {}: {} '{}' is a preset, which is a config already; --config applies to a weights file or a "
          "model directory (drop one of the two)",
          config, model_option, model);
    if (is_config_file)
      fail(
          "--config {}: {} '{}' is a config file already; --config applies to a weights file or a model directory "
          "(drop one of the two)",
          config, model_option, model);
    return;
  }
  if (is_file && !is_config_file) {
    const fs::path dir = fs::path(model).has_parent_path() ? fs::path(model).parent_path() : fs::path(".");
    SAMBALM_CHECK(fs::is_regular_file(dir / "config.json", ec),
                  "{}: no config.json beside the weights; pass --config CONFIG (a config.json or a preset name such "
                  "as Samba_421M)",
                  model);
  }
}

}  // namespace sambalm::cli
