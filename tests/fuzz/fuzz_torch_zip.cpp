// libFuzzer target: the zip reader and the whole torch checkpoint reader (zip or legacy) on
// arbitrary bytes. Every entry is read (with its CRC checked) and every returned tensor is read end
// to end, so a view that points outside the input is caught by AddressSanitizer.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/torch_checkpoint.h"
#include "io/zip_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint64_t sum = 0;
  try {
    sambalm::ZipArchive zip = sambalm::ZipArchive::parse(data, size, "fuzz.zip");
    for (const auto& e : zip.entries()) {
      try {
        std::string_view b = zip.read(e, true);
        for (char c : b) sum += static_cast<uint8_t>(c);
      } catch (const sambalm::Error&) {
      }
    }
  } catch (const sambalm::Error&) {
  }
  try {
    sambalm::TorchCheckpoint ck = sambalm::parse_torch_checkpoint(data, size, "fuzz.pth", nullptr);
    for (const auto& [name, t] : ck.tensors) {
      const uint8_t* p = static_cast<const uint8_t*>(t.raw());
      for (size_t i = 0; i < t.nbytes(); ++i) sum += p[i];
    }
  } catch (const sambalm::Error&) {
  }
  return sum == 0xFFFFFFFFFFFFFFFFull ? 1 : 0;
}
