// File helpers: read-only memory maps and atomic writes (write `path.tmp`, fsync, rename), so a
// crash never leaves a partial file under the final name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace sambalm {

// A read-only memory map of a whole file. Shared so tensors can view into it.
class MappedFile {
 public:
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

std::string read_text_file(const std::string& path);
// Writes bytes atomically: path.tmp, fsync, rename.
void write_file_atomic(const std::string& path, std::string_view bytes);

// Streaming atomic writer: open() creates path.tmp; commit() flushes, fsyncs and renames.
// Destroying an uncommitted writer removes the temporary file.
class AtomicWriter {
 public:
  explicit AtomicWriter(std::string path);
  ~AtomicWriter();
  void write(const void* data, size_t n);
  void commit();
  size_t written() const { return written_; }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  size_t written_ = 0;
  bool committed_ = false;
};

}  // namespace sambalm
