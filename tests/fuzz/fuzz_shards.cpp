// libFuzzer target: the token shard reader (src/train/shards.cpp) on arbitrary bytes: header checks
// (magic, version, token width, vocabulary, length) and then every token read back, in chunks, as
// the data loader reads them. The input is written to a file: shards are memory-mapped by path.
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/error.h"
#include "train/shards.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/sambalm-fuzz-" + std::to_string(getpid()) + "_000000.bin";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(data, 1, size, f) != size || std::fclose(f) != 0) __builtin_trap();
  int64_t sum = 0;
  try {
    sambalm::Shard s = sambalm::Shard::open(path);
    std::vector<int32_t> buf(257);
    for (int64_t off = 0; off < s.size(); off += 257) {
      const int64_t n = std::min<int64_t>(257, s.size() - off);
      s.read(off, n, buf.data());
      for (int64_t i = 0; i < n; ++i) sum += buf[i];
      sum += s.at(off);
    }
    sum += s.vocab_size() + s.eos_id().value_or(0);
    s.read(s.size(), 1, buf.data());  // one past the end: must be refused
    __builtin_trap();
  } catch (const sambalm::Error&) {
  }
  return sum == INT64_MIN ? 1 : 0;
}
