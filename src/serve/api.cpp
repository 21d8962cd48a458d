#include "serve/api.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>

#include "serve/chat_format.h"
#include "tokenizer/unicode.h"

namespace sambalm::serve {

using nlohmann::json;

namespace {

std::string type_name(const json& v) {
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number_integer()) return "an integer";
  if (v.is_number()) return "a number";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "null";
}

ApiError bad(const std::string& param, const std::string& message, const std::string& code = {}) {
  return ApiError(400, message, param, code);
}

bool given(const json& body, const char* key) { return body.contains(key) && !body.at(key).is_null(); }

double number(const json& body, const char* key, double def, double lo, double hi) {
  if (!given(body, key)) return def;
  const json& v = body.at(key);
  if (!v.is_number()) throw bad(key, fmt::format("'{}' must be a number, got {}", key, type_name(v)));
  const double x = v.get<double>();
  if (!(x >= lo && x <= hi)) throw bad(key, fmt::format("'{}' must be in [{}, {}], got {}", key, lo, hi, x));
  return x;
}

int64_t integer(const json& body, const char* key, int64_t def, int64_t lo, int64_t hi, const std::string& why = {}) {
  if (!given(body, key)) return def;
  const json& v = body.at(key);
  if (!v.is_number_integer()) throw bad(key, fmt::format("'{}' must be an integer, got {}", key, type_name(v)));
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
    throw bad(key, fmt::format("'{}' must be in [{}, {}]{}, got {}", key, lo, hi, why, v.dump()));
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi) throw bad(key, fmt::format("'{}' must be in [{}, {}]{}, got {}", key, lo, hi, why, x));
  return x;
}

bool boolean(const json& body, const char* key, bool def) {
  if (!given(body, key)) return def;
  const json& v = body.at(key);
  if (!v.is_boolean()) throw bad(key, fmt::format("'{}' must be a boolean, got {}", key, type_name(v)));
  return v.get<bool>();
}

std::vector<int32_t> token_ids(const json& arr, const std::string& param, int64_t vocab) {
  std::vector<int32_t> ids;
  for (const auto& v : arr) {
    if (!v.is_number_integer())
      throw bad(param, fmt::format("'{}' mixes token ids with {}: give a string, a list of strings, a list of token "
                                   "ids or a list of lists of token ids",
                                   param, type_name(v)));
    const int64_t id = v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(vocab) ? vocab : v.get<int64_t>();
    if (id < 0 || id >= vocab)
      throw bad(param, fmt::format("'{}' holds token id {}, outside the vocabulary [0, {})", param, v.dump(), vocab));
    ids.push_back(int32_t(id));
  }
  return ids;
}

// The prompts of a completions request, as ids, with their texts.
void parse_prompts(const json& body, const Tokenizer* tok, const ApiLimits& limits,
                   std::vector<std::vector<int32_t>>& ids, std::vector<std::string>& texts) {
  if (!given(body, "prompt")) throw bad("prompt", "'prompt' is required");
  const json& p = body.at("prompt");
  auto add_text = [&](const std::string& s) {
    if (!tok) throw bad("prompt", "this model has no tokenizer: give the prompt as token ids");
    std::vector<int32_t> v;
    try {
      encode_input(*tok, s, "the prompt", v);
    } catch (const std::exception& e) {
      throw bad("prompt", e.what());
    }
    ids.push_back(std::move(v));
    texts.push_back(s);
  };
  auto add_ids = [&](const json& arr) {
    ids.push_back(token_ids(arr, "prompt", limits.vocab));
    texts.push_back(tok ? tok->decode(ids.back()) : std::string());
  };
  if (p.is_string()) {
    add_text(p.get<std::string>());
  } else if (p.is_array() && !p.empty() && p[0].is_number_integer()) {
    add_ids(p);
  } else if (p.is_array() && !p.empty()) {
    for (const auto& e : p) {
      if (e.is_string() && p[0].is_string())
        add_text(e.get<std::string>());
      else if (e.is_array() && p[0].is_array())
        add_ids(e);
      else
        throw bad("prompt", fmt::format("'prompt' must be a string, a list of strings, a list of token ids or a list "
                                        "of lists of token ids; found {} in a list starting with {}",
                                        type_name(e), type_name(p[0])));
    }
    if (int64_t(p.size()) > limits.max_prompts)
      throw bad("prompt", fmt::format("{} prompts in one request, more than the server can hold at once ({}: "
                                      "--max-batch + --max-queue)",
                                      p.size(), limits.max_prompts));
  } else {
    throw bad("prompt", fmt::format("'prompt' must be a non-empty string, list of strings, list of token ids or list "
                                    "of lists of token ids, got {}",
                                    p.is_array() ? "an empty list" : type_name(p)));
  }
}

std::vector<ChatMessage> parse_messages(const json& body) {
  if (!given(body, "messages")) throw bad("messages", "'messages' is required");
  const json& m = body.at("messages");
  if (!m.is_array() || m.empty()) throw bad("messages", "'messages' must be a non-empty list of messages");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < m.size(); ++i) {
    const json& e = m[i];
    const std::string where = fmt::format("messages[{}]", i);
    if (!e.is_object()) throw bad(where, fmt::format("{} must be an object with 'role' and 'content'", where));
    if (!e.contains("role") || !e["role"].is_string())
      throw bad(where + ".role", fmt::format("{}.role must be a string", where));
    ChatMessage msg{e["role"].get<std::string>(), {}};
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant")
      throw bad(where + ".role", fmt::format("{}.role '{}' is not one of system, user, assistant", where, msg.role));
    const json c = e.value("content", json());
    if (c.is_string()) {
      msg.content = c.get<std::string>();
    } else if (c.is_array()) {  // content parts: only text is understood
      for (const auto& part : c) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
            !part["text"].is_string())
          throw bad(where + ".content", fmt::format("{}.content: only text parts are supported", where));
        msg.content += part["text"].get<std::string>();
      }
    } else {
      throw bad(where + ".content", fmt::format("{}.content must be a string, got {}", where, type_name(c)));
    }
    out.push_back(std::move(msg));
  }
  return out;
}

std::vector<std::string> parse_stop(const json& body) {
  std::vector<std::string> stop;
  if (!given(body, "stop")) return stop;
  const json& s = body.at("stop");
  if (s.is_string()) {
    stop.push_back(s.get<std::string>());
  } else if (s.is_array()) {
    if (s.size() > size_t(kMaxStopStrings))
      throw bad("stop", fmt::format("{} stop strings, more than the limit of {}", s.size(), kMaxStopStrings));
    for (const auto& e : s) {
      if (!e.is_string()) throw bad("stop", fmt::format("'stop' must hold strings, found {}", type_name(e)));
      stop.push_back(e.get<std::string>());
    }
  } else {
    throw bad("stop", fmt::format("'stop' must be a string or a list of strings, got {}", type_name(s)));
  }
  for (const auto& e : stop)
    if (e.empty()) throw bad("stop", "'stop' holds an empty string");
  return stop;
}

json completion_logprobs(const std::vector<TokenInfo>& tokens, const Tokenizer* tok, size_t offset) {
  json lp = {{"tokens", json::array()},
             {"token_logprobs", json::array()},
             {"top_logprobs", json::array()},
             {"text_offset", json::array()}};
  for (const auto& t : tokens) {
    const std::string s = token_string(tok, t.id);
    lp["tokens"].push_back(s);
    lp["text_offset"].push_back(offset);
    offset += s.size();
    if (!t.has_logprob) {
      lp["token_logprobs"].push_back(nullptr);
      lp["top_logprobs"].push_back(nullptr);
      continue;
    }
    lp["token_logprobs"].push_back(t.logprob);
    json top = json::object();
    for (const auto& [id, l] : t.top) {
      const std::string k = token_string(tok, id);
      if (!top.contains(k)) top[k] = l;
    }
    lp["top_logprobs"].push_back(top);
  }
  return lp;
}

json chat_logprobs(const std::vector<TokenInfo>& tokens, const Tokenizer* tok) {
  auto entry = [&](int32_t id, float l) {
    const std::string s = token_string(tok, id);
    return json{{"token", s}, {"logprob", l}, {"bytes", std::vector<int>(s.begin(), s.end())}};
  };
  json content = json::array();
  for (const auto& t : tokens) {
    json e = entry(t.id, t.logprob);
    e["top_logprobs"] = json::array();
    for (const auto& [id, l] : t.top) e["top_logprobs"].push_back(entry(id, l));
    content.push_back(std::move(e));
  }
  return {{"content", content}};
}

json reason(const std::string& r) { return r.empty() ? json(nullptr) : json(r); }

}  // namespace

json error_body(const std::string& message, const std::string& type, const std::string& param,
                const std::string& code) {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

std::string token_string(const Tokenizer* tok, int32_t id) {
  if (!tok || id < 0 || id >= tok->vocab_size()) return fmt::format("<{}>", id);
  const std::string s = tok->decode(std::vector<int32_t>{id});
  if (unicode::find_invalid_utf8(s) == std::string::npos) return s;
  // Part of a character (a byte token): "bytes:\xNN..." as OpenAI writes such tokens, so that
  // different bytes stay different keys of top_logprobs.
  std::string out = "bytes:";
  for (unsigned char c : s) out += fmt::format("\\x{:02x}", c);
  return out;
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

ApiRequest parse_request(const std::string& text, bool chat, const Tokenizer* tok, const ApiLimits& limits,
                         uint64_t seed) {
  json body;
  try {
    body = json::parse(text);
  } catch (const json::parse_error& e) {
    throw ApiError(400, fmt::format("the request body is not valid JSON: {}", e.what()), {}, "invalid_json");
  }
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object, got " + type_name(body));
  ApiRequest req;
  req.chat = chat;
  if (given(body, "model")) {
    if (!body["model"].is_string())
      throw bad("model", fmt::format("'model' must be a string, got {}", type_name(body["model"])));
    const std::string m = body["model"].get<std::string>();
    if (std::find(limits.model_ids.begin(), limits.model_ids.end(), m) == limits.model_ids.end())
      throw ApiError(404, fmt::format("the model '{}' does not exist; this server serves '{}'", m, limits.model_ids[0]),
                     "model", "model_not_found");
  }
  if (integer(body, "n", 1, 1, 1, " (one choice per prompt)") != 1) throw bad("n", "n must be 1");
  if (given(body, "best_of")) integer(body, "best_of", 1, 1, 1, " (one choice per prompt)");
  for (const char* k : {"presence_penalty", "frequency_penalty"})
    if (number(body, k, 0, -2, 2) != 0) throw bad(k, fmt::format("'{}' is not supported (use repetition_penalty)", k));
  req.stream = boolean(body, "stream", false);

  GenerateOptions gen;
  gen.max_tokens = integer(body, chat && given(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens",
                           chat ? limits.max_tokens : 16, 0, limits.max_tokens, " (the server's --max-tokens)");
  SamplingParams& sp = gen.sampling;
  sp.temperature = number(body, "temperature", 1.0, 0.0, 100.0);
  sp.top_p = number(body, "top_p", 1.0, 0.0, 1.0);
  sp.min_p = number(body, "min_p", 0.0, 0.0, 1.0);
  sp.top_k = integer(body, "top_k", 0, -1, int64_t(1) << 30);
  if (sp.top_k < 0) sp.top_k = 0;  // -1: no limit, as other servers spell it
  sp.repetition_penalty = number(body, "repetition_penalty", 1.0, 0.01, 100.0);
  sp.seed = uint64_t(integer(body, "seed", int64_t(seed >> 1), 0, std::numeric_limits<int64_t>::max()));
  gen.stop = parse_stop(body);
  gen.stop_at_eos = !boolean(body, "ignore_eos", false);
  gen.max_prompt_tokens = limits.max_prompt_tokens;

  std::vector<std::vector<int32_t>> prompts;
  if (chat) {
    if (boolean(body, "logprobs", false)) req.logprobs = int(integer(body, "top_logprobs", 0, 0, kMaxLogprobs));
    const std::vector<ChatMessage> messages = parse_messages(body);
    if (!tok)
      throw bad("messages", "this model has no tokenizer, so it cannot chat; use /v1/completions with token ids");
    if (limits.chat.format == ChatFormat::Unsupported)
      throw bad("messages", limits.chat.why, "unsupported_chat_template");
    ChatPrompt cp = render_chat(messages, limits.chat.format, tok);
    std::vector<int32_t> ids;
    try {
      encode_input(*tok, cp.text, "the messages", ids);
    } catch (const std::exception& e) {
      throw bad("messages", e.what());
    }
    prompts.push_back(std::move(ids));
    req.prompt_texts.push_back(cp.text);
    gen.stop.insert(gen.stop.end(), cp.stop.begin(), cp.stop.end());
    if (cp.end_id >= 0) gen.eos_id = cp.end_id;
  } else {
    if (given(body, "logprobs")) req.logprobs = int(integer(body, "logprobs", -1, 0, kMaxLogprobs));
    req.echo = boolean(body, "echo", false);
    parse_prompts(body, tok, limits, prompts, req.prompt_texts);
  }
  if (req.stream && prompts.size() > 1)
    throw bad("prompt", "streaming serves one prompt per request; send the prompts as separate requests");

  for (size_t i = 0; i < prompts.size(); ++i) {
    const int64_t n = int64_t(prompts[i].size());
    const std::string param = chat ? "messages" : "prompt";
    if (n == 0) throw bad(param, fmt::format("prompt {} is empty: give at least one token", i));
    for (int32_t id : prompts[i])
      if (id < 0 || id >= limits.vocab)
        throw bad(param, fmt::format("prompt {} encodes to token id {}, outside the model's vocabulary [0, {})", i, id,
                                     limits.vocab));
    if (n > limits.max_prompt_tokens)
      throw bad(param,
                fmt::format("prompt {} has {} tokens, more than the server's limit of {} (--max-prompt-tokens)", i, n,
                            limits.max_prompt_tokens),
                "context_length_exceeded");
    if (limits.max_context > 0 && n + gen.max_tokens > limits.max_context)
      throw bad(param,
                fmt::format("prompt {} ({} tokens) + max_tokens {} exceed the model's context of {} positions", i, n,
                            gen.max_tokens, limits.max_context),
                "context_length_exceeded");
    auto job = std::make_shared<Job>();
    job->prompt = std::move(prompts[i]);
    job->gen = gen;
    job->gen.sampling.seed += i;
    job->top_logprobs = req.logprobs;
    job->prompt_logprobs = req.echo && req.logprobs >= 0;
    req.jobs.push_back(std::move(job));
  }
  return req;
}

json completion_response(const ApiRequest& req, const Tokenizer* tok, const std::string& id, int64_t created,
                         const std::string& model) {
  json choices = json::array();
  int64_t prompt_tokens = 0, completion_tokens = 0;
  for (size_t i = 0; i < req.jobs.size(); ++i) {
    const Job& j = *req.jobs[i];
    prompt_tokens += int64_t(j.prompt.size());
    completion_tokens += j.completion_tokens;
    json c = {{"index", i}, {"finish_reason", reason(j.finish_reason)}};
    if (req.chat) {
      c["message"] = {{"role", "assistant"}, {"content", j.text}};
      c["logprobs"] = req.logprobs >= 0 ? chat_logprobs(j.all_tokens, tok) : json(nullptr);
    } else {
      c["text"] = req.echo ? req.prompt_texts[i] + j.text : j.text;
      if (req.logprobs >= 0) {
        std::vector<TokenInfo> all = req.echo ? j.prompt_info : std::vector<TokenInfo>{};
        all.insert(all.end(), j.all_tokens.begin(), j.all_tokens.end());
        c["logprobs"] = completion_logprobs(all, tok, 0);
      } else {
        c["logprobs"] = nullptr;
      }
    }
    choices.push_back(std::move(c));
  }
  return {{"id", id},
          {"object", req.chat ? "chat.completion" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", choices},
          {"usage",
           {{"prompt_tokens", prompt_tokens},
            {"completion_tokens", completion_tokens},
            {"total_tokens", prompt_tokens + completion_tokens}}}};
}

json stream_chunk(const ApiRequest& req, const Tokenizer* tok, const std::string& id, int64_t created,
                  const std::string& model, const std::string& text, const std::vector<TokenInfo>& tokens,
                  const std::string& finish_reason, bool first, size_t text_offset) {
  json c = {{"index", 0}, {"finish_reason", reason(finish_reason)}};
  if (req.chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || first) delta["content"] = text;
    c["delta"] = delta;
    c["logprobs"] = req.logprobs >= 0 && !tokens.empty() ? chat_logprobs(tokens, tok) : json(nullptr);
  } else {
    c["text"] = text;
    c["logprobs"] =
        req.logprobs >= 0 && !tokens.empty() ? completion_logprobs(tokens, tok, text_offset) : json(nullptr);
  }
  return {{"id", id},
          {"object", req.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array({c})}};
}

}  // namespace sambalm::serve
