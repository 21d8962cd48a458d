// A native encoder for SentencePiece models of type BPE (Llama's tokenizer.model), giving exactly
// the ids libsentencepiece (0.1.97) gives, much faster. It covers models whose normalizer has no
// precompiled character map (name "identity": no NFKC) and that do not treat whitespace as a
// suffix; `create` says why not otherwise, and the caller keeps libsentencepiece for those.
//
// The steps are libsentencepiece's: normalise (drop leading, trailing and repeated spaces when
// remove_extra_whitespaces, " " -> U+2581 when escape_whitespaces, a U+2581 in front when
// add_dummy_prefix; user-defined symbols pass unchanged), split into characters (a user-defined
// symbol is one frozen symbol), then repeatedly merge the adjacent pair whose concatenation is a
// piece with the highest score (ties: leftmost), through a heap over a linked list of symbols.
// A merged piece of type UNUSED is split back into the two symbols it was last made of. A symbol
// that is no piece becomes the byte pieces <0xNN> of its bytes (byte_fallback) or unk (one unk
// for a run of such symbols). Where that gives the same ids (Llama's model), the text is encoded
// word by word through a per-thread cache of words (8 MiB of slots per thread, plus the words).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokenizer/sentencepiece_model_check.h"

namespace sambalm {

class SentencePieceBpe {
 public:
  // nullptr (and the reason in *why_not) when the model is not one this encoder covers.
  static std::unique_ptr<SentencePieceBpe> create(const SentencePieceModelInfo& info, std::string* why_not);

  // Appends the ids of `text` (valid UTF-8: the caller checks) to `out`.
  void encode(std::string_view text, std::vector<int32_t>& out) const;
  // Its normalised form (as libsentencepiece's NormalizeWithOffsets gives), for tests.
  std::string normalize(std::string_view text) const;
  void normalize(std::string_view text, std::string& out) const;

 private:
  struct Pair {
    int32_t id;  // the merged piece
    float score;
  };
  struct Symbol {
    int32_t begin, size, prev, next, id;  // id: index of the piece with these bytes, or -1
    bool freeze;
  };
  struct Candidate {
    float score;
    int32_t left, right, size, id;
  };
  SentencePieceBpe() = default;
  int32_t piece_of(std::string_view s) const {
    auto it = pieces_.find(s);
    return it == pieces_.end() ? -1 : it->second;
  }
  int32_t char_piece(std::string_view ch) const;
  size_t user_defined_match(std::string_view s) const;  // longest user-defined prefix, 0 if none
  void encode_normalized(std::string_view norm, std::vector<int32_t>& out) const;
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;  // through the word cache
  using RevMerge = std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>>;
  void emit(std::string_view s, int32_t id, const RevMerge* rev, bool& prev_unk, std::vector<int32_t>& out) const;
  // Whether symbols a and b (adjacent) merge, and into what.
  bool merged(const Symbol& a, const Symbol& b, std::string_view norm, Pair& m) const;
  void merge_small(std::string_view norm, std::vector<int32_t>& out) const;
  static std::vector<Symbol>& t_symbols() {
    thread_local std::vector<Symbol> sym;
    return sym;
  }
  void find_pair(const std::vector<Symbol>& sym, std::string_view norm, int32_t l, int32_t r,
                 std::vector<Candidate>& heap, RevMerge* rev) const;

  std::vector<SentencePieceModelInfo::Piece> info_;
  std::unordered_map<std::string_view, int32_t> pieces_;    // NORMAL, USER_DEFINED, UNUSED pieces
  std::unordered_map<std::string_view, int32_t> reserved_;  // the others (looked up first)
  std::vector<int32_t> output_id_;                          // pieces_ index -> the id emitted for it
  // (left piece, right piece) -> merged piece: a flat hash table.
  std::vector<uint64_t> pair_keys_;
  std::vector<Pair> pair_vals_;
  int pair_shift_ = 60;
  size_t pair_slot(uint64_t key) const { return size_t((key * 0x9E3779B97F4A7C15ull) >> pair_shift_); }
  std::vector<int32_t> bmp_;                      // code point < 0x10000 -> piece or -1
  std::unordered_map<uint32_t, int32_t> astral_;  // the other code points that are pieces
  std::vector<std::string> user_defined_;
  bool has_user_defined_ = false, has_unused_ = false;
  int32_t unk_id_ = -1;
  int32_t byte_id_[256];
  bool split_words_ = false;  // encode word by word, with a per-thread cache (see create)
  uint64_t cache_owner_ = 0;
  bool byte_fallback_ = false, add_dummy_prefix_ = true, remove_extra_whitespaces_ = true, escape_whitespaces_ = true;
};

}  // namespace sambalm
