// Chat formats: which one a model gets (its tokenizer's special tokens and its chat_template), how
// messages render, and that a template sambalm cannot render is reported (the server refuses chat
// with a message saying what to do), not guessed.
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "serve/chat_format.h"
#include "serve_testing.h"

using namespace sambalm;
using namespace sambalm::serve;
using nlohmann::json;

namespace {

const char* kPhi4Template =
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>' + message['content'] + "
    "'<|end|>'}}{% elif message['role'] == 'user' %}{{'<|user|>' + message['content'] + '<|end|>'}}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}";
const char* kChatMlTemplate =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}";

std::unique_ptr<Tokenizer> phi4_tokenizer() {
  return load_tokenizer(test::fixtures_dir() + "/bpe_split_tiny/tokenizer.json");
}

TEST(ChatFormat, AutoFollowsTheTokensAndTheTemplate) {
  auto phi = phi4_tokenizer();
  auto bytes = load_tokenizer("bytes");
  EXPECT_EQ(choose_chat_format("auto", "", phi.get()).format, ChatFormat::Phi4);
  EXPECT_EQ(choose_chat_format("auto", kPhi4Template, phi.get()).format, ChatFormat::Phi4);
  EXPECT_EQ(choose_chat_format("auto", "", bytes.get()).format, ChatFormat::Plain);
  EXPECT_EQ(choose_chat_format("auto", "", nullptr).format, ChatFormat::Plain);
  // Another format's template: reported, whatever the tokens.
  for (const Tokenizer* t : {static_cast<const Tokenizer*>(phi.get()), static_cast<const Tokenizer*>(bytes.get())}) {
    const ChatSetup s = choose_chat_format("auto", kChatMlTemplate, t);
    EXPECT_EQ(s.format, ChatFormat::Unsupported);
    EXPECT_NE(s.why.find("<|im_start|>"), std::string::npos) << s.why;
    EXPECT_NE(s.why.find("--chat-format"), std::string::npos) << s.why;
  }
  // A phi4-looking template without the tokens to write it is not phi4 either.
  EXPECT_EQ(choose_chat_format("auto", kPhi4Template, bytes.get()).format, ChatFormat::Unsupported);
  // An explicit choice wins over the template.
  EXPECT_EQ(choose_chat_format("plain", kChatMlTemplate, phi.get()).format, ChatFormat::Plain);
  EXPECT_EQ(choose_chat_format("phi4", kChatMlTemplate, phi.get()).format, ChatFormat::Phi4);
  EXPECT_THROW(choose_chat_format("phi4", "", bytes.get()), Error);
  EXPECT_THROW(choose_chat_format("chatml", "", phi.get()), Error);
}

TEST(ChatFormat, RendersPhi4AndPlain) {
  auto phi = phi4_tokenizer();
  const std::vector<ChatMessage> m = {{"system", "Be brief."}, {"user", "Hi"}};
  const ChatPrompt p = render_chat(m, ChatFormat::Phi4, phi.get());
  EXPECT_EQ(p.text, "<|system|>Be brief.<|end|><|user|>Hi<|end|><|assistant|>");
  EXPECT_EQ(p.end_id, *phi->token_to_id("<|end|>"));
  const ChatPrompt q = render_chat(m, ChatFormat::Plain, phi.get());
  EXPECT_EQ(q.text, "System: Be brief.\nUser: Hi\nAssistant:");
  EXPECT_EQ(q.stop, std::vector<std::string>{"\nUser:"});
  EXPECT_THROW(render_chat(m, ChatFormat::Unsupported, phi.get()), Error);
}

TEST(ChatFormat, ReadsTheTemplateOfATokenizerDirectory) {
  const std::string dir = test::temp_dir("chat_template");
  EXPECT_EQ(read_chat_template(dir), "");
  std::ofstream(dir + "/tokenizer_config.json") << json{{"tokenizer_class", "bytes"}}.dump();
  EXPECT_EQ(read_chat_template(dir), "");
  std::ofstream(dir + "/tokenizer_config.json") << json{{"chat_template", kChatMlTemplate}}.dump();
  EXPECT_EQ(read_chat_template(dir), kChatMlTemplate);
  EXPECT_EQ(read_chat_template(dir + "/tokenizer.json"), kChatMlTemplate);  // a file: its directory
  std::ofstream(dir + "/tokenizer_config.json")
      << json{{"chat_template", json::array({json{{"name", "tool_use"}, {"template", "T"}},
                                             json{{"name", "default"}, {"template", kPhi4Template}}})}}
             .dump();
  EXPECT_EQ(read_chat_template(dir), kPhi4Template);
  std::ofstream(dir + "/tokenizer_config.json") << json{{"chat_template", 42}}.dump();
  EXPECT_THROW(read_chat_template(dir), Error);
  std::ofstream(dir + "/tokenizer_config.json") << "{not json";
  EXPECT_THROW(read_chat_template(dir), Error);
  std::ofstream(dir + "/tokenizer_config.json") << "{}";
  std::ofstream(dir + "/chat_template.jinja") << kChatMlTemplate;
  EXPECT_EQ(read_chat_template(dir), kChatMlTemplate);
}

TEST(ChatFormat, TheServerRefusesChatWithATemplateItCannotRender) {
  const std::string model = test::serve_model_dir("serve_chatml");
  std::ofstream(model + "/" + kTokenizerConfigFile)
      << json{{"tokenizer_class", "bytes"}, {"chat_template", kChatMlTemplate}}.dump();
  const json chat = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 4}, {"temperature", 0}};
  {
    test::ServeProcess s(model, {});
    ASSERT_GT(s.port, 0) << s.log();
    EXPECT_NE(s.log().find("chat completions are refused"), std::string::npos) << s.log();
    auto [status, r] = s.post("/v1/chat/completions", chat);
    EXPECT_EQ(status, 400) << r.dump();
    EXPECT_EQ(r["error"]["code"], "unsupported_chat_template") << r.dump();
    EXPECT_NE(r["error"]["message"].get<std::string>().find("--chat-format"), std::string::npos) << r.dump();
    auto [ok, c] = s.post("/v1/completions", json{{"prompt", "Hi"}, {"max_tokens", 4}, {"temperature", 0}});
    EXPECT_EQ(ok, 200) << c.dump();  // completions still work
  }
  {
    test::ServeProcess s(model, {"--chat-format", "plain"});
    ASSERT_GT(s.port, 0) << s.log();
    auto [status, r] = s.post("/v1/chat/completions", chat);
    EXPECT_EQ(status, 200) << r.dump();
  }
  std::string out;
  EXPECT_NE(test::run_cli("serve --model " + model + " --chat-format phi4 --port 0", &out), 0);
  EXPECT_NE(out.find("--chat-format phi4"), std::string::npos) << out;
  EXPECT_NE(test::run_cli("serve --model " + model + " --chat-format chatml --port 0", &out), 0);
  EXPECT_NE(out.find("--chat-format"), std::string::npos) << out;
}

}  // namespace
