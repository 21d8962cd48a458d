// The OpenAI-compatible request and response bodies: JSON in, validated jobs out; finished jobs in,
// JSON out. Every problem with a request is an ApiError (HTTP status + OpenAI-style error object).
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "serve/chat_format.h"
#include "serve/job.h"
#include "tokenizer/tokenizer.h"

namespace sambalm::serve {

struct ApiError : std::runtime_error {
  ApiError(int status, const std::string& message, std::string param = {}, std::string code = {},
           std::string type = "invalid_request_error")
      : std::runtime_error(message),
        status(status),
        param(std::move(param)),
        code(std::move(code)),
        type(std::move(type)) {}
  int status;
  std::string param, code, type;
};

// {"error": {"message", "type", "param", "code"}} (param and code null when empty).
nlohmann::json error_body(const std::string& message, const std::string& type, const std::string& param = {},
                          const std::string& code = {});

struct ApiLimits {
  std::vector<std::string> model_ids;  // names a request's "model" may use
  int64_t max_tokens = 4096;           // largest max_tokens accepted
  int64_t max_prompt_tokens = 8192;    // longest prompt accepted
  int64_t max_prompts = 64;            // prompts in one completions request
  int64_t vocab = 0;                   // ids a prompt may hold: [0, vocab)
  int64_t max_context = 0;             // > 0: prompt + max_tokens must fit (full-attention cache)
  ChatSetup chat;                      // how chat messages become a prompt
};

inline constexpr int kMaxStopStrings = 16;
inline constexpr int kMaxLogprobs = 20;

// A parsed request: one job per prompt (their inputs set), and what the response needs.
struct ApiRequest {
  bool chat = false, stream = false, echo = false;
  int logprobs = -1;  // completions: top alternatives per token; chat: top_logprobs (-1: no logprobs)
  std::vector<std::shared_ptr<Job>> jobs;
  std::vector<std::string> prompt_texts;  // echo: each prompt's text
};

// Body of POST /v1/completions or /v1/chat/completions. `seed` is used when the request gives none.
ApiRequest parse_request(const std::string& body, bool chat, const Tokenizer* tok, const ApiLimits& limits,
                         uint64_t seed);

// The whole response of a request whose jobs have all finished without error.
nlohmann::json completion_response(const ApiRequest& req, const Tokenizer* tok, const std::string& id, int64_t created,
                                   const std::string& model);
// One streamed chunk: `text` with the tokens it carries (prompt tokens first when echoed);
// finish_reason "" for null. Chat: `first` adds the assistant role to the delta.
nlohmann::json stream_chunk(const ApiRequest& req, const Tokenizer* tok, const std::string& id, int64_t created,
                            const std::string& model, const std::string& text, const std::vector<TokenInfo>& tokens,
                            const std::string& finish_reason, bool first, size_t text_offset);

// What to show for a token in logprobs: its text, or "bytes:\xNN..." when that is not valid UTF-8.
std::string token_string(const Tokenizer* tok, int32_t id);
// json::dump that never throws on invalid UTF-8 (replaced by U+FFFD).
std::string dump(const nlohmann::json& j);

}  // namespace sambalm::serve
