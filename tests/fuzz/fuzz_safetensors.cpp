// libFuzzer target: the safetensors reader on arbitrary bytes (header length, JSON header, dtypes,
// shapes, data offsets, metadata). Every returned tensor is read end to end, so a view that points
// outside the input is caught by AddressSanitizer.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint64_t sum = 0;
  try {
    sambalm::SafetensorsFile f = sambalm::parse_safetensors(data, size, "fuzz.safetensors", nullptr);
    for (const auto& [name, t] : f.tensors) {
      const uint8_t* p = static_cast<const uint8_t*>(t.raw());
      for (size_t i = 0; i < t.nbytes(); ++i) sum += p[i];
      sum += name.size();
    }
    for (const auto& [k, v] : f.metadata) sum += k.size() + v.size();
  } catch (const sambalm::Error&) {
  }
  return sum == 0xdeadbeef ? 1 : 0;  // keeps the reads from being optimised away
}
