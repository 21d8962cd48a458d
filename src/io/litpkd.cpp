// lit_gpt PackedDataset chunk files: header validation and the chunk writer.
#include "io/litpkd.h"

#include <fmt/format.h>

#include <cstring>

#include "core/error.h"
#include "io/file.h"

namespace sambalm {
namespace {

uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(p[i]) << (8 * i);
  return v;
}
void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = uint8_t(v >> (8 * i));
}

}  // namespace

bool is_litpkd(const uint8_t* p, size_t size) { return size >= 7 && std::memcmp(p, kLitPkdMagic, 7) == 0; }

LitPkdHeader parse_litpkd_header(const uint8_t* p, size_t size, const std::string& path) {
  SAMBALM_CHECK(size >= kLitPkdHeaderBytes, "{}: not a PackedDataset file: {} bytes, shorter than the {}-byte header",
                path, size, kLitPkdHeaderBytes);
  SAMBALM_CHECK(is_litpkd(p, size), "{}: not a PackedDataset file: magic is not 'LITPKDS'", path);
  const uint64_t version = get_u64(p + 7);
  SAMBALM_CHECK(version == kLitPkdVersion, "{}: PackedDataset version {} is not supported (expected {})", path, version,
                kLitPkdVersion);
  LitPkdHeader h;
  h.dtype_code = p[15];
  switch (h.dtype_code) {
    case 1:
      h.token_bytes = 1, h.is_signed = false;
      break;
    case 2:
      h.token_bytes = 1, h.is_signed = true;
      break;
    case 3:
      h.token_bytes = 2, h.is_signed = true;
      break;
    case 4:
      h.token_bytes = 4, h.is_signed = true;
      break;
    case 5:
      h.token_bytes = 8, h.is_signed = true;
      break;
    case 8:
      h.token_bytes = 2, h.is_signed = false;
      break;
    case 6:
    case 7:
      fail("{}: PackedDataset dtype code {} is a float type; token ids need an integer type", path, h.dtype_code);
    default:
      fail("{}: PackedDataset dtype code {} is unknown (1-8)", path, h.dtype_code);
  }
  h.chunk_size = get_u64(p + 16);
  const uint64_t body = size - kLitPkdHeaderBytes;
  SAMBALM_CHECK(h.chunk_size <= body / uint64_t(h.token_bytes) && body == h.chunk_size * uint64_t(h.token_bytes),
                "{}: header says a chunk of {} tokens ({} bytes) but the body has {} bytes{}", path, h.chunk_size,
                h.chunk_size * uint64_t(h.token_bytes), body,
                body < h.chunk_size * uint64_t(h.token_bytes) ? " (truncated)" : "");
  return h;
}

uint8_t litpkd_dtype_for_vocab(int64_t vocab_size) { return vocab_size < 65500 ? kLitPkdUint16 : kLitPkdInt32; }

std::string litpkd_chunk_path(const std::string& dir, const std::string& prefix, uint64_t index) {
  return fmt::format("{}/{}_{:010d}.bin", dir, prefix, index);
}

LitPkdWriter::LitPkdWriter(std::string dir, std::string prefix, uint64_t chunk_size, int32_t sep_token,
                           uint8_t dtype_code, uint64_t first_index)
    : dir_(std::move(dir)),
      prefix_(std::move(prefix)),
      chunk_size_(chunk_size),
      first_index_(first_index),
      sep_(sep_token),
      code_(dtype_code) {
  SAMBALM_CHECK(chunk_size_ >= 1, "PackedDataset chunk size must be at least 1");
  SAMBALM_CHECK(code_ == kLitPkdUint16 || code_ == kLitPkdInt32,
                "PackedDataset writer: dtype code {} (uint16: 8, int32: 4)", code_);
  const int32_t hi = code_ == kLitPkdUint16 ? 65535 : INT32_MAX;
  SAMBALM_CHECK(sep_ >= 0 && sep_ <= hi, "--sep-token {} does not fit the chunk's {}", sep_,
                code_ == kLitPkdUint16 ? "uint16" : "int32");
  chunk_.reserve(size_t(chunk_size_));
}

void LitPkdWriter::append(const int32_t* ids, size_t n) {
  const int32_t hi = code_ == kLitPkdUint16 ? 65535 : INT32_MAX;
  for (size_t i = 0; i < n; ++i) {
    SAMBALM_CHECK(ids[i] >= 0 && ids[i] <= hi, "{}: token {} does not fit {}",
                  litpkd_chunk_path(dir_, prefix_, first_index_ + files_.size()), ids[i],
                  code_ == kLitPkdUint16 ? "uint16" : "int32");
    chunk_.push_back(ids[i]);
    if (chunk_.size() == chunk_size_) write_chunk();
  }
}

void LitPkdWriter::finish() {
  if (!chunk_.empty()) write_chunk();
}

void LitPkdWriter::write_chunk() {
  chunk_.resize(size_t(chunk_size_), sep_);  // the builder's sep_token fill of an unused tail
  const std::string path = litpkd_chunk_path(dir_, prefix_, first_index_ + files_.size());
  const int w = code_ == kLitPkdUint16 ? 2 : 4;
  std::vector<uint8_t> bytes(kLitPkdHeaderBytes + chunk_.size() * size_t(w));
  std::memcpy(bytes.data(), kLitPkdMagic, 7);
  put_u64(bytes.data() + 7, kLitPkdVersion);
  bytes[15] = code_;
  put_u64(bytes.data() + 16, chunk_size_);
  uint8_t* q = bytes.data() + kLitPkdHeaderBytes;
  for (int32_t id : chunk_)
    for (int b = 0; b < w; ++b) *q++ = uint8_t(uint32_t(id) >> (8 * b));
  write_file_atomic(path, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  files_.push_back(path);
  chunk_.clear();
}

}  // namespace sambalm
