// Host side of the CUDA Mamba ops: scratch sizes and the errors the .cu files cannot format.
#include "core/error.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/cuda/cuda_ops.h"

namespace sambalm::ops::cuda {

// The CPU's layout with the CUDA kernels' own interval: [B, ceil(L / 16) + 1, D, N] whatever `chunk`
// (mamba_cuda.h, kCudaScanCheckpoint).
int64_t selective_scan_chunk_states_size(const Context&, int64_t B, int64_t L, int64_t D, int64_t N, int64_t chunk) {
  SAMBALM_CHECK(chunk > 0, "selective scan: chunk must be positive, got {}", chunk);
  return cpu::selective_scan_chunk_states_size(B, L, D, N, kCudaScanCheckpoint);
}

// The GPU backward's own layout (mamba_cuda.h, CudaScanBackwardScratch).
int64_t selective_scan_backward_scratch_size(const Context&, int64_t B, int64_t L, int64_t D, int64_t N,
                                             int64_t chunk) {
  SAMBALM_CHECK(chunk > 0, "selective scan: chunk must be positive, got {}", chunk);
  return CudaScanBackwardScratch(B, L, D, N, chunk).total;
}

void raise_unsupported(const char* op, const char* what, int64_t value, int64_t limit) {
  fail("{}: {} = {}, the CUDA kernel supports at most {}", op, what, value, limit);
}

void raise_not_positive(const char* op, const char* what, int64_t value) {
  fail("{}: {} must be positive, got {}", op, what, value);
}

}  // namespace sambalm::ops::cuda
