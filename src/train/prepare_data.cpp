// Corpus -> token shards. The corpus is cut into work units (a JSON line, a plain-text document, or
// a piece of a large one); batches of units are encoded on all threads, then appended in order to a
// temporary token file per output group; at the end each group's stream is cut into train/val shards.
// JSON Lines files (compressed or not) are read line by line, so memory stays bounded by the batch.
#include "train/prepare_data.h"

#include <omp.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "io/file.h"
#include "io/json_field.h"
#include "io/line_reader.h"
#include "io/litpkd.h"
#include "io/shards.h"
#include "tokenizer/unicode.h"

namespace sambalm {

namespace fs = std::filesystem;

namespace {

std::string inner_ext(const std::string& path) { return fs::path(strip_compression_ext(path)).extension().string(); }

bool is_json_lines(const std::string& path) {
  std::string ext = inner_ext(path);
  return ext == ".jsonl" || ext == ".json";
}

bool is_listed_ext(const std::string& path) {
  if (is_json_lines(path)) return true;
  if (compression_of(path) != Compression::none) return false;  // compressed plain text: not read
  std::string ext = inner_ext(path);
  return ext == ".txt" || ext == ".text" || ext == ".md" || ext == ".rst";
}

struct Unit {
  std::string line;                 // a JSON line (owned: it comes from a stream)
  std::string_view text;            // a plain-text document or piece, in its mapped file
  std::shared_ptr<MappedFile> map;  // ... kept mapped until the unit is encoded
  size_t file = 0;                  // index into the file list
  uint64_t line_no = 0;             // 1-based line for JSON Lines, else 0
  size_t offset = 0;                // byte offset of the text in its file (plain text)
  uint64_t bytes = 0;               // input file bytes this unit accounts for (progress)
  bool json = false;
  bool ends_document = false;
};

// A JSON value by key, or by dotted path through nested objects ("meta.redpajama_set_name").
const nlohmann::json* lookup(const nlohmann::json& j, const std::string& path) {
  if (auto it = j.find(path); it != j.end()) return &*it;
  const nlohmann::json* cur = &j;
  size_t b = 0;
  for (;;) {
    size_t e = path.find('.', b);
    if (!cur->is_object()) return nullptr;
    auto it = cur->find(path.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (it == cur->end()) return nullptr;
    cur = &*it;
    if (e == std::string::npos) return cur;
    b = e + 1;
  }
}

// One output shard set: a directory with its token stream in a scratch file, `width` bytes per token
// (uint16 when the vocabulary fits, as the shards, else int32; native order), removed once the
// shards, which are written atomically, exist.
struct Group {
  std::string dir, tmp_path;
  FILE* f = nullptr;
  size_t width = 4;
  uint64_t tokens = 0, documents = 0;
  std::vector<uint16_t> narrow;
  ~Group() {
    if (f) std::fclose(f);
    std::error_code ec;
    if (!tmp_path.empty()) fs::remove(tmp_path, ec);
  }
  void write(const std::vector<int32_t>& ids) {
    if (ids.empty()) return;  // an empty document's ids: data() of an empty vector may be null
    const void* p = ids.data();
    if (width == 2) {  // every id is below the vocabulary size, so it fits
      narrow.assign(ids.begin(), ids.end());
      p = narrow.data();
    }
    SAMBALM_CHECK(std::fwrite(p, width, ids.size(), f) == ids.size(), "{}: write failed (disk full?)", tmp_path);
  }
  // Tokens [a, a + n) of the stream into out.
  void read(uint64_t a, size_t n, std::vector<int32_t>& out) {
    SAMBALM_CHECK(std::fseek(f, long(a * width), SEEK_SET) == 0, "{}: cannot seek", tmp_path);
    out.resize(n);
    if (width == 4) {
      SAMBALM_CHECK(std::fread(out.data(), 4, n, f) == n, "{}: read failed", tmp_path);
      return;
    }
    narrow.resize(n);
    SAMBALM_CHECK(std::fread(narrow.data(), 2, n, f) == n, "{}: read failed", tmp_path);
    std::copy(narrow.begin(), narrow.end(), out.begin());
  }
};

// Makes `dir` ready for shards: created, and shards already there refused or (overwrite) removed.
void clear_shard_dir(const std::string& dir, bool overwrite) {
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if ((name.starts_with("train_") || name.starts_with("val_")) && name.ends_with(".bin")) {
      SAMBALM_CHECK(overwrite, "{}: already holds token shards ({}); use --overwrite to replace them", dir, name);
      fs::remove(e.path());
    }
  }
}

constexpr size_t kChunkBytes = 1 << 20;      // pieces of a large plain-text document
constexpr size_t kBatchBytes = 32u << 20;    // text per parallel batch
constexpr size_t kReadBackTokens = 1 << 20;  // tokens per read when cutting a stream into shards

// Resuming (docs/DATA.md, "Interrupted? Run the same command again"). While a run is under way OUT/prepare.state.json
// records what it depends on (options, tokenizer, every input's size and mtime) and how far it got: the input files
// whose tokens are safely in the groups' streams (each stream's length then), and every shard written since, with its
// size and CRC-32. A run that finds a state of the same key continues from there; the state and the streams are removed
// when the run completes.
constexpr const char* kStateFile = "prepare.state.json";
constexpr const char* kStreamFile = "tokens.stream.tmp";

uint32_t file_crc32(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  SAMBALM_CHECK(f, "{}: cannot open", path);
  std::vector<unsigned char> buf(1 << 20);
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t n; (n = std::fread(buf.data(), 1, buf.size(), f)) > 0;) crc = crc32(crc, buf.data(), uInt(n));
  std::fclose(f);
  return uint32_t(crc);
}

// Leftovers of a killed write: `name.tmp` files beside the shards (never the stream).
void remove_partial_files(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.ends_with(".tmp") && name != kStreamFile) fs::remove(e.path(), ec);
  }
}

void sync_stream(FILE* f, const std::string& path) {
  SAMBALM_CHECK(std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0, "{}: write failed (disk full?)", path);
}

}  // namespace

std::string sanitize_group_name(const std::string& value) {
  std::string s;
  for (char c : value.substr(0, 128)) {
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
    s += ok ? c : '_';
  }
  // "", "." and ".." are not directory names of their own.
  if (s.find_first_not_of('.') == std::string::npos) s = "_" + s;
  return s;
}

std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs, const std::string& split,
                                       double percentage) {
  SAMBALM_CHECK(percentage > 0 && percentage <= 1, "--percentage must be in (0, 1], got {}", percentage);
  std::vector<std::string> files;
  for (const auto& in : inputs) {
    std::error_code ec;
    if (fs::is_directory(in, ec)) {
      std::string root = in;
      if (!split.empty()) {
        if (fs::is_directory(fs::path(in) / split, ec)) {
          root = (fs::path(in) / split).string();
        } else {
          // A tree with split folders but not this one: reading all of it would mix the splits.
          for (const char* other : {"train", "validation", "test"})
            SAMBALM_CHECK(!fs::is_directory(fs::path(in) / other, ec), "{}: has a '{}' folder but no '{}' (--split)",
                          in, other, split);
        }
      }
      std::vector<std::string> found;
      for (const auto& e : fs::recursive_directory_iterator(root)) {
        if (e.is_regular_file() && is_listed_ext(e.path().string())) found.push_back(e.path().string());
      }
      std::sort(found.begin(), found.end());
      SAMBALM_CHECK(!found.empty(),
                    "{}: directory has no .jsonl/.json (optionally .zst/.gz) or .txt/.text/.md/.rst files", root);
      files.insert(files.end(), found.begin(), found.end());
    } else {
      SAMBALM_CHECK(fs::is_regular_file(in, ec), "{}: no such file or directory", in);
      SAMBALM_CHECK(compression_of(in) == Compression::none || is_json_lines(in),
                    "{}: compressed plain text is not read; decompress it, or use JSON Lines (.jsonl.zst/.jsonl.gz)",
                    in);
      files.push_back(in);
    }
  }
  SAMBALM_CHECK(!files.empty(), "prepare: no input files given");
  // As prepare_slimpajama.py: files[:int(len(files) * percentage)].
  const size_t keep = size_t(double(files.size()) * percentage);
  SAMBALM_CHECK(keep > 0, "--percentage {} of {} input file{} selects none", percentage, files.size(),
                files.size() == 1 ? "" : "s");
  files.resize(keep);
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
  SAMBALM_CHECK(o.checkpoint_seconds >= 0, "--checkpoint-seconds must be at least 0, got {}", o.checkpoint_seconds);
  SAMBALM_CHECK(!o.output_dir.empty(), "prepare: an output directory is required");
  const std::vector<std::string> files = expand_inputs(o.inputs, o.split, o.percentage);
  // Nothing to read is an error before any output exists (empty files, or none readable).
  uint64_t input_bytes = 0;
  nlohmann::json input_list = nlohmann::json::array();  // what a resumed run must find unchanged
  for (const auto& f : files) {
    std::error_code ec;
    const auto n = fs::file_size(f, ec);
    SAMBALM_CHECK(!ec, "{}: cannot read: {}", f, ec.message());
    SAMBALM_CHECK(::access(f.c_str(), R_OK) == 0, "{}: cannot read: permission denied", f);
    input_bytes += n;
    const auto mtime = fs::last_write_time(f, ec).time_since_epoch().count();
    input_list.push_back({f, n, int64_t(mtime)});
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
  const bool grouped = !o.group_by.empty();
  const bool check_utf8 = tok.kind() != "bytes";
  const std::optional<int32_t> eos = o.append_eos ? tok.eos_id() : std::nullopt;
  const int32_t vocab = tok.vocab_size();
  const size_t stream_width = size_t(shard_token_bytes(vocab));
  const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();

  // Everything the output depends on. The tokenizer is known by its name, kind, vocabulary and the
  // ids of a probe text, so a different model under the same path is noticed too.
  std::vector<int32_t> probe;
  tok.encode("Resume probe: 12345, \xc3\xa9t\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x99\x82\n\tend", probe);
  const nlohmann::json key = {
      {"tokenizer", o.tokenizer_name.empty() ? tok.source() : o.tokenizer_name},
      {"tokenizer_kind", tok.kind()},
      {"vocab_size", vocab},
      {"probe_ids", probe},
      {"eos", eos ? nlohmann::json(*eos) : nlohmann::json(nullptr)},
      {"format", o.format},
      {"sep", sep},
      {"chunk_size", o.chunk_size},
      {"shard_tokens", o.shard_tokens},
      {"train_fraction", o.train_fraction},
      {"text_field", o.text_field},
      {"group_by", o.group_by},
      {"skip_bad_lines", o.skip_bad_lines},
      {"inputs", input_list},
  };
  const std::string state_path = o.output_dir + "/" + kStateFile;
  std::optional<nlohmann::json> resumed;  // the state this run continues from
  {
    std::error_code ec;
    if (fs::exists(state_path, ec)) {
      auto st = nlohmann::json::parse(read_text_file(state_path), nullptr, false);
      if (!st.is_discarded() && st.is_object() && st.value("key", nlohmann::json()) == key) {
        resumed = std::move(st);
      } else {
        SAMBALM_CHECK(o.overwrite,
                      "{}: holds an interrupted prepare of other inputs, options or tokenizer ({}); run that command "
                      "again to finish it, or give --overwrite to start over",
                      o.output_dir, kStateFile);
        // Starting over: the old run's scratch streams go too (its groups may not come back).
        if (!st.is_discarded() && st.is_object() && st.contains("groups") && st["groups"].is_object())
          for (const auto& [name, g] : st["groups"].items())
            if (sanitize_group_name(name) == name || name.empty())
              fs::remove(fs::path(name.empty() ? o.output_dir : o.output_dir + "/" + name) / kStreamFile, ec);
        fs::remove(state_path);
      }
    }
  }
  if (!resumed && !grouped) clear_shard_dir(o.output_dir, o.overwrite);
  fs::create_directories(o.output_dir);

  PrepareProgress prog;
  prog.bytes_total = input_bytes;
  PrepareResult r;
  size_t files_done = 0;
  nlohmann::json state = {
      {"key", key}, {"files_done", 0}, {"groups", nlohmann::json::object()}, {"shards", nlohmann::json::object()}};

  std::map<std::string, std::unique_ptr<Group>> groups;  // by directory name
  auto group_dir = [&](const std::string& name) { return grouped ? o.output_dir + "/" + name : o.output_dir; };
  auto group_for = [&](const std::string& name) -> Group& {
    auto& g = groups[name];
    if (!g) {
      g = std::make_unique<Group>();
      g->dir = group_dir(name);
      if (grouped) clear_shard_dir(g->dir, o.overwrite);
      g->tmp_path = g->dir + "/" + kStreamFile;
      g->width = stream_width;
      g->f = std::fopen(g->tmp_path.c_str(), "w+b");
      SAMBALM_CHECK(g->f, "{}: cannot create", g->tmp_path);
    }
    return *g;
  };

  if (resumed) {
    // The streams are cut back to their length at the checkpoint: tokens after it are made again.
    const nlohmann::json& st = *resumed;
    files_done = json_count(st, "files_done", state_path);
    SAMBALM_CHECK(files_done <= files.size(), "{}: records {} input files done of {}", state_path, files_done,
                  files.size());
    for (const auto& [name, gs] : st.at("groups").items()) {
      auto g = std::make_unique<Group>();
      g->dir = group_dir(name);
      g->tmp_path = g->dir + "/" + kStreamFile;
      g->tokens = json_count(gs, "tokens", state_path);
      g->documents = json_count(gs, "documents", state_path);
      std::error_code ec;
      const auto have = fs::file_size(g->tmp_path, ec);
      g->width = stream_width;
      SAMBALM_CHECK(!ec && g->tokens <= have / g->width,
                    "{}: the interrupted prepare's token stream is missing or shorter than recorded ({} tokens); "
                    "give --overwrite to start over",
                    g->tmp_path, g->tokens);
      fs::resize_file(g->tmp_path, g->tokens * g->width);
      g->f = std::fopen(g->tmp_path.c_str(), "r+b");
      SAMBALM_CHECK(g->f && std::fseek(g->f, 0, SEEK_END) == 0, "{}: cannot reopen", g->tmp_path);
      remove_partial_files(g->dir);
      prog.tokens += g->tokens;
      groups[name] = std::move(g);
    }
    prog.documents = json_count(st, "documents", state_path);
    prog.bytes_done = json_count(st, "bytes_done", state_path);
    r.bad_lines = json_count(st, "bad_lines", state_path);
    r.first_bad_line = st.at("first_bad_line").get<std::string>();
    state = st;
    r.resumed_files = files_done;
    if (o.notice)
      o.notice(fmt::format("prepare: resuming {}: {} of {} input files done, {} tokens kept, {} shards to verify",
                           o.output_dir, files_done, files.size(), prog.tokens, state["shards"].size()));
  }

  // Makes the streams durable, then records how far they go; a kill after this loses nothing before it.
  auto checkpoint = [&] {
    state["files_done"] = files_done;
    state["documents"] = prog.documents;
    state["bytes_done"] = prog.bytes_done;
    state["bad_lines"] = r.bad_lines;
    state["first_bad_line"] = r.first_bad_line;
    state["groups"] = nlohmann::json::object();
    for (auto& [name, g] : groups) {
      sync_stream(g->f, g->tmp_path);
      state["groups"][name] = {{"tokens", g->tokens}, {"documents", g->documents}};
    }
    write_file_atomic(state_path, state.dump() + "\n");
  };
  // A failed run (bad input, disk full) leaves nothing to resume: its streams go with the groups.
  struct StateGuard {
    const std::string& path;
    bool armed = true;
    ~StateGuard() {
      std::error_code ec;
      if (armed) fs::remove(path, ec);
    }
  } state_guard{state_path};
  if (!resumed) checkpoint();
  auto last_checkpoint = clock::now();

  std::vector<Unit> batch;
  size_t batch_bytes = 0;
  std::vector<std::vector<int32_t>> out;

  auto run_batch = [&] {
    out.assign(batch.size(), {});
    std::vector<std::string> errors(batch.size()), group_names(batch.size());
    std::vector<char> bad(batch.size(), 0);  // a bad JSON line (skippable)
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (size_t u = 0; u < batch.size(); ++u) {
      const Unit& un = batch[u];
      const std::string& file = files[un.file];
      try {
        std::string owned;
        std::string_view text = un.text;
        if (un.json) {
          bad[u] = 1;
          // JSON requires UTF-8; naming the byte is clearer than the parser's message.
          size_t badbyte = unicode::find_invalid_utf8(un.line);
          if (badbyte != std::string_view::npos)
            fail("{}:{}: not valid UTF-8 (byte 0x{:02x} at offset {} of the line)", file, un.line_no,
                 unsigned(uint8_t(un.line[badbyte])), badbyte);
          auto j = nlohmann::json::parse(un.line, nullptr, false);
          SAMBALM_CHECK(!j.is_discarded() && j.is_object(), "{}:{}: not a JSON object", file, un.line_no);
          const nlohmann::json* t = lookup(j, o.text_field);
          SAMBALM_CHECK(t && t->is_string(), "{}:{}: no string field '{}'", file, un.line_no, o.text_field);
          if (grouped) {
            const nlohmann::json* g = lookup(j, o.group_by);
            SAMBALM_CHECK(g && !g->is_null() && !g->is_structured(), "{}:{}: no field '{}' (--group-by)", file,
                          un.line_no, o.group_by);
            group_names[u] = sanitize_group_name(g->is_string() ? g->get<std::string>() : g->dump());
          }
          owned = t->get<std::string>();
          text = owned;
          bad[u] = 0;
        } else if (grouped) {
          fail("{}: plain text has no '{}' field to group by (--group-by needs JSON Lines)", file, o.group_by);
        }
        if (check_utf8 && !un.json) {
          size_t badbyte = unicode::find_invalid_utf8(text);
          if (badbyte != std::string_view::npos)
            fail("{}: text is not valid UTF-8 (byte 0x{:02x} at offset {}); {} needs UTF-8 text", file,
                 unsigned(uint8_t(text[badbyte])), un.offset + badbyte, tok.source());
        }
        tok.encode(text, out[u]);
        if (un.ends_document && eos) out[u].push_back(*eos);
      } catch (const std::exception& e) {
        errors[u] = e.what();
      }
    }
    for (size_t u = 0; u < batch.size(); ++u) {
      prog.bytes_done += batch[u].bytes;
      if (!errors[u].empty()) {
        if (!(bad[u] && o.skip_bad_lines)) throw Error(errors[u]);
        if (r.bad_lines++ == 0) r.first_bad_line = errors[u];
        continue;
      }
      Group& g = group_for(group_names[u]);
      g.write(out[u]);
      g.tokens += out[u].size();
      prog.tokens += out[u].size();
      if (batch[u].ends_document) {
        ++prog.documents;
        ++g.documents;
      }
    }
    batch.clear();
    batch_bytes = 0;
    prog.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    if (o.progress) o.progress(prog);
  };
  auto add = [&](Unit&& u) {
    batch_bytes += u.json ? u.line.size() : u.text.size();
    batch.push_back(std::move(u));
    if (batch_bytes >= kBatchBytes) run_batch();
  };

  for (size_t fi = files_done; fi < files.size(); ++fi) {
    if (is_json_lines(files[fi])) {
      LineReader reader(files[fi]);
      std::string line;
      uint64_t counted = 0;  // file bytes already given to units
      while (reader.next(line)) {
        const uint64_t now = reader.file_bytes_read();
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank lines are allowed
        Unit u;
        u.line = std::move(line);
        u.file = fi;
        u.line_no = reader.line_number();
        u.bytes = now - counted;
        u.json = u.ends_document = true;
        counted = now;
        add(std::move(u));
        line = std::string();
      }
      prog.bytes_done += reader.file_bytes_read() - counted;
    } else {
      auto map = MappedFile::open(files[fi]);
      std::string_view all(reinterpret_cast<const char*>(map->data()), map->size());
      auto pieces = all.size() > 2 * kChunkBytes ? tok.document_pieces(all, kChunkBytes)
                                                 : std::vector<std::pair<size_t, size_t>>{{0, all.size()}};
      for (size_t k = 0; k < pieces.size(); ++k) {
        auto [b, e] = pieces[k];
        Unit u;
        u.text = all.substr(b, e - b);
        u.map = map;
        u.file = fi;
        u.offset = b;
        // Bytes a cut leaves out (a space the next piece's tokenization stands for) still count.
        u.bytes = (k + 1 < pieces.size() ? pieces[k + 1].first : all.size()) - b;
        u.ends_document = k + 1 == pieces.size();
        add(std::move(u));
      }
    }
    files_done = fi + 1;
    if (std::chrono::duration<double>(clock::now() - last_checkpoint).count() >= o.checkpoint_seconds &&
        files_done < files.size()) {
      if (!batch.empty()) run_batch();
      checkpoint();
      last_checkpoint = clock::now();
    }
  }
  if (!batch.empty()) run_batch();
  SAMBALM_CHECK(prog.tokens > 0, "prepare: the inputs ({} documents{}) gave no tokens: nothing to write",
                prog.documents, r.bad_lines ? fmt::format(", {} bad lines skipped", r.bad_lines) : "");

  // Every token is in a stream now; from here each shard is recorded as it is written.
  checkpoint();

  // Cut each group's stream into shards.
  r.documents = prog.documents;
  r.input_bytes = prog.bytes_total;
  nlohmann::json group_list = nlohmann::json::array();
  for (auto& [name, g] : groups) {
    SAMBALM_CHECK(std::fflush(g->f) == 0, "{}: write failed (disk full?)", g->tmp_path);
    const uint64_t train_tokens = uint64_t(o.train_fraction * double(g->tokens));
    r.train_tokens += train_tokens;
    r.val_tokens += g->tokens - train_tokens;
    std::vector<std::string> train_shards, val_shards;
    if (g->tokens > 0) {
      // The stream is read back in blocks (not mapped), so memory stays flat however large it is.
      std::vector<int32_t> block;
      const uint64_t per_file = uint64_t(litpkd ? o.chunk_size : o.shard_tokens);
      // One shard (or PackedDataset chunk) per `per_file` tokens of [begin, end). A shard that a killed
      // run finished is kept when its size and CRC-32 are still those recorded; any other is written.
      auto write_split = [&](const std::string& split, uint64_t begin, uint64_t end, std::vector<std::string>& paths) {
        uint64_t index = 0;
        for (uint64_t a = begin; a < end; a += per_file, ++index) {
          const uint64_t b = std::min(end, a + per_file);
          const std::string path =
              litpkd ? litpkd_chunk_path(g->dir, split, index) : shard_path(g->dir, split, int(index));
          const std::string rel = fs::path(path).lexically_relative(o.output_dir).string();
          paths.push_back(path);
          if (auto it = state["shards"].find(rel); it != state["shards"].end()) {
            std::error_code ec;
            const auto size = fs::file_size(path, ec);
            if (!ec && size == it->at("bytes").get<uint64_t>() && file_crc32(path) == it->at("crc32").get<uint32_t>())
              continue;
          }
          auto copy = [&](auto& w) {
            for (uint64_t c = a; c < b;) {
              const size_t n = size_t(std::min<uint64_t>(b - c, kReadBackTokens));
              g->read(c, n, block);
              w.append(block.data(), n);
              c += n;
            }
          };
          if (litpkd) {
            LitPkdWriter w(g->dir, split, uint64_t(o.chunk_size), sep, litpkd_dtype_for_vocab(vocab), index);
            copy(w);
            w.finish();
          } else {
            ShardWriter w(path, vocab, eos);
            copy(w);
            w.commit();
          }
          state["shards"][rel] = {{"bytes", fs::file_size(path)}, {"crc32", file_crc32(path)}};
          write_file_atomic(state_path, state.dump() + "\n");
        }
      };
      write_split("train", 0, train_tokens, train_shards);
      write_split("val", train_tokens, g->tokens, val_shards);
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
        {"documents", g->documents},
        {"input_bytes", r.input_bytes},
        {"train_tokens", train_tokens},
        {"val_tokens", g->tokens - train_tokens},
        {"train_shards", nlohmann::json::array()},
        {"val_shards", nlohmann::json::array()},
    };
    if (litpkd) {
      meta["chunk_size"] = o.chunk_size;
      meta["sep_token"] = sep;
    }
    if (!o.split.empty()) meta["split"] = o.split;
    if (o.percentage < 1) meta["percentage"] = o.percentage;
    if (grouped) meta["group"] = name;
    if (o.skip_bad_lines) meta["bad_lines_skipped"] = r.bad_lines;
    for (const auto& p : train_shards) meta["train_shards"].push_back(fs::path(p).filename().string());
    for (const auto& p : val_shards) meta["val_shards"].push_back(fs::path(p).filename().string());
    write_file_atomic(g->dir + "/meta.json", meta.dump(2) + "\n");
    r.train_shards.insert(r.train_shards.end(), train_shards.begin(), train_shards.end());
    r.val_shards.insert(r.val_shards.end(), val_shards.begin(), val_shards.end());
    if (grouped) {
      r.groups.push_back(name);
      group_list.push_back({{"name", name}, {"documents", g->documents}, {"tokens", g->tokens}});
    }
  }
  if (grouped) {
    nlohmann::json top = {{"format", "sambalm grouped token shards"},
                          {"group_by", o.group_by},
                          {"documents", r.documents},
                          {"groups", group_list}};
    if (o.skip_bad_lines) top["bad_lines_skipped"] = r.bad_lines;
    write_file_atomic(o.output_dir + "/meta.json", top.dump(2) + "\n");
  }
  // The state goes first: streams without a state are only scratch files, a state without its
  // streams would be a resume that cannot work.
  fs::remove(state_path);
  state_guard.armed = false;
  groups.clear();  // removes the scratch streams

  r.seconds = std::chrono::duration<double>(clock::now() - t0).count();
  prog.seconds = r.seconds;
  prog.done = true;
  if (o.progress) o.progress(prog);
  return r;
}

}  // namespace sambalm
