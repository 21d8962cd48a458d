// libFuzzer target: the tokenizer.json reader (src/tokenizer/hf_tokenizer_json.cpp) on arbitrary
// bytes, then the loaded tokenizer at work: a short text encoded and decoded (also as a stream),
// arbitrary bytes through encode_bytes and back, and every id's token looked up both ways.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::unique_ptr<sambalm::Tokenizer> tok;
  try {
    tok =
        sambalm::parse_hf_tokenizer(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz/tokenizer.json");
  } catch (const sambalm::Error&) {
    return 0;
  }
  size_t sum = 0;
  try {
    const std::vector<int32_t> ids = tok->encode("Hello, world! 123 <|endoftext|> h\xc3\xa9llo\n\n  x\xe2\x80\x99s");
    sum += tok->decode(ids).size() + tok->decode(ids, true).size();
    sambalm::StreamDecoder stream(*tok);
    for (int32_t id : ids) sum += stream.push(id).size();
    sum += stream.flush().size();
  } catch (const sambalm::Error&) {
  }
  try {
    const auto& hf = static_cast<const sambalm::HfTokenizer&>(*tok);
    const std::string_view raw("\xff\xfe\x00 ab\xc3(\n", 9);
    std::vector<int32_t> ids;
    hf.encode_bytes(raw, ids);
    sum += hf.decode(ids).size();  // raw again, unless a prefix space is added or an added token strips
  } catch (const sambalm::Error&) {
  }
  for (int32_t id = 0; id < tok->vocab_size(); ++id) {
    sum += tok->is_special(id);
    try {
      if (tok->token_to_id(tok->id_to_token(id))) ++sum;
    } catch (const sambalm::Error&) {  // an id the file leaves unused
    }
  }
  return sum == SIZE_MAX ? 1 : 0;  // keeps the work from being optimised away
}
