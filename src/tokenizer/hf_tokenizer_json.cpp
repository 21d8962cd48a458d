// Reading tokenizer.json into an HfTokenizer: every part is checked against what hf_tokenizer.h
// supports, and anything else is refused by name.
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/json_field.h"
#include "io/file.h"
#include "tokenizer/hf_tokenizer.h"

namespace sambalm {

namespace {

using json = nlohmann::json;

std::string type_of(const json& j, const std::string& src, const std::string& part) {
  SAMBALM_CHECK(j.is_object() && j.contains("type") && j["type"].is_string(),
                "{}: {} must be an object with a string 'type', found {}", src, part, j.dump().substr(0, 80));
  return j["type"].get<std::string>();
}

bool parse_normalizer(const json& j, const std::string& src, const std::string& part) {
  if (j.is_null()) return false;
  std::string t = type_of(j, src, part);
  if (t == "NFC") return true;
  if (t == "Sequence") {
    bool nfc = false;
    const json& list = j.at("normalizers");
    for (size_t i = 0; i < list.size(); ++i)
      nfc |= parse_normalizer(list[i], src, fmt::format("{}.normalizers[{}]", part, i));
    return nfc;
  }
  fail("{}: {}: type '{}' is not supported (supported: NFC, Sequence)", src, part, t);
}

// A split step: the hand-written matcher when the regex is a known one (unless options say
// otherwise), else PCRE2.
PreTokStep split_step(const std::string& regex, const std::string& where, const HfTokenizerOptions& options) {
  auto p = pretok::pattern_from_regex(regex);
  PreTokStep step{PreTokStep::kSplit, p.value_or(pretok::Pattern::kGpt2), nullptr};
  if (!p || options.regex_engine_only) step.regex = std::make_shared<const pretok::SplitRegex>(regex, where);
  return step;
}

void parse_pre_tokenizer(const json& j, const std::string& src, const std::string& part, std::vector<PreTokStep>& steps,
                         bool& byte_level, const HfTokenizerOptions& options) {
  std::string t = type_of(j, src, part);
  if (t == "Sequence") {
    const json& list = j.at("pretokenizers");
    for (size_t i = 0; i < list.size(); ++i)
      parse_pre_tokenizer(list[i], src, fmt::format("{}.pretokenizers[{}]", part, i), steps, byte_level, options);
    return;
  }
  if (t == "ByteLevel") {
    SAMBALM_CHECK(!byte_level, "{}: {}: a second ByteLevel step is not supported", src, part);
    byte_level = true;
    if (j.value("add_prefix_space", false)) {
      SAMBALM_CHECK(steps.empty(), "{}: {}: ByteLevel add_prefix_space after another pre-tokenizer is not supported",
                    src, part);
      steps.push_back({PreTokStep::kPrefixSpace, pretok::Pattern::kGpt2, nullptr});
    }
    if (j.value("use_regex", true))
      steps.push_back(split_step(pretok::pattern_regex(pretok::Pattern::kGpt2), src + ": " + part, options));
    return;
  }
  if (t == "Split") {
    SAMBALM_CHECK(!byte_level, "{}: {}: a Split after the ByteLevel step is not supported", src, part);
    const json& pat = j.at("pattern");
    SAMBALM_CHECK(pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string(),
                  "{}: {}: only a Regex pattern is supported, found {}", src, part, pat.dump().substr(0, 80));
    std::string re = pat["Regex"].get<std::string>();
    std::string behavior = j.value("behavior", "Isolated");
    SAMBALM_CHECK(behavior == "Isolated", "{}: {}: behavior '{}' is not supported (supported: Isolated)", src, part,
                  behavior);
    SAMBALM_CHECK(!j.value("invert", false), "{}: {}: invert: true is not supported", src, part);
    steps.push_back(split_step(re, src + ": " + part, options));
    return;
  }
  fail("{}: {}: type '{}' is not supported (supported: ByteLevel, Split, Sequence)", src, part, t);
}

// Post-processors only add tokens around an encoding (sambalm's encode never does); a
// TemplateProcessing's tokens before and after $A tell which are BOS and EOS.
void parse_post_processor(const json& post, const std::string& src, const std::string& part,
                          std::optional<std::string>& bos_name, std::optional<std::string>& eos_name) {
  if (post.is_null()) return;
  std::string ptype = type_of(post, src, part);
  if (ptype == "Sequence") {
    const json& list = post.at("processors");
    for (size_t i = 0; i < list.size(); ++i)
      parse_post_processor(list[i], src, fmt::format("{}.processors[{}]", part, i), bos_name, eos_name);
  } else if (ptype == "TemplateProcessing") {
    bool seen_a = false;
    for (const json& item : post.at("single")) {
      if (item.contains("Sequence"))
        seen_a = true;
      else if (item.contains("SpecialToken"))
        (seen_a ? eos_name : bos_name) = item["SpecialToken"].at("id").get<std::string>();
    }
  } else {
    SAMBALM_CHECK(ptype == "ByteLevel",
                  "{}: {}: type '{}' is not supported (supported: ByteLevel, TemplateProcessing, Sequence)", src, part,
                  ptype);
  }
}

std::optional<int32_t> config_token(const json& cfg, const char* key, const HfTokenizer& tok) {
  if (!cfg.contains(key)) return std::nullopt;
  const json& v = cfg[key];
  std::string content;
  if (v.is_string())
    content = v.get<std::string>();
  else if (v.is_object() && v.contains("content") && v["content"].is_string())
    content = v["content"].get<std::string>();
  else
    return std::nullopt;
  return tok.token_to_id(content);
}

std::unique_ptr<Tokenizer> parse(const json& root, const std::string& src, const HfTokenizerOptions& options) {
  SAMBALM_CHECK(root.is_object(), "{}: expected a JSON object at the top level", src);
  SAMBALM_CHECK(root.contains("model"), "{}: no 'model' section", src);
  const json& model = root["model"];
  std::string mtype = model.is_object() && model.contains("type") ? model["type"].get<std::string>() : "BPE";
  SAMBALM_CHECK(mtype == "BPE", "{}: model: type '{}' is not supported (supported: BPE, byte-level)", src, mtype);
  SAMBALM_CHECK(model.value("dropout", json()).is_null() || model["dropout"].get<double>() == 0.0,
                "{}: model.dropout is not supported", src);
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json& v = model.value(k, json());
    SAMBALM_CHECK(v.is_null() || v.get<std::string>().empty(), "{}: model.{} is not supported", src, k);
  }
  SAMBALM_CHECK(!model.value("byte_fallback", false), "{}: model.byte_fallback is not supported", src);

  SAMBALM_CHECK(model.contains("vocab") && model["vocab"].is_object(), "{}: model.vocab must be an object", src);
  std::unordered_map<std::string, int32_t> vocab;
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    SAMBALM_CHECK(
        it.value().is_number_integer() && it.value().get<int64_t>() >= 0 && it.value().get<int64_t>() < (1 << 30),
        "{}: model.vocab['{}'] must be a non-negative id, found {}", src, it.key(), it.value().dump());
    vocab[it.key()] = it.value().get<int32_t>();
  }
  std::vector<std::pair<std::string, std::string>> merges;
  SAMBALM_CHECK(model.contains("merges") && model["merges"].is_array(), "{}: model.merges must be an array", src);
  for (size_t i = 0; i < model["merges"].size(); ++i) {
    const json& m = model["merges"][i];
    if (m.is_string()) {
      std::string s = m.get<std::string>();
      size_t sp = s.find(' ', 1);
      SAMBALM_CHECK(sp != std::string::npos, "{}: model.merges[{}] '{}' is not 'a b'", src, i, s);
      merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else {
      SAMBALM_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(),
                    "{}: model.merges[{}] must be 'a b' or [a, b], found {}", src, i, m.dump());
      merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    }
  }
  std::optional<int32_t> unk;
  if (const json& u = model.value("unk_token", json()); !u.is_null()) {
    auto it = vocab.find(u.get<std::string>());
    SAMBALM_CHECK(it != vocab.end(), "{}: model.unk_token '{}' is not in model.vocab", src, u.get<std::string>());
    unk = it->second;
  }
  auto bpe = std::make_unique<BpeModel>(std::move(vocab), merges, unk, model.value("fuse_unk", false),
                                        model.value("ignore_merges", false), src);

  std::vector<AddedToken> added;
  if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
    for (const json& a : root["added_tokens"]) {
      AddedToken t;
      t.content = a.at("content").get<std::string>();
      int64_t id = json_int64(a, "id", src);
      SAMBALM_CHECK(id >= 0 && id < (1 << 30), "{}: added_tokens: '{}' has id {}", src, t.content, id);
      t.id = int32_t(id);
      t.special = a.value("special", false);
      t.normalized = a.value("normalized", !t.special);
      t.lstrip = a.value("lstrip", false);
      t.rstrip = a.value("rstrip", false);
      t.single_word = a.value("single_word", false);
      added.push_back(std::move(t));
    }
  }

  // The id tables are sized by the largest id: an id far beyond the number of tokens would make a
  // small file allocate gigabytes. A few unused ids are fine (some tokenizers leave holes).
  const int64_t n_tokens = int64_t(bpe->vocab().size() + added.size()), id_limit = 2 * n_tokens + 1024;
  for (const auto& [token, id] : bpe->vocab())
    SAMBALM_CHECK(id < id_limit,
                  "{}: model.vocab['{}'] has id {}, far beyond the {} tokens of the file (ids below {} are supported)",
                  src, token, id, n_tokens, id_limit);
  for (const auto& a : added)
    SAMBALM_CHECK(a.id < id_limit,
                  "{}: added_tokens: '{}' has id {}, far beyond the {} tokens of the file (ids below {} are supported)",
                  src, a.content, a.id, n_tokens, id_limit);

  bool nfc = parse_normalizer(root.value("normalizer", json()), src, "normalizer");
  std::vector<PreTokStep> steps;
  bool byte_level = false;
  const json& pre = root.value("pre_tokenizer", json());
  if (!pre.is_null()) parse_pre_tokenizer(pre, src, "pre_tokenizer", steps, byte_level, options);
  SAMBALM_CHECK(byte_level, "{}: pre_tokenizer: no ByteLevel step (only byte-level BPE tokenizers are supported)", src);
  const json& dec = root.value("decoder", json());
  SAMBALM_CHECK(!dec.is_null(), "{}: decoder: null is not supported (supported: ByteLevel)", src);
  std::string dtype = type_of(dec, src, "decoder");
  SAMBALM_CHECK(dtype == "ByteLevel", "{}: decoder: type '{}' is not supported (supported: ByteLevel)", src, dtype);

  // BOS/EOS: a TemplateProcessing post-processor's tokens around $A, else tokenizer_config.json
  // beside the file, else the usual names.
  std::optional<std::string> bos_name, eos_name;
  parse_post_processor(root.value("post_processor", json()), src, "post_processor", bos_name, eos_name);
  auto tok = std::make_unique<HfTokenizer>(src, std::move(added), nfc, std::move(steps), std::move(bpe), std::nullopt,
                                           std::nullopt);
  std::optional<int32_t> bos = bos_name ? tok->token_to_id(*bos_name) : std::nullopt;
  std::optional<int32_t> eos = eos_name ? tok->token_to_id(*eos_name) : std::nullopt;
  auto cfg_path = std::filesystem::path(src).parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if ((!bos || !eos) && std::filesystem::is_regular_file(cfg_path, ec)) {
    json cfg = json::parse(read_text_file(cfg_path.string()), nullptr, false);
    if (cfg.is_object()) {
      if (!bos) bos = config_token(cfg, "bos_token", *tok);
      if (!eos) eos = config_token(cfg, "eos_token", *tok);
    }
  }
  for (const char* name : {"<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>"})
    if (!bos) bos = tok->token_to_id(name);
  for (const char* name : {"</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>"})
    if (!eos) eos = tok->token_to_id(name);
  tok->set_bos_eos(bos, eos);
  return tok;
}

}  // namespace

std::unique_ptr<Tokenizer> parse_hf_tokenizer(std::string_view text, const std::string& source) {
  return parse_hf_tokenizer(text, source, HfTokenizerOptions{});
}

std::unique_ptr<Tokenizer> parse_hf_tokenizer(std::string_view text, const std::string& source,
                                              const HfTokenizerOptions& options) {
  // Real files nest a few levels; a deeper one is refused while parsing, since both the Sequence
  // parts below and the dumps in error messages recurse once per level.
  constexpr int kMaxDepth = 64;
  json::parser_callback_t depth_limit = [&](int depth, json::parse_event_t, json&) {
    SAMBALM_CHECK(depth <= kMaxDepth, "{}: malformed tokenizer.json: nested more than {} levels deep", source,
                  kMaxDepth);
    return true;
  };
  json root;
  try {
    root = json::parse(text, depth_limit);
  } catch (const json::exception& e) {
    fail("{}: malformed tokenizer.json: {}", source, e.what());
  }
  try {
    return parse(root, source, options);
  } catch (const json::exception& e) {
    fail("{}: malformed tokenizer.json: {}", source, e.what());
  }
}

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path) { return load_hf_tokenizer(path, {}); }

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path, const HfTokenizerOptions& options) {
  std::error_code ec;
  SAMBALM_CHECK(std::filesystem::is_regular_file(path, ec), "{}: no such tokenizer.json file", path);
  return parse_hf_tokenizer(read_text_file(path), path, options);
}

}  // namespace sambalm
