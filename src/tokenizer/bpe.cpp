// Byte-level BPE merges.
//
// Merge loop (as HF tokenizers' Word::merge_all): symbols start as one id per byte. Every adjacent
// pair (a, b) with a merge rule a+b gets an entry (rank, position) in a min-heap. Pop the lowest
// rank (leftmost on ties); skip it if either symbol has since been merged into something else;
// otherwise replace the pair by the merged id and push the new pairs it forms with its neighbours.
// O(n log n) per word, and words repeat, so a per-thread cache maps a word's bytes to its ids.
#include "tokenizer/bpe.h"

#include <algorithm>
#include <atomic>
#include <functional>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace sambalm {

namespace {
struct ByteAlphabet {
  uint32_t to_char[256];
  std::unordered_map<uint32_t, int> from_char;
  ByteAlphabet() {
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_char[b] = printable ? uint32_t(b) : next++;
      from_char[to_char[b]] = b;
    }
  }
};
const ByteAlphabet& alphabet() {
  static const ByteAlphabet a;
  return a;
}

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Per-thread word cache: word bytes -> a slice of `ids`.
struct WordCache {
  uint64_t owner = 0;
  std::unordered_map<std::string, std::pair<uint32_t, uint32_t>, StringHash, std::equal_to<>> map;
  std::vector<int32_t> ids;
};
thread_local WordCache t_cache;
constexpr size_t kMaxCachedWordBytes = 128;
constexpr size_t kMaxCacheEntries = 1 << 18;
std::atomic<uint64_t> g_next_owner{1};
}  // namespace

uint32_t byte_to_char(uint8_t b) { return alphabet().to_char[b]; }

int byte_from_char(uint32_t cp) {
  const auto& m = alphabet().from_char;
  auto it = m.find(cp);
  return it == m.end() ? -1 : it->second;
}

std::string bytes_to_byte_level(std::string_view bytes) {
  std::string s;
  for (char c : bytes) unicode::append_utf8(s, byte_to_char(uint8_t(c)));
  return s;
}

bool byte_level_to_bytes(std::string_view token, std::string& out) {
  size_t i = 0;
  uint32_t cp;
  while (i < token.size()) {
    if (!unicode::decode_utf8(token, i, cp)) return false;
    int b = byte_from_char(cp);
    if (b < 0) return false;
    out.push_back(char(b));
  }
  return true;
}

BpeModel::BpeModel(std::unordered_map<std::string, int32_t> vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges, std::optional<int32_t> unk_id,
                   bool fuse_unk, bool ignore_merges, const std::string& source)
    : vocab_(std::move(vocab)),
      unk_id_(unk_id),
      fuse_unk_(fuse_unk),
      ignore_merges_(ignore_merges),
      cache_owner_(g_next_owner++) {
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    unicode::append_utf8(ch, byte_to_char(uint8_t(b)));
    auto it = vocab_.find(ch);
    byte_id_[b] = it == vocab_.end() ? -1 : it->second;
  }
  merges_.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const auto& [a, b] = merges[r];
    auto ia = vocab_.find(a), ib = vocab_.find(b), iab = vocab_.find(a + b);
    SAMBALM_CHECK(ia != vocab_.end() && ib != vocab_.end(),
                  "{}: model.merges[{}] ('{}' '{}') uses a token missing from model.vocab", source, r, a, b);
    SAMBALM_CHECK(iab != vocab_.end(), "{}: model.merges[{}] makes '{}', which is missing from model.vocab", source, r,
                  a + b);
    merges_.try_emplace(key(ia->second, ib->second), Merge{int32_t(r), iab->second});
  }
}

void BpeModel::initial_symbols(std::string_view word, std::vector<int32_t>& syms) const {
  syms.clear();
  bool last_unk = false;
  for (char c : word) {
    int32_t id = byte_id_[uint8_t(c)];
    if (id >= 0) {
      syms.push_back(id);
      last_unk = false;
    } else if (unk_id_) {
      if (!(fuse_unk_ && last_unk)) syms.push_back(*unk_id_);
      last_unk = true;
    }
  }
}

void BpeModel::merge_word_reference(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<int32_t> s;
  initial_symbols(word, s);
  for (;;) {
    const Merge* best = nullptr;
    size_t best_pos = 0;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const Merge* m = find_merge(s[i], s[i + 1]);
      if (m && (!best || m->rank < best->rank)) best = m, best_pos = i;
    }
    if (!best) break;
    s[best_pos] = best->id;
    s.erase(s.begin() + best_pos + 1);
  }
  out.insert(out.end(), s.begin(), s.end());
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id, prev, next;
    bool alive;
  };
  struct Entry {
    int32_t rank, pos, id;
    bool operator>(const Entry& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  thread_local std::vector<int32_t> init;
  thread_local std::vector<Symbol> sym;
  thread_local std::vector<Entry> heap;
  initial_symbols(word, init);
  const int32_t n = int32_t(init.size());
  sym.resize(n);
  for (int32_t i = 0; i < n; ++i) sym[i] = {init[i], i - 1, i + 1 < n ? i + 1 : -1, true};
  heap.clear();
  auto push = [](const Entry& e) {
    heap.push_back(e);
    std::push_heap(heap.begin(), heap.end(), std::greater<Entry>{});
  };
  for (int32_t i = 0; i + 1 < n; ++i)
    if (const Merge* m = find_merge(sym[i].id, sym[i + 1].id)) push({m->rank, i, m->id});
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<Entry>{});
    Entry e = heap.back();
    heap.pop_back();
    Symbol& left = sym[e.pos];
    if (!left.alive || left.next < 0) continue;
    const Merge* m = find_merge(left.id, sym[left.next].id);
    if (!m || m->id != e.id || m->rank != e.rank) continue;  // stale: a neighbour changed
    Symbol& right = sym[left.next];
    left.id = e.id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) sym[right.next].prev = e.pos;
    if (left.prev >= 0)
      if (const Merge* p = find_merge(sym[left.prev].id, left.id)) push({p->rank, left.prev, p->id});
    if (left.next >= 0)
      if (const Merge* q = find_merge(left.id, sym[left.next].id)) push({q->rank, e.pos, q->id});
  }
  for (int32_t i = 0; i >= 0 && i < n; i = sym[i].next) out.push_back(sym[i].id);
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (word.size() == 1 && byte_id_[uint8_t(word[0])] >= 0) {
    out.push_back(byte_id_[uint8_t(word[0])]);
    return;
  }
  if (ignore_merges_) {
    auto it = vocab_.find(bytes_to_byte_level(word));
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (word.size() > kMaxCachedWordBytes) {
    merge_word(word, out);
    return;
  }
  WordCache& c = t_cache;
  if (c.owner != cache_owner_ || c.map.size() >= kMaxCacheEntries) {
    c.map.clear();
    c.ids.clear();
    c.owner = cache_owner_;
  }
  auto it = c.map.find(word);
  if (it != c.map.end()) {
    out.insert(out.end(), c.ids.begin() + it->second.first, c.ids.begin() + it->second.first + it->second.second);
    return;
  }
  size_t before = out.size();
  merge_word(word, out);
  uint32_t start = uint32_t(c.ids.size());
  c.ids.insert(c.ids.end(), out.begin() + before, out.end());
  c.map.emplace(std::string(word), std::make_pair(start, uint32_t(out.size() - before)));
}

}  // namespace sambalm
