#include "serve/chat_format.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace sambalm::serve {

namespace fs = std::filesystem;

namespace {

bool has_phi4_tokens(const Tokenizer* tok) {
  return tok && tok->token_to_id("<|user|>") && tok->token_to_id("<|assistant|>") && tok->token_to_id("<|end|>");
}

bool writes_phi4(const std::string& t) {
  return t.find("<|user|>") != std::string::npos && t.find("<|assistant|>") != std::string::npos &&
         t.find("<|end|>") != std::string::npos;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  SAMBALM_CHECK(in, "{}: cannot read", p.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The first line of a template, shortened, to name it in messages.
std::string excerpt(const std::string& t) {
  std::string s = t.substr(0, t.find('\n'));
  if (s.size() > 60) s = s.substr(0, 60) + "...";
  return s;
}

}  // namespace

std::string read_chat_template(const std::string& path) {
  fs::path dir(path);
  if (!fs::is_directory(dir)) dir = dir.parent_path();
  if (dir.empty()) dir = ".";
  const fs::path config = dir / kTokenizerConfigFile;
  if (fs::is_regular_file(config)) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_text(config));
    } catch (const nlohmann::json::exception& e) {
      fail("{}: not valid JSON ({})", config.string(), e.what());
    }
    if (j.is_object() && j.contains("chat_template") && !j["chat_template"].is_null()) {
      const auto& t = j["chat_template"];
      if (t.is_string()) return t.get<std::string>();
      if (t.is_array() && !t.empty()) {
        const nlohmann::json* pick = nullptr;
        for (const auto& e : t) {
          SAMBALM_CHECK(e.is_object() && e.contains("template") && e["template"].is_string(),
                        "{}: chat_template: a list whose entries are not {{\"name\", \"template\"}} objects",
                        config.string());
          if (!pick || (e.contains("name") && e["name"] == "default")) pick = &e;
        }
        return (*pick)["template"].get<std::string>();
      }
      fail("{}: chat_template is {}, expected a string or a list of named templates", config.string(), t.type_name());
    }
  }
  const fs::path jinja = dir / "chat_template.jinja";
  if (fs::is_regular_file(jinja)) return read_text(jinja);
  return {};
}

ChatSetup choose_chat_format(const std::string& requested, const std::string& chat_template, const Tokenizer* tok) {
  ChatSetup s;
  if (requested == "plain") return s;
  if (requested == "phi4") {
    SAMBALM_CHECK(
        has_phi4_tokens(tok),
        "--chat-format phi4: the tokenizer has no <|user|>, <|assistant|> and <|end|> tokens to write it with");
    return {ChatFormat::Phi4, "phi4", {}};
  }
  SAMBALM_CHECK(requested == "auto", "--chat-format {}: expected auto, phi4 or plain", requested);
  if (chat_template.empty()) {
    if (has_phi4_tokens(tok)) return {ChatFormat::Phi4, "phi4", {}};
    return s;
  }
  if (writes_phi4(chat_template) && has_phi4_tokens(tok)) return {ChatFormat::Phi4, "phi4", {}};
  s.format = ChatFormat::Unsupported;
  s.name = "none";
  s.why = fmt::format(
      "the model's chat_template (\"{}\") is not a format sambalm renders (it renders phi4 and plain, and does not "
      "run Jinja templates); start the server with --chat-format phi4 or --chat-format plain to choose one, or send "
      "prompts you format to /v1/completions",
      excerpt(chat_template));
  return s;
}

ChatPrompt render_chat(const std::vector<ChatMessage>& messages, ChatFormat format, const Tokenizer* tok) {
  SAMBALM_CHECK(format != ChatFormat::Unsupported, "render_chat: no chat format");
  ChatPrompt p;
  if (format == ChatFormat::Phi4) {
    SAMBALM_CHECK(has_phi4_tokens(tok), "render_chat: phi4 needs the tokens <|user|>, <|assistant|> and <|end|>");
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
