// SentencePiece tokenizer (tokenizer.model) through libsentencepiece: the Llama tokenizer of Samba
// (BPE with byte fallback, a dummy "▁" prefix, bos 1 / eos 2). Encoding and decoding are exactly
// sentencepiece's own; decode of control tokens (bos/eos) gives nothing, as sentencepiece does.
// BPE models without a character map are encoded natively (sentencepiece_bpe.h: the same ids,
// several times faster); SAMBALM_SPM_NATIVE=0 in the environment keeps libsentencepiece for them.
#include <sentencepiece_processor.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "core/error.h"
#include "io/file.h"
#include "tokenizer/sentencepiece_bpe.h"
#include "tokenizer/sentencepiece_model_check.h"
#include "tokenizer/tokenizer.h"

namespace sambalm {
namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) : source_(path) {
    std::error_code ec;
    SAMBALM_CHECK(std::filesystem::is_regular_file(path, ec), "{}: no such SentencePiece model file", path);
    // Read here and checked before libsentencepiece sees it: it trusts parts of the file that a
    // corrupt one gets wrong (sentencepiece_model_check.h).
    const std::string bytes = read_text_file(path);
    check_sentencepiece_model(bytes, path);
    sentencepiece::util::Status status;
    try {
      status = sp_.LoadFromSerializedProto(bytes);
    } catch (const std::exception& e) {  // the library's tries throw their own exceptions
      fail("{}: not a valid SentencePiece model ({})", path, e.what());
    }
    SAMBALM_CHECK(status.ok(), "{}: not a valid SentencePiece model ({})", path, status.ToString());
    vocab_ = sp_.GetPieceSize();
    SAMBALM_CHECK(vocab_ > 0, "{}: SentencePiece model has an empty vocabulary", path);
    splittable_ = check_splittable();
    const char* env = std::getenv("SAMBALM_SPM_NATIVE");
    if (!env || std::string_view(env) != "0")
      native_ = SentencePieceBpe::create(read_sentencepiece_model(bytes, path), nullptr);
  }
  std::string kind() const override { return "sentencepiece"; }
  const std::string& source() const override { return source_; }
  int32_t vocab_size() const override { return vocab_; }
  std::optional<int32_t> bos_id() const override { return valid(sp_.bos_id()); }
  std::optional<int32_t> eos_id() const override { return valid(sp_.eos_id()); }

  void encode(std::string_view text, std::vector<int32_t>& out) const override {
    require_utf8(text, source_);
    if (native_) return native_->encode(text, out);
    std::vector<int> ids;
    auto status = sp_.Encode(text, &ids);
    SAMBALM_CHECK(status.ok(), "{}: sentencepiece could not encode the text ({})", source_, status.ToString());
    out.insert(out.end(), ids.begin(), ids.end());
  }

  std::string decode(std::span<const int32_t> ids, bool skip_special) const override {
    std::vector<int> v;
    v.reserve(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      SAMBALM_CHECK(ids[i] >= 0 && ids[i] < vocab_, "{}: id {} at position {} is outside the vocabulary [0, {})",
                    source_, ids[i], i, vocab_);
      if (skip_special && is_special(ids[i])) continue;
      v.push_back(ids[i]);
    }
    std::string out;
    auto status = sp_.Decode(v, &out);
    SAMBALM_CHECK(status.ok(), "{}: sentencepiece could not decode ({})", source_, status.ToString());
    return out;
  }

  std::string id_to_token(int32_t id) const override {
    SAMBALM_CHECK(id >= 0 && id < vocab_, "{}: id {} is outside the vocabulary [0, {})", source_, id, vocab_);
    return sp_.IdToPiece(id);
  }
  std::optional<int32_t> token_to_id(std::string_view token) const override {
    int id = sp_.PieceToId(token);
    // PieceToId answers unk_id for unknown pieces; only the unk piece itself maps there truly.
    if (id == sp_.unk_id() && sp_.IdToPiece(id) != token) return std::nullopt;
    return id;
  }
  // Cuts at a single space between a non-space ASCII character and an ASCII letter, and encodes
  // the text after it without the space: sentencepiece adds the dummy "▁" prefix in its place, and
  // pieces never cross a "▁" (split_by_whitespace), so the ids are the same. Whether this model
  // behaves so (dummy prefix on, whitespace splitting on) is checked on a probe text at load.
  std::vector<std::pair<size_t, size_t>> document_pieces(std::string_view text, size_t target) const override {
    if (!splittable_) return {{0, text.size()}};
    return document_pieces_unchecked(text, target);
  }

  bool is_special(int32_t id) const override { return id >= 0 && id < vocab_ && sp_.IsControl(id); }

 private:
  static std::optional<int32_t> valid(int id) { return id >= 0 ? std::optional<int32_t>(id) : std::nullopt; }
  bool check_splittable() const {
    static constexpr std::string_view kProbe =
        "The quick brown fox, jumps over\nthe lazy dog. Another sentence here: x=1 and then words again; "
        "Once more with feeling (and brackets) or Capital Letters and tabs\tand more text to the end.";
    std::vector<int> whole, part;
    if (!sp_.Encode(kProbe, &whole).ok()) return false;
    std::vector<int32_t> joined;
    for (auto [b, e] : document_pieces_unchecked(kProbe, 8)) {
      if (!sp_.Encode(kProbe.substr(b, e - b), &part).ok()) return false;
      joined.insert(joined.end(), part.begin(), part.end());
    }
    return joined.size() > 20 && std::equal(joined.begin(), joined.end(), whole.begin(), whole.end());
  }
  static std::vector<std::pair<size_t, size_t>> document_pieces_unchecked(std::string_view text, size_t target) {
    std::vector<std::pair<size_t, size_t>> pieces;
    size_t begin = 0;
    for (size_t p : cut_points(text, target, ' ')) pieces.emplace_back(begin, p - 1), begin = p;
    pieces.emplace_back(begin, text.size());
    return pieces;
  }

  std::string source_;
  bool splittable_ = false;
  sentencepiece::SentencePieceProcessor sp_;
  std::unique_ptr<SentencePieceBpe> native_;  // null: libsentencepiece encodes
  int32_t vocab_ = 0;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path) {
  return std::make_unique<SentencePieceTokenizer>(path);
}

}  // namespace sambalm
