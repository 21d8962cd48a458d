// Tokenizers against the fixtures (ids HF tokenizers / sentencepiece give), round trips, the
// pre-tokenizer and BPE merge loops against simple references, and error paths.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "io/file.h"
#include "testing.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace sambalm {
namespace {

using json = nlohmann::json;

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

std::vector<Case> load_cases(const std::string& dir) {
  json j = json::parse(read_text_file(dir + "/encodings.json"));
  std::vector<Case> cases;
  for (const auto& c : j) cases.push_back({c["text"].get<std::string>(), c["ids"].get<std::vector<int32_t>>()});
  return cases;
}

void check_fixture(const std::string& name, const std::string& file, bool exact_decode) {
  const std::string dir = test::fixtures_dir() + "/" + name;
  auto tok = load_tokenizer(dir + "/" + file);
  auto cases = load_cases(dir);
  ASSERT_FALSE(cases.empty());
  for (const auto& c : cases) {
    EXPECT_EQ(tok->encode(c.text), c.ids) << name << ": text " << json(c.text).dump();
    std::string back = tok->decode(c.ids);
    if (exact_decode) EXPECT_EQ(back, c.text) << name;
  }
}

TEST(TokenizerFixtures, BpeTiny) {
  REQUIRE_FIXTURES();
  check_fixture("bpe_tiny", "tokenizer.json", true);
}

TEST(TokenizerFixtures, BpeSplitTiny) {
  REQUIRE_FIXTURES();
  check_fixture("bpe_split_tiny", "tokenizer.json", true);
}

TEST(TokenizerFixtures, SentencePieceTiny) {
  REQUIRE_FIXTURES();
  const std::string dir = test::fixtures_dir() + "/sp_tiny";
  auto tok = load_tokenizer(dir);  // the directory: finds tokenizer.model
  EXPECT_EQ(tok->kind(), "sentencepiece");
  EXPECT_EQ(tok->vocab_size(), 2000);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  for (const auto& c : load_cases(dir)) {
    EXPECT_EQ(tok->encode(c.text), c.ids) << json(c.text).dump();
    // SentencePiece decodes back to the text here: no unknown pieces (byte fallback), and the
    // dummy prefix it adds is removed again.
    EXPECT_EQ(tok->decode(c.ids), c.text) << json(c.text).dump();
  }
}

}  // namespace
}  // namespace sambalm
