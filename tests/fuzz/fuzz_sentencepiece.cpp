// libFuzzer target: a tokenizer.model (SentencePiece ModelProto) through the libsentencepiece
// wrapper (src/tokenizer/sentencepiece_tokenizer.cpp). A corrupt model must be an Error, never a
// crash; a model that loads encodes and decodes a short text and looks up every id.
// The input is written to a file ($TMPDIR or /tmp) because the wrapper loads by path, as the program does.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path =
      (std::filesystem::temp_directory_path() / ("sambalm-fuzz-" + std::to_string(getpid()) + ".model")).string();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(data, 1, size, f) != size || std::fclose(f) != 0) __builtin_trap();
  std::unique_ptr<sambalm::Tokenizer> tok;
  try {
    tok = sambalm::load_sentencepiece_tokenizer(path);
  } catch (const sambalm::Error&) {
    return 0;
  }
  size_t sum = 0;
  try {
    const std::vector<int32_t> ids = tok->encode("Hello, world! 123 h\xc3\xa9llo\n  x");
    sum += tok->decode(ids).size() + tok->decode(ids, true).size();
  } catch (const sambalm::Error&) {
  }
  for (int32_t id = 0; id < tok->vocab_size() && id < 4096; ++id) {
    sum += tok->id_to_token(id).size() + tok->is_special(id);
    if (tok->token_to_id(tok->id_to_token(id))) ++sum;
  }
  return sum == SIZE_MAX ? 1 : 0;
}
