// Tokenizer loading, UTF-8 checks, document split points and the streaming decoder.
#include "tokenizer/tokenizer.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace sambalm {

namespace fs = std::filesystem;

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  if (path == "bytes") return make_bytes_tokenizer();
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(fs::path(path) / "tokenizer.model")) return load_sentencepiece_tokenizer(path + "/tokenizer.model");
    if (fs::exists(fs::path(path) / "tokenizer.json")) return load_hf_tokenizer(path + "/tokenizer.json");
    if (dir_has_bytes_tokenizer(path)) return make_bytes_tokenizer();
    fail("{}: directory holds neither tokenizer.model nor tokenizer.json", path);
  }
  if (!fs::exists(path, ec))
    fail(
        "{}: no such file or directory (expected a tokenizer.json, a tokenizer.model, a directory holding one, "
        "or 'bytes')",
        path);
  const std::string ext = fs::path(path).extension().string();
  if (ext == ".json") return load_hf_tokenizer(path);
  if (ext == ".model") return load_sentencepiece_tokenizer(path);
  // Unknown extension: a JSON document starts with '{'; anything else is tried as a SentencePiece
  // model (a serialised protobuf).
  std::ifstream f(path, std::ios::binary);
  char c = 0;
  while (f.get(c) && std::isspace(static_cast<unsigned char>(c))) {
  }
  return c == '{' ? load_hf_tokenizer(path) : load_sentencepiece_tokenizer(path);
}

std::string bytes_tokenizer_config() { return "{\n  \"tokenizer_class\": \"bytes\"\n}\n"; }

bool dir_has_bytes_tokenizer(const std::string& dir) {
  std::error_code ec;
  const fs::path p = fs::path(dir) / kTokenizerConfigFile;
  if (!fs::is_regular_file(p, ec)) return false;
  std::ifstream f(p, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  // A plain search is enough: Hugging Face's tokenizer_config.json names real classes
  // ("LlamaTokenizer", ...), never "bytes".
  const size_t k = text.find("\"tokenizer_class\"");
  if (k == std::string::npos) return false;
  size_t v = text.find_first_not_of(" \t\r\n:", k + 17);
  return v != std::string::npos && text.compare(v, 7, "\"bytes\"") == 0;
}

void require_utf8(std::string_view text, const std::string& source) {
  size_t bad = unicode::find_invalid_utf8(text);
  if (bad != std::string_view::npos)
    fail("text is not valid UTF-8 (byte 0x{:02x} at offset {}); the tokenizer {} needs UTF-8 text",
         static_cast<unsigned>(static_cast<uint8_t>(text[bad])), bad, source);
}

void encode_input(const Tokenizer& tok, std::string_view text, const std::string& input, std::vector<int32_t>& out) {
  if (tok.kind() != "bytes") {
    const size_t bad = unicode::find_invalid_utf8(text);
    if (bad != std::string_view::npos)
      fail("{}: text is not valid UTF-8 (byte 0x{:02x} at offset {}); the {} tokenizer {} needs UTF-8 text", input,
           static_cast<unsigned>(static_cast<uint8_t>(text[bad])), bad, tok.kind(), tok.source());
  }
  tok.encode(text, out);
}

std::vector<size_t> cut_points(std::string_view text, size_t target, char sep) {
  std::vector<size_t> points;
  if (target == 0) target = 1;
  size_t want = target;
  auto is_ascii_letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  auto is_ascii_nonspace = [](char c) { return c > 0x20 && c < 0x7F; };
  while (want < text.size()) {
    const char* p = static_cast<const char*>(std::memchr(text.data() + want, sep, text.size() - want));
    if (!p) break;
    size_t nl = size_t(p - text.data());
    if (nl >= 1 && nl + 1 < text.size() && is_ascii_nonspace(text[nl - 1]) && is_ascii_letter(text[nl + 1])) {
      points.push_back(nl + 1);
      want = nl + 1 + target;
    } else {
      want = nl + 1;
    }
  }
  return points;
}

std::string StreamDecoder::push(int32_t id) {
  ids_.push_back(id);
  const std::string text = tok_.decode(ids_, skip_special_);
  if (text.size() <= emitted_) return {};
  std::string_view fresh = std::string_view(text).substr(emitted_);
  size_t keep = unicode::complete_utf8_prefix(fresh);
  // SentencePiece decodes a partial byte-fallback sequence as U+FFFDs: wait for the rest.
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  if (keep == fresh.size())
    while (keep >= kReplacement.size() && fresh.substr(0, keep).ends_with(kReplacement)) keep -= kReplacement.size();
  std::string out(fresh.substr(0, keep));
  emitted_ += keep;
  if (keep == fresh.size()) {
    // Everything is out: keep only the last id as context (SentencePiece drops the leading space
    // of the first piece, so the next piece needs one before it to be decoded as mid-text).
    ids_.assign(1, id);
    emitted_ = tok_.decode(ids_, skip_special_).size();
  }
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  const std::string text = tok_.decode(ids_, skip_special_);
  if (text.size() > emitted_) out = text.substr(emitted_);
  ids_.clear();
  emitted_ = 0;
  return out;
}

}  // namespace sambalm
