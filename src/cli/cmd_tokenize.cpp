// `sambalm tokenize` (text -> ids) and `sambalm detokenize` (ids -> text).
#include <cstdio>
#include <iostream>
#include <iterator>
#include <sstream>

#include "cli/command.h"
#include "core/error.h"
#include "io/file.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace sambalm::cli {
namespace {

constexpr const char* kTokenizerHelp =
    "Tokenizer: 'bytes', a tokenizer.json (byte-level BPE), a tokenizer.model (SentencePiece), or a model "
    "directory holding one";

std::string read_stdin() {
  std::ios::sync_with_stdio(false);
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

struct TokenizeOpts {
  std::string tokenizer, text, file;
  bool has_text = false, json = false, bos = false, eos = false, raw_bytes = false, pieces = false;
};

Action add_tokenize(CLI::App& app) {
  auto o = std::make_shared<TokenizeOpts>();
  auto* sub = app.add_subcommand("tokenize", "Encode UTF-8 text (stdin, --text or --file) into token ids");
  sub->footer(
      "Prints the ids separated by spaces (--json: a JSON array). No BOS/EOS unless asked. Text must be UTF-8\n"
      "(an error names the input and the first bad byte's offset), except with the bytes tokenizer, whose ids are the "
      "bytes, and with\n"
      "--raw-bytes for a byte-level BPE tokenizer: any bytes, no normalisation, and detokenize gives them back.\n"
      "Examples:\n"
      "  echo 'Hello world' | sambalm tokenize --tokenizer models/mamba-130m\n"
      "  sambalm tokenize --tokenizer tokenizer.model --text 'Hello' --bos --json");
  sub->add_option("--tokenizer,-t", o->tokenizer, kTokenizerHelp)->required();
  sub->add_option("--text", o->text, "Text to encode (default: all of stdin)");
  sub->add_option("--file,-f", o->file, "File whose text to encode (default: all of stdin)")->excludes("--text");
  sub->add_flag("--json", o->json, "Print a JSON array");
  sub->add_flag("--bos", o->bos, "Start with the tokenizer's BOS id");
  sub->add_flag("--eos", o->eos, "End with the tokenizer's EOS id");
  sub->add_flag("--raw-bytes", o->raw_bytes, "Byte-level BPE: encode any bytes as they are (no UTF-8 check, no NFC)");
  sub->add_flag("--pieces", o->pieces, "Print one 'id<TAB>token' line per token instead");
  return [o, sub] {
    auto tok = load_tokenizer(o->tokenizer);
    // Where the text came from, for errors about it (a bad byte is reported at its offset there).
    const std::string input = sub->count("--text") ? "--text" : !o->file.empty() ? o->file : "stdin";
    std::string text = sub->count("--text") ? o->text : !o->file.empty() ? read_text_file(o->file) : read_stdin();
    std::vector<int32_t> ids;
    if (o->bos) {
      SAMBALM_CHECK(tok->bos_id().has_value(), "--bos: tokenizer {} has no BOS token", tok->source());
      ids.push_back(*tok->bos_id());
    }
    if (o->raw_bytes) {
      if (auto* hf = dynamic_cast<HfTokenizer*>(tok.get()))
        hf->encode_bytes(text, ids);
      else if (tok->kind() == "bytes")
        tok->encode(text, ids);
      else
        fail("--raw-bytes: only the bytes and byte-level BPE tokenizers encode arbitrary bytes ({} is {})",
             tok->source(), tok->kind());
    } else {
      encode_input(*tok, text, input, ids);
    }
    if (o->eos) {
      SAMBALM_CHECK(tok->eos_id().has_value(), "--eos: tokenizer {} has no EOS token", tok->source());
      ids.push_back(*tok->eos_id());
    }
    std::string out;
    if (o->pieces) {
      for (int32_t id : ids) out += fmt::format("{}\t{}\n", id, tok->id_to_token(id));
    } else {
      out = o->json ? "[" : "";
      for (size_t i = 0; i < ids.size(); ++i) out += fmt::format("{}{}", i ? (o->json ? ", " : " ") : "", ids[i]);
      out += o->json ? "]\n" : "\n";
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  };
}

struct DetokenizeOpts {
  std::string tokenizer, ids;
  bool skip_special = false;
};

// Ids separated by spaces, commas or newlines; a JSON array's brackets are allowed too.
std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (c == ' ' || c == ',' || c == '\n' || c == '\r' || c == '\t' || c == '[' || c == ']') {
      ++i;
      continue;
    }
    size_t j = i;
    if (s[j] == '-') ++j;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
    std::string word = s.substr(i, j - i);
    bool ok = j > i && (j == s.size() || std::string(" ,\n\r\t[]").find(s[j]) != std::string::npos) && word != "-" &&
              word.size() <= 11;
    if (ok) {
      long long v = std::stoll(word);
      ok = v >= INT32_MIN && v <= INT32_MAX;
      if (ok) ids.push_back(int32_t(v));
    }
    if (!ok) {
      size_t end = s.find_first_of(" ,\n\r\t[]", i);
      fail("detokenize: '{}' is not a token id", s.substr(i, std::min<size_t>(end - i, 40)));
    }
    i = j;
  }
  return ids;
}

Action add_detokenize(CLI::App& app) {
  auto o = std::make_shared<DetokenizeOpts>();
  auto* sub = app.add_subcommand("detokenize", "Decode token ids (stdin or --ids) back into text");
  sub->footer(
      "Reads ids separated by spaces, commas or newlines (a JSON array works too) and writes the text they\n"
      "stand for to stdout, byte for byte (no newline is added). Example:\n"
      "  sambalm tokenize -t tokenizer.json --text 'héllo' | sambalm detokenize -t tokenizer.json");
  sub->add_option("--tokenizer,-t", o->tokenizer, kTokenizerHelp)->required();
  sub->add_option("--ids", o->ids, "Ids to decode (default: all of stdin)");
  sub->add_flag("--skip-special", o->skip_special, "Leave out special tokens (BOS, EOS, added special tokens)");
  return [o, sub] {
    auto tok = load_tokenizer(o->tokenizer);
    auto ids = parse_ids(sub->count("--ids") ? o->ids : read_stdin());
    std::string text = tok->decode(ids, o->skip_special);
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
  };
}

}  // namespace
SAMBALM_REGISTER_COMMAND(60, add_tokenize);
SAMBALM_REGISTER_COMMAND(61, add_detokenize);
}  // namespace sambalm::cli
