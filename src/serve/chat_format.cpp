#include "serve/chat_format.h"

namespace sambalm::serve {

namespace {
bool is_phi4(const Tokenizer* tok) {
  return tok && tok->token_to_id("<|user|>") && tok->token_to_id("<|assistant|>") && tok->token_to_id("<|end|>");
}
}  // namespace

std::string chat_format_name(const Tokenizer* tok) { return is_phi4(tok) ? "phi4" : "plain"; }

ChatPrompt render_chat(const std::vector<ChatMessage>& messages, const Tokenizer* tok) {
  ChatPrompt p;
  if (is_phi4(tok)) {
    for (const auto& m : messages) p.text += "<|" + m.role + "|>" + m.content + "<|end|>";
    p.text += "<|assistant|>";
    p.end_id = *tok->token_to_id("<|end|>");
    return p;
  }
  for (const auto& m : messages) {
    const std::string role = m.role == "system" ? "System" : m.role == "user" ? "User" : "Assistant";
    p.text += role + ": " + m.content + "\n";
  }
  p.text += "Assistant:";
  p.stop = {"\nUser:"};
  return p;
}

}  // namespace sambalm::serve
