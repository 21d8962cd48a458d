// Hugging Face tokenizer.json, byte-level BPE: the parts sambalm implements, as parsed from the file.
//   added_tokens   matched in the text before anything else, leftmost-longest (lstrip, rstrip,
//                  single_word honoured); `normalized: false` ones in the raw text first, then
//                  `normalized: true` ones in each normalised piece between them (as HF does).
//   normalizer     null, NFC, or a Sequence of those.
//   pre_tokenizer  ByteLevel (add_prefix_space, use_regex: the GPT-2 split), Split with a Regex
//                  pattern (behavior Isolated, invert false), or a Sequence of them; a ByteLevel step
//                  must be present (it maps bytes to the BPE alphabet). The known regexes of
//                  pretokenize.h run on hand-written matchers, any other through PCRE2
//                  (split_regex.h); a regex PCRE2 cannot compile is refused.
//   model          BPE (vocab, merges as "a b" strings or [a, b] pairs, unk_token, fuse_unk,
//                  ignore_merges; no dropout, no continuing_subword_prefix/end_of_word_suffix, no
//                  byte_fallback).
//   post_processor null, ByteLevel, TemplateProcessing (read only for its BOS/EOS tokens), Sequence.
//   decoder        ByteLevel.
// Anything else is refused with an Error that names the part (e.g. "normalizer: type 'NFKC'").
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/split_regex.h"
#include "tokenizer/tokenizer.h"

namespace sambalm {

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false, normalized = false, lstrip = false, rstrip = false, single_word = false;
};

// Finds added tokens in text: leftmost match, longest at that position.
class AddedTokenMatcher {
 public:
  void add(const AddedToken* t);
  bool empty() const { return count_ == 0; }
  struct Match {
    size_t start, end;  // [start, end) of the text the token replaces (whitespace it strips included)
    const AddedToken* token;
  };
  // The first match at or after `from`, whose stripped whitespace stays at or after `floor`.
  bool find(std::string_view text, size_t from, size_t floor, Match& m) const;

 private:
  bool first_byte_[256] = {};
  std::vector<const AddedToken*> by_first_[256];  // longest first
  size_t count_ = 0;
};

// One pre-tokenizer step: split pieces with a pattern, or give the segment a leading space. A split
// runs `regex` (the general path) when set, else the hand-written matcher of `pattern`.
struct PreTokStep {
  enum Kind { kSplit, kPrefixSpace } kind;
  pretok::Pattern pattern;
  std::shared_ptr<const pretok::SplitRegex> regex;
};

struct HfTokenizerOptions {
  // Run every split regex through PCRE2, the known ones too (the tests compare both paths).
  bool regex_engine_only = false;
};
std::unique_ptr<Tokenizer> parse_hf_tokenizer(std::string_view json_text, const std::string& source,
                                              const HfTokenizerOptions& options);
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path, const HfTokenizerOptions& options);

class HfTokenizer final : public Tokenizer {
 public:
  HfTokenizer(std::string source, std::vector<AddedToken> added, bool nfc, std::vector<PreTokStep> steps,
              std::unique_ptr<BpeModel> model, std::optional<int32_t> bos, std::optional<int32_t> eos);

  std::string kind() const override { return "bpe"; }
  const std::string& source() const override { return source_; }
  int32_t vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> bos_id() const override { return bos_; }
  std::optional<int32_t> eos_id() const override { return eos_; }
  void encode(std::string_view text, std::vector<int32_t>& out) const override;
  // Any bytes, no normalisation: invalid UTF-8 bytes are pre-tokenized as punctuation and map to
  // their byte-level tokens, so decode(encode_bytes(b)) == b (unless ByteLevel's add_prefix_space
  // adds a leading space, or an added token's lstrip/rstrip swallows whitespace beside it).
  void encode_bytes(std::string_view bytes, std::vector<int32_t>& out) const;
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const override;
  std::string id_to_token(int32_t id) const override;
  std::optional<int32_t> token_to_id(std::string_view token) const override;
  bool is_special(int32_t id) const override;
  // Cuts just after a '\n' between a non-space ASCII character and an ASCII letter, where every
  // supported split pattern ends a piece whatever follows, NFC cannot compose across, and no added
  // token can span (none holds '\n' or strips whitespace). Only when a split pattern runs, every
  // split regex is one of the known patterns (an arbitrary regex may join across '\n') and no
  // leading space is added.
  std::vector<std::pair<size_t, size_t>> document_pieces(std::string_view text, size_t target) const override;
  const BpeModel& model() const { return *model_; }
  void set_bos_eos(std::optional<int32_t> bos, std::optional<int32_t> eos) { bos_ = bos, eos_ = eos; }

 private:
  void encode_impl(std::string_view text, bool raw, std::vector<int32_t>& out) const;
  void encode_normalized(std::string_view text, bool raw, std::vector<int32_t>& out) const;
  void encode_pretokenized(std::string_view text, std::vector<int32_t>& out) const;

  std::string source_;
  std::vector<AddedToken> added_;
  AddedTokenMatcher raw_matcher_, normalized_matcher_;
  bool nfc_;
  std::vector<PreTokStep> steps_;
  std::unique_ptr<BpeModel> model_;
  std::optional<int32_t> bos_, eos_;
  int32_t vocab_size_ = 0;
  std::vector<std::string> token_;    // id -> token string ("" for unused ids)
  std::vector<std::string> decoded_;  // id -> bytes its decode gives
  std::vector<uint8_t> special_;      // id -> special added token
  std::vector<uint8_t> present_;      // id -> some token has it
  std::unordered_map<std::string, int32_t> added_ids_;
  bool can_split_ = false;
};

}  // namespace sambalm
