// Host side of the CUDA attention ops: the errors the .cu files cannot format (nvcc cannot compile fmt).
#include "core/error.h"
#include "ops/cuda/attention_flash.h"

namespace sambalm::ops::cuda {

void raise_attention_no_scratch(int64_t needed) {
  fail(
      "attention_backward: the bf16 tensor-core backward needs a scratch of {} floats "
      "(attention_backward_scratch_size), got none",
      needed);
}

}  // namespace sambalm::ops::cuda
