// Chat messages to a prompt. sambalm does not run the Jinja `chat_template` of a model directory; it
// knows one chat format by its special tokens and falls back to a plain one:
//   phi4   when the tokenizer has <|user|>, <|assistant|> and <|end|> (Phi-4-mini, docs/FORMATS.md):
//            <|system|>S<|end|><|user|>U<|end|><|assistant|>A<|end|>...<|assistant|>
//          and the reply ends at <|end|>;
//   plain  otherwise: one line per message, "System: S\nUser: U\nAssistant: A\n...Assistant:",
//          and the reply ends at a line starting a new turn ("\nUser:").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace sambalm::serve {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

struct ChatPrompt {
  std::string text;
  std::vector<std::string> stop;  // stop strings the format adds
  int32_t end_id = -1;            // the token that ends a reply (>= 0: replaces the tokenizer's eos)
};

// "phi4" or "plain" for this tokenizer (null: "plain").
std::string chat_format_name(const Tokenizer* tok);
ChatPrompt render_chat(const std::vector<ChatMessage>& messages, const Tokenizer* tok);

}  // namespace sambalm::serve
