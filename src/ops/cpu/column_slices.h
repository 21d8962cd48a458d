// Column-sliced parallel loop for per-column reductions over rows (the weight and bias gradients of
// the norms: dweight[j] = sum_i ...). Each 64-column slice belongs to one thread, so the sums need
// no atomics and add the rows in the same order whatever the thread count (bit-reproducible).
#pragma once

#include <algorithm>
#include <cstdint>

namespace sambalm::ops::cpu {

// Calls body(c0, c1) for every slice [c0, c1) of the C columns of an [n, C] problem, in parallel when
// the problem is large enough to pay for a parallel region.
template <typename Body>
void for_column_slices(int64_t n, int64_t C, Body&& body) {
  constexpr int64_t kCols = 64;
  const int64_t slices = (C + kCols - 1) / kCols;
#pragma omp parallel for schedule(static) if (n * C > (1 << 15))
  for (int64_t sl = 0; sl < slices; ++sl) body(sl * kCols, std::min(C, sl * kCols + kCols));
}

}  // namespace sambalm::ops::cpu
