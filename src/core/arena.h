// Arena: one allocation, handed out as aligned views. Buffers are planned, not grown: a caller first
// runs its layout against a counting arena (no memory; `take` returns nullptr and adds up sizes),
// allocates once with the total, then runs the same layout again to get the views. After that nothing
// allocates: the same views serve every step.
//
//   Arena plan;                       // counting
//   layout(plan);                     // take<float>(n) ... returns nullptr
//   Arena arena(plan.bytes());        // the one allocation (zeroed)
//   layout(arena);                    // the same takes, now real pointers
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/error.h"

namespace sambalm {

class Arena {
 public:
  static constexpr size_t kAlign = 64;  // a cache line (and enough for any SIMD load)
  static constexpr size_t kPage = 4096;

  Arena() = default;  // counting: takes return nullptr and only add up
  explicit Arena(size_t bytes);
  // Adopts `bytes` of memory allocated elsewhere (device memory: src/ops/cuda/runtime.h), released
  // with `release` when the arena goes.
  static Arena adopt(std::byte* base, size_t bytes, void (*release)(void*));
  Arena(Arena&&) noexcept = default;
  Arena& operator=(Arena&&) noexcept = default;

  template <typename T>
  T* take(int64_t n) {
    SAMBALM_CHECK(n >= 0, "arena: negative size {}", n);
    size_t bytes = (static_cast<size_t>(n) * sizeof(T) + kAlign - 1) / kAlign * kAlign;
    if (stagger_ && bytes % kPage == 0) bytes += kAlign;
    const size_t at = used_;
    used_ += bytes;
    peak_ = std::max(peak_, used_);
    if (!base_) return nullptr;
    SAMBALM_CHECK(used_ <= capacity_, "arena: {} bytes planned, {} asked (layout changed between plan and use)",
                  capacity_, used_);
    return reinterpret_cast<T*>(base_.get() + at);
  }
  // Back to the start: the next takes hand out the same memory again.
  void reset() { used_ = 0; }
  // Buffers that never live at the same time share memory: take one set, rewind to the mark, take
  // the next; the arena needs the largest.
  size_t mark() const { return used_; }
  void rewind(size_t mark) { used_ = mark; }
  bool counting() const { return !base_; }
  // Staggered: a take whose size is a multiple of 4 KiB gets one more cache line, so the next buffer
  // does not start at the same offset within a page. Otherwise same-sized activations (every
  // [tokens, d] buffer of the training step) sit exactly a power of two apart, and a kernel that
  // streams several of them at one index maps them all to the same cache sets. (The per-buffer heap
  // allocations this arena replaced were a page apart beyond their size.) Set it on the counting
  // arena and on the real one alike, or the plan and the layout disagree.
  void set_stagger(bool on) { stagger_ = on; }
  size_t bytes() const { return peak_; }  // the most ever taken at once (the size a plan needs)
  size_t capacity() const { return capacity_; }

 private:
  struct Free {
    Free() noexcept : release(nullptr) {}
    explicit Free(void (*r)(void*)) noexcept : release(r) {}
    void (*release)(void*);  // nullptr: std::free
    void operator()(std::byte* p) const;
  };
  std::unique_ptr<std::byte[], Free> base_;
  size_t capacity_ = 0, used_ = 0, peak_ = 0;
  bool stagger_ = false;
};

}  // namespace sambalm
