// libFuzzer target: the restricted unpickler on arbitrary bytes. Parses pickles back to back (as a
// legacy torch file holds them) and walks each root's entries. Any input may be refused with a
// sambalm::Error; nothing may crash, hang, leak or read out of bounds.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/torch_unpickler.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  size_t pos = 0;
  for (int k = 0; k < 8 && pos < size; ++k) {
    try {
      sambalm::pickle::Pickle p = sambalm::pickle::unpickle(data + pos, size - pos, "fuzz.pkl");
      const sambalm::pickle::Object* root = p.root();
      size_t n = 0;
      for (const auto& [key, value] : root->entries) n += key->s.size() + static_cast<size_t>(value->kind);
      if (root->get("model")) ++n;
      pos += p.consumed() > 0 ? p.consumed() : 1;
      if (n == SIZE_MAX) return 1;  // keeps the walk from being optimised away
    } catch (const sambalm::Error&) {
      return 0;
    }
  }
  return 0;
}
