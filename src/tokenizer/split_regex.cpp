// PCRE2 with 32-bit code units: the subject is the code point array itself, so match offsets are
// code point indices and need no UTF-8 bookkeeping.
#define PCRE2_CODE_UNIT_WIDTH 32
#include "tokenizer/split_regex.h"

#include <pcre2.h>

#include <memory>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace sambalm::pretok {
namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  int n = pcre2_get_error_message(code, buf, 256);
  std::string out;
  for (int i = 0; i < n; ++i) unicode::append_utf8(out, buf[i]);
  return out;
}

// The code point PCRE2 sees for c, where PCRE2 would classify c otherwise than the hand-written
// matchers and HF tokenizers (Oniguruma) do:
// - a raw byte of invalid UTF-8 (kRawByteBase + b, not a code point) counts as punctuation there:
//   U+E000 + b, private use (category Co), is neither \s, \p{L}, \p{N} nor \p{M};
// - U+180E MONGOLIAN VOWEL SEPARATOR is \s to PCRE2 10.42 but not White_Space since Unicode 6.3:
//   U+200B ZERO WIDTH SPACE, also Cf and not \s.
uint32_t subject_char(uint32_t c) {
  if (c > unicode::kMaxCodePoint) return 0xE000 + (c & 0xFF);
  if (c == 0x180E) return 0x200B;
  return c;
}

struct MatchDataDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};

}  // namespace

SplitRegex::SplitRegex(std::string_view regex, std::string where) : regex_(regex), where_(std::move(where)) {
  std::vector<uint32_t> pattern;
  for (size_t i = 0; i < regex.size();) {
    uint32_t c;
    SAMBALM_CHECK(unicode::decode_utf8(regex, i, c), "{}: the split regex is not valid UTF-8 (byte {})", where_, i);
    pattern.push_back(c);
  }
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  code_ = pcre2_compile(pattern.data(), pattern.size(), PCRE2_UTF | PCRE2_UCP | PCRE2_NEVER_BACKSLASH_C, &err,
                        &err_offset, nullptr);
  SAMBALM_CHECK(code_ != nullptr, "{}: the split regex '{}' does not compile: {} (at character {})", where_, regex_,
                pcre2_message(err), err_offset);
  context_ = pcre2_match_context_create(nullptr);
  SAMBALM_CHECK(context_ != nullptr, "{}: out of memory for the split regex", where_);
  pcre2_set_match_limit(context_, kMatchLimit);
  pcre2_set_heap_limit(context_, kHeapLimitKiB);
  // Without a JIT stack assigned, JIT code runs on 32 KiB of the calling thread's stack: bounded,
  // and nothing shared between threads.
  jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
}

SplitRegex::~SplitRegex() {
  pcre2_match_context_free(context_);
  pcre2_code_free(code_);
}

void SplitRegex::split(const CodePoints& t, uint32_t begin, uint32_t end, std::vector<uint32_t>& ends) const {
  thread_local std::vector<uint32_t> subject;
  // One ovector pair is all a split needs (captures are ignored: pcre2_match then returns 0).
  thread_local std::unique_ptr<pcre2_match_data, MatchDataDeleter> data(pcre2_match_data_create(1, nullptr));
  SAMBALM_CHECK(data != nullptr, "{}: out of memory for the split regex", where_);
  subject.resize(end - begin);
  for (uint32_t i = begin; i < end; ++i) subject[i - begin] = subject_char(t.cp[i]);
  const PCRE2_SIZE n = subject.size();
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.get());
  PCRE2_SIZE prev = 0, from = 0;
  while (from < n) {
    const uint32_t opts = PCRE2_NO_UTF_CHECK;  // subject_char leaves only valid code points
    int rc = pcre2_match(code_, subject.data(), n, from, opts, data.get(), context_);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
      rc = pcre2_match(code_, subject.data(), n, from, opts | PCRE2_NO_JIT, data.get(), context_);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      const char* limit = rc == PCRE2_ERROR_MATCHLIMIT   ? "its match limit (10,000,000 backtracking steps)"
                          : rc == PCRE2_ERROR_HEAPLIMIT  ? "its heap limit (64 MiB)"
                          : rc == PCRE2_ERROR_DEPTHLIMIT ? "its depth limit"
                                                         : nullptr;
      if (limit)
        fail(
            "{}: the split regex '{}' hit {} on a piece of {} characters, searching from character {}: the regex "
            "backtracks too much to be used",
            where_, regex_, limit, n, from);
      fail("{}: the split regex '{}' failed: {}", where_, regex_, pcre2_message(rc));
    }
    PCRE2_SIZE s = ov[0], e = ov[1];
    if (s == e) {  // an empty match: no piece; search again one character on
      from = e + 1;
      continue;
    }
    if (s > prev) ends.push_back(begin + uint32_t(s));
    ends.push_back(begin + uint32_t(e));
    prev = from = e;
  }
  if (prev < n) ends.push_back(end);
}

}  // namespace sambalm::pretok
