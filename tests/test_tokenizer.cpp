// Tokenizers against the fixtures (ids HF tokenizers / sentencepiece give), round trips, the
// pre-tokenizer and BPE merge loops against simple references, and error paths.
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "io/file.h"
#include "testing.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/pretokenize.h"
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
    if (exact_decode) {
      EXPECT_EQ(back, c.text) << name;
    }
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

HfTokenizer& as_hf(std::unique_ptr<Tokenizer>& t) { return dynamic_cast<HfTokenizer&>(*t); }

std::string random_bytes(std::mt19937& rng, size_t n) {
  // Mostly ASCII and UTF-8 fragments, with arbitrary bytes (invalid UTF-8) mixed in.
  static const std::vector<std::string> parts = {
      "a", "Z", " ", "  ", "\n", "'s", "9", "é", "日", "\xCC\x81", "🙂", "<|endoftext|>", "<|end|>"};
  std::string s;
  while (s.size() < n) {
    if (rng() % 3 == 0)
      s.push_back(char(rng() % 256));
    else
      s += parts[rng() % parts.size()];
  }
  return s;
}

TEST(Tokenizer, BytesRoundTripAnyBytes) {
  auto tok = load_tokenizer("bytes");
  EXPECT_EQ(tok->vocab_size(), 256);
  EXPECT_FALSE(tok->eos_id().has_value());
  std::mt19937 rng(1);
  for (int i = 0; i < 200; ++i) {
    std::string s = random_bytes(rng, rng() % 100);
    auto ids = tok->encode(s);
    ASSERT_EQ(ids.size(), s.size());
    for (size_t k = 0; k < s.size(); ++k) ASSERT_EQ(ids[k], int32_t(uint8_t(s[k])));
    EXPECT_EQ(tok->decode(ids), s);
  }
  std::vector<int32_t> bad = {65, 256};
  EXPECT_THROW(tok->decode(bad), Error);
}

TEST(Tokenizer, ByteLevelBpeRoundTripsRawBytes) {
  REQUIRE_FIXTURES();
  for (const char* name : {"bpe_tiny", "bpe_split_tiny"}) {
    auto tok = load_tokenizer(test::fixtures_dir() + "/" + name + "/tokenizer.json");
    auto& hf = as_hf(tok);
    std::mt19937 rng(2);
    for (int i = 0; i < 300; ++i) {
      std::string s = random_bytes(rng, rng() % 200);
      std::vector<int32_t> ids;
      hf.encode_bytes(s, ids);
      EXPECT_EQ(tok->decode(ids), s) << name;
      // Where the bytes are valid UTF-8 in NFC, encode_bytes and encode agree.
      if (unicode::find_invalid_utf8(s) == std::string::npos && unicode::nfc(s) == s) {
        EXPECT_EQ(tok->encode(s), ids);
      }
    }
  }
}

TEST(Tokenizer, EncodeRefusesInvalidUtf8) {
  REQUIRE_FIXTURES();
  for (std::string path : {test::fixtures_dir() + "/bpe_tiny/tokenizer.json", test::fixtures_dir() + "/sp_tiny"}) {
    auto tok = load_tokenizer(path);
    for (std::string bad : {std::string("ab\xFF"), std::string("\xC3"), std::string("\xED\xA0\x80"),
                            std::string("\xC0\xAF"), std::string("x\xF4\x90\x80\x80")}) {
      try {
        tok->encode(bad);
        ADD_FAILURE() << "no error for invalid UTF-8 with " << path;
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("not valid UTF-8"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(tok->source()), std::string::npos) << e.what();
      }
    }
  }
}

TEST(Tokenizer, BpeMergeLoopMatchesReference) {
  REQUIRE_FIXTURES();
  auto tok = load_tokenizer(test::fixtures_dir() + "/bpe_split_tiny/tokenizer.json");
  const BpeModel& m = as_hf(tok).model();
  std::mt19937 rng(3);
  const std::string letters = "   eeettaaoinshrdlu--==__..\n\t";
  for (int i = 0; i < 3000; ++i) {
    std::string w;
    size_t n = 1 + rng() % (i < 2900 ? 20 : 400);
    for (size_t k = 0; k < n; ++k) w.push_back(rng() % 8 ? letters[rng() % letters.size()] : char(rng() % 256));
    std::vector<int32_t> fast, ref;
    m.merge_word(w, fast);
    m.merge_word_reference(w, ref);
    ASSERT_EQ(fast, ref) << json(bytes_to_byte_level(w)).dump();
  }
}

TEST(Tokenizer, ByteLevelAlphabet) {
  // GPT-2's bytes_to_unicode: printable Latin-1 maps to itself, the 68 others to U+0100.. in order.
  EXPECT_EQ(byte_to_char('A'), uint32_t('A'));
  EXPECT_EQ(byte_to_char(0), 0x100u);
  EXPECT_EQ(byte_to_char(' '), 0x120u);   // 'Ġ'
  EXPECT_EQ(byte_to_char('\n'), 0x10Au);  // 'Ċ'
  EXPECT_EQ(byte_to_char(0xAD), 0x143u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(byte_from_char(byte_to_char(uint8_t(b))), b);
}

TEST(Unicode, NfcKnownCases) {
  // From the Unicode normalisation rules: composition, singletons, Hangul, canonical reordering,
  // blocked composition.
  EXPECT_EQ(unicode::nfc("e\u0301"), "\u00e9");
  EXPECT_EQ(unicode::nfc("\u212b"), "\u00c5");                // ANGSTROM SIGN -> A WITH RING
  EXPECT_EQ(unicode::nfc("\u1100\u1161\u11a8"), "\uac01");    // Hangul L V T
  EXPECT_EQ(unicode::nfc("q\u0307\u0323"), "q\u0323\u0307");  // reordered by combining class
  EXPECT_EQ(unicode::nfc("\u1e0b\u0323"), "\u1e0d\u0307");    // d-dot-above + dot-below
  EXPECT_EQ(unicode::nfc("a\u0301\u0301"), "\u00e1\u0301");
  EXPECT_EQ(unicode::nfc("\u0344"), "\u0308\u0301");  // decomposes, not recomposed (excluded)
  EXPECT_EQ(unicode::nfc("plain ascii"), "plain ascii");
  std::string out;
  EXPECT_TRUE(unicode::nfc_quick("caf\u00e9 \u65e5\u672c", out));
  EXPECT_FALSE(unicode::nfc_quick("cafe\u0301", out));
  EXPECT_EQ(out, "caf\u00e9");
}

TEST(Unicode, Categories) {
  EXPECT_TRUE(unicode::is_letter('a'));
  EXPECT_TRUE(unicode::is_letter(0x65E5));
  EXPECT_TRUE(unicode::is_number(0x0663));  // ARABIC-INDIC DIGIT THREE
  EXPECT_TRUE(unicode::is_number(0x2167));  // ROMAN NUMERAL EIGHT (Nl)
  EXPECT_TRUE(unicode::is_mark(0x0301));
  EXPECT_TRUE(unicode::is_letter(0x20000));  // CJK Extension B
  EXPECT_TRUE(unicode::is_whitespace(0x3000));
  EXPECT_TRUE(unicode::is_whitespace(0x85));
  EXPECT_FALSE(unicode::is_whitespace(0x200B));
  EXPECT_EQ(unicode::category(0x1F642), unicode::So);
}

TEST(Unicode, Utf8) {
  EXPECT_EQ(unicode::find_invalid_utf8("ok \u00e9\U0001F642"), std::string::npos);
  EXPECT_EQ(unicode::find_invalid_utf8("ab\x80"), 2u);
  EXPECT_EQ(unicode::find_invalid_utf8("\xE0\x80\x80"), 0u);  // overlong
  // Incomplete tails are held back; impossible ones are not.
  EXPECT_EQ(unicode::complete_utf8_prefix("ab\xE6\x97"), 2u);
  EXPECT_EQ(unicode::complete_utf8_prefix("ab\xF0\x9F\x99"), 2u);
  EXPECT_EQ(unicode::complete_utf8_prefix("ab\xE6\x97\xA5"), 5u);
  EXPECT_EQ(unicode::complete_utf8_prefix("ab\xFF"), 3u);
  EXPECT_EQ(unicode::complete_utf8_prefix("ab\xE0\x80"), 4u);
}

std::vector<std::string> split_gpt2(std::string_view s, pretok::Pattern p) {
  pretok::CodePoints cps;
  cps.assign(s);
  std::vector<uint32_t> ends;
  pretok::split(p, cps, 0, uint32_t(cps.cp.size()), ends);
  std::vector<std::string> pieces;
  uint32_t b = 0;
  for (uint32_t e : ends) pieces.emplace_back(s.substr(cps.offset[b], cps.offset[e] - cps.offset[b])), b = e;
  return pieces;
}

TEST(PreTokenizer, Gpt2Splits) {
  using V = std::vector<std::string>;
  auto g = pretok::Pattern::kGpt2;
  EXPECT_EQ(split_gpt2("Hello world's  end!!\n\nx", g),
            (V{"Hello", " world", "'s", " ", " end", "!!", "\n", "\n", "x"}));
  EXPECT_EQ(split_gpt2("a   b  ", g), (V{"a", "  ", " b", "  "}));
  EXPECT_EQ(split_gpt2("x2024 \u00e9t\u00e9", g), (V{"x", "2024", " \u00e9t\u00e9"}));
  auto o = pretok::Pattern::kO200k;
  EXPECT_EQ(split_gpt2("HelloWORLD they'RE 12345", o), (V{"Hello", "WORLD", " they'RE", " ", "123", "45"}));
  EXPECT_EQ(split_gpt2("a/b\n\n  c", o), (V{"a", "/b", "\n\n", " ", " c"}));
  EXPECT_EQ(split_gpt2("x.\r\n", o), (V{"x", ".\r\n"}));
  auto c = pretok::Pattern::kCl100k;
  EXPECT_EQ(split_gpt2("I'M 12345\tgo", c), (V{"I", "'M", " ", "123", "45", "\tgo"}));
}

TEST(Tokenizer, StreamDecoderGivesWholeText) {
  REQUIRE_FIXTURES();
  for (std::string path : {test::fixtures_dir() + "/bpe_split_tiny/tokenizer.json", test::fixtures_dir() + "/sp_tiny",
                           std::string("bytes")}) {
    auto tok = load_tokenizer(path);
    for (std::string text : {"emoji: \U0001F642\U0001F44D\U0001F3FD and \u65e5\u672c\u8a9e text", " two  spaces\n\tx",
                             "\u00e9t\u00e9 \U0001F999 end"}) {
      auto ids = tok->encode(text);
      StreamDecoder d(*tok);
      std::string streamed;
      for (int32_t id : ids) {
        std::string piece = d.push(id);
        // Every piece handed out is whole characters.
        EXPECT_EQ(unicode::find_invalid_utf8(piece), std::string::npos) << path;
        streamed += piece;
      }
      streamed += d.flush();
      EXPECT_EQ(streamed, tok->decode(ids)) << path;
    }
  }
}

TEST(Tokenizer, DocumentPiecesEncodeLikeWhole) {
  REQUIRE_FIXTURES();
  std::string doc;
  for (const char* name : {"bpe_split_tiny", "bpe_tiny", "sp_tiny"})
    for (const auto& c : load_cases(test::fixtures_dir() + "/" + name)) doc += c.text + "\n";
  for (std::string path :
       {test::fixtures_dir() + "/bpe_tiny/tokenizer.json", test::fixtures_dir() + "/bpe_split_tiny/tokenizer.json",
        test::fixtures_dir() + "/sp_tiny", std::string("bytes")}) {
    auto tok = load_tokenizer(path);
    auto pieces = tok->document_pieces(doc, 200);
    EXPECT_GT(pieces.size(), 5u) << path;  // all three kinds can cut these texts
    std::vector<int32_t> joined;
    for (auto [b, e] : pieces) tok->encode(std::string_view(doc).substr(b, e - b), joined);
    EXPECT_EQ(joined, tok->encode(doc)) << path;
  }
}

std::string write_file(const std::string& dir, const std::string& name, const std::string& body) {
  std::string p = dir + "/" + name;
  std::ofstream(p, std::ios::binary) << body;
  return p;
}

void expect_error(const std::function<void()>& f, std::initializer_list<std::string> needles) {
  try {
    f();
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

TEST(TokenizerErrors, MissingAndMalformedFiles) {
  std::string dir = test::temp_dir("tok_err");
  expect_error([&] { load_tokenizer(dir + "/nope.json"); }, {"nope.json", "no such"});
  expect_error([&] { load_tokenizer(dir); }, {dir, "neither tokenizer.model nor tokenizer.json"});
  std::string bad_json = write_file(dir, "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {");
  expect_error([&] { load_tokenizer(bad_json); }, {bad_json, "malformed"});
  std::string bad_model = write_file(dir, "tokenizer.model", "this is not a protobuf \x01\x02\x03");
  expect_error([&] { load_tokenizer(bad_model); }, {bad_model, "SentencePiece"});
  expect_error([&] { load_tokenizer(dir); }, {"tokenizer.model"});  // the directory prefers tokenizer.model
}

TEST(TokenizerErrors, UnsupportedPartsAreNamed) {
  REQUIRE_FIXTURES();
  json base = json::parse(read_text_file(test::fixtures_dir() + "/bpe_tiny/tokenizer.json"));
  auto refuse = [&](const std::function<void(json&)>& edit, std::initializer_list<std::string> needles) {
    json j = base;
    edit(j);
    expect_error([&] { parse_hf_tokenizer(j.dump(), "my/tokenizer.json"); }, needles);
  };
  refuse([](json& j) { j["model"]["type"] = "Unigram"; }, {"my/tokenizer.json", "model", "Unigram"});
  refuse([](json& j) { j["normalizer"] = {{"type", "NFKC"}}; }, {"normalizer", "NFKC"});
  refuse([](json& j) { j["pre_tokenizer"] = {{"type", "Whitespace"}}; }, {"pre_tokenizer", "Whitespace"});
  refuse([](json& j) { j["decoder"] = {{"type", "WordPiece"}}; }, {"decoder", "WordPiece"});
  refuse([](json& j) { j["post_processor"] = {{"type", "BertProcessing"}}; }, {"post_processor", "BertProcessing"});
  refuse([](json& j) { j["model"]["byte_fallback"] = true; }, {"byte_fallback"});
  refuse([](json& j) { j["model"]["merges"][0] = json::array({"Ġ", "nosuchtoken"}); }, {"merges[0]"});
  refuse([](json& j) { j["model"]["vocab"] = 5; }, {"model.vocab"});
  refuse(
      [](json& j) {
        j["pre_tokenizer"] = {{"type", "Sequence"},
                              {"pretokenizers",
                               {{{"type", "Split"}, {"pattern", {{"Regex", "\\w+("}}}, {"behavior", "Isolated"}},
                                {{"type", "ByteLevel"}, {"use_regex", false}}}}};
      },
      {"pre_tokenizer.pretokenizers[0]", "\\w+(", "does not compile"});
  refuse([](json& j) { j["pre_tokenizer"] = nullptr; }, {"ByteLevel"});
}

// A length-delimited protobuf field (appended to a message, it merges into it).
std::string proto_field(int number, const std::string& bytes) {
  std::string out(1, char(number << 3 | 2));
  for (size_t n = bytes.size();; n >>= 7) {
    out += char((n & 0x7F) | (n >= 0x80 ? 0x80 : 0));
    if (n < 0x80) break;
  }
  return out + bytes;
}

// libsentencepiece walks a model's precompiled character maps without bounds checks: a corrupt one
// (in normalizer_spec, used by encode, or denormalizer_spec, used by decode) made it read outside
// the file's memory and crash. It is refused at load now, naming the part.
TEST(TokenizerErrors, SentencePieceCorruptCharsMap) {
  REQUIRE_FIXTURES();
  const std::string base = read_text_file(test::fixtures_dir() + "/sp_tiny/tokenizer.model");
  const std::string dir = test::temp_dir("sp_charsmap");
  const std::string far_trie(
      "\x04\0\0\0"
      "abcd"
      "x\0",
      10);  // one unit whose children lie far outside
  const std::string long_trie(
      "\x40\0\0\0"
      "abcd",
      8);  // a trie larger than the map
  int k = 0;
  for (int spec : {3, 5})
    for (const std::string& map : {far_trie, long_trie}) {
      const std::string path =
          write_file(dir, "bad" + std::to_string(k++) + ".model", base + proto_field(spec, proto_field(2, map)));
      expect_error(
          [&] {
            auto tok = load_tokenizer(path);
            tok->decode(tok->encode("hello world"));
          },
          {path, spec == 3 ? "normalizer_spec.precompiled_charsmap" : "denormalizer_spec.precompiled_charsmap"});
    }
}

// A piece holding a NUL byte: libsentencepiece's unigram trie keys pieces by C string and threw an
// exception of its own (an empty key) that ended the program. Refused at load now.
TEST(TokenizerErrors, SentencePieceNulPiece) {
  REQUIRE_FIXTURES();
  const std::string base = read_text_file(test::fixtures_dir() + "/sp_tiny/tokenizer.model");
  const std::string dir = test::temp_dir("sp_nul");
  const std::string nul_piece = proto_field(1, proto_field(1, std::string(1, '\0')));
  const std::string unigram = proto_field(2, std::string("\x18\x01", 2));  // trainer_spec.model_type = UNIGRAM
  const std::string path = write_file(dir, "nul.model", base + nul_piece + unigram);
  expect_error([&] { load_tokenizer(path); }, {path, "NUL"});
}

// Valid maps pass the checks and work: normalization rules (A->a, B->b, U+FF21->a, U+FB01->fi)
// used by encode, and the same rules used by decode.
TEST(Tokenizer, SentencePieceCharsMapsLoad) {
  const std::string data = std::string(SAMBALM_SOURCE_DIR) + "/tests/data/sentencepiece";
  auto rules = load_tokenizer(data + "/rules.model");
  EXPECT_EQ(rules->encode("\xef\xbc\xa1"
                          "B \xef\xac\x81ne"),
            rules->encode("ab fine"));
  auto denorm = load_tokenizer(data + "/denorm_rules.model");
  EXPECT_EQ(denorm->decode(denorm->encode("AB")), "ab");
}

// Token ids in tokenizer.json size the id tables: sparse ids (a few tokens, one of them with id 5M)
// are refused instead of allocating tables for millions of ids the file does not have.
TEST(TokenizerErrors, SparseVocabularyIds) {
  REQUIRE_FIXTURES();
  json j = json::parse(read_text_file(test::fixtures_dir() + "/bpe_tiny/tokenizer.json"));
  json big = j;
  big["model"]["vocab"]["far"] = 5000000;
  expect_error([&] { parse_hf_tokenizer(big.dump(), "my/tokenizer.json"); }, {"my/tokenizer.json", "5000000"});
  json added = j;
  added["added_tokens"].push_back({{"id", 5000000}, {"content", "<far>"}, {"special", true}});
  expect_error([&] { parse_hf_tokenizer(added.dump(), "my/tokenizer.json"); }, {"my/tokenizer.json", "<far>"});
  // A few unused ids are fine (some tokenizers leave holes).
  json holes = j;
  holes["model"]["vocab"]["near"] = int(holes["model"]["vocab"].size()) + 100;
  EXPECT_EQ(parse_hf_tokenizer(holes.dump(), "my/tokenizer.json")->vocab_size(), int(j["model"]["vocab"].size()) + 101);
}

// Nesting is bounded while parsing: Sequence parts are read recursively, and error messages dump
// parts of the file; 200,000 levels of either overflowed the stack.
TEST(TokenizerErrors, DeepNesting) {
  const std::string model = "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}, \"normalizer\": ";
  const int d = 200000;
  std::string seq;
  for (int i = 0; i < d; ++i) seq += "{\"type\": \"Sequence\", \"normalizers\": [";
  seq += "null";
  for (int i = 0; i < d; ++i) seq += "]}";
  for (const std::string& normalizer : {std::string(d, '[') + std::string(d, ']'), seq})
    expect_error([&] { parse_hf_tokenizer(model + normalizer + "}", "my/tokenizer.json"); },
                 {"my/tokenizer.json", "nested more than 64 levels"});
}

TEST(Tokenizer, TemplateProcessingGivesBosEos) {
  REQUIRE_FIXTURES();
  json j = json::parse(read_text_file(test::fixtures_dir() + "/bpe_tiny/tokenizer.json"));
  json tp = {{"type", "TemplateProcessing"},
             {"single",
              {{{"SpecialToken", {{"id", "<|padding|>"}, {"type_id", 0}}}},
               {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
               {{"SpecialToken", {{"id", "<|endoftext|>"}, {"type_id", 0}}}}}},
             {"pair", json::array()},
             {"special_tokens", json::object()}};
  j["post_processor"] = {{"type", "Sequence"}, {"processors", {{{"type", "ByteLevel"}}, tp}}};
  auto tok = parse_hf_tokenizer(j.dump(), "tp.json");
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 0);
  EXPECT_EQ(tok->encode("hello"), load_tokenizer(test::fixtures_dir() + "/bpe_tiny")->encode("hello"));
}

TEST(TokenizerErrors, DecodeOutOfRange) {
  REQUIRE_FIXTURES();
  for (std::string path : {test::fixtures_dir() + "/bpe_tiny/tokenizer.json", test::fixtures_dir() + "/sp_tiny"}) {
    auto tok = load_tokenizer(path);
    std::vector<int32_t> ids = {5, tok->vocab_size()};
    expect_error([&] { tok->decode(ids); }, {std::to_string(tok->vocab_size())});
    ids = {-1};
    expect_error([&] { tok->decode(ids); }, {"-1"});
  }
}

TEST(Tokenizer, SpecialTokensAndVocab) {
  REQUIRE_FIXTURES();
  auto tok = load_tokenizer(test::fixtures_dir() + "/bpe_split_tiny");
  EXPECT_EQ(tok->kind(), "bpe");
  EXPECT_EQ(tok->vocab_size(), 4000);
  EXPECT_EQ(tok->eos_id(), 0);  // <|endoftext|>
  EXPECT_EQ(tok->token_to_id("<|user|>"), 2);
  EXPECT_TRUE(tok->is_special(4));
  EXPECT_FALSE(tok->is_special(300));
  std::vector<int32_t> ids = tok->encode("<|user|>hi<|end|>");
  EXPECT_EQ(ids.front(), 2);
  EXPECT_EQ(ids.back(), 4);
  EXPECT_EQ(tok->decode(ids, /*skip_special=*/true), "hi");
}

}  // namespace
}  // namespace sambalm
