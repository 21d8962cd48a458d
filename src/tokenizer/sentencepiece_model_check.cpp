// See sentencepiece_model_check.h. The trie is darts-clone's double array: 32-bit units where
//   label   = unit & (0x80000000 | 0xFF)  (the byte that leads to the unit; bit 31 marks a leaf unit)
//   has_leaf = bit 8, offset = (unit >> 10) << (bit 9 ? 8 : 0), value (of a leaf unit) = unit & 0x7FFFFFFF.
// A lookup starts at base = offset(unit[0]); for each input byte c it reads unit[base ^ c], stops
// unless its label is c, moves to base ^= offset, and, when has_leaf, reads unit[base] as a result.
#include "tokenizer/sentencepiece_model_check.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/error.h"

namespace sambalm {
namespace {

constexpr uint32_t kMaxResults = 32;  // libsentencepiece's Normalizer::kMaxTrieResultsSize

// Protobuf wire format: just enough to find length-delimited fields.
class Wire {
 public:
  Wire(std::string_view b, const std::string& path) : b_(b), path_(path) {}
  bool done() const { return pos_ == b_.size(); }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      SAMBALM_CHECK(pos_ < b_.size(), "{}: not a SentencePiece model (truncated protobuf)", path_);
      const uint8_t x = uint8_t(b_[pos_++]);
      v |= uint64_t(x & 0x7F) << shift;
      if (x < 0x80) return v;
    }
    fail("{}: not a SentencePiece model (malformed protobuf varint)", path_);
  }
  // Reads one field; returns its number and, for a length-delimited one, its bytes in `bytes`.
  uint32_t field(std::string_view& bytes, bool& delimited) {
    uint64_t value = 0;
    return field(bytes, delimited, value);
  }
  // The same, with the value of a varint or fixed32 field in `value`.
  uint32_t field(std::string_view& bytes, bool& delimited, uint64_t& value) {
    const uint64_t key = varint();
    const uint32_t wire = uint32_t(key & 7);
    delimited = wire == 2;
    size_t skip = 0;
    value = 0;
    if (wire == 0) {
      value = varint();
    } else if (wire == 5 && b_.size() - pos_ >= 4) {
      uint32_t v = 0;
      std::memcpy(&v, b_.data() + pos_, 4);  // little-endian hosts, as above
      value = v;
      skip = 4;
    } else if (wire == 1) {
      skip = 8;
    } else if (wire == 5) {
      skip = 4;
    } else if (wire == 2) {
      const uint64_t n = varint();
      SAMBALM_CHECK(n <= b_.size() - pos_, "{}: not a SentencePiece model (a field of {} bytes runs past the end)",
                    path_, n);
      bytes = b_.substr(pos_, size_t(n));
      skip = size_t(n);
    } else {
      fail("{}: not a SentencePiece model (protobuf wire type {})", path_, wire);
    }
    SAMBALM_CHECK(skip <= b_.size() - pos_, "{}: not a SentencePiece model (truncated protobuf)", path_);
    pos_ += skip;
    return uint32_t(key >> 3);
  }

 private:
  std::string_view b_;
  size_t pos_ = 0;
  const std::string& path_;
};

void check_charsmap(std::string_view blob, const std::string& path, const char* spec) {
  if (blob.empty()) return;
  SAMBALM_CHECK(blob.size() > 4, "{}: {}.precompiled_charsmap is truncated ({} bytes)", path, spec, blob.size());
  uint32_t trie_bytes = 0;
  std::memcpy(&trie_bytes, blob.data(), 4);  // little-endian hosts only, like libsentencepiece's own read
  SAMBALM_CHECK(trie_bytes % 4 == 0 && trie_bytes >= 4 && trie_bytes <= blob.size() - 4,
                "{}: {}.precompiled_charsmap: trie of {} bytes does not fit the {} bytes of the map", path, spec,
                trie_bytes, blob.size());
  const size_t n = trie_bytes / 4;
  std::vector<uint32_t> unit(n);
  std::memcpy(unit.data(), blob.data() + 4, trie_bytes);
  const std::string_view strings = blob.substr(4 + trie_bytes);
  const size_t last_nul = strings.rfind('\0');  // a leaf's string must end at or before it

  auto bad = [&](const char* what, uint64_t at) {
    fail("{}: {}.precompiled_charsmap is corrupt: {} (trie unit {} of {})", path, spec, what, at, n);
  };
  auto offset = [](uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); };
  // A base is usable when every byte leads inside the array: base ^ c for c in 0..255.
  auto check_base = [&](uint32_t base, uint64_t from) {
    if ((uint64_t(base) | 0xFF) >= n) bad("a node's children lie outside the trie", from);
  };

  // Depth-first over the reachable bases: state 1 = on the path, 2 = done; below = the most leaves
  // on a path down from the base (capped).
  std::vector<uint8_t> state(n, 0), below(n, 0);
  struct Frame {
    uint32_t base, c = 0, best = 0, pending = 0;
    bool has_pending = false, pending_leaf = false;
  };
  std::vector<Frame> stack;
  const uint32_t root = offset(unit[0]);
  check_base(root, 0);
  state[root] = 1;
  stack.push_back({root});
  while (!stack.empty()) {
    Frame& f = stack.back();
    if (f.has_pending) {
      f.best = std::max<uint32_t>(f.best, below[f.pending] + (f.pending_leaf ? 1 : 0));
      f.has_pending = false;
    }
    if (f.c == 256) {
      below[f.base] = uint8_t(std::min<uint32_t>(f.best, 255));
      state[f.base] = 2;
      stack.pop_back();
      continue;
    }
    const uint32_t c = f.c++, at = f.base ^ c, u = unit[at];
    if ((u & (0x80000000u | 0xFF)) != c) continue;
    const uint32_t child = at ^ offset(u);
    const bool leaf = (u >> 8) & 1;
    check_base(child, at);
    if (leaf && (last_nul == std::string_view::npos || (unit[child] & 0x7FFFFFFFu) > last_nul))
      bad("a replacement string outside the map", child);
    if (state[child] == 1) bad("a cycle", at);
    f.has_pending = true, f.pending = child, f.pending_leaf = leaf;
    if (state[child] == 0) {
      state[child] = 1;
      stack.push_back({child});  // f is not used again before it is on top once more
    }
  }
  if (below[root] > kMaxResults) bad("more than 32 matches along one input", root);
}

}  // namespace

SentencePieceModelInfo read_sentencepiece_model(std::string_view bytes, const std::string& path) {
  SentencePieceModelInfo info;
  Wire model(bytes, path);
  while (!model.done()) {
    std::string_view sub;
    bool delimited = false;
    uint64_t value = 0;
    const uint32_t number = model.field(sub, delimited, value);
    if (!delimited) continue;
    Wire w(sub, path);
    if (number == 1) {  // SentencePiece: piece 1, score 2 (float), type 3
      SentencePieceModelInfo::Piece p;
      while (!w.done()) {
        std::string_view b;
        bool d = false;
        const uint32_t f = w.field(b, d, value);
        if (f == 1 && d) p.piece = std::string(b);
        if (f == 2 && !d) std::memcpy(&p.score, &value, 4);
        if (f == 3 && !d) p.type = int(value);
      }
      info.pieces.push_back(std::move(p));
    } else if (number == 2) {  // TrainerSpec: model_type 3, treat_whitespace_as_suffix 24, byte_fallback 35
      while (!w.done()) {
        std::string_view b;
        bool d = false;
        const uint32_t f = w.field(b, d, value);
        if (d) continue;
        if (f == 3) info.model_type = int(value);
        if (f == 24) info.treat_whitespace_as_suffix = value != 0;
        if (f == 35) info.byte_fallback = value != 0;
      }
    } else if (number == 3) {  // NormalizerSpec: name 1, precompiled_charsmap 2, then the three flags
      while (!w.done()) {
        std::string_view b;
        bool d = false;
        const uint32_t f = w.field(b, d, value);
        if (d && f == 1) info.normalizer_name = std::string(b);
        if (d && f == 2) info.has_charsmap = !b.empty();
        if (!d && f == 3) info.add_dummy_prefix = value != 0;
        if (!d && f == 4) info.remove_extra_whitespaces = value != 0;
        if (!d && f == 5) info.escape_whitespaces = value != 0;
      }
    }
  }
  return info;
}

void check_sentencepiece_model(std::string_view bytes, const std::string& path) {
  Wire model(bytes, path);
  size_t pieces = 0;
  while (!model.done()) {
    std::string_view spec_bytes;
    bool delimited = false;
    const uint32_t number = model.field(spec_bytes, delimited);
    if (delimited && number == 1) {  // pieces: libsentencepiece keys its tries by C string
      Wire w(spec_bytes, path);
      while (!w.done()) {
        std::string_view piece;
        bool d = false;
        if (w.field(piece, d) == 1 && d)
          SAMBALM_CHECK(!piece.empty() && piece.find('\0') == std::string_view::npos,
                        "{}: not a valid SentencePiece model (piece {} is empty or holds a NUL byte)", path, pieces);
      }
      ++pieces;
      continue;
    }
    if (!delimited || (number != 3 && number != 5)) continue;
    const char* spec = number == 3 ? "normalizer_spec" : "denormalizer_spec";
    Wire w(spec_bytes, path);
    while (!w.done()) {
      std::string_view charsmap;
      bool d = false;
      if (w.field(charsmap, d) == 2 && d) check_charsmap(charsmap, path, spec);
    }
  }
}

}  // namespace sambalm
