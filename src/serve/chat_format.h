// Chat messages to a prompt. sambalm does not run the Jinja `chat_template` of a model directory; it
// knows two chat formats:
//   phi4   <|system|>S<|end|><|user|>U<|end|><|assistant|>A<|end|>...<|assistant|>, the reply ending at
//          <|end|> (Phi-4-mini and Phi-4-mini-flash, docs/FORMATS.md); needs a tokenizer with <|user|>,
//          <|assistant|> and <|end|>;
//   plain  one line per message, "System: S\nUser: U\nAssistant: A\n...Assistant:", the reply ending at
//          a line starting a new turn ("\nUser:").
// Which one a model gets (--chat-format auto): phi4 when its tokenizer has the phi4 tokens and its
// chat_template, if it has one, writes them; plain when it has neither a template nor those tokens.
// A model whose chat_template is something else (ChatML's <|im_start|>, Llama's [INST], ...) gets
// neither: rendering it another way would be a guess, so chat requests are refused with a message
// saying so, until the server is started with --chat-format phi4|plain.
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

enum class ChatFormat { Phi4, Plain, Unsupported };

struct ChatSetup {
  ChatFormat format = ChatFormat::Plain;
  std::string name = "plain";  // "phi4", "plain" or "none"
  std::string why;             // Unsupported: what the template is and what to do (for errors and the log)
};

// The chat_template of the tokenizer directory `dir` (or of the directory of a tokenizer file):
// tokenizer_config.json's "chat_template" (a string, or a list of {"name", "template"} of which
// "default" or else the first), else a chat_template.jinja file; empty when there is none. A
// tokenizer_config.json that is not valid JSON, or a chat_template of another type, is an Error.
std::string read_chat_template(const std::string& dir);

// requested: "auto", "phi4" or "plain" (Error otherwise; phi4 without the phi4 tokens is an Error).
ChatSetup choose_chat_format(const std::string& requested, const std::string& chat_template, const Tokenizer* tok);

// format must be Phi4 (then tok must have the phi4 tokens) or Plain.
ChatPrompt render_chat(const std::vector<ChatMessage>& messages, ChatFormat format, const Tokenizer* tok);

}  // namespace sambalm::serve
