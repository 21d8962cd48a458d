// A restricted unpickler for the pickles inside `torch.save` files. It interprets the opcodes of
// pickle protocols 2-5 that such files use, builds plain values (None, bool, int, float, str, bytes,
// tuple, list, set, dict) and recognises exactly the globals a tensor checkpoint needs:
//   collections.OrderedDict                      -> an (ordered) dict
//   torch._utils._rebuild_tensor_v2 / _rebuild_tensor / _rebuild_parameter[_with_state]
//                                                -> a TensorRef (storage, offset, size, stride)
//   torch.<Type>Storage inside a persistent id   -> a StorageRef (dtype, key, numel)
// Nothing is ever imported or called: a global is a name looked up in that table, and any other
// name (os.system, builtins.eval, an unknown class, ...) is refused with an Error that names it.
// Opcodes that create arbitrary objects (INST, OBJ, NEWOBJ, extension codes, out-of-band buffers)
// are refused too. The parser is a loop over the bytes with an explicit stack; it never recurses,
// and container nesting, the mark stack and the memo are bounded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/dtype.h"

namespace sambalm::pickle {

enum class Kind { None, Bool, Int, BigInt, Float, Str, Bytes, Tuple, List, Set, Dict, Global, Storage, Tensor };
const char* kind_name(Kind k);

struct Object;

// A storage persistent id: ("storage", torch.<Type>Storage, key, location, numel[, view_metadata]).
struct StorageRef {
  DType dtype = DType::F32;
  std::string type_name;  // "FloatStorage", for messages
  std::string key;        // zip: data/<key>; legacy: the key in the storage list
  std::string location;   // "cpu", "cuda:0", ...: the bytes are the same wherever it lived
  int64_t numel = 0;      // elements in the whole storage
  // Legacy format only: a view of another storage (view_key, element offset, element count).
  bool is_view = false;
  std::string view_key;
  int64_t view_offset = 0, view_numel = 0;
};

// A tensor as torch rebuilds it: a strided view of a storage.
struct TensorRef {
  const Object* storage = nullptr;  // Kind::Storage
  int64_t offset = 0;               // in elements
  std::vector<int64_t> size, stride;
};

// One unpickled value. Objects live in the Pickle's arena and point at each other with raw pointers,
// so reference cycles (a list that contains itself through the memo) cost nothing to free.
struct Object {
  Kind kind = Kind::None;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;               // Str, Bytes, BigInt (little-endian two's complement), Global ("module.name")
  std::vector<Object*> items;  // Tuple, List, Set
  std::vector<std::pair<Object*, Object*>> entries;  // Dict, in insertion order
  const StorageRef* storage = nullptr;               // Kind::Storage
  const TensorRef* tensor = nullptr;                 // Kind::Tensor
  int depth = 0;                                     // container nesting, bounded

  // Dict lookup by string key; nullptr when absent or not a dict.
  const Object* get(std::string_view key) const;
};

// The result of unpickling: the root value and the arena that owns everything reachable from it.
class Pickle {
 public:
  Pickle() = default;
  Pickle(Pickle&&) = default;
  Pickle& operator=(Pickle&&) = default;
  const Object* root() const { return root_; }
  size_t consumed() const { return consumed_; }  // bytes up to and including STOP
  // Every storage persistent id met, in order (several may name the same key).
  const std::deque<StorageRef>& storages() const { return storages_; }

 private:
  friend class Unpickler;
  std::deque<Object> arena_;
  std::deque<StorageRef> storages_;
  std::deque<TensorRef> tensors_;
  Object* root_ = nullptr;
  size_t consumed_ = 0;
};

// Limits: generous for any real checkpoint, small enough that hostile input cannot exhaust memory.
constexpr int kMaxNesting = 64;     // container depth
constexpr size_t kMaxMarks = 1024;  // simultaneously open MARKs
constexpr int kMaxTensorDims = 64;
constexpr size_t kMaxObjects = size_t{1} << 22;  // values created by one pickle

// Unpickles one pickle from data[0, size); stops at its STOP opcode (a legacy file holds several
// pickles back to back). `path` names the file in errors, which also give the byte position.
Pickle unpickle(const uint8_t* data, size_t size, const std::string& path);

}  // namespace sambalm::pickle
