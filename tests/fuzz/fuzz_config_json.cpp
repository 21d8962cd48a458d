// libFuzzer target: config.json (src/model/config_json.cpp) on arbitrary bytes, in any of the formats
// it reads (sambalm, lit_gpt, mamba_ssm, Hugging Face MambaConfig), validate() included. A config
// that is accepted is then described (layout, parameter count) and written back as sambalm's own
// config.json, which must read back as the same config.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;  // not JSON: from_json_file's parse error, not the reader's business
  try {
    const sambalm::ModelConfig c = sambalm::ModelConfig::from_json(j, "fuzz/config.json");
    size_t sum = c.layer_pattern().size() + c.block_strings().size() + size_t(c.num_params());
    const nlohmann::json own = c.to_json();
    const sambalm::ModelConfig back = sambalm::ModelConfig::from_json(own, "fuzz/config.json (written back)");
    if (back.to_json() != own) __builtin_trap();  // a config must survive its own format
    try {
      sum += c.to_hf_json().dump().size();  // refused unless a pure Mamba model
    } catch (const sambalm::Error&) {
    }
    return sum == SIZE_MAX ? 1 : 0;
  } catch (const sambalm::Error&) {
    return 0;
  }
}
