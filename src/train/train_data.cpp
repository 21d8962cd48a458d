#include "train/train_data.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/file.h"
#include "io/litpkd.h"
#include "io/shards.h"
#include "train/mixture.h"

namespace fs = std::filesystem;

namespace sambalm {
namespace {

// A sambalm token shard or a lit_gpt PackedDataset chunk.
bool is_shard_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char magic[8] = {};
  if (!f.read(magic, 8)) return false;
  return std::memcmp(magic, kShardMagic, 8) == 0 || is_litpkd(reinterpret_cast<const uint8_t*>(magic), 8);
}

// Raw text through a tokenizer: ids held in memory.
TokenSource tokenize_text(const std::string& path, const Tokenizer& tok, const std::string& option) {
  SAMBALM_CHECK(fs::is_regular_file(path), "{} {}: no such file", option, path);
  auto f = MappedFile::open(path);
  std::vector<int32_t> ids;
  encode_input(tok, std::string_view(reinterpret_cast<const char*>(f->data()), f->size()), option + " " + path, ids);
  return TokenSource::memory(std::move(ids), tok.vocab_size(), path + " (" + tok.kind() + " tokens)");
}

// A whole file, directory or file prefix as one source (for --val-data, or --data with --val-data).
TokenSource whole_source(const std::string& path, const std::string& split, const Tokenizer* tok, int32_t vocab,
                         const std::string& option) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return TokenSource::shards(path, split, vocab);
  if (!fs::exists(path, ec)) return TokenSource::prefix(path, vocab, option);
  SAMBALM_CHECK(fs::is_regular_file(path), "{} {}: no such file or directory", option, path);
  if (is_shard_file(path)) return TokenSource::shard_file(path, vocab);
  SAMBALM_CHECK(tok != nullptr, "{} {}: raw text needs --tokenizer (bytes, or a tokenizer.json / .model)", option,
                path);
  if (tok->kind() == "bytes") return TokenSource::bytes(path);
  return tokenize_text(path, *tok, option);
}

}  // namespace

TrainData::TrainData(const TrainOptions& o, int64_t seq_len, int rank, int world) : o_(o), T_(seq_len), world_(world) {
  SAMBALM_CHECK(!o.data.empty(), "--data: training data is required");
  SAMBALM_CHECK(o.val_fraction >= 0 && o.val_fraction < 1, "--val-fraction must be in [0, 1), found {}",
                o.val_fraction);
  std::error_code ec;
  const auto mixture = parse_data_mixture(o.data, "--data");
  const bool is_prefix = mixture.empty() && !fs::exists(o.data, ec);
  SAMBALM_CHECK(!is_prefix || !o.val_data.empty(),
                "--data {}: no such file or directory (as a file prefix, lit_gpt-style, it needs --val-data)", o.data);
  const bool dir = fs::is_directory(o.data, ec);
  if (!o.tokenizer.empty()) {
    tok_ = load_tokenizer(o.tokenizer);
  } else if (dir && fs::exists(fs::path(o.data) / "meta.json")) {
    // The tokenizer the shards were made with, when it can still be found.
    auto meta = nlohmann::json::parse(read_text_file((fs::path(o.data) / "meta.json").string()), nullptr, false);
    const std::string name = meta.is_object() ? meta.value("tokenizer", "") : "";
    if (name == "bytes" || (!name.empty() && fs::exists(name))) tok_ = load_tokenizer(name);
  }

  // The vocabulary of lit_gpt PackedDataset chunks, which record none.
  const int32_t vocab = o.vocab_size ? int32_t(*o.vocab_size) : tok_ ? tok_->vocab_size() : 0;
  if (!mixture.empty()) {
    SAMBALM_CHECK(!o.val_data.empty(), "--data {}: a weighted mixture has no validation part; give --val-data", o.data);
    std::vector<MixtureSampler::Source> sources;
    for (const auto& [path, weight] : mixture) {
      TokenSource t = whole_source(path, "train", tok_.get(), vocab, "--data");
      SAMBALM_CHECK(weight == 0 || t.size() >= T_ + 1,
                    "--data {}: this source has {} tokens, fewer than one window of --seq-len + 1 = {}", path, t.size(),
                    T_ + 1);
      sources.push_back({path, weight, std::move(t)});
    }
    train_ = sources.front().tokens;
    mixture_.emplace(std::move(sources), o.seed, "--data", rank, world);
    val_ = whole_source(o.val_data, "val", tok_.get(), vocab, "--val-data");
  } else if (!o.val_data.empty()) {
    train_ = whole_source(o.data, "train", tok_.get(), vocab, "--data");
    val_ = whole_source(o.val_data, "val", tok_.get(), vocab, "--val-data");
  } else if (dir) {
    train_ = TokenSource::shards(o.data, "train", vocab);
    val_ = TokenSource::shards(o.data, "val", vocab);
  } else {
    SAMBALM_CHECK(!is_shard_file(o.data), "--data {}: a single shard has no validation part; give --val-data", o.data);
    SAMBALM_CHECK(tok_ != nullptr, "--tokenizer: how is {} tokenized? (bytes, or a tokenizer.json / .model)", o.data);
    SAMBALM_CHECK(o.val_fraction > 0, "--val-fraction 0 leaves no validation data; give --val-data");
    const double train_fraction = 1.0 - o.val_fraction;
    if (tok_->kind() == "bytes") {
      train_ = TokenSource::bytes(o.data, TokenSource::Split::kTrain, train_fraction);
      val_ = TokenSource::bytes(o.data, TokenSource::Split::kVal, train_fraction);
    } else {
      TokenSource all = tokenize_text(o.data, *tok_, "--data");
      const int64_t n = all.size(), n_train = static_cast<int64_t>(train_fraction * static_cast<double>(n));
      std::vector<int32_t> a(n_train), b(n - n_train);
      if (n_train > 0) all.read(0, n_train, a.data());
      if (n > n_train) all.read(n_train, n - n_train, b.data());
      train_ = TokenSource::memory(std::move(a), all.vocab_size(), o.data + " (train split)");
      val_ = TokenSource::memory(std::move(b), all.vocab_size(), o.data + " (validation split)");
    }
  }

  if (!mixture_)
    SAMBALM_CHECK(train_.size() >= T_ + 1,
                  "--data {}: the training data has {} tokens, fewer than one window of --seq-len + 1 = {}",
                  train_.name(), train_.size(), T_ + 1);
  SAMBALM_CHECK(val_.size() >= T_ + 1,
                "--data {}: the validation split has {} tokens, fewer than one window of --seq-len + 1 = {} "
                "(raise --val-fraction, lower --seq-len, or give --val-data)",
                val_.name(), val_.size(), T_ + 1);
  if (!mixture_) sampler_.emplace(train_, o.seed, rank, world);
}

std::vector<const TokenSource*> TrainData::all_sources() const {
  std::vector<const TokenSource*> v = {&train_, &val_};
  if (mixture_)
    for (const auto& m : mixture_->sources()) v.push_back(&m.tokens);
  return v;
}

void TrainData::check_model(const ModelConfig& cfg) const {
  for (const TokenSource* s : all_sources())
    SAMBALM_CHECK(s->vocab_size() <= cfg.vocab_size,
                  "--data {}: the data's vocabulary has {} ids, more than the model's vocab_size {} "
                  "(use --vocab-size {} or a model with a larger vocabulary)",
                  s->name(), s->vocab_size(), cfg.vocab_size, s->vocab_size());
  if (tok_)
    SAMBALM_CHECK(tok_->vocab_size() <= cfg.vocab_size,
                  "--tokenizer {}: {} ids, more than the model's vocab_size {} (use --vocab-size {})", tok_->source(),
                  tok_->vocab_size(), cfg.vocab_size, tok_->vocab_size());
}

int64_t TrainData::vocab_size() const {
  int64_t v = 0;
  for (const TokenSource* s : all_sources()) v = std::max<int64_t>(v, s->vocab_size());
  if (tok_) v = std::max<int64_t>(v, tok_->vocab_size());
  return v;
}

int64_t TrainData::sample_vocab() const { return tok_ ? tok_->vocab_size() : vocab_size(); }

std::map<std::string, std::string> TrainData::tokenizer_files() const {
  std::map<std::string, std::string> files;
  if (!tok_) return files;
  if (tok_->kind() == "bytes") {
    files[kTokenizerConfigFile] = bytes_tokenizer_config();
    return files;
  }
  const fs::path src(tok_->source());
  std::error_code ec;
  if (!fs::is_regular_file(src, ec)) return files;
  files[tok_->kind() == "sentencepiece" ? "tokenizer.model" : "tokenizer.json"] = read_text_file(src.string());
  for (const char* beside : {kTokenizerConfigFile, "special_tokens_map.json"}) {
    const fs::path p = src.parent_path() / beside;
    if (fs::is_regular_file(p, ec)) files[beside] = read_text_file(p.string());
  }
  return files;
}

void TrainData::next_batch(int32_t* x, int32_t* y, int64_t B) {
  if (mixture_)
    mixture_->next_batch(x, y, B, T_);
  else
    sampler_->next_batch(x, y, B, T_);
}

int64_t TrainData::train_tokens() const {
  if (!mixture_) return train_.size();
  int64_t n = 0;
  for (const auto& m : mixture_->sources()) n += m.tokens.size();
  return n;
}

nlohmann::json TrainData::state() const {
  if (mixture_) return mixture_->state();
  return {{"kind", "batch_sampler"}, {"sampler", to_json(sampler_->state())}, {"train_tokens", train_.size()}};
}

void TrainData::restore(const nlohmann::json& s) {
  if (mixture_) return mixture_->restore(s);
  SAMBALM_CHECK(!(s.is_object() && s.value("kind", "") == "mixture"),
                "--data {}: the checkpoint was made on a weighted mixture; give the same --data list", o_.data);
  SAMBALM_CHECK(s.is_object() && s.value("kind", "") == "batch_sampler" && s.contains("sampler"),
                "checkpoint: the data state is not a batch_sampler state: {}", s.dump().substr(0, 200));
  SAMBALM_CHECK(s.value("train_tokens", int64_t{0}) == train_.size(),
                "--data {}: the training data has {} tokens, the checkpoint was made on {}", train_.name(),
                train_.size(), s.value("train_tokens", int64_t{0}));
  sampler_->restore(sampler_state_from_json(s["sampler"]));
}

const std::vector<int32_t>& TrainData::val_windows(int64_t L) {
  auto it = val_cache_.find(L);
  if (it != val_cache_.end()) return it->second;
  val_.require_window(L);
  // Its own sampler: drawing validation windows never moves the training batches.
  BatchSampler pick(val_, o_.seed * 1000003 + static_cast<uint64_t>(L) + 0x7a11);
  // --eval-batches batches of every process's micro-batch: the same windows at any number of processes
  // with the same batch x processes.
  const int64_t n = std::max<int64_t>(1, o_.eval_batches) * o_.batch * world_, W = L + 1;
  std::vector<int32_t> out(n * W);
  for (int64_t i = 0; i < n; ++i) val_.read(pick.next_offset(L), W, out.data() + i * W);
  return val_cache_.emplace(L, std::move(out)).first->second;
}

std::vector<int32_t> TrainData::full_val_windows(int64_t L) const {
  val_.require_window(L);
  const int64_t W = L + 1, n = val_.size() / W;
  std::vector<int32_t> out(n * W);
  val_.read(0, n * W, out.data());
  return out;
}

std::string TrainData::describe() const {
  if (mixture_) {
    std::string m;
    for (const auto& src : mixture_->sources())
      m += fmt::format("{}{} x{} ({} tokens)", m.empty() ? "" : ", ", src.tokens.name(), src.weight, src.tokens.size());
    return fmt::format("train mixture [{}], validation {} ({} tokens), tokenizer {}, vocab {}", m, val_.name(),
                       val_.size(), tok_ ? tok_->kind() : "unknown", vocab_size());
  }
  return fmt::format("train {} ({} tokens), validation {} ({} tokens), tokenizer {}, vocab {}", train_.name(),
                     train_.size(), val_.name(), val_.size(), tok_ ? tok_->kind() : "unknown", train_.vocab_size());
}

std::vector<int32_t> TrainData::prompt_ids(const std::string& prompt) const {
  if (!prompt.empty() && tok_) {
    auto ids = tok_->encode(prompt);
    if (!ids.empty()) return ids;
  }
  const int64_t n = std::min<int64_t>(val_.size(), std::min<int64_t>(64, T_));
  std::vector<int32_t> ids(n);
  val_.read(0, n, ids.data());
  return ids;
}

std::string TrainData::decode(const std::vector<int32_t>& ids) const {
  if (tok_) return tok_->decode(ids, true);
  std::string s;
  for (int32_t id : ids) s += fmt::format("[{}]", id);
  return s;
}

}  // namespace sambalm
