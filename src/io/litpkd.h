// lit_gpt `PackedDataset` files (docs/FORMATS.md, "lit_gpt PackedDataset files"): the `*.bin` chunks
// that microsoft/Samba's prepare_slimpajama.py writes through `PackedDatasetBuilder`, read here so
// that data prepared for the original trainer is not prepared again, and written by
// `sambalm prepare --format litpkd` so that ours goes back. One file is one chunk:
//   offset  0  char[7]  magic "LITPKDS"
//   offset  7  u64      version (1)
//   offset 15  u8       dtype code: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float32,
//                       7 float64, 8 uint16 (only the integer types hold token ids)
//   offset 16  u64      chunk size: the number of tokens that follow
//   offset 24  tokens   chunk size tokens, little-endian; the builder fills the unused tail of the
//                       last chunk with its sep_token, and a reader sees those as tokens too
// The header records no vocabulary, so a reader needs one from elsewhere (the tokenizer).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sambalm {

constexpr size_t kLitPkdHeaderBytes = 24;
constexpr char kLitPkdMagic[8] = "LITPKDS";  // 7 bytes in the file, no terminator
constexpr uint64_t kLitPkdVersion = 1;
constexpr uint8_t kLitPkdUint16 = 8, kLitPkdInt32 = 4;

struct LitPkdHeader {
  uint8_t dtype_code = 0;
  int token_bytes = 0;  // 1, 2, 4 or 8
  bool is_signed = false;
  uint64_t chunk_size = 0;
};

// True when the bytes start with the magic (at least 7 of them).
bool is_litpkd(const uint8_t* p, size_t size);
// Validates the header of a whole file of `size` bytes: magic, version, an integer dtype, and a body
// of exactly chunk_size tokens. Throws Error naming `path`.
LitPkdHeader parse_litpkd_header(const uint8_t* p, size_t size, const std::string& path);
// The dtype PackedDatasetBuilder picks with dtype="auto": uint16 below 65,500 ids, else int32.
uint8_t litpkd_dtype_for_vocab(int64_t vocab_size);
// `<dir>/<prefix>_NNNNNNNNNN.bin`, the builder's ten-digit chunk counter from 0.
std::string litpkd_chunk_path(const std::string& dir, const std::string& prefix, uint64_t index);

// Cuts a token stream into chunk files as PackedDatasetBuilder does: a chunk is written when full;
// finish() writes the last one, its tail filled with sep_token (nothing when no token is pending).
// Each file is written as name.tmp and renamed when complete. Chunk files are numbered from
// first_index (a resumed `prepare` writes one chunk at a time).
class LitPkdWriter {
 public:
  LitPkdWriter(std::string dir, std::string prefix, uint64_t chunk_size, int32_t sep_token, uint8_t dtype_code,
               uint64_t first_index = 0);
  // Throws Error for a token the dtype cannot hold.
  void append(const int32_t* ids, size_t n);
  void finish();
  const std::vector<std::string>& files() const { return files_; }

 private:
  void write_chunk();
  std::string dir_, prefix_;
  uint64_t chunk_size_, first_index_;
  int32_t sep_;
  uint8_t code_;
  std::vector<int32_t> chunk_;
  std::vector<std::string> files_;
};

}  // namespace sambalm
