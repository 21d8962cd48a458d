// Unicode lookups and NFC. Lookups: a direct table for the Basic Multilingual Plane, built once from
// the generated run tables, and a binary search over the runs above it.
#include "tokenizer/unicode.h"

#include <algorithm>
#include <array>
#include <memory>
#include <unordered_map>
#include <vector>

namespace sambalm::unicode {

namespace data {
extern const char kUnicodeVersion[];
extern const uint32_t kCategoryRuns[];
extern const size_t kCategoryRunsCount;
extern const uint32_t kCombiningRuns[];
extern const size_t kCombiningRunsCount;
extern const uint32_t kNfcQcRuns[];
extern const size_t kNfcQcRunsCount;
extern const uint32_t kDecompIndex[];
extern const size_t kDecompIndexCount;
extern const uint32_t kDecompPool[];
extern const size_t kDecompPoolCount;
extern const uint32_t kCompositions[];
extern const size_t kCompositionsCount;
}  // namespace data

namespace {

constexpr uint32_t kBmp = 0x10000;
enum Qc : uint8_t { kQcYes = 0, kQcMaybe = 1, kQcNo = 2 };

// Value of the run containing cp in a table of (start << shift) | value entries.
uint32_t run_lookup(const uint32_t* runs, size_t count, int shift, uint32_t cp) {
  const uint32_t key = (cp << shift) | ((1u << shift) - 1);
  const uint32_t* it = std::upper_bound(runs, runs + count, key);
  return it == runs ? 0 : (*(it - 1) & ((1u << shift) - 1));
}

struct Tables {
  std::array<uint8_t, kBmp> category{}, ccc{}, qc{};
  // Decomposition: code point -> (offset, length) into kDecompPool.
  std::unordered_map<uint32_t, std::pair<uint32_t, uint32_t>> decomp;
  // Composition: (first << 21 | second) -> composite.
  std::unordered_map<uint64_t, uint32_t> compose;

  Tables() {
    auto fill = [](std::array<uint8_t, kBmp>& t, const uint32_t* runs, size_t count, int shift) {
      for (size_t i = 0; i < count; ++i) {
        uint32_t start = runs[i] >> shift, end = i + 1 < count ? runs[i + 1] >> shift : kBmp;
        if (start >= kBmp) break;
        std::fill(t.begin() + start, t.begin() + std::min(end, kBmp), uint8_t(runs[i] & ((1u << shift) - 1)));
      }
    };
    fill(category, data::kCategoryRuns, data::kCategoryRunsCount, 5);
    fill(ccc, data::kCombiningRuns, data::kCombiningRunsCount, 8);
    fill(qc, data::kNfcQcRuns, data::kNfcQcRunsCount, 2);
    for (size_t i = 0; i + 2 < data::kDecompIndexCount; i += 3)
      decomp.emplace(data::kDecompIndex[i], std::make_pair(data::kDecompIndex[i + 1], data::kDecompIndex[i + 2]));
    for (size_t i = 0; i + 2 < data::kCompositionsCount; i += 3)
      compose.emplace((uint64_t(data::kCompositions[i]) << 21) | data::kCompositions[i + 1],
                      data::kCompositions[i + 2]);
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

uint8_t nfc_qc(uint32_t cp) {
  if (cp < kBmp) return tables().qc[cp];
  if (cp > kMaxCodePoint) return kQcYes;
  return uint8_t(run_lookup(data::kNfcQcRuns, data::kNfcQcRunsCount, 2, cp));
}

// Hangul syllables compose and decompose algorithmically (Unicode 3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  const auto& d = tables().decomp;
  auto it = d.find(cp);
  if (it == d.end()) {
    out.push_back(cp);
    return;
  }
  out.insert(out.end(), data::kDecompPool + it->second.first, data::kDecompPool + it->second.first + it->second.second);
}

// Primary composite of (a, b), or 0 when there is none.
uint32_t compose_pair(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
    return a + (b - kTBase);
  const auto& c = tables().compose;
  auto it = c.find((uint64_t(a) << 21) | b);
  return it == c.end() ? 0 : it->second;
}

}  // namespace

Category category(uint32_t cp) {
  if (cp < kBmp) return Category(tables().category[cp]);
  if (cp > kMaxCodePoint) return Cn;
  return Category(run_lookup(data::kCategoryRuns, data::kCategoryRunsCount, 5, cp));
}

uint8_t combining_class(uint32_t cp) {
  if (cp < kBmp) return tables().ccc[cp];
  if (cp > kMaxCodePoint) return 0;
  return uint8_t(run_lookup(data::kCombiningRuns, data::kCombiningRunsCount, 8, cp));
}

bool is_whitespace(uint32_t cp) {
  if (cp < 0x80) return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20;
  switch (cp) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

const char* unicode_version() { return data::kUnicodeVersion; }

bool decode_utf8(std::string_view s, size_t& i, uint32_t& cp) {
  const size_t n = s.size();
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  uint8_t b0 = p[i];
  if (b0 < 0x80) {
    cp = b0;
    ++i;
    return true;
  }
  int len;
  uint32_t c, min;
  if ((b0 & 0xE0) == 0xC0)
    len = 2, c = b0 & 0x1F, min = 0x80;
  else if ((b0 & 0xF0) == 0xE0)
    len = 3, c = b0 & 0x0F, min = 0x800;
  else if ((b0 & 0xF8) == 0xF0)
    len = 4, c = b0 & 0x07, min = 0x10000;
  else
    return false;
  if (i + len > n) return false;
  for (int k = 1; k < len; ++k) {
    if ((p[i + k] & 0xC0) != 0x80) return false;
    c = (c << 6) | (p[i + k] & 0x3F);
  }
  if (c < min || c > kMaxCodePoint || (c >= 0xD800 && c <= 0xDFFF)) return false;
  cp = c;
  i += len;
  return true;
}

uint32_t decode_lenient(std::string_view s, size_t& i) {
  uint32_t cp;
  if (decode_utf8(s, i, cp)) return cp;
  return kRawByteBase + uint8_t(s[i++]);
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp <= kMaxCodePoint) {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(cp - kRawByteBase));  // a raw byte from decode_lenient
  }
}

size_t find_invalid_utf8(std::string_view s) {
  size_t i = 0;
  uint32_t cp;
  while (i < s.size()) {
    if (uint8_t(s[i]) < 0x80) {
      ++i;
      continue;
    }
    if (!decode_utf8(s, i, cp)) return i;
  }
  return std::string_view::npos;
}

size_t complete_utf8_prefix(std::string_view s) {
  // Find the last lead byte among the final 3 bytes; hold it back when its sequence is incomplete
  // but every byte so far is allowed (RFC 3629 table: E0 needs A0..BF next, ED 80..9F, F0 90..BF,
  // F4 80..8F; C0, C1 and F5..FF never start a sequence).
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const size_t i = n - back;
    const uint8_t b = uint8_t(s[i]);
    if ((b & 0xC0) == 0x80) continue;
    size_t len = (b >= 0xC2 && b <= 0xDF) ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b >= 0xF0 && b <= 0xF4) ? 4 : 1;
    if (len <= back) return n;
    if (back >= 2) {
      uint8_t b1 = uint8_t(s[i + 1]);
      uint8_t lo = b == 0xE0 ? 0xA0 : b == 0xF0 ? 0x90 : 0x80, hi = b == 0xED ? 0x9F : b == 0xF4 ? 0x8F : 0xBF;
      if (b1 < lo || b1 > hi) return n;
    }
    return i;
  }
  return n;
}

bool nfc_quick(std::string_view s, std::string& out) {
  size_t i = 0;
  uint8_t last_ccc = 0;
  bool quick_yes = true;
  while (i < s.size()) {
    if (uint8_t(s[i]) < 0x80) {
      ++i;
      last_ccc = 0;
      continue;
    }
    uint32_t cp = decode_lenient(s, i);
    uint8_t ccc = combining_class(cp);
    if (nfc_qc(cp) != kQcYes || (ccc != 0 && last_ccc > ccc)) {
      quick_yes = false;
      break;
    }
    last_ccc = ccc;
  }
  if (quick_yes) return true;

  // Full NFC: decompose, put each run of non-starters in canonical (stable, by class) order, then
  // compose each character with the last starter unless a character in between blocks it (has
  // class 0 or a class >= its own).
  std::vector<uint32_t> d;
  d.reserve(s.size());
  for (i = 0; i < s.size();) decompose(decode_lenient(s, i), d);
  for (size_t a = 0; a < d.size();) {
    if (combining_class(d[a]) == 0) {
      ++a;
      continue;
    }
    size_t b = a;
    while (b < d.size() && combining_class(d[b]) != 0) ++b;
    std::stable_sort(d.begin() + a, d.begin() + b,
                     [](uint32_t x, uint32_t y) { return combining_class(x) < combining_class(y); });
    a = b;
  }
  std::vector<uint32_t> c;
  c.reserve(d.size());
  ptrdiff_t starter = -1;
  int last = -1;  // class of the last character kept after the starter; -1: none
  for (uint32_t ch : d) {
    int cc = combining_class(ch);
    if (starter >= 0 && !(last != -1 && last >= cc)) {
      if (uint32_t comp = compose_pair(c[starter], ch)) {
        c[starter] = comp;
        continue;
      }
    }
    if (cc == 0) {
      starter = ptrdiff_t(c.size());
      last = -1;
    } else {
      last = cc;
    }
    c.push_back(ch);
  }
  out.clear();
  for (uint32_t ch : c) append_utf8(out, ch);
  return false;
}

std::string nfc(std::string_view s) {
  std::string out;
  if (nfc_quick(s, out)) return std::string(s);
  return out;
}

}  // namespace sambalm::unicode
