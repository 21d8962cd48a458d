// Test helpers for hand-written pickles and zip archives: the malicious and malformed files of the
// torch checkpoint tests are built byte by byte here, so no Python (and no torch) is needed.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "io/zip_reader.h"

namespace sambalm::test {

// Appends pickle opcodes. Method names follow the opcode names of Python's pickletools.
class PickleBuilder {
 public:
  PickleBuilder& proto(int v = 2) { return byte(0x80).byte(v); }
  PickleBuilder& op(char c) { return byte(static_cast<uint8_t>(c)); }
  PickleBuilder& byte(int b) {
    s_.push_back(static_cast<char>(b));
    return *this;
  }
  PickleBuilder& raw(const std::string& bytes) {
    s_ += bytes;
    return *this;
  }
  PickleBuilder& le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) byte(static_cast<int>((v >> (8 * i)) & 0xff));
    return *this;
  }
  PickleBuilder& mark() { return op('('); }
  PickleBuilder& stop() { return op('.'); }
  PickleBuilder& str(const std::string& v) { return op('X').le(v.size(), 4).raw(v); }  // BINUNICODE
  PickleBuilder& int1(int v) { return op('K').byte(v); }
  PickleBuilder& int2(int v) { return op('M').le(static_cast<uint64_t>(v), 2); }
  PickleBuilder& int4(int32_t v) { return op('J').le(static_cast<uint32_t>(v), 4); }
  PickleBuilder& global(const std::string& module, const std::string& name) {
    return op('c').raw(module + "\n" + name + "\n");
  }
  PickleBuilder& put(int i) { return op('q').byte(i); }
  PickleBuilder& get(int i) { return op('h').byte(i); }
  PickleBuilder& empty_tuple() { return op(')'); }
  PickleBuilder& tuple() { return op('t'); }
  PickleBuilder& tuple1() { return byte(0x85); }
  PickleBuilder& tuple2() { return byte(0x86); }
  PickleBuilder& reduce() { return op('R'); }
  PickleBuilder& newfalse() { return byte(0x89); }
  PickleBuilder& ordered_dict() { return global("collections", "OrderedDict").empty_tuple().reduce(); }

  // ("storage", torch.<type>, key, "cpu", numel) as a persistent id.
  PickleBuilder& storage(const std::string& type, const std::string& key, int numel) {
    mark().str("storage").global("torch", type).str(key).str("cpu").int4(numel).tuple();
    return op('Q');
  }
  // torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict()).
  PickleBuilder& tensor(const std::string& type, const std::string& key, int numel, int offset,
                        const std::vector<int>& size, const std::vector<int>& stride) {
    global("torch._utils", "_rebuild_tensor_v2").mark();
    storage(type, key, numel).int4(offset);
    mark();
    for (int v : size) int4(v);
    tuple().mark();
    for (int v : stride) int4(v);
    tuple().newfalse().ordered_dict().tuple();
    return reduce();
  }

  const std::string& bytes() const { return s_; }

 private:
  std::string s_;
};

// A stored (uncompressed) zip archive with correct CRCs, written like torch does. `lie_size`
// replaces the size recorded for the entry named `lie_name` in the central directory.
inline std::string make_zip(const std::vector<std::pair<std::string, std::string>>& entries,
                            const std::string& lie_name = "", uint32_t lie_size = 0) {
  auto le = [](std::string& s, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  std::string out, cd;
  for (const auto& [name, data] : entries) {
    uint32_t crc = crc32(reinterpret_cast<const uint8_t*>(data.data()), data.size());
    uint32_t size = name == lie_name ? lie_size : static_cast<uint32_t>(data.size());
    uint64_t offset = out.size();
    le(out, 0x04034b50, 4);
    le(out, 20, 2);
    le(out, 0, 2);  // flags
    le(out, 0, 2);  // method: stored
    le(out, 0, 4);  // time, date
    le(out, crc, 4);
    le(out, data.size(), 4);
    le(out, data.size(), 4);
    le(out, name.size(), 2);
    le(out, 0, 2);
    out += name + data;
    le(cd, 0x02014b50, 4);
    le(cd, 20, 2);
    le(cd, 20, 2);
    le(cd, 0, 2);
    le(cd, 0, 2);
    le(cd, 0, 4);
    le(cd, crc, 4);
    le(cd, size, 4);
    le(cd, size, 4);
    le(cd, name.size(), 2);
    le(cd, 0, 2);
    le(cd, 0, 2);
    le(cd, 0, 2);
    le(cd, 0, 2);
    le(cd, 0, 4);
    le(cd, offset, 4);
    cd += name;
  }
  uint64_t cd_offset = out.size();
  out += cd;
  le(out, 0x06054b50, 4);
  le(out, 0, 4);
  le(out, entries.size(), 2);
  le(out, entries.size(), 2);
  le(out, cd.size(), 4);
  le(out, cd_offset, 4);
  le(out, 0, 2);
  return out;
}

}  // namespace sambalm::test
