// Pre-tokenizer splits of byte-level BPE tokenizers, written by hand over Unicode categories instead
// of a regex engine. Each pattern is the regex below, with a backtracking engine's semantics
// (alternatives tried in order at each position, greedy quantifiers, first match wins); \s is
// White_Space, \p{L} letters, \p{N} numbers, \p{M} marks.
//   kGpt2   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//           (GPT-2, GPT-NeoX; HF's ByteLevel pre-tokenizer with use_regex)
//   kCl100k (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
//           \s*[\r\n]+|\s+(?!\S)|\s+                        (GPT-4, Llama 3)
//   kQwen2  the same with \p{N} instead of \p{N}{1,3}
//   kO200k  [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|...|'d)?|
//           [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|...|'d)?|
//           \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+      (GPT-4o, Phi-4-mini)
// Bytes that are not valid UTF-8 (decode_lenient's raw-byte code points) count as punctuation.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace sambalm::pretok {

enum class Pattern { kGpt2, kCl100k, kQwen2, kO200k };

// The pattern a regex string from tokenizer.json spells, if it is one of the above.
std::optional<Pattern> pattern_from_regex(std::string_view regex);
const char* pattern_regex(Pattern p);

// Code points of a text segment with the per-character classes the patterns need.
struct CodePoints {
  std::vector<uint32_t> cp;
  std::vector<uint8_t> cls;
  std::vector<uint32_t> offset;  // byte offset of each code point, plus the total at the end
  void assign(std::string_view text);
};

// Splits code points [begin, end) with the pattern, appending the end index of each piece to `ends`.
void split(Pattern p, const CodePoints& t, uint32_t begin, uint32_t end, std::vector<uint32_t>& ends);

}  // namespace sambalm::pretok
