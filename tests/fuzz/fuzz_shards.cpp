// libFuzzer target: the token shard reader (src/io/shards.cpp) on arbitrary bytes: header checks
// (magic, version, token width, vocabulary, length), then every token read back in chunks, as the
// data loader reads them; each must be below the vocabulary size or the read refused. The input is
// written to a file ($TMPDIR or /tmp): shards are memory-mapped by path.
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/shards.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path =
      (std::filesystem::temp_directory_path() / ("sambalm-fuzz-" + std::to_string(getpid()) + ".bin")).string();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(data, 1, size, f) != size || std::fclose(f) != 0) __builtin_trap();
  int64_t sum = 0;
  try {
    sambalm::Shard s = sambalm::Shard::open(path);
    std::vector<int32_t> buf(257);
    for (int64_t off = 0; off < s.size(); off += 257) {
      const int64_t n = std::min<int64_t>(257, s.size() - off);
      s.read(off, n, buf.data());
      for (int64_t i = 0; i < n; ++i) {
        if (buf[i] < 0 || buf[i] >= s.vocab_size()) __builtin_trap();  // read() must refuse these
        sum += buf[i];
      }
      sum += s.at(off);
    }
    sum += int64_t(s.vocab_size()) + s.eos_id().value_or(0);
    s.read(s.size(), 1, buf.data());  // one past the end: must be refused
    __builtin_trap();
  } catch (const sambalm::Error&) {
  }
  return sum == INT64_MIN ? 1 : 0;
}
