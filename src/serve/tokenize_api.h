// The tokenizer routes of `sambalm serve`, in vLLM's form, which lm-evaluation-harness's
// `tokenizer_backend=remote` (its default `auto` when the server has them) uses, so the harness needs
// no copy of the model's tokenizer that `transformers` can load:
//   GET  /tokenizer_info  {"tokenizer_class", "bos_token", "eos_token", "pad_token", "vocab_size"}
//   POST /tokenize        {"prompt": TEXT, "add_special_tokens": BOOL} -> {"tokens", "count", "max_model_len"}
//   POST /detokenize      {"tokens": [IDS]} -> {"prompt": TEXT}
// /tokenize encodes as the completions route does (no BOS unless add_special_tokens, whose default is
// true as in vLLM), except that the BOS and EOS token strings in the text become those ids: the
// harness finds the ids of the tokens /tokenizer_info names by encoding their strings.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "tokenizer/tokenizer.h"

namespace sambalm::serve {

nlohmann::json tokenizer_info(const Tokenizer& tok);
// Request bodies as text; a bad one is an ApiError (400) naming the field.
nlohmann::json tokenize(const Tokenizer& tok, const std::string& body, int64_t max_model_len);
nlohmann::json detokenize(const Tokenizer& tok, const std::string& body);

}  // namespace sambalm::serve
