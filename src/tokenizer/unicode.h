// Unicode support for the tokenizers: UTF-8 decoding/validation, general categories (for the
// pre-tokenizer's \p{L}, \p{N}, ... classes), White_Space, and NFC normalisation. The tables are
// generated from Python's unicodedata by tools/gen_unicode_tables.py (unicode_data.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sambalm::unicode {

// General categories, in the generator's order.
enum Category : uint8_t {
  Lu,
  Ll,
  Lt,
  Lm,
  Lo,
  Mn,
  Mc,
  Me,
  Nd,
  Nl,
  No,
  Pc,
  Pd,
  Ps,
  Pe,
  Pi,
  Pf,
  Po,
  Sm,
  Sc,
  Sk,
  So,
  Zs,
  Zl,
  Zp,
  Cc,
  Cf,
  Cs,
  Co,
  Cn
};

// Code points above this are not Unicode; the byte-level tokenizer uses kRawByteBase + b for a byte
// b that is not part of a valid UTF-8 sequence (see decode_lenient).
constexpr uint32_t kMaxCodePoint = 0x10FFFF;
constexpr uint32_t kRawByteBase = 0x110000;

Category category(uint32_t cp);
inline bool is_letter(uint32_t cp) { return category(cp) <= Lo; }
inline bool is_mark(uint32_t cp) {
  auto c = category(cp);
  return c >= Mn && c <= Me;
}
inline bool is_number(uint32_t cp) {
  auto c = category(cp);
  return c >= Nd && c <= No;
}
// The White_Space property (what \s means in Oniguruma and in HF tokenizers' regexes).
bool is_whitespace(uint32_t cp);
uint8_t combining_class(uint32_t cp);
const char* unicode_version();

// Decodes one code point of valid UTF-8 at s[i], advancing i. Returns false (i unchanged) when the
// bytes at i do not start a valid, shortest-form, non-surrogate sequence.
bool decode_utf8(std::string_view s, size_t& i, uint32_t& cp);
// Like decode_utf8, but never fails: an invalid byte b becomes kRawByteBase + b, one byte long.
uint32_t decode_lenient(std::string_view s, size_t& i);
void append_utf8(std::string& out, uint32_t cp);
// Byte offset of the first invalid UTF-8 sequence, or npos when s is valid UTF-8.
size_t find_invalid_utf8(std::string_view s);
// Length of the longest prefix of s that does not end inside an incomplete (but so far valid)
// UTF-8 sequence: the bytes after it may still become a character when more bytes arrive.
size_t complete_utf8_prefix(std::string_view s);

// NFC (canonical decomposition, canonical ordering, canonical composition) of valid UTF-8 text.
// Returns true and leaves `out` untouched when s is already in NFC by the quick check (the common
// case, no copy); otherwise writes the normalised text into `out` and returns false.
bool nfc_quick(std::string_view s, std::string& out);
std::string nfc(std::string_view s);

}  // namespace sambalm::unicode
