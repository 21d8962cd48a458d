#include "io/torch_checkpoint.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <map>

#include "core/error.h"
#include "io/file.h"
#include "io/torch_unpickler.h"
#include "io/zip_reader.h"

namespace sambalm {

namespace {

using pickle::Kind;
using pickle::Object;
using pickle::StorageRef;
using pickle::TensorRef;

// Where one storage's bytes are: a pointer into the file, or an aligned copy when the file offset is
// not a multiple of the element size (legacy files pack storages back to back).
struct StorageBytes {
  const uint8_t* data = nullptr;
  int64_t numel = 0;
  DType dtype = DType::F32;
  Tensor copy;  // owns `data` when it had to be copied
};

class Materializer {
 public:
  Materializer(std::string path, std::shared_ptr<void> holder) : path_(std::move(path)), holder_(std::move(holder)) {}

  // Registers the bytes of storage `key` (as found in the file) for the tensors to view.
  void add_storage(const std::string& key, DType dtype, int64_t numel, const uint8_t* data) {
    StorageBytes& s = storages_[key];
    s.dtype = dtype;
    s.numel = numel;
    s.data = data;
    size_t align = dtype_size(dtype);
    if (numel > 0 && reinterpret_cast<uintptr_t>(data) % align != 0) {
      s.copy = Tensor::zeros(DType::U8, {numel * static_cast<int64_t>(align)});
      std::memcpy(s.copy.raw(), data, static_cast<size_t>(numel) * align);
      s.data = s.copy.data<uint8_t>();
    }
  }

  Tensor tensor(const std::string& name, const Object* obj);

 private:
  std::string path_;
  std::shared_ptr<void> holder_;
  std::map<std::string, StorageBytes> storages_;
  std::map<const Object*, Tensor> by_object_;  // the same pickled tensor under two names
  std::map<std::string, Tensor> by_view_;      // copies of the same strided view
};

Tensor Materializer::tensor(const std::string& name, const Object* obj) {
  if (auto it = by_object_.find(obj); it != by_object_.end()) return it->second;
  const TensorRef& t = *obj->tensor;
  const StorageRef& s = *t.storage->storage;
  const std::string& key = s.key;  // a legacy view names its root storage here
  auto sit = storages_.find(key);
  if (sit == storages_.end())
    fail("{}: tensor '{}' uses storage '{}', which the file does not contain", path_, name, key);
  const StorageBytes& sb = sit->second;
  if (sb.dtype != s.dtype)
    fail("{}: storage '{}' is used as {} and as {}", path_, key, dtype_name(sb.dtype), dtype_name(s.dtype));

  // The storage slice this tensor may use: the whole storage, or a legacy view's part of it.
  int64_t base = 0, limit = sb.numel;
  if (s.is_view) {
    if (s.view_offset > sb.numel || s.view_numel > sb.numel - s.view_offset)
      fail("{}: storage view '{}' [{}, +{}) lies outside storage '{}' of {} elements", path_, s.key, s.view_offset,
           s.view_numel, key, sb.numel);
    base = s.view_offset;
    limit = s.view_numel;
  }

  Shape shape(t.size.begin(), t.size.end());
  int64_t numel = 1;
  for (int64_t d : t.size)
    if (__builtin_mul_overflow(numel, d, &numel))
      fail("{}: tensor '{}' shape {} is too large", path_, name, shape_str(shape));
  Tensor out;
  if (numel == 0) {
    out = Tensor::zeros(s.dtype, shape);
  } else {
    // Highest element index used: offset + sum (size_i - 1) * stride_i; it must lie in the slice.
    int64_t last = t.offset;
    bool contiguous = true;
    int64_t expect = 1;
    for (size_t k = t.size.size(); k-- > 0;) {
      int64_t st = t.stride[k], step;
      if (st < 0) fail("{}: tensor '{}' has a negative stride {} in dimension {}", path_, name, st, k);
      if (__builtin_mul_overflow(t.size[k] - 1, st, &step) || __builtin_add_overflow(last, step, &last))
        fail("{}: tensor '{}' strides overflow", path_, name);
      if (t.size[k] != 1 && st != expect) contiguous = false;
      expect *= t.size[k];
    }
    if (last >= limit)
      fail("{}: tensor '{}' (shape {}, offset {}) needs element {} of storage '{}', which has {} elements", path_, name,
           shape_str(shape), t.offset, last, s.key, limit);
    const size_t es = dtype_size(s.dtype);
    const uint8_t* first = sb.data + static_cast<size_t>(base + t.offset) * es;
    if (contiguous) {
      // A view keeps the file map alive, or the aligned copy (a Tensor copy shares its buffer).
      std::shared_ptr<void> holder = holder_;
      if (sb.copy.raw()) holder = std::make_shared<Tensor>(sb.copy);
      out = Tensor::view(s.dtype, shape, const_cast<uint8_t*>(first), holder);
    } else {
      // Overlapping strides (an expanded tensor) would make the copy larger than the file: refuse.
      if (numel > limit)
        fail(
            "{}: tensor '{}' (shape {}) has more elements than its storage '{}' ({}): overlapping strides are "
            "not supported",
            path_, name, shape_str(shape), s.key, limit);
      std::string view_id =
          fmt::format("{}|{}|{}|{}", key, base + t.offset, fmt::join(t.size, ","), fmt::join(t.stride, ","));
      if (auto it = by_view_.find(view_id); it != by_view_.end()) {
        out = it->second;
      } else {
        // Strided gather into a fresh row-major tensor, innermost dimension in a tight loop.
        out = Tensor::zeros(s.dtype, shape);
        uint8_t* dst = static_cast<uint8_t*>(out.raw());
        const size_t nd = t.size.size();
        const int64_t inner = t.size[nd - 1], inner_stride = t.stride[nd - 1];
        std::vector<int64_t> idx(nd, 0);
        const int64_t rows = numel / inner;
        for (int64_t r = 0; r < rows; ++r) {
          int64_t off = 0;
          for (size_t k = 0; k + 1 < nd; ++k) off += idx[k] * t.stride[k];
          const uint8_t* src = first + static_cast<size_t>(off) * es;
          for (int64_t j = 0; j < inner; ++j, dst += es)
            std::memcpy(dst, src + static_cast<size_t>(j * inner_stride) * es, es);
          for (size_t k = nd - 1; k-- > 0;) {
            if (++idx[k] < t.size[k]) break;
            idx[k] = 0;
          }
        }
        by_view_.emplace(view_id, out);
      }
    }
  }
  by_object_.emplace(obj, out);
  return out;
}

// The dict that holds the weights: the root, or its `model` / `state_dict` entry.
const Object* find_state_dict(const Object* root, const std::string& path, std::string* entry) {
  if (root->kind != Kind::Dict)
    fail("{}: the pickled object is a {}, expected a state_dict (a dict of tensors) or a dict with a 'model' entry",
         path, pickle::kind_name(root->kind));
  for (const char* k : {"model", "state_dict"}) {
    const Object* sub = root->get(k);
    if (sub && sub->kind == Kind::Dict) {
      *entry = k;
      return sub;
    }
  }
  entry->clear();
  return root;
}

std::vector<std::pair<std::string, const Object*>> state_dict_entries(const Object* sd, const std::string& path,
                                                                      const std::string& entry) {
  std::string where = entry.empty() ? "the state_dict" : "'" + entry + "'";
  std::vector<std::pair<std::string, const Object*>> out;
  for (const auto& [k, v] : sd->entries) {
    if (k->kind != Kind::Str) fail("{}: {} has a {} key, expected str names", path, where, pickle::kind_name(k->kind));
    if (v->kind != Kind::Tensor)
      fail("{}: weight '{}' in {} is a {}, not a tensor", path, k->s, where, pickle::kind_name(v->kind));
    out.emplace_back(k->s, v);
  }
  if (out.empty()) fail("{}: {} holds no tensors", path, where);
  return out;
}

void collect_storages(const Object* sd, std::map<std::string, const StorageRef*>& out, const std::string& path) {
  for (const auto& [k, v] : sd->entries) {
    const StorageRef& s = *v->tensor->storage->storage;
    auto [it, fresh] = out.emplace(s.key, &s);
    if (!fresh && (it->second->dtype != s.dtype || it->second->numel != s.numel))
      fail("{}: storage '{}' is described twice, as {} x {} and as {} x {}", path, s.key, it->second->numel,
           it->second->type_name, s.numel, s.type_name);
  }
}

uint64_t storage_bytes(const StorageRef& s, const std::string& path) {
  uint64_t b;
  if (__builtin_mul_overflow(static_cast<uint64_t>(s.numel), dtype_size(s.dtype), &b))
    fail("{}: storage '{}' of {} elements is too large", path, s.key, s.numel);
  return b;
}

TorchCheckpoint build(const pickle::Pickle& pk, const std::string& path, const std::string& format, Materializer& m,
                      const std::function<void(const std::map<std::string, const StorageRef*>&)>& load) {
  TorchCheckpoint ck;
  ck.path = path;
  ck.format = format;
  const Object* sd = find_state_dict(pk.root(), path, &ck.entry);
  auto entries = state_dict_entries(sd, path, ck.entry);
  std::map<std::string, const StorageRef*> needed;
  collect_storages(sd, needed, path);
  load(needed);
  for (const auto& [name, obj] : entries) ck.tensors.emplace_back(name, m.tensor(name, obj));
  return ck;
}

TorchCheckpoint parse_zip(const uint8_t* data, size_t size, const std::string& path, std::shared_ptr<void> holder) {
  ZipArchive zip = ZipArchive::parse(data, size, path);
  const ZipEntry* pkl = nullptr;
  for (const auto& e : zip.entries()) {
    auto slash = e.name.find('/');
    if (slash != std::string::npos && e.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
      if (pkl) fail("{}: two pickles ('{}' and '{}'); expected one <folder>/data.pkl", path, pkl->name, e.name);
      pkl = &e;
    }
  }
  if (!pkl) fail("{}: zip archive without a '<folder>/data.pkl' entry: not a torch.save file", path);
  const std::string top = pkl->name.substr(0, pkl->name.size() - 8);  // "<folder>/"

  if (const ZipEntry* bo = zip.find(top + "byteorder")) {
    std::string_view order = zip.read(*bo, true);
    if (order != "little")
      fail("{}: byteorder is '{}'; only little-endian checkpoints are supported", path, std::string(order));
  }
  if (const ZipEntry* ver = zip.find(top + "version")) {
    std::string_view v = zip.read(*ver, true);
    while (!v.empty() && (v.back() == '\n' || v.back() == '\r' || v.back() == ' ')) v.remove_suffix(1);
    bool digits = !v.empty() && v.size() < 10;
    for (char c : v) digits = digits && c >= '0' && c <= '9';
    if (!digits) fail("{}: '{}version' is '{}', expected a format version number", path, top, std::string(v));
  }

  std::string_view bytes = zip.read(*pkl, true);
  pickle::Pickle pk = pickle::unpickle(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path);
  Materializer m(path, holder);
  return build(pk, path, "zip", m, [&](const std::map<std::string, const StorageRef*>& needed) {
    for (const auto& [key, s] : needed) {
      std::string name = top + "data/" + key;
      const ZipEntry* e = zip.find(name);
      if (!e) fail("{}: storage '{}' has no entry '{}' in the archive", path, key, name);
      uint64_t want = storage_bytes(*s, path);
      if (e->size != want)
        fail("{}: entry '{}' has {} bytes, but storage '{}' holds {} x {} = {} bytes", path, name, e->size, key,
             s->numel, s->type_name, want);
      std::string_view b = zip.read(*e, false);  // storages are not CRC-checked: that would read every page twice
      m.add_storage(key, s->dtype, s->numel, reinterpret_cast<const uint8_t*>(b.data()));
    }
  });
}

// 0x1950a86a20f9469cfc6c, the legacy format's magic number, as LONG1 stores it (little-endian).
constexpr uint8_t kLegacyMagic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

TorchCheckpoint parse_legacy(const uint8_t* data, size_t size, const std::string& path, std::shared_ptr<void> holder) {
  size_t pos = 0;
  auto next = [&](const char* what) {
    pickle::Pickle p = pickle::unpickle(data + pos, size - pos, path + " (" + what + ")");
    pos += p.consumed();
    return p;
  };
  pickle::Pickle magic = next("magic number");
  if (magic.root()->kind != Kind::BigInt ||
      magic.root()->s != std::string(reinterpret_cast<const char*>(kLegacyMagic), 10))
    fail("{}: a pickle, but not a torch.save file (no legacy magic number; {} found)", path,
         pickle::kind_name(magic.root()->kind));
  pickle::Pickle proto = next("protocol version");
  if (proto.root()->kind != Kind::Int || proto.root()->i != 1001) fail("{}: legacy protocol version is not 1001", path);
  pickle::Pickle sys_info = next("sys_info");
  if (const Object* le = sys_info.root()->get("little_endian"); le && le->kind == Kind::Bool && !le->b)
    fail("{}: saved on a big-endian machine; only little-endian checkpoints are supported", path);
  pickle::Pickle pk = next("data");
  pickle::Pickle keys = next("storage keys");
  if (keys.root()->kind != Kind::List)
    fail("{}: the storage key list is a {}", path, pickle::kind_name(keys.root()->kind));

  // The data section holds every storage of the pickle back to back (optimizer state too), so each
  // one's size, from its persistent id, is needed to find the next.
  std::map<std::string, const StorageRef*> all;
  for (const StorageRef& s : pk.storages()) all.emplace(s.key, &s);
  Materializer m(path, holder);
  return build(pk, path, "legacy", m, [&](const std::map<std::string, const StorageRef*>& needed) {
    for (const Object* k : keys.root()->items) {
      if (k->kind != Kind::Str) fail("{}: a storage key is a {}, expected a str", path, pickle::kind_name(k->kind));
      auto it = all.find(k->s);
      if (size - pos < 8) fail("{}: data section truncated before storage '{}'", path, k->s);
      int64_t numel = 0;
      std::memcpy(&numel, data + pos, 8);
      pos += 8;
      if (it == all.end())
        fail("{}: storage '{}' is in the data section but no persistent id describes it", path, k->s);
      const StorageRef& s = *it->second;
      if (numel != s.numel)
        fail("{}: storage '{}' has {} elements in the data section, the pickle says {}", path, k->s, numel, s.numel);
      uint64_t b = storage_bytes(s, path);
      if (b > size - pos) fail("{}: storage '{}' needs {} bytes, only {} left in the file", path, k->s, b, size - pos);
      if (needed.count(k->s)) m.add_storage(k->s, s.dtype, s.numel, data + pos);
      pos += b;
    }
  });
}

}  // namespace

bool looks_like_torch_checkpoint(const uint8_t* data, size_t size) {
  return ZipArchive::looks_like_zip(data, size) || (size >= 2 && data[0] == 0x80 && data[1] >= 2 && data[1] <= 5);
}

TorchCheckpoint parse_torch_checkpoint(const uint8_t* data, size_t size, const std::string& path,
                                       std::shared_ptr<void> holder) {
  if (ZipArchive::looks_like_zip(data, size)) return parse_zip(data, size, path, std::move(holder));
  if (size >= 2 && data[0] == 0x80) return parse_legacy(data, size, path, std::move(holder));
  if (size > 262 && std::memcmp(data + 257, "ustar", 5) == 0)
    fail("{}: a tar archive (torch < 0.4 checkpoint format), which is not supported", path);
  fail("{}: not a torch.save file (neither a zip archive nor a pickle)", path);
}

TorchCheckpoint read_torch_checkpoint(const std::string& path) {
  auto file = MappedFile::open(path);
  return parse_torch_checkpoint(file->data(), file->size(), path, file);
}

void release_mapped_pages(const uint8_t* map, size_t map_size, const void* p, size_t n) {
  auto a = reinterpret_cast<uintptr_t>(p), lo = reinterpret_cast<uintptr_t>(map);
  if (n == 0 || a < lo || a - lo > map_size || n > map_size - (a - lo)) return;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  // Only whole pages inside the range: a neighbour tensor may still be using a shared edge page.
  uintptr_t begin = (a + page - 1) / page * page, end = (a + n) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace sambalm
