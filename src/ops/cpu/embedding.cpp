// Token embedding: out[n, :] = table[ids[n], :]. The backward scatters rows back,
//   dtable[ids[n], :] += dout[n, :],
// and repeated ids hit the same row, so threads split the columns (never the tokens): each thread
// owns a slice of every table row and no two threads ever write the same element.
#include <cstdint>
#include <cstring>

#include "ops/cpu/cpu_ops.h"

namespace sambalm::ops::cpu {

template <typename T>
void embedding_forward(T* out, const int32_t* ids, const T* table, int64_t n, int64_t C) {
#pragma omp parallel for schedule(static) if (n * C > (1 << 16))
  for (int64_t i = 0; i < n; ++i) std::memcpy(out + i * C, table + int64_t(ids[i]) * C, size_t(C) * sizeof(T));
}

template <typename T>
void embedding_backward(T* dtable, const T* dout, const int32_t* ids, int64_t n, int64_t C) {
  if (!dtable) return;
  constexpr int64_t kCols = 64;  // column slice per task: a cache line or more of every row
  const int64_t slices = (C + kCols - 1) / kCols;
#pragma omp parallel for schedule(static) if (n * C > (1 << 16))
  for (int64_t sl = 0; sl < slices; ++sl) {
    const int64_t c0 = sl * kCols, c1 = c0 + kCols < C ? c0 + kCols : C;
    for (int64_t i = 0; i < n; ++i) {
      T* dst = dtable + int64_t(ids[i]) * C;
      const T* src = dout + i * C;
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  }
}

template void embedding_forward<float>(float*, const int32_t*, const float*, int64_t, int64_t);
template void embedding_forward<double>(double*, const int32_t*, const double*, int64_t, int64_t);
template void embedding_backward<float>(float*, const float*, const int32_t*, int64_t, int64_t);
template void embedding_backward<double>(double*, const double*, const int32_t*, int64_t, int64_t);

}  // namespace sambalm::ops::cpu
