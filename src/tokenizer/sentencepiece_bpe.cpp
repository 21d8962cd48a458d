// See sentencepiece_bpe.h. Merging looks pairs up by the ids of the two symbols (a table built
// from every way a piece splits into two pieces), which is the same as looking up the
// concatenated string whenever both symbols are pieces; a symbol that is no piece (a character
// outside the vocabulary) falls back to the string lookup.
#include "tokenizer/sentencepiece_bpe.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdio>
#include <cstring>
#include <utility>

#include "core/error.h"

namespace sambalm {
namespace {

constexpr std::string_view kSpace = "\xe2\x96\x81";  // U+2581, SentencePiece's visible space

// Bytes of the UTF-8 character led by `c` (libsentencepiece's OneCharLen).
inline size_t one_char_len(char c) { return "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[(uint8_t(c)) >> 4]; }

inline uint32_t decode_char(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  switch (s.size()) {
    case 1:
      return p[0];
    case 2:
      return ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu);
    case 3:
      return ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
    default:
      return ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
  }
}

// Per-thread word cache: a word's normalised bytes -> a slice of `ids`. Open addressing over slots
// that hold a hash tag and offsets into two arenas (the words' bytes, their ids), so that a lookup
// reads one slot and compares bytes only when the tag matches, and an insert allocates nothing
// (but now and then an arena's growth).
struct WordCache {
  struct Slot {
    uint32_t tag = 0;  // 0: empty
    uint32_t bytes = 0, ids = 0;
    uint16_t size = 0, n_ids = 0;
  };
  static constexpr size_t kSlots = 1 << 19;
  static constexpr size_t kMaxEntries = kSlots / 2;
  uint64_t owner = 0;
  size_t entries = 0;
  std::vector<Slot> slots;
  std::string bytes;
  std::vector<int32_t> ids;
  void reset(uint64_t o) {
    slots.assign(kSlots, Slot{});
    bytes.clear();
    ids.clear();
    entries = 0;
    owner = o;
  }
};
thread_local WordCache t_cache;
constexpr size_t kMaxCachedWordBytes = 128;  // so at most 128 ids (one a byte): fits the slot's uint16_t
std::atomic<uint64_t> g_next_owner{1};

constexpr size_t kSmallWord = 24;  // symbols up to which merge_small is used

inline uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

// libsentencepiece's agenda order: higher score first, then the leftmost.
struct CandidateLess {
  template <typename C>
  bool operator()(const C& a, const C& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

}  // namespace

std::unique_ptr<SentencePieceBpe> SentencePieceBpe::create(const SentencePieceModelInfo& info, std::string* why_not) {
  auto no = [&](std::string why) {
    if (why_not) *why_not = std::move(why);
    return nullptr;
  };
  if (info.model_type != SentencePieceModelInfo::kBpe) return no("the model is not of type BPE");
  if (info.has_charsmap) return no("the normalizer has a character map (" + info.normalizer_name + ")");
  if (info.treat_whitespace_as_suffix) return no("the model treats whitespace as a suffix");
  if (info.pieces.empty()) return no("the model has no pieces");

  std::unique_ptr<SentencePieceBpe> m(new SentencePieceBpe());
  m->info_ = info.pieces;
  const auto& pieces = m->info_;
  m->bmp_.assign(0x10000, -1);
  for (int32_t i = 0; i < int32_t(pieces.size()); ++i) {
    const auto& p = pieces[size_t(i)];
    const bool normal = p.type == SentencePieceModelInfo::kNormal || p.type == SentencePieceModelInfo::kUserDefined ||
                        p.type == SentencePieceModelInfo::kUnused;
    (normal ? m->pieces_ : m->reserved_).emplace(p.piece, i);
    if (p.type == SentencePieceModelInfo::kUserDefined) m->user_defined_.push_back(p.piece);
    if (p.type == SentencePieceModelInfo::kUnused) m->has_unused_ = true;
    if (p.type == SentencePieceModelInfo::kUnknown) m->unk_id_ = i;
  }
  if (m->unk_id_ < 0) return no("the model has no unknown piece");
  m->has_user_defined_ = !m->user_defined_.empty();
  m->output_id_.resize(pieces.size());
  for (int32_t i = 0; i < int32_t(pieces.size()); ++i) {
    auto r = m->reserved_.find(pieces[size_t(i)].piece);
    m->output_id_[size_t(i)] = r != m->reserved_.end() ? r->second : i;
  }
  std::vector<std::pair<uint64_t, Pair>> pairs;
  for (auto [s, i] : m->pieces_) {
    if (one_char_len(s[0]) == s.size()) {
      const uint32_t cp = decode_char(s);
      if (cp < 0x10000)
        m->bmp_[cp] = i;
      else
        m->astral_.emplace(cp, i);
    }
    for (size_t k = one_char_len(s[0]); k < s.size(); k += one_char_len(s[k])) {
      const int32_t l = m->piece_of(s.substr(0, k)), r = m->piece_of(s.substr(k));
      if (l >= 0 && r >= 0) pairs.emplace_back(pair_key(l, r), Pair{i, pieces[size_t(i)].score});
    }
  }
  // The pair table: open addressing, at most half full; an empty slot holds key ~0 (two ids of -1).
  size_t cap = 16;
  while (cap < 2 * pairs.size()) cap *= 2;
  m->pair_keys_.assign(cap, ~uint64_t(0));
  m->pair_vals_.resize(cap);
  m->pair_shift_ = 64 - std::countr_zero(cap);
  for (const auto& [key, val] : pairs) {
    size_t h = m->pair_slot(key);
    while (m->pair_keys_[h] != ~uint64_t(0)) h = (h + 1) & (cap - 1);
    m->pair_keys_[h] = key, m->pair_vals_[h] = val;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    auto r = m->reserved_.find(name);
    const int32_t p = m->piece_of(name);
    m->byte_id_[b] = r != m->reserved_.end() ? r->second : p >= 0 ? p : m->unk_id_;
  }
  // Words: the normalised text cut before each U+2581 that follows another character. Encoding
  // them one by one gives the same ids when no piece holds such a place (no candidate pair then
  // spans a cut, and each word's merges happen in the same order alone), when no piece is UNUSED
  // (its split back depends on every candidate of the text) and with byte fallback (no run of
  // unknown symbols across a cut to make one unk).
  bool words = info.escape_whitespaces && info.byte_fallback && !m->has_unused_;
  for (const auto& [s, i] : m->pieces_)
    for (size_t k = s.find(kSpace, 1); words && k != std::string_view::npos; k = s.find(kSpace, k + 1))
      if (k < 3 || s.substr(k - 3, 3) != kSpace) words = false;
  m->split_words_ = words;
  m->cache_owner_ = g_next_owner++;
  m->byte_fallback_ = info.byte_fallback;
  m->add_dummy_prefix_ = info.add_dummy_prefix;
  m->remove_extra_whitespaces_ = info.remove_extra_whitespaces;
  m->escape_whitespaces_ = info.escape_whitespaces;
  return m;
}

int32_t SentencePieceBpe::char_piece(std::string_view ch) const {
  const uint32_t cp = decode_char(ch);
  if (cp < 0x10000) return bmp_[cp];
  auto it = astral_.find(cp);
  return it == astral_.end() ? -1 : it->second;
}

size_t SentencePieceBpe::user_defined_match(std::string_view s) const {
  size_t best = 0;
  for (const auto& u : user_defined_)
    if (u.size() > best && s.starts_with(u)) best = u.size();
  return best;
}

std::string SentencePieceBpe::normalize(std::string_view text) const {
  std::string out;
  normalize(text, out);
  return out;
}

void SentencePieceBpe::normalize(std::string_view text, std::string& out) const {
  out.clear();
  const std::string_view space = escape_whitespaces_ ? kSpace : std::string_view(" ");
  // A unit is what libsentencepiece's NormalizePrefix returns: a user-defined symbol, else one
  // character. Bytes stand in for characters here: only the character " " holds a space byte.
  auto unit = [&](size_t i) -> size_t {
    if (has_user_defined_ && (uint8_t(text[i]) & 0xC0) != 0x80)
      if (size_t m = user_defined_match(text.substr(i))) return m;
    return 1;
  };
  size_t i = 0;
  if (remove_extra_whitespaces_)
    while (i < text.size() && text[i] == ' ' && unit(i) == 1) ++i;
  if (i == text.size()) return;
  out.reserve(text.size() + text.size() / 2 + 4);
  if (add_dummy_prefix_) out += space;
  bool prev_space = remove_extra_whitespaces_;
  while (i < text.size()) {
    const size_t n = unit(i);
    std::string_view sp = text.substr(i, n);
    if (prev_space)
      while (!sp.empty() && sp[0] == ' ') sp.remove_prefix(1);
    if (!sp.empty()) {
      for (char c : sp) {
        if (c == ' ')
          out += space;
        else
          out += c;
      }
      prev_space = sp.back() == ' ';
    }
    i += n;
    if (!remove_extra_whitespaces_) prev_space = false;
  }
  if (remove_extra_whitespaces_)
    while (std::string_view(out).ends_with(space)) out.resize(out.size() - space.size());
}

void SentencePieceBpe::encode(std::string_view text, std::vector<int32_t>& out) const {
  thread_local std::string norm;
  normalize(text, norm);
  if (!split_words_) return encode_normalized(norm, out);
  const std::string_view n = norm;
  size_t begin = 0;
  for (size_t k = n.find(kSpace, 1); k != std::string_view::npos; k = n.find(kSpace, k + 3)) {
    if (k >= 3 && n.substr(k - 3, 3) == kSpace) continue;
    encode_word(n.substr(begin, k - begin), out);
    begin = k;
  }
  encode_word(n.substr(begin), out);
}

void SentencePieceBpe::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() > kMaxCachedWordBytes) return encode_normalized(word, out);
  WordCache& c = t_cache;
  if (c.owner != cache_owner_ || c.entries >= WordCache::kMaxEntries) c.reset(cache_owner_);
  const uint64_t h = std::hash<std::string_view>{}(word);
  const uint32_t tag = uint32_t(h >> 32) | 1;
  size_t i = size_t(h) & (WordCache::kSlots - 1);
  for (;; i = (i + 1) & (WordCache::kSlots - 1)) {
    const WordCache::Slot& slot = c.slots[i];
    if (slot.tag == 0) break;
    if (slot.tag == tag && slot.size == word.size() &&
        std::memcmp(c.bytes.data() + slot.bytes, word.data(), word.size()) == 0) {
      out.insert(out.end(), c.ids.begin() + slot.ids, c.ids.begin() + slot.ids + slot.n_ids);
      return;
    }
  }
  const size_t before = out.size();
  encode_normalized(word, out);
  WordCache::Slot& slot = c.slots[i];
  slot = {tag, uint32_t(c.bytes.size()), uint32_t(c.ids.size()), uint16_t(word.size()), uint16_t(out.size() - before)};
  c.bytes.append(word);
  c.ids.insert(c.ids.end(), out.begin() + long(before), out.end());
  ++c.entries;
}

bool SentencePieceBpe::merged(const Symbol& a, const Symbol& b, std::string_view norm, Pair& m) const {
  if (a.freeze || b.freeze) return false;
  if (a.id >= 0 && b.id >= 0) {
    const uint64_t key = pair_key(a.id, b.id);
    for (size_t h = pair_slot(key), mask = pair_keys_.size() - 1;; h = (h + 1) & mask) {
      if (pair_keys_[h] == key) {
        m = pair_vals_[h];
        return true;
      }
      if (pair_keys_[h] == ~uint64_t(0)) return false;
    }
  }
  m.id = piece_of(norm.substr(size_t(a.begin), size_t(a.size + b.size)));
  if (m.id < 0) return false;
  m.score = info_[size_t(m.id)].score;
  return true;
}

void SentencePieceBpe::find_pair(const std::vector<Symbol>& sym, std::string_view norm, int32_t l, int32_t r,
                                 std::vector<Candidate>& heap, RevMerge* rev) const {
  if (l < 0 || r < 0) return;
  const Symbol &a = sym[size_t(l)], &b = sym[size_t(r)];
  Pair m;
  if (!merged(a, b, norm, m)) return;
  const int32_t id = m.id;
  const float score = m.score;
  if (rev && info_[size_t(id)].type == SentencePieceModelInfo::kUnused)
    (*rev)[norm.substr(size_t(a.begin), size_t(a.size + b.size))] = {norm.substr(size_t(a.begin), size_t(a.size)),
                                                                     norm.substr(size_t(b.begin), size_t(b.size))};
  heap.push_back({score, l, r, a.size + b.size, id});
  std::push_heap(heap.begin(), heap.end(), CandidateLess());
}

void SentencePieceBpe::emit(std::string_view s, int32_t id, const RevMerge* rev, bool& prev_unk,
                            std::vector<int32_t>& out) const {
  if (id < 0) {
    auto r = reserved_.find(s);
    id = r != reserved_.end() ? r->second : unk_id_;
  } else {
    id = output_id_[size_t(id)];
  }
  if (rev && info_[size_t(id)].type == SentencePieceModelInfo::kUnused) {
    auto it = rev->find(s);
    if (it != rev->end()) {
      emit(it->second.first, piece_of(it->second.first), rev, prev_unk, out);
      emit(it->second.second, piece_of(it->second.second), rev, prev_unk, out);
      return;
    }
  }
  const bool unk = info_[size_t(id)].type == SentencePieceModelInfo::kUnknown;
  if (unk && byte_fallback_) {
    for (char c : s) out.push_back(byte_id_[uint8_t(c)]);
  } else if (!(unk && prev_unk)) {  // a run of unknown symbols is one unk
    out.push_back(id);
  }
  prev_unk = unk;
}

// The same merges for a few symbols without the heap: the candidates are exactly the adjacent
// pairs of the current symbols, so the heap's choice (highest score, then leftmost) is a scan.
void SentencePieceBpe::merge_small(std::string_view norm, std::vector<int32_t>& out) const {
  thread_local std::vector<Symbol> sym;
  thread_local std::vector<Pair> pair;  // pair[i]: symbols i and i+1 merged, id -1 when they do not merge
  sym.clear();
  for (int32_t i = 0; i >= 0; i = t_symbols()[size_t(i)].next) sym.push_back(t_symbols()[size_t(i)]);
  const size_t n0 = sym.size();
  pair.resize(n0);
  auto set = [&](size_t i) {
    if (i + 1 >= sym.size() || !merged(sym[i], sym[i + 1], norm, pair[i])) pair[i].id = -1;
  };
  for (size_t i = 0; i + 1 < n0; ++i) set(i);
  for (size_t n = n0; n > 1;) {
    size_t best = n;
    for (size_t i = 0; i + 1 < n; ++i)
      if (pair[i].id >= 0 && (best == n || pair[i].score > pair[best].score)) best = i;
    if (best == n) break;
    sym[best].size += sym[best + 1].size;
    sym[best].id = pair[best].id;
    sym.erase(sym.begin() + long(best) + 1);
    pair.erase(pair.begin() + long(best) + 1);
    --n;
    if (best > 0) set(best - 1);
    set(best);
  }
  bool prev_unk = false;
  for (const Symbol& x : sym) emit(norm.substr(size_t(x.begin), size_t(x.size)), x.id, nullptr, prev_unk, out);
}

void SentencePieceBpe::encode_normalized(std::string_view norm, std::vector<int32_t>& out) const {
  if (norm.empty()) return;
  std::vector<Symbol>& sym = t_symbols();
  thread_local std::vector<Candidate> heap;
  sym.clear();
  heap.clear();
  for (size_t i = 0; i < norm.size();) {
    size_t n = has_user_defined_ ? user_defined_match(norm.substr(i)) : 0;
    const bool freeze = n > 0;
    if (!freeze) n = std::min(one_char_len(norm[i]), norm.size() - i);
    const std::string_view s = norm.substr(i, n);
    const int32_t id = freeze ? piece_of(s) : char_piece(s);
    const auto k = int32_t(sym.size());
    sym.push_back({int32_t(i), int32_t(n), k - 1, i + n < norm.size() ? k + 1 : -1, id, freeze});
    i += n;
  }
  if (!has_unused_ && sym.size() <= kSmallWord) return merge_small(norm, out);

  // Which two symbols an UNUSED piece was last proposed from, to split it again (libsentencepiece's
  // rev_merge: it records every candidate, applied or not).
  RevMerge rev_merge;
  RevMerge* rev = has_unused_ ? &rev_merge : nullptr;
  for (int32_t i = 1; i < int32_t(sym.size()); ++i) find_pair(sym, norm, i - 1, i, heap, rev);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), CandidateLess());
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol &a = sym[size_t(top.left)], &b = sym[size_t(top.right)];
    if (a.size == 0 || b.size == 0 || a.size + b.size != top.size) continue;
    a.size += b.size;
    a.id = top.id;
    a.next = b.next;
    if (b.next >= 0) sym[size_t(b.next)].prev = top.left;
    b.size = 0;
    find_pair(sym, norm, a.prev, top.left, heap, rev);
    find_pair(sym, norm, top.left, a.next, heap, rev);
  }
  bool prev_unk = false;
  for (int32_t i = 0; i >= 0; i = sym[size_t(i)].next)
    emit(norm.substr(size_t(sym[size_t(i)].begin), size_t(sym[size_t(i)].size)), sym[size_t(i)].id, rev, prev_unk, out);
}

}  // namespace sambalm
