// The native SentencePiece-BPE encoder (tokenizer/sentencepiece_bpe.h) against libsentencepiece,
// the oracle: the sp_tiny fixture's texts and ids, 10,000 random strings, and small BPE models
// trained here with libsentencepiece's trainer to cover the normalizer options and symbol types
// sp_tiny does not use (remove_extra_whitespaces, no dummy prefix, no byte fallback, user-defined
// symbols).
#include <gtest/gtest.h>
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/file.h"
#include "testing.h"
#include "tokenizer/sentencepiece_bpe.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace sambalm {
namespace {

using json = nlohmann::json;
using unicode::append_utf8;
using unicode::find_invalid_utf8;

// Random text: ASCII words and punctuation, Cyrillic, CJK, Arabic, emoji, runs of spaces, tabs and
// newlines (also leading and trailing), random valid code points, and long words that no piece
// covers (byte fallback).
std::string random_text(std::mt19937& rng) {
  static const char* kWords[] = {"the",    "of",     "and",    "to",    "in",    "is",    "that",  "for",      "it",
                                 "as",     "was",    "with",   "be",    "by",    "on",    "not",   "he",       "I",
                                 "this",   "are",    "or",     "his",   "from",  "at",    "which", "but",      "have",
                                 "an",     "had",    "they",   "you",   "were",  "their", "one",   "function", "return",
                                 "Python", "buffer", "member", "::",    "->",    "``",    "...",   "2024",     "3.14",
                                 "x=1;",   "(a, b)", "Hello",  "WORLD", "naïve", "café",  "über"};
  auto pick = [&](uint32_t n) { return std::uniform_int_distribution<uint32_t>(0, n - 1)(rng); };
  auto range = [&](uint32_t lo, uint32_t hi) { return std::uniform_int_distribution<uint32_t>(lo, hi)(rng); };
  std::string s;
  if (pick(4) == 0) s.append(pick(4), ' ');
  const uint32_t parts = 1 + pick(12);
  for (uint32_t p = 0; p < parts; ++p) {
    switch (pick(12)) {
      case 0:
      case 1:
      case 2:
      case 3:
        s += kWords[pick(std::size(kWords))];
        break;
      case 4:
        for (uint32_t i = 1 + pick(8); i--;) append_utf8(s, range(0x410, 0x44F));
        break;  // Cyrillic
      case 5:
        for (uint32_t i = 1 + pick(6); i--;) append_utf8(s, range(0x4E00, 0x9FFF));
        break;  // CJK
      case 6:
        for (uint32_t i = 1 + pick(6); i--;) append_utf8(s, range(0x621, 0x64A));
        break;  // Arabic
      case 7:
        for (uint32_t i = 1 + pick(3); i--;) append_utf8(s, range(0x1F300, 0x1FAFF));
        break;   // emoji
      case 8: {  // any valid code point but NUL and surrogates
        uint32_t cp;
        do cp = range(1, 0x10FFFF);
        while (cp >= 0xD800 && cp < 0xE000);
        append_utf8(s, cp);
        break;
      }
      case 9:
        s.append(1 + pick(6), " \t\n"[pick(3)]);
        break;
      case 10:  // a long word of letters (and now and then some CJK)
        for (uint32_t i = 20 + pick(200); i--;)
          pick(10) ? s += char('a' + pick(26)) : (append_utf8(s, range(0x4E00, 0x9FFF)), s);
        break;
      default:
        s += ",.;:!?()[]{}<>\"'-_/\\|@#$%^&*+=~`"[pick(33)];
        break;
    }
    if (pick(3)) s.append(pick(5) == 0 ? 2 + pick(4) : 1, ' ');
  }
  return s;
}

struct Pair {
  sentencepiece::SentencePieceProcessor sp;
  std::unique_ptr<SentencePieceBpe> native;
};

std::unique_ptr<Pair> load(const std::string& path) {
  auto p = std::make_unique<Pair>();
  const std::string bytes = read_text_file(path);
  EXPECT_TRUE(p->sp.LoadFromSerializedProto(bytes).ok()) << path;
  std::string why;
  p->native = SentencePieceBpe::create(read_sentencepiece_model(bytes, path), &why);
  EXPECT_TRUE(p->native) << path << ": " << why;
  return p;
}

std::vector<int32_t> oracle(const sentencepiece::SentencePieceProcessor& sp, const std::string& text) {
  std::vector<int> ids;
  EXPECT_TRUE(sp.Encode(text, &ids).ok());
  return {ids.begin(), ids.end()};
}

void check_random(const Pair& p, int n, uint32_t seed) {
  std::mt19937 rng(seed);
  int failures = 0;
  for (int i = 0; i < n && failures < 5; ++i) {
    const std::string text = random_text(rng);
    std::vector<int32_t> got;
    p.native->encode(text, got);
    const auto want = oracle(p.sp, text);
    if (got != want) ++failures;
    EXPECT_EQ(got, want) << "string " << i << ": " << json(text).dump();
  }
}

TEST(SpmNative, SpTinyFixture) {
  REQUIRE_FIXTURES();
  const std::string dir = test::fixtures_dir() + "/sp_tiny";
  auto p = load(dir + "/tokenizer.model");
  ASSERT_TRUE(p->native);
  json cases = json::parse(read_text_file(dir + "/encodings.json"));
  ASSERT_FALSE(cases.empty());
  auto tok = load_tokenizer(dir);
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    const auto want = c["ids"].get<std::vector<int32_t>>();
    std::vector<int32_t> got;
    p->native->encode(text, got);
    EXPECT_EQ(got, want) << json(text).dump();
    EXPECT_EQ(oracle(p->sp, text), want) << json(text).dump();
    EXPECT_EQ(tok->encode(text), want) << json(text).dump();  // the tokenizer encodes natively
  }
}

TEST(SpmNative, SpTinyRandomStrings) {
  REQUIRE_FIXTURES();
  auto p = load(test::fixtures_dir() + "/sp_tiny/tokenizer.model");
  ASSERT_TRUE(p->native);
  check_random(*p, 10000, 1234);
}

TEST(SpmNative, EdgeStrings) {
  REQUIRE_FIXTURES();
  auto p = load(test::fixtures_dir() + "/sp_tiny/tokenizer.model");
  ASSERT_TRUE(p->native);
  for (std::string text :
       std::vector<std::string>{"", " ", "   ", "a", " a", "a ", "  a  b  ", "\t", "\n\n", "▁", "▁▁a", "<s>", "</s>",
                                "<unk>", "<0x41>", "\xef\xbf\xbd", std::string("a\0b", 3), "1234567890"}) {
    std::vector<int32_t> got;
    p->native->encode(text, got);
    EXPECT_EQ(got, oracle(p->sp, text)) << json(text).dump();
  }
}

// Trains a small BPE model with libsentencepiece's trainer on random text (and the sp_tiny texts)
// and returns its file.
std::string train_model(const std::string& name, std::unordered_map<std::string, std::string> options) {
  const std::string dir = test::temp_dir("spm_native_" + name);
  std::string corpus;
  std::mt19937 rng(99);
  // Random text, its characters outside ASCII, Cyrillic and a few CJK ones dropped: the trainer
  // needs most characters in the vocabulary (character_coverage >= 0.98).
  for (int i = 0; i < 3000; ++i) {
    const std::string t = random_text(rng);
    for (size_t k = 0; k < t.size();) {
      const size_t at = k;
      uint32_t cp = 0;
      unicode::decode_utf8(t, k, cp);
      if (cp < 0x80 || (cp >= 0x410 && cp < 0x450) || (cp >= 0x4E00 && cp < 0x4E20) || rng() % 50 == 0)
        corpus.append(t, at, k - at);
    }
    corpus += "\n";
  }
  if (test::fixtures_available())
    for (const auto& c : json::parse(read_text_file(test::fixtures_dir() + "/sp_tiny/encodings.json")))
      corpus += c["text"].get<std::string>() + "\n";
  write_file_atomic(dir + "/corpus.txt", corpus);
  options["input"] = dir + "/corpus.txt";
  options["model_prefix"] = dir + "/m";
  options["model_type"] = "bpe";
  options["minloglevel"] = "2";
  options.emplace("vocab_size", "1500");
  options.emplace("character_coverage", "0.9995");
  auto status = sentencepiece::SentencePieceTrainer::Train(options);
  if (!status.ok()) throw std::runtime_error("training failed: " + status.ToString());
  return dir + "/m.model";
}

// Random strings with the user-defined symbols inside now and then.
void check_random_with_symbols(const Pair& p, int n, uint32_t seed, const std::vector<std::string>& symbols) {
  std::mt19937 rng(seed);
  int failures = 0;
  for (int i = 0; i < n && failures < 5; ++i) {
    std::string text = random_text(rng);
    for (int k = int(rng() % 3); k-- > 0 && !symbols.empty();)
      text.insert(rng() % (text.size() + 1), symbols[rng() % symbols.size()]);
    if (find_invalid_utf8(text) != std::string::npos) continue;  // an insertion inside a character
    std::vector<int32_t> got;
    p.native->encode(text, got);
    const auto want = oracle(p.sp, text);
    if (got != want) ++failures;
    EXPECT_EQ(got, want) << "string " << i << ": " << json(text).dump();
  }
}

// remove_extra_whitespaces (the trainer's default), no byte fallback (unknown characters -> unk),
// user-defined symbols (one with a space), a control symbol.
TEST(SpmNative, TrainedNoByteFallbackUserDefined) {
  const std::string path = train_model("a", {{"character_coverage", "0.98"},
                                             {"normalization_rule_name", "identity"},
                                             {"user_defined_symbols", "<tag>,@@,foo bar,\xe2\x96\x81x"},
                                             {"control_symbols", "<ctl>"}});
  auto p = load(path);
  ASSERT_TRUE(p->native);
  check_random_with_symbols(*p, 3000, 7, {"<tag>", "@@", "foo bar", "<ctl>", " x", "▁x", "  "});
}

// No dummy prefix, whitespace kept as is, byte fallback, digits split, user-defined symbols.
TEST(SpmNative, TrainedNoDummyPrefixKeepWhitespace) {
  const std::string path = train_model("b", {{"normalization_rule_name", "identity"},
                                             {"add_dummy_prefix", "false"},
                                             {"remove_extra_whitespaces", "false"},
                                             {"byte_fallback", "true"},
                                             {"split_digits", "true"},
                                             {"allow_whitespace_only_pieces", "true"},
                                             {"user_defined_symbols", "<|end|>,\xe2\x96\x81\xe2\x96\x81"}});
  auto p = load(path);
  ASSERT_TRUE(p->native);
  check_random_with_symbols(*p, 3000, 8, {"<|end|>", "  ", "\t"});
}

// A model file with NORMAL pieces appended (a repeated field may follow the others in protobuf).
std::string with_pieces(std::string model, const std::vector<std::pair<std::string, float>>& pieces) {
  for (const auto& [piece, score] : pieces) {
    std::string m;
    m += char(0x0A), m += char(piece.size()), m += piece;                 // piece (field 1, short)
    m += char(0x15), m.append(reinterpret_cast<const char*>(&score), 4);  // score (field 2, fixed32)
    m += char(0x18), m += char(1);                                        // type NORMAL (field 3)
    model += char(0x0A), model += char(m.size()), model += m;
  }
  return model;
}

// Pieces across a word start ("e▁", "e▁t", "s▁a", made by hand: trainers keep pieces inside words): the
// text can then no longer be encoded word by word, which the encoder sees in the vocabulary.
TEST(SpmNative, PiecesAcrossWords) {
  REQUIRE_FIXTURES();
  const std::string path = test::temp_dir("spm_native_across") + "/m.model";
  write_file_atomic(path, with_pieces(read_text_file(test::fixtures_dir() + "/sp_tiny/tokenizer.model"),
                                      {{"e▁", 0.0f}, {"e▁t", 0.0f}, {"s▁a", -1.0f}}));
  auto p = load(path);
  ASSERT_TRUE(p->native);
  ASSERT_EQ(p->sp.GetPieceSize(), 2003);
  std::vector<int> ids;
  ASSERT_TRUE(p->sp.Encode("the time has come", &ids).ok());
  EXPECT_NE(std::find(ids.begin(), ids.end(), 2001), ids.end()) << "the piece e▁t is not used";
  check_random(*p, 3000, 9);
}

// A model with a character map (nmt_nfkc) is not covered: the tokenizer keeps libsentencepiece.
TEST(SpmNative, CharacterMapFallsBack) {
  const std::string path = train_model("c", {{"normalization_rule_name", "nmt_nfkc"}});
  const std::string bytes = read_text_file(path);
  std::string why;
  EXPECT_FALSE(SentencePieceBpe::create(read_sentencepiece_model(bytes, path), &why));
  EXPECT_NE(why.find("character map"), std::string::npos) << why;
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.LoadFromSerializedProto(bytes).ok());
  auto tok = load_tokenizer(path);
  std::mt19937 rng(5);
  for (int i = 0; i < 200; ++i) {
    const std::string text = random_text(rng) + " ｆｕｌｌ ｗｉｄｔｈ ①";
    EXPECT_EQ(tok->encode(text), oracle(sp, text)) << json(text).dump();
  }
}

}  // namespace
}  // namespace sambalm
