// The BPE model of a byte-level tokenizer.json: vocabulary, merges by rank, and the merge loop over
// one pre-tokenized word. Words are given as raw bytes; byte b stands for the byte-level character
// GPT-2's bytes_to_unicode assigns it (printable Latin-1 characters for themselves, the others
// shifted to U+0100...), so the vocabulary's strings are those characters.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sambalm {

// The byte-level alphabet: byte -> code point, and back (-1 for code points outside it).
uint32_t byte_to_char(uint8_t b);
int byte_from_char(uint32_t cp);
// The byte-level string (UTF-8) of raw bytes, and back: false when a character is outside the
// alphabet.
std::string bytes_to_byte_level(std::string_view bytes);
bool byte_level_to_bytes(std::string_view token, std::string& out);

class BpeModel {
 public:
  // vocab: token string -> id; merges: pairs of token strings, in rank order. Throws Error (naming
  // `source`) when a merge's parts or result are not in the vocabulary.
  BpeModel(std::unordered_map<std::string, int32_t> vocab,
           const std::vector<std::pair<std::string, std::string>>& merges, std::optional<int32_t> unk_id, bool fuse_unk,
           bool ignore_merges, const std::string& source);

  // Appends the ids of one word (raw bytes). Uses a per-thread cache of recent words.
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  // The merge loop without the cache: the heap-based one (fast) and the plain quadratic one that
  // merges the lowest-ranked, leftmost adjacent pair until none is left (reference).
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;
  void merge_word_reference(std::string_view word, std::vector<int32_t>& out) const;

  const std::unordered_map<std::string, int32_t>& vocab() const { return vocab_; }
  size_t num_merges() const { return merges_.size(); }

 private:
  struct Merge {
    int32_t rank, id;
  };
  static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  const Merge* find_merge(int32_t a, int32_t b) const {
    auto it = merges_.find(key(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  }
  // Initial symbols of a word: one id per byte (unknown bytes -> unk, fused if asked, or dropped).
  void initial_symbols(std::string_view word, std::vector<int32_t>& syms) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::unordered_map<uint64_t, Merge> merges_;
  int32_t byte_id_[256];
  std::optional<int32_t> unk_id_;
  bool fuse_unk_, ignore_merges_;
  uint64_t cache_owner_;  // identifies this model to the per-thread word cache
};

}  // namespace sambalm
