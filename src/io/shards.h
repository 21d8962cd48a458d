// Token shards: the binary files `sambalm prepare` writes and the data loader memory-maps
// (docs/FORMATS.md, "Token shards"). One shard is a 64-byte little-endian header followed by the
// tokens, uint16 when the vocabulary has at most 65536 ids, else uint32:
//   offset  0  char[8]  magic "SMBTOKS1"
//   offset  8  u32      version (1)
//   offset 12  u32      bytes per token (2 or 4)
//   offset 16  u64      number of tokens
//   offset 24  u32      vocabulary size (every token is below it)
//   offset 28  i32      EOS id appended after each document, -1 when none
//   offset 32  32 bytes reserved, zero
//   offset 64  tokens
// The file is exactly 64 + tokens * bytes-per-token bytes long.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sambalm {

class MappedFile;

constexpr size_t kShardHeaderBytes = 64;
constexpr char kShardMagic[9] = "SMBTOKS1";
constexpr uint32_t kShardVersion = 1;

// Bytes per token for a vocabulary size.
inline int shard_token_bytes(int64_t vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

// Writes one shard: `path.tmp` while writing, renamed to `path` by commit(). A writer destroyed
// before commit() removes its temporary file.
class ShardWriter {
 public:
  ShardWriter(std::string path, int32_t vocab_size, std::optional<int32_t> eos_id);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;
  // Throws Error when a token is outside [0, vocab_size).
  void append(const int32_t* ids, size_t n);
  void commit();
  uint64_t num_tokens() const { return count_; }

 private:
  void flush();
  std::string path_, tmp_;
  int fd_ = -1;
  int32_t vocab_size_;
  std::optional<int32_t> eos_;
  int token_bytes_;
  uint64_t count_ = 0;
  std::vector<uint8_t> buffer_;
  bool committed_ = false;
};

// A memory-mapped shard, validated on open (magic, version, token width, exact length): a sambalm
// token shard, or a lit_gpt PackedDataset chunk (io/litpkd.h), told apart by the magic. A PackedDataset
// chunk records no vocabulary: `vocab_size` gives it (the tokenizer's), and opening one without it
// (0) is an Error naming the file.
class Shard {
 public:
  static Shard open(const std::string& path, int32_t vocab_size = 0);
  const std::string& path() const { return path_; }
  int64_t size() const { return n_; }
  int32_t vocab_size() const { return vocab_size_; }
  std::optional<int32_t> eos_id() const { return eos_; }
  int token_bytes() const { return token_bytes_; }
  bool is_litpkd() const { return litpkd_; }
  int32_t at(int64_t i) const;
  // Copies tokens [offset, offset + n) into out (widened to int32). Throws Error naming the shard
  // for a token outside [0, vocab_size()).
  void read(int64_t offset, int64_t n, int32_t* out) const;

 private:
  std::shared_ptr<MappedFile> file_;
  std::string path_;
  const uint8_t* tokens_ = nullptr;
  int64_t n_ = 0;
  int32_t vocab_size_ = 0;
  std::optional<int32_t> eos_;
  int token_bytes_ = 2;
  bool signed_ = false;  // PackedDataset int8/int16/int32/int64 chunks
  bool litpkd_ = false;
};

// The shards of one split in a prepared directory: `<dir>/<split>_NNNNNN.bin`, in name order.
// Throws Error naming the directory when there are none.
std::vector<std::string> list_shards(const std::string& dir, const std::string& split);
std::string shard_path(const std::string& dir, const std::string& split, int index);
// The files a prefix names as lit_gpt's pretrain.py globs them (`<dir>/<name>*`): `data/slim/train_slim`
// is every regular file in data/slim whose name starts with "train_slim", in name order. Throws Error
// naming the prefix and `option` when there are none.
std::vector<std::string> list_prefix_files(const std::string& prefix, const std::string& option);

}  // namespace sambalm
