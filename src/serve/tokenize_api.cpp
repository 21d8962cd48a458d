#include "serve/tokenize_api.h"

#include <fmt/format.h>

#include <optional>
#include <vector>

#include "core/error.h"
#include "serve/api.h"

namespace sambalm::serve {
namespace {

using json = nlohmann::json;

json parse_object(const std::string& text) {
  json body;
  try {
    body = json::parse(text);
  } catch (const json::parse_error& e) {
    throw ApiError(400, fmt::format("the request body is not valid JSON: {}", e.what()), {}, "invalid_json");
  }
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
  return body;
}

json token_text(const Tokenizer& tok, std::optional<int32_t> id) {
  if (!id) return nullptr;
  return tok.id_to_token(*id);
}

}  // namespace

json tokenizer_info(const Tokenizer& tok) {
  return {{"tokenizer_class", tok.kind()},
          {"bos_token", token_text(tok, tok.bos_id())},
          {"eos_token", token_text(tok, tok.eos_id())},
          {"pad_token", nullptr},
          {"vocab_size", tok.vocab_size()}};
}

json tokenize(const Tokenizer& tok, const std::string& text, int64_t max_model_len) {
  const json body = parse_object(text);
  if (!body.contains("prompt") || !body["prompt"].is_string())
    throw ApiError(400, "'prompt' must be a string", "prompt");
  bool add_special = true;
  if (body.contains("add_special_tokens")) {
    if (!body["add_special_tokens"].is_boolean())
      throw ApiError(400, "'add_special_tokens' must be a boolean", "add_special_tokens");
    add_special = body["add_special_tokens"].get<bool>();
  }
  const std::string prompt = body["prompt"].get<std::string>();
  // The BOS and EOS strings become their ids (a byte-level BPE does so itself; SentencePiece would
  // spell "</s>" out in pieces); the text between them is encoded as the completions route does.
  std::vector<std::pair<std::string, int32_t>> specials;
  for (auto id : {tok.bos_id(), tok.eos_id()})
    if (id && !tok.id_to_token(*id).empty()) specials.emplace_back(tok.id_to_token(*id), *id);
  std::vector<int32_t> ids;
  if (add_special && tok.bos_id()) ids.push_back(*tok.bos_id());
  size_t at = 0;
  while (at <= prompt.size()) {
    size_t next = std::string::npos, len = 0;
    int32_t sid = 0;
    for (const auto& [s, id] : specials) {
      const size_t p = prompt.find(s, at);
      if (p < next) next = p, len = s.size(), sid = id;
    }
    const std::string_view piece = std::string_view(prompt).substr(at, next == std::string::npos ? next : next - at);
    try {
      if (!piece.empty()) encode_input(tok, piece, "'prompt'", ids);
    } catch (const Error& e) {
      throw ApiError(400, e.what(), "prompt");
    }
    if (next == std::string::npos) break;
    ids.push_back(sid);
    at = next + len;
  }
  return {{"tokens", ids}, {"count", ids.size()}, {"max_model_len", max_model_len}};
}

json detokenize(const Tokenizer& tok, const std::string& text) {
  const json body = parse_object(text);
  if (!body.contains("tokens") || !body["tokens"].is_array())
    throw ApiError(400, "'tokens' must be a list of token ids", "tokens");
  std::vector<int32_t> ids;
  for (const auto& t : body["tokens"]) {
    if (!t.is_number_integer()) throw ApiError(400, "'tokens' must be a list of token ids", "tokens");
    const int64_t id = t.get<int64_t>();
    if (id < 0 || id >= tok.vocab_size())
      throw ApiError(400,
                     fmt::format("'tokens' holds token id {}, outside the vocabulary [0, {})", id, tok.vocab_size()),
                     "tokens");
    ids.push_back(int32_t(id));
  }
  return {{"prompt", tok.decode(ids)}};
}

}  // namespace sambalm::serve
