#include "train/train_data.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "io/file.h"

namespace fs = std::filesystem;

namespace sambalm {
namespace {

std::vector<int32_t> tokenize_file(const std::string& path, const Tokenizer& tok, const std::string& option) {
  SAMBALM_CHECK(fs::is_regular_file(path), "{} {}: no such file", option, path);
  auto f = MappedFile::open(path);
  std::string_view text(reinterpret_cast<const char*>(f->data()), f->size());
  std::vector<int32_t> ids;
  if (tok.kind() == "bytes") {
    ids.assign(f->data(), f->data() + f->size());  // the bytes are the ids
  } else {
    tok.encode(text, ids);
  }
  return ids;
}

}  // namespace

TrainData::TrainData(const TrainOptions& o, int64_t seq_len, const ModelConfig& cfg) : o_(o), T_(seq_len) {
  SAMBALM_CHECK(!o.data.empty(), "--data: a training data file is required");
  SAMBALM_CHECK(!o.tokenizer.empty(), "--tokenizer: how is {} tokenized? (bytes, or a tokenizer.json / .model)",
                o.data);
  SAMBALM_CHECK(o.val_fraction >= 0 && o.val_fraction < 1, "--val-fraction must be in [0, 1), found {}",
                o.val_fraction);
  tok_ = load_tokenizer(o.tokenizer);
  SAMBALM_CHECK(tok_->vocab_size() <= cfg.vocab_size,
                "--tokenizer {}: the data's vocabulary has {} ids, more than the model's vocab_size {} "
                "(use --vocab-size {} or a model with a larger vocabulary)",
                o.tokenizer, tok_->vocab_size(), cfg.vocab_size, tok_->vocab_size());
  std::vector<int32_t> all = tokenize_file(o.data, *tok_, "--data");
  source_ = o.data;
  if (!o.val_data.empty()) {
    train_ = std::move(all);
    val_ = tokenize_file(o.val_data, *tok_, "--val-data");
  } else {
    const auto n_train = static_cast<size_t>((1.0 - o.val_fraction) * static_cast<double>(all.size()));
    val_.assign(all.begin() + n_train, all.end());
    all.resize(n_train);
    train_ = std::move(all);
  }
  for (const auto* split : {&train_, &val_}) {
    auto mx = std::max_element(split->begin(), split->end());
    SAMBALM_CHECK(mx == split->end() || *mx < cfg.vocab_size,
                  "--data {}: token id {} is outside the model's vocabulary ({} ids)", o.data, *mx, cfg.vocab_size);
  }
  const int64_t W = T_ + 1;
  SAMBALM_CHECK(static_cast<int64_t>(train_.size()) >= W,
                "--data {}: the training split has {} tokens, fewer than one window of --seq-len + 1 = {}", o.data,
                train_.size(), W);
  SAMBALM_CHECK(static_cast<int64_t>(val_.size()) >= W,
                "--data {}: the validation split has {} tokens, fewer than one window of --seq-len + 1 = {} "
                "(raise --val-fraction, lower --seq-len, or give --val-data)",
                o.val_data.empty() ? o.data : o.val_data, val_.size(), W);
  rng_.seed(o.seed);
}

void TrainData::window(const std::vector<int32_t>& src, int64_t off, int64_t L, int32_t* x, int32_t* y) const {
  std::copy(src.begin() + off, src.begin() + off + L, x);
  std::copy(src.begin() + off + 1, src.begin() + off + L + 1, y);
}

void TrainData::next_batch(int32_t* x, int32_t* y, int64_t B) {
  std::uniform_int_distribution<int64_t> pick(0, static_cast<int64_t>(train_.size()) - (T_ + 1));
  for (int64_t b = 0; b < B; ++b) window(train_, pick(rng_), T_, x + b * T_, y + b * T_);
}

nlohmann::json TrainData::state() const {
  std::ostringstream s;
  s << rng_;
  return {{"kind", "random_windows"}, {"rng", s.str()}, {"train_tokens", train_.size()}};
}

void TrainData::restore(const nlohmann::json& s) {
  SAMBALM_CHECK(s.is_object() && s.value("kind", "") == "random_windows" && s.contains("rng"),
                "checkpoint: data state is not a random_windows state: {}", s.dump().substr(0, 200));
  SAMBALM_CHECK(s.value("train_tokens", size_t{0}) == train_.size(),
                "--data {}: the training split has {} tokens, the checkpoint was made with {}", source_, train_.size(),
                s.value("train_tokens", size_t{0}));
  std::istringstream(s["rng"].get<std::string>()) >> rng_;
}

const std::vector<int32_t>& TrainData::val_windows(int64_t L) {
  auto it = val_cache_.find(L);
  if (it != val_cache_.end()) return it->second;
  const int64_t W = L + 1;
  SAMBALM_CHECK(static_cast<int64_t>(val_.size()) >= W, "validation split: {} tokens, fewer than one {}-token window",
                val_.size(), W);
  std::mt19937_64 g(o_.seed * 1000003 + static_cast<uint64_t>(L));
  std::uniform_int_distribution<int64_t> pick(0, static_cast<int64_t>(val_.size()) - W);
  const int64_t n = std::max<int64_t>(1, o_.eval_batches) * o_.batch;
  std::vector<int32_t> out;
  out.reserve(n * W);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t off = pick(g);
    out.insert(out.end(), val_.begin() + off, val_.begin() + off + W);
  }
  return val_cache_.emplace(L, std::move(out)).first->second;
}

std::vector<int32_t> TrainData::full_val_windows(int64_t L) const {
  const size_t W = static_cast<size_t>(L + 1), n = val_.size() / W;
  SAMBALM_CHECK(n > 0, "validation split: {} tokens, fewer than one {}-token window", val_.size(), W);
  return std::vector<int32_t>(val_.begin(), val_.begin() + n * W);
}

std::string TrainData::describe() const {
  return fmt::format(
      "{} ({} tokenizer, vocab {}): {} training tokens, {} validation tokens{}", source_, tok_->kind(),
      tok_->vocab_size(), train_.size(), val_.size(),
      o_.val_data.empty() ? fmt::format(" (last {:g}%)", 100 * o_.val_fraction) : " from " + o_.val_data);
}

std::vector<int32_t> TrainData::prompt_ids(const std::string& prompt) const {
  if (!prompt.empty()) {
    auto ids = tok_->encode(prompt);
    if (!ids.empty()) return ids;
  }
  const size_t n = std::min<size_t>(val_.size(), static_cast<size_t>(std::min<int64_t>(64, T_)));
  return std::vector<int32_t>(val_.begin(), val_.begin() + n);
}

std::string TrainData::decode(const std::vector<int32_t>& ids) const { return tok_->decode(ids, true); }

}  // namespace sambalm
