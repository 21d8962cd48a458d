// Byte-level BPE tokenizer of a tokenizer.json: the encode pipeline and decode.
//
// encode(text): added tokens (not normalised) split the raw text; each piece between them is NFC
// normalised (when the normalizer asks), split again by the normalised added tokens; each remaining
// piece is pre-tokenized into words (the split patterns, on code points), and each word's bytes go
// through the BPE merges. decode(ids): each id's bytes (the byte-level alphabet mapped back to
// bytes), concatenated.
#include "tokenizer/hf_tokenizer.h"

#include <algorithm>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace sambalm {

namespace {
bool ascii_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
bool word_char(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
}  // namespace

void AddedTokenMatcher::add(const AddedToken* t) {
  if (t->content.empty()) return;
  uint8_t b = uint8_t(t->content[0]);
  first_byte_[b] = true;
  auto& v = by_first_[b];
  v.push_back(t);
  std::stable_sort(v.begin(), v.end(), [](auto* x, auto* y) { return x->content.size() > y->content.size(); });
  ++count_;
}

bool AddedTokenMatcher::find(std::string_view text, size_t from, size_t floor, Match& m) const {
  if (count_ == 0) return false;
  for (size_t i = from; i < text.size(); ++i) {
    if (!first_byte_[uint8_t(text[i])]) continue;
    for (const AddedToken* t : by_first_[uint8_t(text[i])]) {
      if (text.compare(i, t->content.size(), t->content) != 0) continue;
      size_t start = i, end = i + t->content.size();
      if (t->single_word && ((start > 0 && word_char(text[start - 1])) || (end < text.size() && word_char(text[end]))))
        continue;
      if (t->lstrip)
        while (start > floor && ascii_space(text[start - 1])) --start;
      if (t->rstrip)
        while (end < text.size() && ascii_space(text[end])) ++end;
      m = {start, end, t};
      return true;
    }
  }
  return false;
}

HfTokenizer::HfTokenizer(std::string source, std::vector<AddedToken> added, bool nfc, std::vector<PreTokStep> steps,
                         std::unique_ptr<BpeModel> model, std::optional<int32_t> bos, std::optional<int32_t> eos)
    : source_(std::move(source)),
      added_(std::move(added)),
      nfc_(nfc),
      steps_(std::move(steps)),
      model_(std::move(model)),
      bos_(bos),
      eos_(eos) {
  for (const auto& [tok, id] : model_->vocab()) vocab_size_ = std::max(vocab_size_, id + 1);
  for (const auto& a : added_) vocab_size_ = std::max(vocab_size_, a.id + 1);
  token_.assign(vocab_size_, {});
  decoded_.assign(vocab_size_, {});
  special_.assign(vocab_size_, 0);
  std::vector<uint8_t> present(vocab_size_, 0);
  // The ByteLevel decoder maps a token's characters back to bytes when all of them are in the
  // byte-level alphabet, and leaves the token as it is otherwise (added tokens included, as HF).
  auto set = [&](int32_t id, const std::string& tok) {
    token_[id] = tok;
    present[id] = 1;
    std::string bytes;
    decoded_[id] = byte_level_to_bytes(tok, bytes) ? bytes : tok;
  };
  for (const auto& [tok, id] : model_->vocab()) set(id, tok);
  for (const auto& a : added_) {
    set(a.id, a.content);
    special_[a.id] = a.special;
    added_ids_[a.content] = a.id;
  }
  for (const auto& a : added_) (a.normalized && nfc_ ? normalized_matcher_ : raw_matcher_).add(&a);
  bool has_split = false, prefix = false;
  for (const auto& s : steps_) (s.kind == PreTokStep::kSplit ? has_split : prefix) = true;
  can_split_ = has_split && !prefix;
  // The cut rule of document_pieces holds for the known patterns only.
  for (const auto& s : steps_)
    if (s.regex && !pretok::pattern_from_regex(s.regex->regex())) can_split_ = false;
  for (const auto& a : added_)
    if (a.lstrip || a.rstrip || a.content.find('\n') != std::string::npos) can_split_ = false;
  for (int32_t id = 0; id < vocab_size_; ++id)
    if (!present[id]) token_[id].clear();
  present_ = std::move(present);
}

void HfTokenizer::encode(std::string_view text, std::vector<int32_t>& out) const { encode_impl(text, false, out); }
void HfTokenizer::encode_bytes(std::string_view bytes, std::vector<int32_t>& out) const {
  encode_impl(bytes, true, out);
}

void HfTokenizer::encode_impl(std::string_view text, bool raw, std::vector<int32_t>& out) const {
  if (!raw) require_utf8(text, source_);
  size_t pos = 0;
  AddedTokenMatcher::Match m;
  while (raw_matcher_.find(text, pos, pos, m)) {
    encode_normalized(text.substr(pos, m.start - pos), raw, out);
    out.push_back(m.token->id);
    pos = m.end;
  }
  encode_normalized(text.substr(pos), raw, out);
}

void HfTokenizer::encode_normalized(std::string_view text, bool raw, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::string normalized;
  if (nfc_ && !raw && !unicode::nfc_quick(text, normalized)) text = normalized;
  size_t pos = 0;
  AddedTokenMatcher::Match m;
  while (normalized_matcher_.find(text, pos, pos, m)) {
    encode_pretokenized(text.substr(pos, m.start - pos), out);
    out.push_back(m.token->id);
    pos = m.end;
  }
  encode_pretokenized(text.substr(pos), out);
}

void HfTokenizer::encode_pretokenized(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  thread_local std::string prefixed;
  thread_local pretok::CodePoints cps;
  thread_local std::vector<uint32_t> ends, next;
  if (!steps_.empty() && steps_[0].kind == PreTokStep::kPrefixSpace && text[0] != ' ') {
    prefixed.assign(1, ' ');
    prefixed.append(text);
    text = prefixed;
  }
  bool any_split = false;
  for (const auto& s : steps_) any_split |= s.kind == PreTokStep::kSplit;
  if (!any_split) {
    model_->encode_word(text, out);
    return;
  }
  cps.assign(text);
  const uint32_t n = uint32_t(cps.cp.size());
  ends.assign(1, n);
  for (const auto& s : steps_) {
    if (s.kind != PreTokStep::kSplit) continue;
    next.clear();
    uint32_t begin = 0;
    for (uint32_t e : ends) {
      if (s.regex)
        s.regex->split(cps, begin, e, next);
      else
        pretok::split(s.pattern, cps, begin, e, next);
      begin = e;
    }
    ends.swap(next);
  }
  uint32_t begin = 0;
  for (uint32_t e : ends) {
    uint32_t b0 = cps.offset[begin], b1 = cps.offset[e];
    model_->encode_word(text.substr(b0, b1 - b0), out);
    begin = e;
  }
}

std::string HfTokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    int32_t id = ids[i];
    SAMBALM_CHECK(id >= 0 && id < vocab_size_ && present_[id],
                  "{}: id {} at position {} is not in the vocabulary (size {})", source_, id, i, vocab_size_);
    if (skip_special && special_[id]) continue;
    out += decoded_[id];
  }
  return out;
}

std::string HfTokenizer::id_to_token(int32_t id) const {
  SAMBALM_CHECK(id >= 0 && id < vocab_size_ && present_[id], "{}: id {} is not in the vocabulary (size {})", source_,
                id, vocab_size_);
  return token_[id];
}

std::optional<int32_t> HfTokenizer::token_to_id(std::string_view token) const {
  std::string t(token);
  if (auto it = added_ids_.find(t); it != added_ids_.end()) return it->second;
  if (auto it = model_->vocab().find(t); it != model_->vocab().end()) return it->second;
  return std::nullopt;
}

std::vector<std::pair<size_t, size_t>> HfTokenizer::document_pieces(std::string_view text, size_t target) const {
  if (!can_split_) return {{0, text.size()}};
  std::vector<std::pair<size_t, size_t>> pieces;
  size_t begin = 0;
  for (size_t p : cut_points(text, target, '\n')) pieces.emplace_back(begin, p), begin = p;
  pieces.emplace_back(begin, text.size());
  return pieces;
}

bool HfTokenizer::is_special(int32_t id) const { return id >= 0 && id < vocab_size_ && special_[id]; }

}  // namespace sambalm
