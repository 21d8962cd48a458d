// The general split path (PCRE2, src/tokenizer/split_regex.h) against the hand-written matchers of
// the known patterns (src/tokenizer/pretokenize.h), on the fixtures' strings and random Unicode text;
// tokenizers whose split regex only PCRE2 runs, against the fixture ids; bad regexes and limits.
#include <functional>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "io/file.h"
#include "testing.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/split_regex.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace sambalm {
namespace {

using json = nlohmann::json;
constexpr pretok::Pattern kPatterns[] = {pretok::Pattern::kGpt2, pretok::Pattern::kCl100k, pretok::Pattern::kQwen2,
                                         pretok::Pattern::kO200k};
const char* name_of(pretok::Pattern p) {
  return p == pretok::Pattern::kGpt2     ? "gpt2"
         : p == pretok::Pattern::kCl100k ? "cl100k"
         : p == pretok::Pattern::kQwen2  ? "qwen2"
                                         : "o200k";
}

std::vector<std::string> pieces_of(std::string_view s, const pretok::CodePoints& cps,
                                   const std::vector<uint32_t>& ends) {
  std::vector<std::string> pieces;
  uint32_t b = 0;
  for (uint32_t e : ends) pieces.emplace_back(s.substr(cps.offset[b], cps.offset[e] - cps.offset[b])), b = e;
  return pieces;
}

std::vector<std::string> split_hand(std::string_view s, pretok::Pattern p) {
  pretok::CodePoints cps;
  cps.assign(s);
  std::vector<uint32_t> ends;
  pretok::split(p, cps, 0, uint32_t(cps.cp.size()), ends);
  return pieces_of(s, cps, ends);
}

std::vector<std::string> split_regex(std::string_view s, const pretok::SplitRegex& re) {
  pretok::CodePoints cps;
  cps.assign(s);
  std::vector<uint32_t> ends;
  re.split(cps, 0, uint32_t(cps.cp.size()), ends);
  return pieces_of(s, cps, ends);
}

std::vector<std::string> fixture_texts() {
  std::vector<std::string> texts;
  for (const char* name : {"bpe_split_tiny", "bpe_tiny", "sp_tiny"}) {
    json j = json::parse(read_text_file(test::fixtures_dir() + "/" + name + "/encodings.json"));
    for (const auto& c : j) texts.push_back(c["text"].get<std::string>());
  }
  return texts;
}

TEST(SplitRegex, SplitsLikeEachHandWrittenPatternOnFixtureStrings) {
  REQUIRE_FIXTURES();
  auto texts = fixture_texts();
  ASSERT_GT(texts.size(), 10u);
  for (pretok::Pattern p : kPatterns) {
    pretok::SplitRegex re(pretok::pattern_regex(p), "test");
    for (const auto& t : texts) EXPECT_EQ(split_regex(t, re), split_hand(t, p)) << name_of(p) << ": " << json(t).dump();
  }
}

// Random text from pieces that exercise every branch of the patterns: letters of each case class
// (Lu, Ll, Lt, Lm, Lo), marks (Mn, Mc, Me), numbers (Nd, Nl, No) in runs, contractions in both cases
// (and with U+017F, which (?i) folds to 's'), punctuation, symbols, each kind of whitespace (NEL,
// NBSP, U+180E which is not White_Space), CR/LF runs, and bytes of invalid UTF-8.
std::string random_text(std::mt19937& rng, size_t n) {
  static const std::vector<std::string> parts = {"a",
                                                 "b",
                                                 "Z",
                                                 "Q",
                                                 "\u00e9",
                                                 "\u00c9",
                                                 "\u03a9",
                                                 "\u03c9",
                                                 "\u0416",
                                                 "\u0436",
                                                 "\u01c5",
                                                 "\u02b0",
                                                 "\u65e5",
                                                 "\u0e01",
                                                 "\u0301",
                                                 "\u0903",
                                                 "\u20dd",
                                                 "0",
                                                 "7",
                                                 "42",
                                                 "12345",
                                                 "\u0661",
                                                 "\u2160",
                                                 "\u00bd",
                                                 "\U0001D7D8",
                                                 "'s",
                                                 "'S",
                                                 "'t",
                                                 "'re",
                                                 "'RE",
                                                 "'ve",
                                                 "'m",
                                                 "'ll",
                                                 "'LL",
                                                 "'d",
                                                 "'",
                                                 "'\u017f",
                                                 "'x",
                                                 ".",
                                                 ",",
                                                 "!!",
                                                 "/",
                                                 "?",
                                                 "\"",
                                                 "-",
                                                 "_",
                                                 "$",
                                                 "+",
                                                 "\U0001F642",
                                                 "\u2014",
                                                 " ",
                                                 " ",
                                                 "  ",
                                                 "\t",
                                                 "\n",
                                                 "\r\n",
                                                 "\n\n",
                                                 "\r",
                                                 "\u00a0",
                                                 "\u0085",
                                                 "\u3000",
                                                 "\u2028",
                                                 "\u180e",
                                                 "\u200b",
                                                 "\x80",
                                                 "\xff",
                                                 "\xe6\x97",
                                                 "HeLLo",
                                                 "ABCdef",
                                                 "xyz",
                                                 "\u00c9T\u00c9",
                                                 "e\u0301t\u00e9"};
  std::string s;
  while (s.size() < n) s += parts[rng() % parts.size()];
  return s;
}

TEST(SplitRegex, SplitsLikeEachHandWrittenPatternOnRandomUnicode) {
  std::mt19937 rng(18);
  for (pretok::Pattern p : kPatterns) {
    pretok::SplitRegex re(pretok::pattern_regex(p), "test");
    int mismatches = 0;
    for (int i = 0; i < 2000 && mismatches < 5; ++i) {
      std::string t = random_text(rng, rng() % 60);
      auto a = split_regex(t, re), b = split_hand(t, p);
      if (a != b) ++mismatches;
      EXPECT_EQ(a, b) << name_of(p) << ": " << json(t).dump(-1, ' ', false, json::error_handler_t::replace);
    }
  }
}

TEST(SplitRegex, IsolatedKeepsTextBetweenMatchesAndSkipsEmptyMatches) {
  using V = std::vector<std::string>;
  EXPECT_EQ(split_regex("ab12cd345", pretok::SplitRegex("\\d+", "t")), (V{"ab", "12", "cd", "345"}));
  EXPECT_EQ(split_regex("abxxc", pretok::SplitRegex("x*", "t")), (V{"ab", "xx", "c"}));
  EXPECT_EQ(split_regex("h\u00e9llo w\u00f6rld!!", pretok::SplitRegex("\\w+|\\s+|[^\\w\\s]+", "t")),
            (V{"h\u00e9llo", " ", "w\u00f6rld", "!!"}));
  // Unicode properties beyond the known patterns' classes.
  EXPECT_EQ(split_regex("abc\u0416\u0436\u65e5", pretok::SplitRegex("\\p{Cyrillic}+|\\p{Han}", "t")),
            (V{"abc", "\u0416\u0436", "\u65e5"}));
  EXPECT_EQ(split_regex("", pretok::SplitRegex("\\d+", "t")), V{});
}

// The tokenizer.json of a fixture with each split step forced onto PCRE2.
std::unique_ptr<Tokenizer> general_path(const std::string& name) {
  HfTokenizerOptions o;
  o.regex_engine_only = true;
  return load_hf_tokenizer(test::fixtures_dir() + "/" + name + "/tokenizer.json", o);
}

void expect_fixture_ids(const Tokenizer& tok, const std::string& name) {
  json j = json::parse(read_text_file(test::fixtures_dir() + "/" + name + "/encodings.json"));
  ASSERT_FALSE(j.empty());
  for (const auto& c : j) {
    std::string text = c["text"].get<std::string>();
    auto ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tok.encode(text), ids) << name << ": " << json(text).dump();
    EXPECT_EQ(tok.decode(ids), text) << name;
  }
}

TEST(SplitRegex, FixtureIdsThroughTheGeneralPath) {
  REQUIRE_FIXTURES();
  expect_fixture_ids(*general_path("bpe_split_tiny"), "bpe_split_tiny");  // Split(o200k)
  expect_fixture_ids(*general_path("bpe_tiny"), "bpe_tiny");              // ByteLevel(use_regex): GPT-2
}

TEST(SplitRegex, RawBytesRoundTripThroughTheGeneralPath) {
  REQUIRE_FIXTURES();
  auto tok = general_path("bpe_split_tiny");
  auto fast = load_tokenizer(test::fixtures_dir() + "/bpe_split_tiny/tokenizer.json");
  std::mt19937 rng(3);
  for (int i = 0; i < 300; ++i) {
    std::string s = random_text(rng, rng() % 120);
    std::vector<int32_t> ids, fast_ids;
    dynamic_cast<HfTokenizer&>(*tok).encode_bytes(s, ids);
    dynamic_cast<HfTokenizer&>(*fast).encode_bytes(s, fast_ids);
    EXPECT_EQ(tok->decode(ids), s);
    EXPECT_EQ(ids, fast_ids);
  }
}

// A Phi-4-mini-style tokenizer.json whose split regex is the o200k one spelled differently (a group
// around it, \d for \p{N}'s ASCII digits would change it, so only a no-op wrap): nothing matches it
// by hand, PCRE2 runs it, and the ids are still HF's.
TEST(SplitRegex, UnknownSpellingOfO200kGivesFixtureIds) {
  REQUIRE_FIXTURES();
  json j = json::parse(read_text_file(test::fixtures_dir() + "/bpe_split_tiny/tokenizer.json"));
  json& split = j["pre_tokenizer"]["pretokenizers"][0];
  ASSERT_EQ(split["type"], "Split");
  std::string re = split["pattern"]["Regex"].get<std::string>();
  ASSERT_TRUE(pretok::pattern_from_regex(re).has_value());
  split["pattern"]["Regex"] = "(?:" + re + ")";
  ASSERT_FALSE(pretok::pattern_from_regex("(?:" + re + ")").has_value());
  auto tok = parse_hf_tokenizer(j.dump(), "wrapped/tokenizer.json");
  expect_fixture_ids(*tok, "bpe_split_tiny");
  // A regex that may join across '\n' must not let documents be cut there.
  std::string doc(3000, 'a');
  for (size_t i = 50; i < doc.size(); i += 50) doc[i] = '\n';
  EXPECT_EQ(tok->document_pieces(doc, 200).size(), 1u);
}

void expect_error(const std::function<void()>& f, std::initializer_list<std::string> needles) {
  try {
    f();
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

json with_split(const json& pattern, const std::string& behavior = "Isolated", bool invert = false) {
  json j = json::parse(read_text_file(test::fixtures_dir() + "/bpe_split_tiny/tokenizer.json"));
  json& split = j["pre_tokenizer"]["pretokenizers"][0];
  split["pattern"] = pattern;
  split["behavior"] = behavior;
  split["invert"] = invert;
  return j;
}

TEST(SplitRegex, BadRegexesAndUnsupportedSplitsAreNamed) {
  REQUIRE_FIXTURES();
  auto parse = [](const json& j) { parse_hf_tokenizer(j.dump(), "my/tokenizer.json"); };
  const std::string part = "pre_tokenizer.pretokenizers[0]";
  expect_error([&] { parse(with_split({{"Regex", "(ab"}})); }, {"my/tokenizer.json", part, "(ab", "does not compile"});
  expect_error([&] { parse(with_split({{"Regex", "\\p{NoSuchProperty}"}})); }, {part, "does not compile"});
  expect_error([&] { parse(with_split({{"Regex", "a{2,1}"}})); }, {part, "does not compile"});
  expect_error([&] { parse(with_split({{"Regex", "\\C"}})); }, {part, "does not compile"});
  expect_error([&] { parse(with_split({{"Regex", 5}})); }, {part, "Regex"});
  expect_error([&] { parse(with_split({{"String", " "}})); }, {part, "only a Regex pattern"});
  expect_error([&] { parse(with_split({{"Regex", "\\d+"}}, "Removed")); }, {part, "Removed"});
  expect_error([&] { parse(with_split({{"Regex", "\\d+"}}, "Isolated", true)); }, {part, "invert"});
  // A regex PCRE2 accepts is not refused.
  EXPECT_NO_THROW(parse(with_split({{"Regex", "\\w+|[^\\w]+"}})));
}

TEST(SplitRegex, BacktrackingLimitIsAnErrorNotAHang) {
  REQUIRE_FIXTURES();
  auto tok = parse_hf_tokenizer(with_split({{"Regex", "(a+)+$"}}).dump(), "slow/tokenizer.json");
  EXPECT_EQ(tok->encode("aaab").size(), tok->encode("aaab").size());  // short text: fine
  expect_error([&] { tok->encode(std::string(40, 'a') + "b"); },
               {"slow/tokenizer.json", "pre_tokenizer.pretokenizers[0]", "(a+)+$", "limit"});
}

}  // namespace
}  // namespace sambalm
