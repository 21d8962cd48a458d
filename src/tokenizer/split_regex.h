// The general path of the Split pre-tokenizer: any regex from a tokenizer.json, run by PCRE2 (UTF and
// UCP: \p{..} properties, \s, \w and case folding over all of Unicode) on the code points that
// pretok::CodePoints holds. The known patterns of pretokenize.h have hand-written matchers that split
// identically and faster; this path serves every other pattern.
//
// HF's Split with behavior Isolated: every match is a piece, and so is the text between two matches;
// an empty match gives no piece, and the next search starts one character after it.
//
// The regex is untrusted input, so each match runs under limits (a pathological pattern such as
// (a+)+$ on a long run of a's backtracks exponentially): kMatchLimit backtracking steps, kHeapLimitKiB
// of backtracking memory, and the JIT's stack (when the JIT runs out, that match is retried in the
// interpreter, which keeps its frames on the heap). A limit hit throws Error naming the tokenizer
// part, the limit and the position in the text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/pretokenize.h"

struct pcre2_real_code_32;
struct pcre2_real_match_context_32;

namespace sambalm::pretok {

class SplitRegex {
 public:
  static constexpr uint32_t kMatchLimit = 10'000'000;  // PCRE2's own default, set explicitly
  static constexpr uint32_t kHeapLimitKiB = 64 * 1024;

  // Compiles `regex`; `where` names it in errors ("tok.json: pre_tokenizer.pretokenizers[0]"). A
  // regex PCRE2 refuses throws Error with `where`, the regex, PCRE2's message and the offset.
  SplitRegex(std::string_view regex, std::string where);
  ~SplitRegex();
  SplitRegex(const SplitRegex&) = delete;
  SplitRegex& operator=(const SplitRegex&) = delete;

  // Splits code points [begin, end) of t (the regex sees only that range), appending the end index
  // of each piece to `ends`. Thread-safe.
  void split(const CodePoints& t, uint32_t begin, uint32_t end, std::vector<uint32_t>& ends) const;
  const std::string& regex() const { return regex_; }

 private:
  std::string regex_, where_;
  pcre2_real_code_32* code_ = nullptr;
  pcre2_real_match_context_32* context_ = nullptr;
  bool jit_ = false;
};

}  // namespace sambalm::pretok
