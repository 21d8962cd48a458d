// The bytes tokenizer: token id = byte value (0..255), no special tokens. Any byte string encodes,
// UTF-8 or not; decode gives the bytes back. This is the char-level setup of character models such
// as the enwik8 examples (vocab 256).
#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace sambalm {
namespace {

class BytesTokenizer final : public Tokenizer {
 public:
  std::string kind() const override { return "bytes"; }
  const std::string& source() const override { return source_; }
  int32_t vocab_size() const override { return 256; }
  std::optional<int32_t> bos_id() const override { return std::nullopt; }
  std::optional<int32_t> eos_id() const override { return std::nullopt; }
  void encode(std::string_view text, std::vector<int32_t>& out) const override {
    out.reserve(out.size() + text.size());
    for (char c : text) out.push_back(static_cast<uint8_t>(c));
  }
  std::string decode(std::span<const int32_t> ids, bool) const override {
    std::string out;
    out.reserve(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      SAMBALM_CHECK(ids[i] >= 0 && ids[i] < 256, "bytes tokenizer: id {} at position {} is outside [0, 256)", ids[i],
                    i);
      out.push_back(static_cast<char>(ids[i]));
    }
    return out;
  }
  std::string id_to_token(int32_t id) const override {
    SAMBALM_CHECK(id >= 0 && id < 256, "bytes tokenizer: id {} is outside [0, 256)", id);
    return std::string(1, static_cast<char>(id));
  }
  std::optional<int32_t> token_to_id(std::string_view token) const override {
    if (token.size() != 1) return std::nullopt;
    return static_cast<uint8_t>(token[0]);
  }
  bool is_special(int32_t) const override { return false; }
  std::vector<std::pair<size_t, size_t>> document_pieces(std::string_view text, size_t target) const override {
    std::vector<std::pair<size_t, size_t>> pieces;
    target = std::max<size_t>(target, 1);
    for (size_t b = 0; b < text.size(); b += target) pieces.emplace_back(b, std::min(text.size(), b + target));
    if (pieces.empty()) pieces.emplace_back(0, 0);
    return pieces;
  }

 private:
  std::string source_ = "bytes";
};

}  // namespace

std::unique_ptr<Tokenizer> make_bytes_tokenizer() { return std::make_unique<BytesTokenizer>(); }

}  // namespace sambalm
