// A read-only zip reader over bytes already in memory (a memory map), enough for the archives that
// `torch.save` writes: entries stored uncompressed, found through the central directory (torch sets
// the "data descriptor" flag, so the sizes in the local headers are zero), ZIP64 records when the
// archive or an entry passes 4 GiB. Reading an entry returns a view of the mapped bytes; nothing is
// copied. Every offset and size is checked against the file before it is used, so a truncated or
// hand-made archive gives an Error naming the file and the entry, never a read out of bounds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace sambalm {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;  // 0 = stored; anything else is refused when the entry is read
  uint16_t flags = 0;   // general purpose bits (bit 0 = encrypted)
  uint32_t crc32 = 0;   // from the central directory
  uint64_t size = 0;    // uncompressed size
  uint64_t compressed_size = 0;
  uint64_t header_offset = 0;  // of the local file header
  uint64_t data_offset = 0;    // of the entry's first data byte (after the local header)
};

class ZipArchive {
 public:
  // Parses the end-of-central-directory record (ZIP64 when needed), the central directory and each
  // entry's local header. `path` names the file in errors. The bytes must outlive the archive.
  static ZipArchive parse(const uint8_t* data, size_t size, std::string path);

  // True when `data` starts like a zip archive (a local file header or an empty archive's EOCD).
  static bool looks_like_zip(const uint8_t* data, size_t size);

  const std::vector<ZipEntry>& entries() const { return entries_; }
  const std::string& path() const { return path_; }
  // nullptr when absent.
  const ZipEntry* find(std::string_view name) const;
  // The entry's bytes (a view into the archive). Throws Error when the entry is compressed or
  // encrypted; with verify_crc, also when its CRC-32 does not match the central directory.
  std::string_view read(const ZipEntry& e, bool verify_crc) const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::vector<ZipEntry> entries_;
  std::map<std::string, size_t, std::less<>> index_;
};

// CRC-32 (the zip/zlib polynomial), for checking entries.
uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc = 0);

}  // namespace sambalm
