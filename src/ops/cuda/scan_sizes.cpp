#include "ops/cpu/cpu_ops.h"
#include "ops/cuda/cuda_ops.h"

namespace sambalm::ops::cuda {

int64_t selective_scan_chunk_states_size(const Context&, int64_t B, int64_t L, int64_t D, int64_t N, int64_t chunk) {
  return cpu::selective_scan_chunk_states_size(B, L, D, N, chunk);
}

int64_t selective_scan_backward_scratch_size(const Context&, int64_t B, int64_t L, int64_t D, int64_t N,
                                             int64_t chunk) {
  return cpu::selective_scan_backward_scratch_size(B, L, D, N, chunk);
}

}  // namespace sambalm::ops::cuda
