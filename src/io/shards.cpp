// Token shard files: writer (streaming, atomic) and memory-mapped reader.
#include "io/shards.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "io/file.h"
#include "io/litpkd.h"

namespace sambalm {

namespace {

template <typename T>
void put(uint8_t* p, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = uint8_t(uint64_t(v) >> (8 * i));
}
template <typename T>
T get(const uint8_t* p) {
  uint64_t v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= uint64_t(p[i]) << (8 * i);
  return T(v);
}

void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    ssize_t k = ::write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    SAMBALM_CHECK(k > 0, "{}: write failed: {}", path, std::strerror(errno));
    p += k;
    n -= size_t(k);
  }
}

}  // namespace

ShardWriter::ShardWriter(std::string path, int32_t vocab_size, std::optional<int32_t> eos_id)
    : path_(std::move(path)), tmp_(path_ + ".tmp"), vocab_size_(vocab_size), eos_(eos_id) {
  SAMBALM_CHECK(vocab_size > 0, "{}: vocabulary size must be positive, got {}", path_, vocab_size);
  token_bytes_ = shard_token_bytes(vocab_size);
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  SAMBALM_CHECK(fd_ >= 0, "{}: cannot create: {}", tmp_, std::strerror(errno));
  uint8_t zero[kShardHeaderBytes] = {};
  write_all(fd_, zero, sizeof(zero), tmp_);  // the real header goes in at commit()
  buffer_.reserve(1 << 20);
}

ShardWriter::~ShardWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void ShardWriter::append(const int32_t* ids, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    SAMBALM_CHECK(ids[i] >= 0 && ids[i] < vocab_size_, "{}: token {} is outside the vocabulary [0, {})", path_, ids[i],
                  vocab_size_);
    uint8_t b[4];
    put<uint32_t>(b, uint32_t(ids[i]));
    buffer_.insert(buffer_.end(), b, b + token_bytes_);
    if (buffer_.size() >= (1 << 20)) flush();
  }
  count_ += n;
}

void ShardWriter::flush() {
  if (!buffer_.empty()) write_all(fd_, buffer_.data(), buffer_.size(), tmp_);
  buffer_.clear();
}

void ShardWriter::commit() {
  flush();
  uint8_t h[kShardHeaderBytes] = {};
  std::memcpy(h, kShardMagic, 8);
  put<uint32_t>(h + 8, kShardVersion);
  put<uint32_t>(h + 12, uint32_t(token_bytes_));
  put<uint64_t>(h + 16, count_);
  put<uint32_t>(h + 24, uint32_t(vocab_size_));
  put<int32_t>(h + 28, eos_ ? *eos_ : -1);
  SAMBALM_CHECK(::pwrite(fd_, h, sizeof(h), 0) == ssize_t(sizeof(h)), "{}: write failed: {}", tmp_,
                std::strerror(errno));
  SAMBALM_CHECK(::fsync(fd_) == 0, "{}: fsync failed: {}", tmp_, std::strerror(errno));
  ::close(fd_);
  fd_ = -1;
  SAMBALM_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0, "{}: cannot rename to {}: {}", tmp_, path_,
                std::strerror(errno));
  committed_ = true;
}

Shard Shard::open(const std::string& path, int32_t vocab_size) {
  Shard s;
  s.path_ = path;
  s.file_ = MappedFile::open(path);
  const uint8_t* p = s.file_->data();
  const size_t size = s.file_->size();
  if (sambalm::is_litpkd(p, size)) {
    LitPkdHeader h = parse_litpkd_header(p, size, path);
    SAMBALM_CHECK(vocab_size > 0,
                  "{}: a lit_gpt PackedDataset file does not record its vocabulary; give --tokenizer (or --vocab-size)",
                  path);
    s.litpkd_ = true;
    s.token_bytes_ = h.token_bytes;
    s.signed_ = h.is_signed;
    s.vocab_size_ = vocab_size;
    s.n_ = int64_t(h.chunk_size);
    s.tokens_ = p + kLitPkdHeaderBytes;
    return s;
  }
  SAMBALM_CHECK(size >= kShardHeaderBytes, "{}: not a token shard: {} bytes, shorter than the {}-byte header", path,
                size, kShardHeaderBytes);
  SAMBALM_CHECK(std::memcmp(p, kShardMagic, 8) == 0, "{}: not a token shard: magic is '{}', expected '{}'", path,
                std::string(reinterpret_cast<const char*>(p), 8), kShardMagic);
  uint32_t version = get<uint32_t>(p + 8);
  SAMBALM_CHECK(version == kShardVersion, "{}: token shard version {} is not supported (expected {})", path, version,
                kShardVersion);
  s.token_bytes_ = int(get<uint32_t>(p + 12));
  SAMBALM_CHECK(s.token_bytes_ == 2 || s.token_bytes_ == 4, "{}: token width is {} bytes, expected 2 or 4", path,
                s.token_bytes_);
  uint64_t n = get<uint64_t>(p + 16);
  s.vocab_size_ = int32_t(get<uint32_t>(p + 24));
  SAMBALM_CHECK(s.vocab_size_ > 0 && shard_token_bytes(s.vocab_size_) <= s.token_bytes_,
                "{}: vocabulary size {} does not fit {}-byte tokens", path, s.vocab_size_, s.token_bytes_);
  int32_t eos = get<int32_t>(p + 28);
  if (eos >= 0) s.eos_ = eos;
  const uint64_t body = size - kShardHeaderBytes;
  SAMBALM_CHECK(n <= body / uint64_t(s.token_bytes_) && body == n * uint64_t(s.token_bytes_),
                "{}: header says {} tokens ({} bytes) but the body has {} bytes{}", path, n,
                n * uint64_t(s.token_bytes_), body, body < n * uint64_t(s.token_bytes_) ? " (truncated)" : "");
  s.n_ = int64_t(n);
  s.tokens_ = p + kShardHeaderBytes;
  return s;
}

int32_t Shard::at(int64_t i) const {
  const uint8_t* q = tokens_ + i * token_bytes_;
  if (litpkd_) {
    int64_t v = 0;
    switch (token_bytes_) {
      case 1:
        v = signed_ ? int64_t(int8_t(q[0])) : int64_t(q[0]);
        break;
      case 2:
        v = signed_ ? int64_t(get<int16_t>(q)) : int64_t(get<uint16_t>(q));
        break;
      case 4:
        v = get<int32_t>(q);
        break;
      default:
        v = get<int64_t>(q);
        break;
    }
    // Out of int32 range reads as -1, which the caller's vocabulary check names.
    return v < 0 || v > INT32_MAX ? -1 : int32_t(v);
  }
  return token_bytes_ == 2 ? int32_t(get<uint16_t>(q)) : get<int32_t>(q);
}

void Shard::read(int64_t offset, int64_t n, int32_t* out) const {
  SAMBALM_CHECK(offset >= 0 && n >= 0 && offset + n <= n_, "{}: read of tokens [{}, {}) outside [0, {})", path_, offset,
                offset + n, n_);
  if (litpkd_ && !(token_bytes_ == 2 && !signed_)) {
    for (int64_t i = 0; i < n; ++i) out[i] = at(offset + i);
  } else if (token_bytes_ == 2) {
    uint16_t v;
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(&v, tokens_ + (offset + i) * 2, 2);  // little-endian hosts only (x86-64, aarch64)
      out[i] = v;
    }
  } else {
    std::memcpy(out, tokens_ + offset * 4, size_t(n) * 4);
  }
  // The header promises every token is below its vocabulary size; a damaged shard is named here
  // rather than by whatever later indexes a table with the id.
  for (int64_t i = 0; i < n; ++i)
    SAMBALM_CHECK(out[i] >= 0 && out[i] < vocab_size_, "{}: token {} is {}, outside the {} vocabulary [0, {})", path_,
                  offset + i, out[i], litpkd_ ? "tokenizer's" : "shard's", vocab_size_);
}

std::string shard_path(const std::string& dir, const std::string& split, int index) {
  return fmt::format("{}/{}_{:06d}.bin", dir, split, index);
}

std::vector<std::string> list_shards(const std::string& dir, const std::string& split) {
  namespace fs = std::filesystem;
  std::error_code ec;
  SAMBALM_CHECK(fs::is_directory(dir, ec), "{}: no such directory of token shards", dir);
  std::vector<std::string> out;
  const std::string prefix = split + "_";
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (e.is_regular_file() && name.starts_with(prefix) && name.ends_with(".bin")) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  SAMBALM_CHECK(!out.empty(), "{}: no '{}' shards ({}_NNNNNN.bin) in this directory", dir, split, split);
  return out;
}

std::vector<std::string> list_prefix_files(const std::string& prefix, const std::string& option) {
  namespace fs = std::filesystem;
  const fs::path pp(prefix);
  const fs::path dir = pp.has_parent_path() ? pp.parent_path() : fs::path(".");
  const std::string name = pp.filename().string();
  std::error_code ec;
  SAMBALM_CHECK(!name.empty() && fs::is_directory(dir, ec), "{} {}: no such file, directory or file prefix", option,
                prefix);
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string f = e.path().filename().string();
    if (e.is_regular_file() && f.starts_with(name)) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  SAMBALM_CHECK(!out.empty(), "{} {}: no such file or directory, and no file in {} starts with '{}'", option, prefix,
                dir.string(), name);
  return out;
}

}  // namespace sambalm
