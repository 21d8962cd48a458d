// Corpus -> token shards. The corpus is cut into work units (a JSON line, a plain-text document, or
// a piece of a large one); batches of units are encoded on all threads, then appended in order to a
// temporary token file; at the end the stream is cut into train/val shards.
#include "train/prepare_data.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "io/file.h"
#include "io/litpkd.h"
#include "io/shards.h"
#include "tokenizer/unicode.h"

namespace sambalm {

namespace fs = std::filesystem;

namespace {

bool is_json_lines(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  return ext == ".jsonl" || ext == ".json";
}

struct Unit {
  std::string_view text;
  size_t file = 0;    // index into the file list
  size_t line = 0;    // 1-based line for JSON Lines, else 0
  size_t offset = 0;  // byte offset of the text in its file
  bool json = false;
  bool ends_document = false;
};

constexpr size_t kChunkBytes = 1 << 20;    // pieces of a large plain-text document
constexpr size_t kBatchBytes = 64u << 20;  // text per parallel batch

}  // namespace

std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs) {
  std::vector<std::string> files;
  for (const auto& in : inputs) {
    std::error_code ec;
    if (fs::is_directory(in, ec)) {
      std::vector<std::string> found;
      for (const auto& e : fs::recursive_directory_iterator(in)) {
        if (!e.is_regular_file()) continue;
        std::string ext = e.path().extension().string();
        if (ext == ".jsonl" || ext == ".json" || ext == ".txt" || ext == ".text" || ext == ".md" || ext == ".rst")
          found.push_back(e.path().string());
      }
      std::sort(found.begin(), found.end());
      SAMBALM_CHECK(!found.empty(), "{}: directory has no .txt/.text/.md/.rst/.jsonl/.json files", in);
      files.insert(files.end(), found.begin(), found.end());
    } else {
      SAMBALM_CHECK(fs::is_regular_file(in, ec), "{}: no such file or directory", in);
      files.push_back(in);
    }
  }
  SAMBALM_CHECK(!files.empty(), "prepare: no input files given");
  return files;
}

PrepareResult prepare_shards(const Tokenizer& tok, const PrepareOptions& o) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  SAMBALM_CHECK(o.train_fraction >= 0 && o.train_fraction <= 1, "--train-fraction must be in [0, 1], got {}",
                o.train_fraction);
  SAMBALM_CHECK(o.shard_tokens > 0, "--shard-tokens must be positive, got {}", o.shard_tokens);
  SAMBALM_CHECK(o.format == "sambalm" || o.format == "litpkd", "--format must be sambalm or litpkd, got '{}'",
                o.format);
  SAMBALM_CHECK(o.chunk_size > 0, "--chunk-size must be positive, got {}", o.chunk_size);
  SAMBALM_CHECK(!o.output_dir.empty(), "prepare: an output directory is required");
  const std::vector<std::string> files = expand_inputs(o.inputs);
  // Nothing to read is an error before any output exists (empty files, or none readable).
  uint64_t input_bytes = 0;
  for (const auto& f : files) {
    std::error_code ec;
    const auto n = fs::file_size(f, ec);
    SAMBALM_CHECK(!ec, "{}: cannot read: {}", f, ec.message());
    SAMBALM_CHECK(::access(f.c_str(), R_OK) == 0, "{}: cannot read: permission denied", f);
    input_bytes += n;
  }
  SAMBALM_CHECK(input_bytes > 0, "prepare: the inputs ({} file{}) hold no text: nothing to tokenize", files.size(),
                files.size() == 1 ? "" : "s");

  // Checked before anything in the output directory changes.
  const bool litpkd = o.format == "litpkd";
  int32_t sep = 0;
  if (litpkd) {
    std::optional<int32_t> s = o.sep_token ? o.sep_token : tok.bos_id() ? tok.bos_id() : tok.eos_id();
    SAMBALM_CHECK(s.has_value(), "--sep-token: the tokenizer {} has no BOS or EOS to fill a chunk's tail; give one",
                  tok.source());
    sep = *s;
    SAMBALM_CHECK(sep >= 0 && sep < tok.vocab_size(), "--sep-token {} is outside the vocabulary [0, {})", sep,
                  tok.vocab_size());
  }
  fs::create_directories(o.output_dir);
  for (const auto& e : fs::directory_iterator(o.output_dir)) {
    std::string name = e.path().filename().string();
    if ((name.starts_with("train_") || name.starts_with("val_")) && name.ends_with(".bin")) {
      SAMBALM_CHECK(o.overwrite, "{}: already holds token shards ({}); use --overwrite to replace them", o.output_dir,
                    name);
      fs::remove(e.path());
    }
  }

  const bool check_utf8 = tok.kind() != "bytes";
  const std::optional<int32_t> eos = o.append_eos ? tok.eos_id() : std::nullopt;
  const int32_t vocab = tok.vocab_size();
  const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();

  PrepareProgress prog;
  prog.bytes_total = input_bytes;

  // Token stream, 4 bytes per token, in a scratch file beside the shards (no fsync: it is removed
  // once the shards, which are written atomically, exist).
  const std::string tmp_path = o.output_dir + "/tokens.stream.tmp";
  struct Scratch {
    std::string path;
    FILE* f;
    ~Scratch() {
      if (f) std::fclose(f);
      std::error_code ec;
      fs::remove(path, ec);
    }
    void write(const void* p, size_t n) {
      if (n == 0) return;  // an empty document's ids: data() of an empty vector may be null
      SAMBALM_CHECK(std::fwrite(p, 1, n, f) == n, "{}: write failed (disk full?)", path);
    }
  } stream{tmp_path, std::fopen(tmp_path.c_str(), "wb")};
  SAMBALM_CHECK(stream.f, "{}: cannot create", tmp_path);
  uint64_t total_tokens = 0;

  std::vector<Unit> batch;
  std::vector<std::shared_ptr<MappedFile>> maps(files.size());
  size_t batch_bytes = 0;
  std::vector<std::vector<int32_t>> out;

  auto run_batch = [&] {
    out.assign(batch.size(), {});
    std::vector<std::string> errors(batch.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (size_t u = 0; u < batch.size(); ++u) {
      const Unit& un = batch[u];
      try {
        std::string owned;
        std::string_view text = un.text;
        if (un.json) {
          auto j = nlohmann::json::parse(text, nullptr, false);
          SAMBALM_CHECK(!j.is_discarded() && j.is_object(), "{}:{}: not a JSON object", files[un.file], un.line);
          SAMBALM_CHECK(j.contains(o.text_field) && j[o.text_field].is_string(), "{}:{}: no string field '{}'",
                        files[un.file], un.line, o.text_field);
          owned = j[o.text_field].get<std::string>();
          text = owned;
        }
        if (check_utf8) {
          size_t bad = unicode::find_invalid_utf8(text);
          if (bad != std::string_view::npos) {
            if (un.json)
              fail("{}:{}: text is not valid UTF-8 (byte offset {} of the field)", files[un.file], un.line, bad);
            fail("{}: text is not valid UTF-8 (byte 0x{:02x} at offset {}); {} needs UTF-8 text", files[un.file],
                 unsigned(uint8_t(text[bad])), un.offset + bad, tok.source());
          }
        }
        tok.encode(text, out[u]);
        if (un.ends_document && eos) out[u].push_back(*eos);
      } catch (const std::exception& e) {
        errors[u] = e.what();
      }
    }
    for (size_t u = 0; u < batch.size(); ++u) {
      if (!errors[u].empty()) throw Error(errors[u]);
      stream.write(out[u].data(), out[u].size() * sizeof(int32_t));
      total_tokens += out[u].size();
      prog.bytes_done += batch[u].json ? batch[u].text.size() + 1 : batch[u].text.size();
      if (batch[u].ends_document) ++prog.documents;
    }
    batch.clear();
    batch_bytes = 0;
    // Files whose units are all done can be unmapped.
    prog.tokens = total_tokens;
    prog.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    if (o.progress) o.progress(prog);
  };

  for (size_t fi = 0; fi < files.size(); ++fi) {
    maps[fi] = MappedFile::open(files[fi]);
    std::string_view all(reinterpret_cast<const char*>(maps[fi]->data()), maps[fi]->size());
    auto add = [&](Unit u) {
      batch_bytes += u.text.size();
      batch.push_back(u);
      if (batch_bytes >= kBatchBytes) run_batch();
    };
    if (is_json_lines(files[fi])) {
      size_t pos = 0, line = 0;
      while (pos < all.size()) {
        size_t nl = all.find('\n', pos);
        if (nl == std::string_view::npos) nl = all.size();
        ++line;
        std::string_view l = all.substr(pos, nl - pos);
        bool blank = l.find_first_not_of(" \t\r") == std::string_view::npos;
        if (!blank)
          add({l, fi, line, pos, true, true});
        else
          prog.bytes_done += l.size() + 1;
        pos = nl + 1;
      }
    } else {
      auto pieces = all.size() > 2 * kChunkBytes ? tok.document_pieces(all, kChunkBytes)
                                                 : std::vector<std::pair<size_t, size_t>>{{0, all.size()}};
      for (size_t k = 0; k < pieces.size(); ++k) {
        auto [b, e] = pieces[k];
        // Bytes a cut leaves out (a space the next piece's tokenization stands for) still count.
        size_t skipped = (k + 1 < pieces.size() ? pieces[k + 1].first : all.size()) - e;
        prog.bytes_done += skipped;
        add({all.substr(b, e - b), fi, 0, b, false, k + 1 == pieces.size()});
      }
    }
    if (batch.empty()) maps[fi].reset();
  }
  if (!batch.empty()) run_batch();
  maps.clear();
  SAMBALM_CHECK(std::fflush(stream.f) == 0, "{}: write failed (disk full?)", tmp_path);
  SAMBALM_CHECK(total_tokens > 0, "prepare: the inputs ({} documents) gave no tokens: nothing to write",
                prog.documents);

  // Cut the stream into shards.
  PrepareResult r;
  r.documents = prog.documents;
  r.input_bytes = prog.bytes_total;
  r.train_tokens = uint64_t(o.train_fraction * double(total_tokens));
  r.val_tokens = total_tokens - r.train_tokens;
  {
    auto tokens = MappedFile::open(tmp_path);
    const int32_t* ids = reinterpret_cast<const int32_t*>(tokens->data());
    auto write_split = [&](const std::string& split, uint64_t begin, uint64_t end, std::vector<std::string>& paths) {
      if (litpkd) {
        if (end == begin) return;  // no chunk for an empty split
        LitPkdWriter w(o.output_dir, split, uint64_t(o.chunk_size), sep, litpkd_dtype_for_vocab(vocab));
        w.append(ids + begin, size_t(end - begin));
        w.finish();
        paths = w.files();
        return;
      }
      int index = 0;
      for (uint64_t a = begin; a < end; a += uint64_t(o.shard_tokens)) {
        uint64_t b = std::min(end, a + uint64_t(o.shard_tokens));
        std::string path = shard_path(o.output_dir, split, index++);
        ShardWriter w(path, vocab, eos);
        w.append(ids + a, size_t(b - a));
        w.commit();
        paths.push_back(path);
      }
    };
    write_split("train", 0, r.train_tokens, r.train_shards);
    write_split("val", r.train_tokens, total_tokens, r.val_shards);
  }

  nlohmann::json meta = {
      {"format", litpkd ? "lit_gpt PackedDataset" : "sambalm token shards"},
      {"version", kShardVersion},
      {"tokenizer", o.tokenizer_name.empty() ? tok.source() : o.tokenizer_name},
      {"tokenizer_kind", tok.kind()},
      {"vocab_size", vocab},
      {"eos_id", eos ? nlohmann::json(*eos) : nlohmann::json(nullptr)},
      {"train_fraction", o.train_fraction},
      {"inputs", files},
      {"documents", r.documents},
      {"input_bytes", r.input_bytes},
      {"train_tokens", r.train_tokens},
      {"val_tokens", r.val_tokens},
      {"train_shards", nlohmann::json::array()},
      {"val_shards", nlohmann::json::array()},
  };
  if (litpkd) {
    meta["chunk_size"] = o.chunk_size;
    meta["sep_token"] = sep;
  }
  for (const auto& p : r.train_shards) meta["train_shards"].push_back(fs::path(p).filename().string());
  for (const auto& p : r.val_shards) meta["val_shards"].push_back(fs::path(p).filename().string());
  write_file_atomic(o.output_dir + "/meta.json", meta.dump(2) + "\n");

  r.seconds = std::chrono::duration<double>(clock::now() - t0).count();
  prog.seconds = r.seconds;
  prog.done = true;
  if (o.progress) o.progress(prog);
  return r;
}

}  // namespace sambalm
