// libFuzzer target: the decode state file reader (parse_decode_state, src/infer/state_file.cpp) on
// arbitrary bytes, loading into the state of a tiny Samba derived from the Samba_421M preset (2
// blocks, d 16, window 4: 288 state floats). The model's fingerprints are fixed values rather than
// hashes of a real config and weights, so seeds.py can write matching files. The last 8 bytes are
// overwritten with the checksum of the rest before parsing: otherwise nearly every mutation would
// stop at the checksum and the checks behind it would go unfuzzed.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "core/error.h"
#include "infer/decode_state.h"
#include "infer/state_file.h"
#include "model/config.h"

namespace {

// Kept equal to tests/fuzz/seeds.py (state_file_seeds).
constexpr uint64_t kConfigHash = 0x5eed0000c0f16000ull, kWeightsHash = 0x5eed00000e175000ull;
constexpr int64_t kStateFloats = 288, kVocab = 64;

std::shared_ptr<const sambalm::DecodeLayout> tiny_layout() {
  sambalm::ModelConfig c = sambalm::ModelConfig::from_preset("Samba_421M");
  c.name = "fuzz_samba";
  c.n_layer = 2, c.n_embd = 16, c.n_head = 1, c.n_query_groups = 1, c.head_size = 16;
  c.intermediate_size = 32, c.local_window = 4, c.vocab_size = kVocab, c.padded_vocab_size = kVocab;
  c.d_state = 2, c.block_size = 32;
  c.validate();
  auto layout = sambalm::DecodeLayout::make(c, 0);
  if (layout->floats != kStateFloats) {
    std::fprintf(stderr, "fuzz_state_file: the tiny model's state has %lld floats, seeds.py assumes %lld\n",
                 static_cast<long long>(layout->floats), static_cast<long long>(kStateFloats));
    __builtin_trap();
  }
  return layout;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto layout = tiny_layout();
  static std::vector<float> state(static_cast<size_t>(layout->floats));
  const sambalm::DecodeStateTarget want{"fuzz_samba",   kConfigHash,         kWeightsHash,
                                        layout->floats, layout->max_context, kVocab};
  std::vector<uint8_t> file(data, data + size);
  if (size >= 8) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i + 8 < size; ++i) h = (h ^ file[i]) * 0x100000001b3ull;
    for (int i = 0; i < 8; ++i) file[size - 8 + i] = uint8_t(h >> (8 * i));
  }
  std::vector<int32_t> tokens;
  try {
    const int64_t pos = sambalm::parse_decode_state(file.data(), file.size(), "fuzz.state", want, state.data(), tokens);
    if (pos < int64_t(tokens.size())) __builtin_trap();
    for (int32_t t : tokens)
      if (t < 0 || t >= kVocab) __builtin_trap();
  } catch (const sambalm::Error&) {
  }
  return 0;
}
