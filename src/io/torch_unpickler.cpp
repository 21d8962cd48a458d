#include "io/torch_unpickler.h"

#include <array>
#include <cstring>
#include <optional>
#include <unordered_map>

#include "core/error.h"

namespace sambalm::pickle {

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None:
      return "None";
    case Kind::Bool:
      return "bool";
    case Kind::Int:
      return "int";
    case Kind::BigInt:
      return "int (more than 64 bits)";
    case Kind::Float:
      return "float";
    case Kind::Str:
      return "str";
    case Kind::Bytes:
      return "bytes";
    case Kind::Tuple:
      return "tuple";
    case Kind::List:
      return "list";
    case Kind::Set:
      return "set";
    case Kind::Dict:
      return "dict";
    case Kind::Global:
      return "global";
    case Kind::Storage:
      return "storage";
    case Kind::Tensor:
      return "tensor";
  }
  return "?";
}

const Object* Object::get(std::string_view key) const {
  if (kind != Kind::Dict) return nullptr;
  for (const auto& [k, v] : entries)
    if (k->kind == Kind::Str && k->s == key) return v;
  return nullptr;
}

namespace {

// The only names a checkpoint may refer to. Anything else is refused by name, before use.
enum class Callable {
  OrderedDict,
  RebuildTensorV2,
  RebuildTensor,
  RebuildParameter,
  RebuildParameterWithState,
  StorageType
};

struct StorageType {
  const char* name;
  DType dtype;
};
constexpr std::array<StorageType, 10> kStorageTypes = {{{"FloatStorage", DType::F32},
                                                        {"DoubleStorage", DType::F64},
                                                        {"HalfStorage", DType::F16},
                                                        {"BFloat16Storage", DType::BF16},
                                                        {"LongStorage", DType::I64},
                                                        {"IntStorage", DType::I32},
                                                        {"ShortStorage", DType::I16},
                                                        {"CharStorage", DType::I8},
                                                        {"ByteStorage", DType::U8},
                                                        {"BoolStorage", DType::BOOL}}};

std::optional<Callable> lookup_global(std::string_view module, std::string_view name) {
  if (module == "collections" && name == "OrderedDict") return Callable::OrderedDict;
  if (module == "torch._utils") {
    if (name == "_rebuild_tensor_v2") return Callable::RebuildTensorV2;
    if (name == "_rebuild_tensor") return Callable::RebuildTensor;
    if (name == "_rebuild_parameter") return Callable::RebuildParameter;
    if (name == "_rebuild_parameter_with_state") return Callable::RebuildParameterWithState;
  }
  if (module == "torch")
    for (const auto& t : kStorageTypes)
      if (name == t.name) return Callable::StorageType;
  return std::nullopt;
}

const StorageType* storage_type(std::string_view qualified) {
  for (const auto& t : kStorageTypes)
    if (qualified == std::string("torch.") + t.name) return &t;
  return nullptr;
}

}  // namespace

class Unpickler {
 public:
  Unpickler(const uint8_t* data, size_t size, const std::string& path) : d_(data), n_(size), path_(path) {}
  Pickle run();

 private:
  template <typename... Args>
  [[noreturn]] void error(fmt::format_string<Args...> f, Args&&... args) {
    fail("{}: pickle byte {}: {}", path_, op_pos_, fmt::format(f, std::forward<Args>(args)...));
  }

  // --- input
  const uint8_t* take(uint64_t k) {
    if (k > n_ - pos_) error("truncated: needs {} more bytes, {} left", k, n_ - pos_);
    const uint8_t* p = d_ + pos_;
    pos_ += k;
    return p;
  }
  uint64_t le(int bytes) {
    const uint8_t* p = take(bytes);
    uint64_t v = 0;
    for (int k = bytes - 1; k >= 0; --k) v = (v << 8) | p[k];
    return v;
  }
  std::string_view line() {  // for GLOBAL / INST: text up to '\n'
    size_t start = pos_;
    while (pos_ < n_ && d_[pos_] != '\n') {
      if (pos_ - start > 1024) error("name longer than 1024 bytes");
      ++pos_;
    }
    if (pos_ >= n_) error("truncated: a name is not terminated by a newline");
    return {reinterpret_cast<const char*>(d_ + start), pos_++ - start};
  }

  // --- values
  Object* make(Kind k) {
    if (out_.arena_.size() >= kMaxObjects) error("the pickle creates more than {} values", kMaxObjects);
    Object& o = out_.arena_.emplace_back();
    o.kind = k;
    return &o;
  }
  Object* make_int(int64_t v) {
    Object* o = make(Kind::Int);
    o->i = v;
    return o;
  }
  Object* make_text(Kind k, uint64_t len) {
    Object* o = make(k);
    const uint8_t* p = take(len);
    o->s.assign(reinterpret_cast<const char*>(p), len);
    return o;
  }
  void nest(Object* container, const Object* item) {
    if (item->depth + 1 > container->depth) container->depth = item->depth + 1;
    if (container->depth > kMaxNesting) error("containers nested deeper than {} levels", kMaxNesting);
  }

  // --- stack (split by MARKs, like Python's: nothing pops past the innermost mark)
  size_t base() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(Object* o) { stack_.push_back(o); }
  Object* pop() {
    if (stack_.size() <= base()) error("stack underflow");
    Object* o = stack_.back();
    stack_.pop_back();
    return o;
  }
  Object* top() {
    if (stack_.size() <= base()) error("stack underflow");
    return stack_.back();
  }
  std::vector<Object*> pop_mark() {  // the items above the innermost mark, which is removed
    if (marks_.empty()) error("no MARK on the stack");
    size_t b = marks_.back();
    marks_.pop_back();
    std::vector<Object*> items(stack_.begin() + static_cast<std::ptrdiff_t>(b), stack_.end());
    stack_.resize(b);
    return items;
  }
  Object* make_seq(Kind k, std::vector<Object*> items) {
    Object* o = make(k);
    for (Object* it : items) nest(o, it);
    o->items = std::move(items);
    return o;
  }

  // --- containers
  void set_item(Object* dict, Object* key, Object* value);
  void append(Object* list, Object* item) {
    if (list->kind != Kind::List) error("APPEND to a {}, expected a list", kind_name(list->kind));
    nest(list, item);
    list->items.push_back(item);
  }

  // --- memo
  void put(uint64_t idx) { memo_[idx] = top(); }
  Object* get(uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) error("memo index {} is not defined ({} entries)", idx, memo_.size());
    return it->second;
  }

  // --- globals, calls, persistent ids
  Object* global(std::string_view module, std::string_view name);
  Object* reduce(Object* callable, Object* args);
  Object* rebuild_tensor(const std::vector<Object*>& a, const char* fn);
  Object* persistent_load(Object* pid);

  const uint8_t* d_;
  size_t n_;
  const std::string& path_;
  size_t pos_ = 0, op_pos_ = 0;
  Pickle out_;
  std::vector<Object*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Object*> memo_;
  std::unordered_map<std::string, size_t> dict_index_;  // (dict address, key) -> entry: duplicate keys replace
};

void Unpickler::set_item(Object* dict, Object* key, Object* value) {
  if (dict->kind != Kind::Dict) error("SETITEM on a {}, expected a dict", kind_name(dict->kind));
  if (key->kind == Kind::List || key->kind == Kind::Dict || key->kind == Kind::Set)
    error("a {} cannot be a dict key (unhashable)", kind_name(key->kind));
  nest(dict, value);
  nest(dict, key);
  // Python keeps the last value of a repeated key; do the same for the scalar keys we can compare.
  std::string id;
  if (key->kind == Kind::Str || key->kind == Kind::Bytes || key->kind == Kind::Int || key->kind == Kind::Bool) {
    id.assign(reinterpret_cast<const char*>(&dict), sizeof(dict));
    id += static_cast<char>(key->kind == Kind::Bool ? Kind::Int : key->kind);
    id += (key->kind == Kind::Int || key->kind == Kind::Bool)
              ? std::to_string(key->kind == Kind::Bool ? key->b : key->i)
              : key->s;
    auto [it, fresh] = dict_index_.emplace(id, dict->entries.size());
    if (!fresh) {
      dict->entries[it->second].second = value;
      return;
    }
  }
  dict->entries.emplace_back(key, value);
}

Object* Unpickler::global(std::string_view module, std::string_view name) {
  std::string qualified = std::string(module) + "." + std::string(name);
  auto c = lookup_global(module, name);
  if (!c) {
    if (module == "torch" && name.size() > 7 && name.substr(name.size() - 7) == "Storage")
      error(
          "storage type {} is not supported (supported: float, double, half, bfloat16, long, int, short, char, "
          "byte, bool)",
          qualified);
    error(
        "global '{}' is not allowed: a weights file may only refer to collections.OrderedDict, "
        "torch._utils._rebuild_tensor_v2/_rebuild_parameter and torch.*Storage types (nothing in the file is run)",
        qualified);
  }
  Object* o = make(Kind::Global);
  o->s = std::move(qualified);
  o->i = static_cast<int64_t>(*c);
  return o;
}

Object* Unpickler::persistent_load(Object* pid) {
  // ("storage", torch.<Type>Storage, key, location, numel) in zip files, plus view_metadata in legacy ones.
  if (pid->kind != Kind::Tuple || pid->items.empty() || pid->items[0]->kind != Kind::Str ||
      pid->items[0]->s != "storage")
    error("persistent id is a {}, expected a ('storage', type, key, location, numel) tuple", kind_name(pid->kind));
  const auto& a = pid->items;
  if (a.size() != 5 && a.size() != 6) error("storage persistent id has {} fields, expected 5 or 6", a.size());
  if (a[1]->kind != Kind::Global) error("storage type is a {}, expected a torch.*Storage class", kind_name(a[1]->kind));
  const StorageType* t = storage_type(a[1]->s);
  if (!t) error("storage type '{}' is not a torch.*Storage class", a[1]->s);
  StorageRef& s = out_.storages_.emplace_back();
  s.dtype = t->dtype;
  s.type_name = t->name;
  if (a[2]->kind == Kind::Str)
    s.key = a[2]->s;
  else if (a[2]->kind == Kind::Int)
    s.key = std::to_string(a[2]->i);
  else
    error("storage key is a {}, expected a str", kind_name(a[2]->kind));
  if (a[3]->kind != Kind::Str) error("storage location is a {}, expected a str", kind_name(a[3]->kind));
  s.location = a[3]->s;
  if (a[4]->kind != Kind::Int || a[4]->i < 0) error("storage '{}' element count is not a non-negative int", s.key);
  s.numel = a[4]->i;
  if (a.size() == 6 && a[5]->kind != Kind::None) {
    const Object* v = a[5];
    if (v->kind != Kind::Tuple || v->items.size() != 3 || v->items[0]->kind != Kind::Str ||
        v->items[1]->kind != Kind::Int || v->items[2]->kind != Kind::Int || v->items[1]->i < 0 || v->items[2]->i < 0)
      error("storage '{}' view metadata is not a (key, offset, size) tuple", s.key);
    s.is_view = true;
    s.view_key = v->items[0]->s;
    s.view_offset = v->items[1]->i;
    s.view_numel = v->items[2]->i;
  }
  Object* o = make(Kind::Storage);
  o->storage = &s;
  return o;
}

Object* Unpickler::rebuild_tensor(const std::vector<Object*>& a, const char* fn) {
  // (storage, storage_offset, size, stride, ...): the remaining arguments (requires_grad, hooks,
  // metadata) do not change the values.
  if (a[0]->kind != Kind::Storage) error("{}: first argument is a {}, expected a storage", fn, kind_name(a[0]->kind));
  if (a[1]->kind != Kind::Int || a[1]->i < 0) error("{}: storage offset is not a non-negative int", fn);
  if (a[2]->kind != Kind::Tuple || a[3]->kind != Kind::Tuple)
    error("{}: size and stride must be tuples, found {} and {}", fn, kind_name(a[2]->kind), kind_name(a[3]->kind));
  if (a[2]->items.size() != a[3]->items.size())
    error("{}: size has {} dimensions but stride has {}", fn, a[2]->items.size(), a[3]->items.size());
  if (a[2]->items.size() > kMaxTensorDims)
    error("{}: {} dimensions (at most {})", fn, a[2]->items.size(), kMaxTensorDims);
  TensorRef& t = out_.tensors_.emplace_back();
  t.storage = a[0];
  t.offset = a[1]->i;
  for (size_t k = 0; k < a[2]->items.size(); ++k) {
    const Object* sz = a[2]->items[k];
    const Object* st = a[3]->items[k];
    if (sz->kind != Kind::Int || sz->i < 0) error("{}: size[{}] is not a non-negative int", fn, k);
    if (st->kind != Kind::Int) error("{}: stride[{}] is not an int", fn, k);
    t.size.push_back(sz->i);
    t.stride.push_back(st->i);
  }
  Object* o = make(Kind::Tensor);
  o->tensor = &t;
  return o;
}

Object* Unpickler::reduce(Object* callable, Object* args) {
  if (callable->kind != Kind::Global) error("REDUCE calls a {}, expected an allowed global", kind_name(callable->kind));
  if (args->kind != Kind::Tuple)
    error("REDUCE arguments of {} are a {}, expected a tuple", callable->s, kind_name(args->kind));
  const auto& a = args->items;
  switch (static_cast<Callable>(callable->i)) {
    case Callable::OrderedDict:
      if (!a.empty())
        error("collections.OrderedDict called with {} arguments; only OrderedDict() is accepted", a.size());
      return make(Kind::Dict);
    case Callable::RebuildTensorV2:
      if (a.size() != 6 && a.size() != 7) error("{} takes 6 or 7 arguments, found {}", callable->s, a.size());
      return rebuild_tensor(a, "_rebuild_tensor_v2");
    case Callable::RebuildTensor:
      if (a.size() != 4) error("{} takes 4 arguments, found {}", callable->s, a.size());
      return rebuild_tensor(a, "_rebuild_tensor");
    case Callable::RebuildParameter:
    case Callable::RebuildParameterWithState:
      // A Parameter is its data tensor plus requires_grad (and, with_state, Python attributes).
      if (a.size() != (static_cast<Callable>(callable->i) == Callable::RebuildParameter ? 3u : 4u))
        error("{}: wrong number of arguments ({})", callable->s, a.size());
      if (a[0]->kind != Kind::Tensor) error("{}: data is a {}, expected a tensor", callable->s, kind_name(a[0]->kind));
      return a[0];
    case Callable::StorageType:
      error("{} cannot be called; storages come only from persistent ids", callable->s);
  }
  error("unreachable");
}

Pickle Unpickler::run() {
  while (true) {
    op_pos_ = pos_;
    if (pos_ >= n_) error("the pickle ends without a STOP opcode");
    uint8_t op = *take(1);
    switch (op) {
      case 0x80: {  // PROTO
        uint8_t v = *take(1);
        if (v > 5) error("pickle protocol {} is newer than 5", v);
        break;
      }
      case 0x95:  // FRAME: a length hint only
        if (le(8) > n_ - pos_) error("FRAME is longer than the rest of the data");
        break;
      case '.': {  // STOP
        Object* root = pop();
        out_.root_ = root;
        out_.consumed_ = pos_;
        return std::move(out_);
      }
      case '(':  // MARK
        if (marks_.size() >= kMaxMarks) error("more than {} nested MARKs", kMaxMarks);
        marks_.push_back(stack_.size());
        break;
      case '0':
        pop();
        break;  // POP
      case '1':
        pop_mark();
        break;  // POP_MARK
      case '2':
        push(top());
        break;  // DUP

      // --- scalars
      case 'N': {
        push(make(Kind::None));
        break;
      }
      case 0x88:
      case 0x89: {  // NEWTRUE, NEWFALSE
        Object* o = make(Kind::Bool);
        o->b = op == 0x88;
        push(o);
        break;
      }
      case 'K':
        push(make_int(static_cast<int64_t>(le(1))));
        break;  // BININT1
      case 'M':
        push(make_int(static_cast<int64_t>(le(2))));
        break;  // BININT2
      case 'J':
        push(make_int(static_cast<int32_t>(static_cast<uint32_t>(le(4)))));
        break;  // BININT
      case 0x8a:
      case 0x8b: {  // LONG1, LONG4: little-endian two's complement of n bytes
        int64_t len = op == 0x8a ? static_cast<int64_t>(le(1)) : static_cast<int32_t>(static_cast<uint32_t>(le(4)));
        if (len < 0) error("LONG4 with negative length {}", len);
        const uint8_t* p = take(static_cast<uint64_t>(len));
        if (len <= 8) {
          uint64_t v = 0;
          for (int64_t k = len - 1; k >= 0; --k) v = (v << 8) | p[k];
          if (len > 0 && len < 8 && (p[len - 1] & 0x80)) v |= ~uint64_t{0} << (8 * len);  // sign-extend
          push(make_int(static_cast<int64_t>(v)));
        } else {
          Object* o = make(Kind::BigInt);
          o->s.assign(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
          push(o);
        }
        break;
      }
      case 'G': {  // BINFLOAT: big-endian IEEE double
        const uint8_t* p = take(8);
        uint64_t bits = 0;
        for (int k = 0; k < 8; ++k) bits = (bits << 8) | p[k];
        Object* o = make(Kind::Float);
        std::memcpy(&o->f, &bits, 8);
        push(o);
        break;
      }
      case 'X':
        push(make_text(Kind::Str, le(4)));
        break;  // BINUNICODE
      case 0x8c:
        push(make_text(Kind::Str, le(1)));
        break;  // SHORT_BINUNICODE
      case 0x8d:
        push(make_text(Kind::Str, le(8)));
        break;  // BINUNICODE8
      case 'U':
        push(make_text(Kind::Str, le(1)));
        break;     // SHORT_BINSTRING (Python 2 str)
      case 'T': {  // BINSTRING
        int32_t len = static_cast<int32_t>(static_cast<uint32_t>(le(4)));
        if (len < 0) error("BINSTRING with negative length {}", len);
        push(make_text(Kind::Str, static_cast<uint64_t>(len)));
        break;
      }
      case 'C':
        push(make_text(Kind::Bytes, le(1)));
        break;  // SHORT_BINBYTES
      case 'B':
        push(make_text(Kind::Bytes, le(4)));
        break;  // BINBYTES
      case 0x8e:
        push(make_text(Kind::Bytes, le(8)));
        break;  // BINBYTES8
      case 0x96:
        push(make_text(Kind::Bytes, le(8)));
        break;  // BYTEARRAY8

      // --- containers
      case ')':
        push(make(Kind::Tuple));
        break;  // EMPTY_TUPLE
      case 't':
        push(make_seq(Kind::Tuple, pop_mark()));
        break;
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        size_t k = op - 0x84u;
        std::vector<Object*> items(k);
        for (size_t j = k; j-- > 0;) items[j] = pop();
        push(make_seq(Kind::Tuple, std::move(items)));
        break;
      }
      case ']':
        push(make(Kind::List));
        break;  // EMPTY_LIST
      case 'l':
        push(make_seq(Kind::List, pop_mark()));
        break;     // LIST
      case 'a': {  // APPEND
        Object* item = pop();
        append(top(), item);
        break;
      }
      case 'e': {  // APPENDS
        std::vector<Object*> items = pop_mark();
        Object* list = top();
        for (Object* it : items) append(list, it);
        break;
      }
      case '}':
        push(make(Kind::Dict));
        break;     // EMPTY_DICT
      case 'd': {  // DICT
        std::vector<Object*> items = pop_mark();
        if (items.size() % 2) error("DICT with an odd number ({}) of keys and values", items.size());
        Object* dict = make(Kind::Dict);
        for (size_t k = 0; k < items.size(); k += 2) set_item(dict, items[k], items[k + 1]);
        push(dict);
        break;
      }
      case 's': {  // SETITEM
        Object* value = pop();
        Object* key = pop();
        set_item(top(), key, value);
        break;
      }
      case 'u': {  // SETITEMS
        std::vector<Object*> items = pop_mark();
        if (items.size() % 2) error("SETITEMS with an odd number ({}) of keys and values", items.size());
        Object* dict = top();
        for (size_t k = 0; k < items.size(); k += 2) set_item(dict, items[k], items[k + 1]);
        break;
      }
      case 0x8f:
        push(make(Kind::Set));
        break;      // EMPTY_SET
      case 0x90: {  // ADDITEMS
        std::vector<Object*> items = pop_mark();
        Object* set = top();
        if (set->kind != Kind::Set) error("ADDITEMS to a {}, expected a set", kind_name(set->kind));
        for (Object* it : items) {
          nest(set, it);
          set->items.push_back(it);
        }
        break;
      }
      case 0x91:
        push(make_seq(Kind::Set, pop_mark()));
        break;  // FROZENSET

      // --- memo
      case 'q':
        put(le(1));
        break;  // BINPUT
      case 'r':
        put(le(4));
        break;  // LONG_BINPUT
      case 0x94:
        put(memo_.size());
        break;  // MEMOIZE
      case 'h':
        push(get(le(1)));
        break;  // BINGET
      case 'j':
        push(get(le(4)));
        break;  // LONG_BINGET

      // --- names and calls: only the allowed globals, never called, only interpreted
      case 'c': {  // GLOBAL "module\nname\n"
        std::string_view module = line();
        std::string_view name = line();
        push(global(module, name));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        Object* name = pop();
        Object* module = pop();
        if (module->kind != Kind::Str || name->kind != Kind::Str) error("STACK_GLOBAL needs two strs");
        push(global(module->s, name->s));
        break;
      }
      case 'R': {  // REDUCE
        Object* args = pop();
        Object* callable = pop();
        push(reduce(callable, args));
        break;
      }
      case 'b': {  // BUILD: setstate. An OrderedDict state_dict carries `_metadata` this way: ignored.
        Object* state = pop();
        Object* obj = top();
        if (obj->kind != Kind::Dict)
          error("BUILD (set state) on a {} is not allowed; only a state_dict's attributes may be set",
                kind_name(obj->kind));
        (void)state;
        break;
      }
      case 0x81:    // NEWOBJ: cls.__new__(cls, *args)
      case 0x92: {  // NEWOBJ_EX: cls.__new__(cls, *args, **kwargs)
        const char* name = op == 0x81 ? "NEWOBJ" : "NEWOBJ_EX";
        if (op == 0x92) pop();
        Object* args = pop();
        Object* cls = pop();
        if (cls->kind == Kind::Global && static_cast<Callable>(cls->i) == Callable::OrderedDict &&
            args->kind == Kind::Tuple && args->items.empty()) {
          push(make(Kind::Dict));
          break;
        }
        error("{} of {} is not allowed: only plain containers and tensors are built", name,
              cls->kind == Kind::Global ? cls->s : std::string("a ") + kind_name(cls->kind));
      }
      case 'Q': {  // BINPERSID
        Object* pid = pop();
        push(persistent_load(pid));
        break;
      }
      case 'i': {  // INST "module\nname\n": instantiates an arbitrary class
        std::string module(line());
        std::string name(line());
        error("INST of {}.{} is not allowed: a weights file builds no class instances", module, name);
      }
      case 'o': {  // OBJ: instantiates the class found after the mark
        std::vector<Object*> items = pop_mark();
        error("OBJ of {} is not allowed: a weights file builds no class instances",
              !items.empty() && items[0]->kind == Kind::Global ? items[0]->s : std::string("an object"));
      }
      case 0x82:
      case 0x83:
      case 0x84:
        error("extension registry codes (EXT1/2/4) are not allowed");
      case 0x97:
      case 0x98:
        error("out-of-band buffers (pickle protocol 5 NEXT_BUFFER/READONLY_BUFFER) are not supported");
      case 'I':
      case 'L':
      case 'F':
      case 'S':
      case 'V':
      case 'p':
      case 'g':
      case 'P':
        error("opcode '{}' (a protocol 0/1 text form) is not supported; torch.save writes protocol 2",
              static_cast<char>(op));
      default:
        error("unknown pickle opcode 0x{:02x}", op);
    }
  }
}

Pickle unpickle(const uint8_t* data, size_t size, const std::string& path) {
  Unpickler u(data, size, path);
  return u.run();
}

}  // namespace sambalm::pickle
