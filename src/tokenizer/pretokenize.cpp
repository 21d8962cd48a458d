// Hand-written matchers for the split regexes of pretokenize.h. Each match_* returns the end of the
// match at position i (always > i: every character is matched by some alternative).
#include "tokenizer/pretokenize.h"

#include <array>

#include "tokenizer/unicode.h"

namespace sambalm::pretok {
namespace {

// Per-character classes.
enum : uint8_t {
  kL = 1,      // \p{L}
  kN = 2,      // \p{N}
  kWs = 4,     // \s
  kUp = 8,     // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]
  kLow = 16,   // [\p{Ll}\p{Lm}\p{Lo}\p{M}]
  kCrLf = 32,  // [\r\n]
};

uint8_t classify(uint32_t cp) {
  uint8_t c = 0;
  if (cp == '\r' || cp == '\n') c |= kCrLf;
  if (unicode::is_whitespace(cp)) c |= kWs;
  if (cp > unicode::kMaxCodePoint) return c;
  switch (unicode::category(cp)) {
    case unicode::Lu:
    case unicode::Lt:
      return c | kL | kUp;
    case unicode::Ll:
      return c | kL | kLow;
    case unicode::Lm:
    case unicode::Lo:
      return c | kL | kUp | kLow;
    case unicode::Mn:
    case unicode::Mc:
    case unicode::Me:
      return c | kUp | kLow;
    case unicode::Nd:
    case unicode::Nl:
    case unicode::No:
      return c | kN;
    default:
      return c;
  }
}

const std::array<uint8_t, 128>& ascii_classes() {
  static const std::array<uint8_t, 128> t = [] {
    std::array<uint8_t, 128> a{};
    for (uint32_t c = 0; c < 128; ++c) a[c] = classify(c);
    return a;
  }();
  return t;
}

constexpr const char* kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kCl100kRegex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kO200kRegex =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|)"
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|)"
    R"(\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct Matcher {
  const uint32_t* c;
  const uint8_t* f;
  uint32_t n;

  bool has(uint32_t i, uint8_t cls) const { return i < n && (f[i] & cls); }
  bool other(uint32_t i) const { return i < n && !(f[i] & (kWs | kL | kN)); }  // [^\s\p{L}\p{N}]
  uint32_t run(uint32_t i, uint8_t cls) const {
    while (i < n && (f[i] & cls)) ++i;
    return i;
  }
  uint32_t run_other(uint32_t i) const {
    while (other(i)) ++i;
    return i;
  }
  // Simple case folding as (?i) applies it to these letters: ASCII, and U+017F LATIN SMALL LETTER
  // LONG S, which folds to 's' (Oniguruma, Rust's regex and PCRE2 all match it).
  static uint32_t lower(uint32_t ch) { return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch == 0x17F ? 's' : ch; }
  // Length of 's|'t|'re|'ve|'m|'ll|'d at i (0 if none), case-insensitive when `fold`.
  uint32_t contraction(uint32_t i, bool fold) const {
    if (i + 1 >= n || c[i] != '\'') return 0;
    uint32_t a = fold ? lower(c[i + 1]) : c[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 >= n) return 0;
    uint32_t b = fold ? lower(c[i + 2]) : c[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
  }
  // \s+(?!\S)|\s+ at a whitespace character i: the run, less its last character when a
  // non-space follows and the run is longer than one.
  uint32_t whitespace_tail(uint32_t i) const {
    uint32_t k = run(i, kWs);
    if (k == n || k - i == 1) return k;
    return k - 1;
  }
  // \s*[\r\n]+ at i: up to the last CR/LF of the whitespace run, or i when it has none.
  uint32_t whitespace_newlines(uint32_t i) const {
    uint32_t k = run(i, kWs), last = i;
    for (uint32_t m = i; m < k; ++m)
      if (f[m] & kCrLf) last = m + 1;
    return last;
  }

  uint32_t gpt2(uint32_t i) const {
    if (uint32_t k = contraction(i, false)) return i + k;
    uint32_t j = c[i] == ' ' ? i + 1 : i;
    if (has(j, kL)) return run(j, kL);
    if (has(j, kN)) return run(j, kN);
    if (other(j)) return run_other(j);
    return whitespace_tail(i);
  }

  uint32_t cl100k(uint32_t i, uint32_t max_digits) const {
    if (uint32_t k = contraction(i, true)) return i + k;
    if (!(f[i] & (kCrLf | kL | kN)) && has(i + 1, kL)) return run(i + 1, kL);
    if (f[i] & kL) return run(i, kL);
    if (f[i] & kN) {
      uint32_t k = i;
      while (k < n && k - i < max_digits && (f[k] & kN)) ++k;
      return k;
    }
    uint32_t j = c[i] == ' ' ? i + 1 : i;
    if (other(j)) return run(run_other(j), kCrLf);
    if (uint32_t k = whitespace_newlines(i); k > i) return k;
    return whitespace_tail(i);
  }

  // [\p{Lu}...]*[\p{Ll}...]+ from s with backtracking of the first star, then the optional
  // contraction; returns 0 when it cannot match.
  uint32_t o200k_lower_word(uint32_t s) const {
    uint32_t u = run(s, kUp);
    for (uint32_t m = u + 1; m-- > s;) {
      if (has(m, kLow)) {
        uint32_t e = run(m, kLow);
        return e + contraction(e, true);
      }
    }
    return 0;
  }
  uint32_t o200k_upper_word(uint32_t s) const {
    if (!has(s, kUp)) return 0;
    uint32_t e = run(run(s, kUp), kLow);
    return e + contraction(e, true);
  }
  uint32_t o200k(uint32_t i) const {
    const bool prefix = !(f[i] & (kCrLf | kL | kN)) && i + 1 < n;
    if (prefix)
      if (uint32_t e = o200k_lower_word(i + 1)) return e;
    if (uint32_t e = o200k_lower_word(i)) return e;
    if (prefix)
      if (uint32_t e = o200k_upper_word(i + 1)) return e;
    if (uint32_t e = o200k_upper_word(i)) return e;
    if (f[i] & kN) {
      uint32_t k = i;
      while (k < n && k - i < 3 && (f[k] & kN)) ++k;
      return k;
    }
    uint32_t j = c[i] == ' ' ? i + 1 : i;
    if (other(j)) {
      uint32_t k = run_other(j);
      while (k < n && (c[k] == '\r' || c[k] == '\n' || c[k] == '/')) ++k;
      return k;
    }
    if (uint32_t k = whitespace_newlines(i); k > i) return k;
    return whitespace_tail(i);
  }
};

}  // namespace

std::optional<Pattern> pattern_from_regex(std::string_view regex) {
  for (Pattern p : {Pattern::kGpt2, Pattern::kCl100k, Pattern::kQwen2, Pattern::kO200k})
    if (regex == pattern_regex(p)) return p;
  return std::nullopt;
}

const char* pattern_regex(Pattern p) {
  switch (p) {
    case Pattern::kGpt2:
      return kGpt2Regex;
    case Pattern::kCl100k:
      return kCl100kRegex;
    case Pattern::kQwen2:
      return kQwen2Regex;
    case Pattern::kO200k:
      return kO200kRegex;
  }
  return "";
}

void CodePoints::assign(std::string_view text) {
  cp.clear();
  cls.clear();
  offset.clear();
  const auto& ascii = ascii_classes();
  size_t i = 0;
  while (i < text.size()) {
    offset.push_back(uint32_t(i));
    uint8_t b = uint8_t(text[i]);
    if (b < 0x80) {
      cp.push_back(b);
      cls.push_back(ascii[b]);
      ++i;
      continue;
    }
    uint32_t ch = unicode::decode_lenient(text, i);
    cp.push_back(ch);
    cls.push_back(classify(ch));
  }
  offset.push_back(uint32_t(text.size()));
}

void split(Pattern p, const CodePoints& t, uint32_t begin, uint32_t end, std::vector<uint32_t>& ends) {
  // Matching sees only [begin, end): lookarounds and runs stop at the piece's end, as a regex
  // applied to that piece alone would.
  Matcher m{t.cp.data() + begin, t.cls.data() + begin, end - begin};
  uint32_t i = 0;
  while (i < m.n) {
    uint32_t e;
    switch (p) {
      case Pattern::kGpt2:
        e = m.gpt2(i);
        break;
      case Pattern::kCl100k:
        e = m.cl100k(i, 3);
        break;
      case Pattern::kQwen2:
        e = m.cl100k(i, 1);
        break;
      default:
        e = m.o200k(i);
        break;
    }
    if (e <= i) e = i + 1;  // unreachable with these patterns; never loop forever
    ends.push_back(begin + e);
    i = e;
  }
}

}  // namespace sambalm::pretok
