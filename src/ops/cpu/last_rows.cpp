// Keeping each sequence's last token: SambaY's prefill runs its cross-decoder on those rows only.
//   take_last_rows:  x[b] = x[b * L + L - 1]  for b = 0 .. B-1 (rows of `width` values, in place)
//   last_positions:  last[b] = pos[b] + L - 1
// In place is safe in increasing b: row b * L + L - 1 >= b, and the rows written before it are < b.
#include <algorithm>
#include <cstdint>

#include "ops/cpu/cpu_ops.h"

namespace sambalm::ops::cpu {

template <typename T>
void take_last_rows(T* x, int64_t width, int64_t B, int64_t L) {
  for (int64_t b = 0; b < B; ++b)
    if (b * L + L - 1 != b) std::copy_n(x + (b * L + L - 1) * width, width, x + b * width);
}

void last_positions(int64_t* last, const int64_t* pos, int64_t B, int64_t L) {
  for (int64_t b = 0; b < B; ++b) last[b] = pos[b] + L - 1;
}

template void take_last_rows<float>(float*, int64_t, int64_t, int64_t);
template void take_last_rows<double>(double*, int64_t, int64_t, int64_t);

}  // namespace sambalm::ops::cpu
