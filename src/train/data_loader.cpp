// Token sources (shards, raw bytes, memory), the random-window sampler and sequential windows.
#include "train/data_loader.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "io/file.h"
#include "io/shards.h"

namespace sambalm {

struct TokenSource::Impl {
  std::string name;
  int32_t vocab = 0;
  int64_t size = 0;
  std::vector<Shard> shards;
  std::vector<int64_t> starts;  // first global index of each shard
  std::shared_ptr<MappedFile> bytes_file;
  int64_t bytes_begin = 0;
  std::vector<int32_t> memory;
  enum { kShards, kBytes, kMemory } kind = kShards;
};

namespace {

std::shared_ptr<TokenSource::Impl> from_shards(const std::vector<std::string>& paths, std::string name,
                                               int32_t vocab_size) {
  auto impl = std::make_shared<TokenSource::Impl>();
  impl->name = std::move(name);
  for (const auto& p : paths) {
    impl->shards.push_back(Shard::open(p, vocab_size));
    const Shard& s = impl->shards.back();
    if (impl->shards.size() == 1) impl->vocab = s.vocab_size();
    SAMBALM_CHECK(s.vocab_size() == impl->vocab, "{}: vocabulary size {} differs from {}'s {}", p, s.vocab_size(),
                  paths[0], impl->vocab);
    impl->starts.push_back(impl->size);
    impl->size += s.size();
  }
  return impl;
}

// splitmix64 (Steele, Lea, Flood 2014): a 64-bit counter stepped by the golden ratio, then mixed.
uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
struct SplitMix64 {
  uint64_t x;
  uint64_t next() { return mix(x += 0x9E3779B97F4A7C15ull); }
};

}  // namespace

namespace {
std::string paths_name(const std::vector<std::string>& paths) {
  return paths.size() == 1 ? paths[0] : fmt::format("{} + {} more", paths[0], paths.size() - 1);
}
}  // namespace

TokenSource TokenSource::shards(const std::string& dir, const std::string& split, int32_t vocab_size) {
  auto paths = list_shards(dir, split);
  TokenSource t;
  t.impl_ = from_shards(paths, paths_name(paths), vocab_size);
  return t;
}

TokenSource TokenSource::shard_file(const std::string& path, int32_t vocab_size) {
  TokenSource t;
  t.impl_ = from_shards({path}, path, vocab_size);
  return t;
}

TokenSource TokenSource::prefix(const std::string& prefix, int32_t vocab_size, const std::string& option) {
  auto paths = list_prefix_files(prefix, option);
  TokenSource t;
  t.impl_ = from_shards(paths, paths_name(paths), vocab_size);
  return t;
}

TokenSource TokenSource::bytes(const std::string& path, Split split, double train_fraction) {
  SAMBALM_CHECK(train_fraction >= 0 && train_fraction <= 1, "{}: train fraction must be in [0, 1], got {}", path,
                train_fraction);
  std::error_code ec;
  SAMBALM_CHECK(std::filesystem::is_regular_file(path, ec), "{}: no such file", path);
  auto impl = std::make_shared<Impl>();
  impl->kind = Impl::kBytes;
  impl->vocab = 256;
  impl->bytes_file = MappedFile::open(path);
  const int64_t n = int64_t(impl->bytes_file->size());
  const int64_t n_train = int64_t(train_fraction * double(n));  // int(0.9 * n), as the reference
  switch (split) {
    case Split::kAll:
      impl->bytes_begin = 0, impl->size = n, impl->name = path + " (bytes)";
      break;
    case Split::kTrain:
      impl->bytes_begin = 0, impl->size = n_train, impl->name = path + " (bytes, train split)";
      break;
    case Split::kVal:
      impl->bytes_begin = n_train, impl->size = n - n_train, impl->name = path + " (bytes, validation split)";
      break;
  }
  TokenSource t;
  t.impl_ = impl;
  return t;
}

TokenSource TokenSource::memory(std::vector<int32_t> ids, int32_t vocab_size, std::string name) {
  for (size_t i = 0; i < ids.size(); ++i)
    SAMBALM_CHECK(ids[i] >= 0 && ids[i] < vocab_size, "{}: id {} at position {} is outside [0, {})", name, ids[i], i,
                  vocab_size);
  auto impl = std::make_shared<Impl>();
  impl->kind = Impl::kMemory;
  impl->vocab = vocab_size;
  impl->size = int64_t(ids.size());
  impl->memory = std::move(ids);
  impl->name = std::move(name);
  TokenSource t;
  t.impl_ = impl;
  return t;
}

int64_t TokenSource::size() const { return impl_ ? impl_->size : 0; }
int32_t TokenSource::vocab_size() const { return impl_ ? impl_->vocab : 0; }
const std::string& TokenSource::name() const {
  static const std::string none = "(empty token source)";
  return impl_ ? impl_->name : none;
}

void TokenSource::read(int64_t offset, int64_t n, int32_t* out) const {
  SAMBALM_CHECK(impl_ && offset >= 0 && n >= 0 && offset + n <= size(), "{}: read of tokens [{}, {}) outside [0, {})",
                name(), offset, offset + n, size());
  const Impl& s = *impl_;
  if (s.kind == Impl::kBytes) {
    const uint8_t* p = s.bytes_file->data() + s.bytes_begin + offset;
    for (int64_t i = 0; i < n; ++i) out[i] = p[i];
    return;
  }
  if (s.kind == Impl::kMemory) {
    std::memcpy(out, s.memory.data() + offset, size_t(n) * sizeof(int32_t));
    return;
  }
  // A window may span shards: copy from each in turn.
  size_t k = size_t(std::upper_bound(s.starts.begin(), s.starts.end(), offset) - s.starts.begin()) - 1;
  while (n > 0) {
    const Shard& sh = s.shards[k];
    int64_t local = offset - s.starts[k];
    int64_t take = std::min(n, sh.size() - local);
    sh.read(local, take, out);
    out += take, offset += take, n -= take, ++k;
  }
}

void TokenSource::require_window(int64_t T) const {
  SAMBALM_CHECK(T >= 1, "{}: window length must be at least 1, got {}", name(), T);
  SAMBALM_CHECK(size() >= T + 1, "{}: {} tokens, fewer than one window of T + 1 = {}", name(), size(), T + 1);
}

nlohmann::json to_json(const SamplerState& s) { return {{"seed", s.seed}, {"windows_drawn", s.windows_drawn}}; }

SamplerState sampler_state_from_json(const nlohmann::json& j) {
  SAMBALM_CHECK(j.is_object() && j.contains("seed") && j["seed"].is_number_unsigned() && j.contains("windows_drawn") &&
                    j["windows_drawn"].is_number_unsigned(),
                "sampler state: expected {{\"seed\": N, \"windows_drawn\": N}}, found {}", j.dump());
  return {j["seed"].get<uint64_t>(), j["windows_drawn"].get<uint64_t>()};
}

BatchSampler::BatchSampler(TokenSource src, uint64_t seed, int rank, int world)
    : src_(std::move(src)), rank_(rank), world_(world) {
  SAMBALM_CHECK(world >= 1 && rank >= 0 && rank < world, "data sampler: rank {} of world {} is not valid", rank, world);
  seed_ = seed;
}

int64_t BatchSampler::next_offset(int64_t T) {
  const uint64_t g = base_ + local_ * uint64_t(world_) + uint64_t(rank_);
  const int64_t at = offset_at(g, T);
  ++local_;
  return at;
}

int64_t BatchSampler::offset_at(uint64_t g, int64_t T) const {
  src_.require_window(T);
  const uint64_t m = uint64_t(src_.size() - T);  // valid starts: 0 .. n - (T + 1)
  SplitMix64 r{mix(seed_ ^ mix(g + 0x632BE59BD9B4E019ull))};
  const uint64_t threshold = (0 - m) % m;  // (2^64 - m) mod m: below it, r mod m would be biased
  for (;;) {
    uint64_t x = r.next();
    if (x >= threshold) return int64_t(x % m);
  }
}

void BatchSampler::next_batch(int32_t* inputs, int32_t* targets, int64_t B, int64_t T) {
  window_.resize(size_t(T + 1));
  for (int64_t b = 0; b < B; ++b) {
    src_.read(next_offset(T), T + 1, window_.data());
    std::memcpy(inputs + b * T, window_.data(), size_t(T) * sizeof(int32_t));
    std::memcpy(targets + b * T, window_.data() + 1, size_t(T) * sizeof(int32_t));
  }
}

SequentialWindows::SequentialWindows(TokenSource src, int64_t T) : src_(std::move(src)), T_(T) {
  src_.require_window(T);
  count_ = src_.size() / (T + 1);
}

void SequentialWindows::seek(int64_t window) {
  SAMBALM_CHECK(window >= 0 && window <= count_, "{}: window {} outside [0, {}]", src_.name(), window, count_);
  next_ = window;
}

void SequentialWindows::window(int64_t i, int32_t* inputs, int32_t* targets) const {
  SAMBALM_CHECK(i >= 0 && i < count_, "{}: window {} outside [0, {})", src_.name(), i, count_);
  window_.resize(size_t(T_ + 1));
  src_.read(i * (T_ + 1), T_ + 1, window_.data());
  std::memcpy(inputs, window_.data(), size_t(T_) * sizeof(int32_t));
  std::memcpy(targets, window_.data() + 1, size_t(T_) * sizeof(int32_t));
}

int64_t SequentialWindows::next_batch(int32_t* inputs, int32_t* targets, int64_t B) {
  int64_t k = 0;
  for (; k < B && next_ < count_; ++k, ++next_) window(next_, inputs + k * T_, targets + k * T_);
  return k;
}

}  // namespace sambalm
