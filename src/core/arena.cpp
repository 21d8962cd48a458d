#include "core/arena.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace sambalm {

Arena::Arena(size_t bytes) : capacity_(bytes) {
  const size_t n = (bytes + kAlign - 1) / kAlign * kAlign + kAlign;
  void* p = std::aligned_alloc(kAlign, n);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, n);
  base_.reset(static_cast<std::byte*>(p));
}

Arena Arena::adopt(std::byte* base, size_t bytes, void (*release)(void*)) {
  Arena a;
  a.base_ = std::unique_ptr<std::byte[], Free>(base, Free{release});
  a.capacity_ = bytes;
  return a;
}

void Arena::Free::operator()(std::byte* p) const {
  if (release)
    release(p);
  else
    std::free(p);
}

}  // namespace sambalm
