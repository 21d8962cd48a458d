#include "io/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace sambalm {

using json = nlohmann::json;

const Tensor& SafetensorsFile::get(const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) fail("{}: no tensor named '{}'", path, name);
  return it->second;
}

SafetensorsFile parse_safetensors(const uint8_t* data, size_t size, const std::string& path,
                                  std::shared_ptr<void> holder) {
  SafetensorsFile out;
  out.path = path;
  if (size < 8) fail("{}: not a safetensors file: {} bytes, shorter than the 8-byte header length", path, size);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | data[i];
  if (hlen > size - 8) fail("{}: safetensors header length {} exceeds the file size {}", path, hlen, size);
  if (hlen > (100u << 20)) fail("{}: safetensors header of {} bytes is larger than the 100 MB limit", path, hlen);
  const char* hp = reinterpret_cast<const char*>(data + 8);
  json header = json::parse(hp, hp + hlen, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) fail("{}: safetensors header is not a valid JSON object", path);
  const uint8_t* base = data + 8 + hlen;
  const uint64_t data_size = size - 8 - hlen;

  struct Span { uint64_t begin, end; std::string name; };
  std::vector<Span> spans;
  for (auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail("{}: __metadata__ is not an object", path);
      for (auto& [k, v] : entry.items()) {
        if (!v.is_string()) fail("{}: __metadata__ value of '{}' is not a string", path, k);
        out.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    if (!entry.is_object()) fail("{}: entry '{}' is not an object", path, name);
    auto dt = entry.find("dtype");
    auto sh = entry.find("shape");
    auto off = entry.find("data_offsets");
    if (dt == entry.end() || !dt->is_string()) fail("{}: tensor '{}' has no dtype string", path, name);
    if (sh == entry.end() || !sh->is_array()) fail("{}: tensor '{}' has no shape array", path, name);
    if (off == entry.end() || !off->is_array() || off->size() != 2) fail("{}: tensor '{}' has no [begin, end] data_offsets", path, name);
    auto dtype = dtype_from_name(dt->get<std::string>());
    if (!dtype) fail("{}: tensor '{}' has unknown dtype '{}'", path, name, dt->get<std::string>());
    Shape shape;
    uint64_t numel = 1;
    for (auto& d : *sh) {
      if (!d.is_number_unsigned()) fail("{}: tensor '{}' has a shape entry that is not a non-negative integer", path, name);
      uint64_t v = d.get<uint64_t>();
      if (v > (1ull << 40) || (v && numel > (1ull << 50) / v)) fail("{}: tensor '{}' shape is too large", path, name);
      numel *= v;
      shape.push_back(static_cast<int64_t>(v));
    }
    if (!(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned())
      fail("{}: tensor '{}' data_offsets are not non-negative integers", path, name);
    uint64_t b = (*off)[0].get<uint64_t>(), e = (*off)[1].get<uint64_t>();
    if (b > e || e > data_size)
      fail("{}: tensor '{}' data_offsets [{}, {}] out of range (data block is {} bytes)", path, name, b, e, data_size);
    uint64_t expect = numel * dtype_size(*dtype);
    if (e - b != expect)
      fail("{}: tensor '{}' of dtype {} and shape {} needs {} bytes, its offsets span {}", path, name,
           dtype_name(*dtype), shape_str(shape), expect, e - b);
    out.tensors[name] = Tensor::view(*dtype, std::move(shape), const_cast<uint8_t*>(base + b), holder);
    spans.push_back({b, e, name});
  }
  std::sort(spans.begin(), spans.end(), [](auto& x, auto& y) { return x.begin < y.begin || (x.begin == y.begin && x.end < y.end); });
  for (size_t i = 1; i < spans.size(); ++i)
    if (spans[i].begin < spans[i - 1].end && spans[i].end > spans[i].begin)
      fail("{}: tensors '{}' and '{}' overlap in the data block", path, spans[i - 1].name, spans[i].name);
  for (auto& s : spans) out.order.push_back(s.name);
  return out;
}

SafetensorsFile read_safetensors(const std::string& path) {
  auto m = MappedFile::open(path);
  return parse_safetensors(m->data(), m->size(), path, m);
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (auto& [name, t] : tensors) {
    SAMBALM_CHECK(!header.contains(name), "{}: duplicate tensor name '{}'", path, name);
    header[name] = {{"dtype", dtype_name(t.dtype())}, {"shape", t.shape()}, {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string h = header.dump();
  // Pad the header with spaces so the data block starts 8-byte aligned.
  while ((8 + h.size()) % 8) h.push_back(' ');
  uint8_t len[8];
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  AtomicWriter w(path);
  w.write(len, 8);
  w.write(h.data(), h.size());
  for (auto& [name, t] : tensors)
    if (t.nbytes()) w.write(t.raw(), t.nbytes());
  w.commit();
}

}  // namespace sambalm
