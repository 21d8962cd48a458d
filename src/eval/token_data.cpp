// Evaluation data: text tokenized once, or shards read in place (see token_data.h).
#include "eval/token_data.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/file.h"

namespace sambalm {
namespace {

bool starts_with_shard_magic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[8] = {};
  in.read(magic, 8);
  return in.gcount() == 8 && std::memcmp(magic, kShardMagic, 8) == 0;
}

}  // namespace

EvalTokens EvalTokens::open(const std::string& path, const Tokenizer* tok, const std::string& split) {
  namespace fs = std::filesystem;
  EvalTokens d;
  d.name_ = path;
  SAMBALM_CHECK(fs::exists(path), "{}: no such file or directory", path);
  std::vector<std::string> shard_paths;
  if (fs::is_directory(path)) {
    shard_paths = list_shards(path, split);
    d.name_ =
        fmt::format("{} ({} split, {} shard{})", path, split, shard_paths.size(), shard_paths.size() == 1 ? "" : "s");
  } else if (starts_with_shard_magic(path)) {
    shard_paths = {path};
  }
  if (!shard_paths.empty()) {
    for (const auto& p : shard_paths) {
      d.shards_.push_back(Shard::open(p));
      d.starts_.push_back(d.n_);
      d.n_ += d.shards_.back().size();
      d.vocab_ = std::max<int64_t>(d.vocab_, d.shards_.back().vocab_size());
    }
  } else {
    SAMBALM_CHECK(tok != nullptr,
                  "{}: a text file needs a tokenizer (none beside the model; pass --tokenizer), or give token shards",
                  path);
    const std::string text = read_text_file(path);
    encode_input(*tok, text, path, d.text_ids_);
    d.n_ = static_cast<int64_t>(d.text_ids_.size());
    d.vocab_ = tok->vocab_size();
  }
  SAMBALM_CHECK(d.n_ > 0, "{}: no tokens (the data is empty)", d.name_);
  return d;
}

void EvalTokens::read(int64_t offset, int64_t n, int32_t* out) const {
  SAMBALM_CHECK(offset >= 0 && n >= 0 && offset + n <= n_, "{}: tokens [{}, {}) outside [0, {})", name_, offset,
                offset + n, n_);
  if (is_text()) {
    std::copy_n(text_ids_.data() + offset, n, out);
    return;
  }
  // The shard holding `offset`, then on through the following ones.
  size_t s = static_cast<size_t>(std::upper_bound(starts_.begin(), starts_.end(), offset) - starts_.begin()) - 1;
  while (n > 0) {
    const int64_t local = offset - starts_[s], take = std::min(n, shards_[s].size() - local);
    shards_[s].read(local, take, out);
    out += take, offset += take, n -= take, ++s;
  }
}

}  // namespace sambalm
