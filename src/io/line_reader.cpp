// Decompressors behind LineReader: each turns the file into a stream of plain bytes, a buffer at a
// time. Input is read in 1 MiB blocks so that memory stays flat.
#include "io/line_reader.h"

#include <zlib.h>
#include <zstd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "core/error.h"

namespace sambalm {

namespace {
constexpr size_t kBlock = 1 << 20;

bool ends_with(const std::string& s, const char* suffix) { return s.ends_with(suffix); }
}  // namespace

Compression compression_of(const std::string& path) {
  if (ends_with(path, ".zst") || ends_with(path, ".zstd")) return Compression::zstd;
  if (ends_with(path, ".gz")) return Compression::gzip;
  return Compression::none;
}

std::string strip_compression_ext(const std::string& path) {
  if (compression_of(path) == Compression::none) return path;
  return path.substr(0, path.rfind('.'));
}

struct LineReader::Source {
  std::string path;
  FILE* f = nullptr;
  uint64_t read_bytes = 0;
  std::vector<char> in;
  size_t in_pos = 0, in_end = 0;
  bool in_eof = false;

  explicit Source(std::string p) : path(std::move(p)), in(kBlock) {
    f = std::fopen(path.c_str(), "rb");
    SAMBALM_CHECK(f, "{}: cannot open: {}", path, std::strerror(errno));
  }
  virtual ~Source() {
    if (f) std::fclose(f);
  }
  // Refills `in` when it is used up; false once the file has no more bytes.
  bool refill() {
    if (in_pos < in_end) return true;
    if (in_eof) return false;
    in_end = std::fread(in.data(), 1, in.size(), f);
    in_pos = 0;
    read_bytes += in_end;
    if (in_end < in.size()) {
      SAMBALM_CHECK(!std::ferror(f), "{}: read failed: {}", path, std::strerror(errno));
      in_eof = true;
    }
    return in_end > 0;
  }
  // Up to `cap` plain bytes into `out`; 0 only at the end of the data.
  virtual size_t read(char* out, size_t cap) {
    if (!refill()) return 0;
    size_t n = std::min(cap, in_end - in_pos);
    std::memcpy(out, in.data() + in_pos, n);
    in_pos += n;
    return n;
  }
};

namespace {

struct ZstdSource : LineReader::Source {
  ZSTD_DStream* z = ZSTD_createDStream();
  size_t last = 0;  // ZSTD_decompressStream's last hint: 0 at a frame boundary
  explicit ZstdSource(std::string p) : Source(std::move(p)) {
    SAMBALM_CHECK(z, "{}: out of memory for a zstd stream", path);
  }
  ~ZstdSource() override { ZSTD_freeDStream(z); }
  size_t read(char* out, size_t cap) override {
    ZSTD_outBuffer ob{out, cap, 0};
    while (ob.pos == 0) {
      // Past the file's end the decoder may still hold output, so it runs once more on no input.
      const bool more = refill();
      if (!more && last == 0) return 0;
      ZSTD_inBuffer ib{in.data(), in_end, in_pos};
      last = ZSTD_decompressStream(z, &ob, &ib);
      SAMBALM_CHECK(!ZSTD_isError(last), "{}: corrupt zstd data near byte {}: {}", path, read_bytes - (in_end - ib.pos),
                    ZSTD_getErrorName(last));
      in_pos = ib.pos;
      SAMBALM_CHECK(more || ob.pos > 0, "{}: the zstd data ends in the middle of a frame (truncated file?)", path);
    }
    return ob.pos;
  }
};

struct GzipSource : LineReader::Source {
  z_stream z{};
  bool in_member = false;  // inside a gzip member (between its header and its end)
  explicit GzipSource(std::string p) : Source(std::move(p)) {
    // 15 + 32: the largest window, gzip or zlib header detected.
    SAMBALM_CHECK(inflateInit2(&z, 15 + 32) == Z_OK, "{}: cannot start zlib", path);
  }
  ~GzipSource() override { inflateEnd(&z); }
  size_t read(char* out, size_t cap) override {
    z.next_out = reinterpret_cast<Bytef*>(out);
    z.avail_out = unsigned(cap);
    while (z.avail_out == cap) {
      const bool more = refill();
      if (!more && !in_member) return 0;
      z.next_in = reinterpret_cast<Bytef*>(in.data() + in_pos);
      z.avail_in = unsigned(in_end - in_pos);
      in_member = true;
      int rc = inflate(&z, Z_NO_FLUSH);
      in_pos = in_end - z.avail_in;
      if (rc == Z_STREAM_END) {
        in_member = false;
        inflateReset(&z);  // a following member (concatenated .gz files) starts afresh
        continue;
      }
      SAMBALM_CHECK(rc == Z_OK || rc == Z_BUF_ERROR, "{}: corrupt gzip data near byte {}: {}", path,
                    read_bytes - z.avail_in, z.msg ? z.msg : "inflate failed");
      SAMBALM_CHECK(more || z.avail_out < cap, "{}: the gzip data ends in the middle of a member (truncated file?)",
                    path);
    }
    return cap - z.avail_out;
  }
};

}  // namespace

LineReader::LineReader(const std::string& path) : path_(path), buf_(kBlock, '\0') {
  switch (compression_of(path)) {
    case Compression::zstd:
      src_ = std::make_unique<ZstdSource>(path);
      break;
    case Compression::gzip:
      src_ = std::make_unique<GzipSource>(path);
      break;
    case Compression::none:
      src_ = std::make_unique<Source>(path);
      break;
  }
}

LineReader::~LineReader() = default;

uint64_t LineReader::file_bytes_read() const { return src_->read_bytes - (src_->in_end - src_->in_pos); }

bool LineReader::fill() {
  if (eof_) return false;
  end_ = src_->read(buf_.data(), buf_.size());
  pos_ = 0;
  if (end_ == 0) eof_ = true;
  return end_ > 0;
}

bool LineReader::next(std::string& line) {
  line.clear();
  bool any = false;
  for (;;) {
    if (pos_ == end_ && !fill()) break;
    any = true;
    const char* b = buf_.data() + pos_;
    const void* nl = std::memchr(b, '\n', end_ - pos_);
    if (nl) {
      size_t n = static_cast<const char*>(nl) - b;
      line.append(b, n);
      pos_ += n + 1;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      ++line_no_;
      return true;
    }
    line.append(b, end_ - pos_);
    pos_ = end_;
  }
  if (!any || line.empty()) return false;
  if (line.back() == '\r') line.pop_back();
  ++line_no_;
  return true;
}

}  // namespace sambalm
