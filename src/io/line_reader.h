// Line-by-line reading of a possibly compressed text file, streaming: memory holds one buffer and
// the current line, whatever the file size. The compression comes from the name: `.zst` (Zstandard,
// any number of frames), `.gz` (gzip, any number of members, or zlib), anything else is read as is.
// A file that ends inside a compressed frame or member is an Error naming the file (a truncated
// download), as is corrupt compressed data.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace sambalm {

enum class Compression { none, zstd, gzip };

// The compression a file name implies (its last extension).
Compression compression_of(const std::string& path);

// The name without a compression extension: "a.jsonl.zst" -> "a.jsonl".
std::string strip_compression_ext(const std::string& path);

class LineReader {
 public:
  explicit LineReader(const std::string& path);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // The next line into `line`, without its '\n' (nor a '\r' before it); false at the end of the file.
  // A last line without '\n' is still a line.
  bool next(std::string& line);
  // 1-based number of the line `next` returned last.
  uint64_t line_number() const { return line_no_; }
  // Bytes of the file itself (compressed) read so far, for progress.
  uint64_t file_bytes_read() const;
  const std::string& path() const { return path_; }

  struct Source;  // the decompressor

 private:
  bool fill();
  std::string path_;
  std::unique_ptr<Source> src_;
  std::string buf_;
  size_t pos_ = 0, end_ = 0;
  uint64_t line_no_ = 0;
  bool eof_ = false;
};

}  // namespace sambalm
