// Tokenizers: text <-> token ids. Three kinds behind one interface:
//   bytes          ids 0..255 are the bytes of the text; no special tokens (char-level models).
//   sentencepiece  a SentencePiece `tokenizer.model` (Llama's for Samba): BPE models encoded natively
//                  (sentencepiece_bpe.h), the rest and all decoding through libsentencepiece.
//   bpe            a Hugging Face `tokenizer.json` with a byte-level BPE model (GPT-2, GPT-NeoX for
//                  Mamba, GPT-4o-style split regexes), implemented in this directory.
// Text is UTF-8. `encode` refuses text that is not valid UTF-8 (an Error naming the byte offset),
// except the bytes tokenizer, which takes any bytes. The byte-level BPE tokenizer also offers
// `encode_bytes`: any byte string, no normalisation, and decode(encode_bytes(b)) == b exactly (for
// tokenizers that add no prefix space and have no whitespace-stripping added tokens).
// `decode` returns the exact bytes the tokens stand for (no replacement of invalid UTF-8), so byte
// tokens round-trip. All methods are const and safe to call from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sambalm {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // "bytes", "sentencepiece" or "bpe".
  virtual std::string kind() const = 0;
  // Where it was loaded from ("bytes" for the bytes tokenizer); used in error messages.
  virtual const std::string& source() const = 0;
  // Number of ids: every id is in [0, vocab_size()).
  virtual int32_t vocab_size() const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::optional<int32_t> eos_id() const = 0;

  // Appends the ids of `text` to `out`. No BOS/EOS are added: callers add them explicitly.
  virtual void encode(std::string_view text, std::vector<int32_t>& out) const = 0;
  std::vector<int32_t> encode(std::string_view text) const {
    std::vector<int32_t> out;
    encode(text, out);
    return out;
  }
  // Bytes of the ids' text. Throws Error for an id outside [0, vocab_size()). With skip_special,
  // special tokens (BOS, EOS, control and added special tokens) produce nothing.
  virtual std::string decode(std::span<const int32_t> ids, bool skip_special = false) const = 0;

  // Vocabulary access: the token's string as the model stores it (e.g. "▁the", "Ġthe", "<0x0A>").
  virtual std::string id_to_token(int32_t id) const = 0;
  virtual std::optional<int32_t> token_to_id(std::string_view token) const = 0;
  virtual bool is_special(int32_t id) const = 0;
  // Byte ranges [begin, end) of `text`, of roughly `target` bytes each, whose ids, encoded one by
  // one and concatenated, equal encode(text): lets one large document be encoded on several
  // threads. The default is the whole text as one range; see each tokenizer for where it cuts.
  virtual std::vector<std::pair<size_t, size_t>> document_pieces(std::string_view text, size_t target) const {
    return {{0, text.size()}};
  }
};

// Loads "bytes", a tokenizer.json, a tokenizer.model, or a directory holding one of them
// (tokenizer.model is preferred when both are present: it is the original for Llama-family
// models). Throws Error naming the path when nothing usable is found or the file is malformed.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path_or_dir);

// A model directory trained on bytes has no tokenizer file; it records its tokenizer in a
// tokenizer_config.json holding {"tokenizer_class": "bytes"} (docs/FORMATS.md, "Model directory").
inline constexpr const char* kTokenizerConfigFile = "tokenizer_config.json";
std::string bytes_tokenizer_config();  // the text of that file
// True when `dir` holds such a tokenizer_config.json.
bool dir_has_bytes_tokenizer(const std::string& dir);

std::unique_ptr<Tokenizer> make_bytes_tokenizer();
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path);
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path);
// The same from the text of a tokenizer.json; `source` names it in errors.
std::unique_ptr<Tokenizer> parse_hf_tokenizer(std::string_view json_text, const std::string& source);

// Throws Error "text is not valid UTF-8 (byte 0x.. at offset N); the tokenizer <source> needs UTF-8
// text" unless text is valid UTF-8. `source` names the tokenizer, which is not where the text came
// from: callers that know the input use encode_input.
void require_utf8(std::string_view text, const std::string& source);
// tok.encode(text, out) for text read from `input` (a file name, "stdin", "--text"): text that is not
// valid UTF-8 (for any tokenizer but bytes) is an Error naming `input`, the byte and its offset.
void encode_input(const Tokenizer& tok, std::string_view text, const std::string& input, std::vector<int32_t>& out);

// Byte offsets p in `text` (ascending, 0 < p < size, about `target` apart) where text[p - 1] is
// `sep`, text[p - 2] is a printable non-space ASCII character and text[p] an ASCII letter.
std::vector<size_t> cut_points(std::string_view text, size_t target, char sep);

// Streaming decode for generation: push ids one at a time, get back the text that is final. Bytes
// of a character that is not complete yet (and SentencePiece's U+FFFD for a partial byte sequence)
// are held back until the next id completes them, or until flush().
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = true) : tok_(tok), skip_special_(skip_special) {}
  std::string push(int32_t id);
  // Everything still held back, as is (possibly an incomplete character).
  std::string flush();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::vector<int32_t> ids_;  // ids since the last point where everything was emitted, plus context
  size_t emitted_ = 0;        // bytes of decode(ids_) already returned (or belonging to the context)
};

}  // namespace sambalm
