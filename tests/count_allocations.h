// Counts calls of operator new while a CountAllocations object lives, for the tests that check a
// path allocates nothing once its buffers are planned. Include it from exactly one source file of a
// test executable: it replaces the global operator new and delete.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#pragma GCC diagnostic ignored "-Wpragmas"

namespace sambalm::test {
inline std::atomic<bool> g_counting_allocations{false};
inline std::atomic<int64_t> g_allocations{0};
}  // namespace sambalm::test

void* operator new(std::size_t n) {
  if (sambalm::test::g_counting_allocations) ++sambalm::test::g_allocations;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace sambalm::test {

// Counting starts at construction (from zero) and stops at destruction or stop().
class CountAllocations {
 public:
  CountAllocations() {
    g_allocations = 0;
    g_counting_allocations = true;
  }
  ~CountAllocations() { stop(); }
  CountAllocations(const CountAllocations&) = delete;
  CountAllocations& operator=(const CountAllocations&) = delete;
  void stop() { g_counting_allocations = false; }
  int64_t count() const { return g_allocations.load(); }
};

}  // namespace sambalm::test
