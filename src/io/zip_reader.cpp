#include "io/zip_reader.h"

#include <array>

#include "core/error.h"

namespace sambalm {

namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEocdSig = 0x06054b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr uint32_t kZip64EocdSig = 0x06064b50;
constexpr size_t kEocdSize = 22, kZip64LocatorSize = 20, kZip64EocdSize = 56;
constexpr size_t kCentralSize = 46, kLocalSize = 30;

uint16_t u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t u32(const uint8_t* p) { return u16(p) | (static_cast<uint32_t>(u16(p + 2)) << 16); }
uint64_t u64(const uint8_t* p) { return u32(p) | (static_cast<uint64_t>(u32(p + 4)) << 32); }

// True when [off, off + n) lies inside [0, limit); written so that it cannot overflow.
bool in_range(uint64_t off, uint64_t n, uint64_t limit) { return off <= limit && n <= limit - off; }

std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}

}  // namespace

uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc) {
  static const std::array<uint32_t, 256> table = make_crc_table();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

bool ZipArchive::looks_like_zip(const uint8_t* data, size_t size) {
  return size >= 4 && (u32(data) == kLocalSig || u32(data) == kEocdSig);
}

ZipArchive ZipArchive::parse(const uint8_t* data, size_t size, std::string path) {
  ZipArchive z;
  z.path_ = std::move(path);
  z.data_ = data;
  z.size_ = size;
  const std::string& p = z.path_;

  // The end-of-central-directory record is the last 22 bytes plus a comment of up to 64 KiB; scan
  // backwards for its signature.
  if (size < kEocdSize) fail("{}: not a zip archive: {} bytes, too short for an end-of-directory record", p, size);
  size_t eocd = SIZE_MAX;
  size_t lowest = size - kEocdSize > 65535 ? size - kEocdSize - 65535 : 0;
  for (size_t pos = size - kEocdSize + 1; pos-- > lowest;) {
    if (u32(data + pos) == kEocdSig && u16(data + pos + 20) <= size - pos - kEocdSize) {
      eocd = pos;
      break;
    }
  }
  if (eocd == SIZE_MAX) fail("{}: not a zip archive: no end-of-central-directory record", p);
  const uint8_t* e = data + eocd;
  if (u16(e + 4) != 0 || u16(e + 6) != 0) fail("{}: multi-disk zip archives are not supported", p);
  uint64_t count = u16(e + 10);
  uint64_t cd_size = u32(e + 12);
  uint64_t cd_offset = u32(e + 16);
  uint64_t cd_limit = eocd;  // the central directory must end before the record that describes it

  // ZIP64: a locator right before the EOCD points at the 64-bit record with the real values.
  if (eocd >= kZip64LocatorSize && u32(data + eocd - kZip64LocatorSize) == kZip64LocatorSig) {
    const uint8_t* loc = data + eocd - kZip64LocatorSize;
    uint64_t rec = u64(loc + 8);
    if (!in_range(rec, kZip64EocdSize, eocd - kZip64LocatorSize))
      fail("{}: ZIP64 end-of-directory offset {} is outside the file", p, rec);
    const uint8_t* r = data + rec;
    if (u32(r) != kZip64EocdSig) fail("{}: ZIP64 end-of-directory record missing at offset {}", p, rec);
    if (u32(r + 16) != 0 || u32(r + 20) != 0) fail("{}: multi-disk zip archives are not supported", p);
    count = u64(r + 32);
    cd_size = u64(r + 40);
    cd_offset = u64(r + 48);
    cd_limit = rec;
  }
  if (!in_range(cd_offset, cd_size, cd_limit))
    fail("{}: central directory [{}, +{}) lies outside the file ({} bytes before its end record)", p, cd_offset,
         cd_size, cd_limit);
  if (count > cd_size / kCentralSize)
    fail("{}: central directory claims {} entries but has room for at most {}", p, count, cd_size / kCentralSize);

  z.entries_.reserve(count);
  uint64_t pos = cd_offset;
  const uint64_t cd_end = cd_offset + cd_size;
  for (uint64_t i = 0; i < count; ++i) {
    if (!in_range(pos, kCentralSize, cd_end)) fail("{}: central directory entry {} is truncated", p, i);
    const uint8_t* c = data + pos;
    if (u32(c) != kCentralSig) fail("{}: central directory entry {} has a bad signature at offset {}", p, i, pos);
    ZipEntry en;
    en.flags = u16(c + 8);
    en.method = u16(c + 10);
    en.crc32 = u32(c + 16);
    en.compressed_size = u32(c + 20);
    en.size = u32(c + 24);
    uint16_t name_len = u16(c + 28), extra_len = u16(c + 30), comment_len = u16(c + 32);
    uint32_t disk = u16(c + 34);
    en.header_offset = u32(c + 42);
    uint64_t var_len = uint64_t{name_len} + extra_len + comment_len;
    if (!in_range(pos + kCentralSize, var_len, cd_end)) fail("{}: central directory entry {} is truncated", p, i);
    en.name.assign(reinterpret_cast<const char*>(c + kCentralSize), name_len);

    // ZIP64 extra field: 64-bit values for exactly those fields whose 32-bit value is 0xFFFFFFFF,
    // in the order size, compressed size, header offset, disk.
    const uint8_t* x = c + kCentralSize + name_len;
    const uint8_t* x_end = x + extra_len;
    while (x_end - x >= 4) {
      uint16_t id = u16(x), len = u16(x + 2);
      if (len > x_end - x - 4) fail("{}: entry '{}' has a truncated extra field", p, en.name);
      if (id == 0x0001) {
        const uint8_t* v = x + 4;
        const uint8_t* v_end = v + len;
        auto take64 = [&](uint64_t& field) {
          if (v_end - v < 8) fail("{}: entry '{}' has a truncated ZIP64 extra field", p, en.name);
          field = u64(v);
          v += 8;
        };
        if (en.size == 0xFFFFFFFFu) take64(en.size);
        if (en.compressed_size == 0xFFFFFFFFu) take64(en.compressed_size);
        if (en.header_offset == 0xFFFFFFFFu) take64(en.header_offset);
        if (disk == 0xFFFFu) {
          if (v_end - v < 4) fail("{}: entry '{}' has a truncated ZIP64 extra field", p, en.name);
          disk = u32(v);
        }
      }
      x += 4 + len;
    }
    if (disk != 0) fail("{}: entry '{}' is on disk {}; multi-disk archives are not supported", p, en.name, disk);

    // The local header repeats the name and has its own extra field (torch pads it so that the data
    // starts 64-byte aligned); the data follows it.
    if (!in_range(en.header_offset, kLocalSize, cd_offset))
      fail("{}: entry '{}' local header offset {} is outside the file data", p, en.name, en.header_offset);
    const uint8_t* l = data + en.header_offset;
    if (u32(l) != kLocalSig) fail("{}: entry '{}' has no local header at offset {}", p, en.name, en.header_offset);
    uint64_t local_var = uint64_t{u16(l + 26)} + u16(l + 28);
    if (!in_range(en.header_offset + kLocalSize, local_var, cd_offset))
      fail("{}: entry '{}' local header is truncated", p, en.name);
    std::string_view local_name(reinterpret_cast<const char*>(l + kLocalSize), u16(l + 26));
    if (local_name != en.name)
      fail("{}: entry '{}' local header names '{}' instead", p, en.name, std::string(local_name));
    en.data_offset = en.header_offset + kLocalSize + local_var;
    if (!in_range(en.data_offset, en.compressed_size, cd_offset))
      fail("{}: entry '{}' claims {} bytes at offset {}, past the end of the file data ({} bytes)", p, en.name,
           en.compressed_size, en.data_offset, cd_offset);
    if (en.method == 0 && en.compressed_size != en.size)
      fail("{}: stored entry '{}' has size {} but compressed size {}", p, en.name, en.size, en.compressed_size);

    if (!z.index_.emplace(en.name, z.entries_.size()).second)
      fail("{}: entry '{}' appears twice in the archive", p, en.name);
    z.entries_.push_back(std::move(en));
    pos += kCentralSize + var_len;
  }
  return z;
}

const ZipEntry* ZipArchive::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

std::string_view ZipArchive::read(const ZipEntry& e, bool verify_crc) const {
  if (e.flags & 1) fail("{}: entry '{}' is encrypted", path_, e.name);
  if (e.method != 0)
    fail("{}: entry '{}' is compressed (method {}); torch.save stores entries uncompressed, re-zip with -0", path_,
         e.name, e.method);
  const uint8_t* p = data_ + e.data_offset;
  if (verify_crc) {
    uint32_t c = crc32(p, e.size);
    if (c != e.crc32)
      fail("{}: entry '{}' is corrupt: CRC-32 {:08x}, the directory says {:08x}", path_, e.name, c, e.crc32);
  }
  return {reinterpret_cast<const char*>(p), e.size};
}

}  // namespace sambalm
