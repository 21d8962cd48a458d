// Training memory as the trainer allocates it, for `sambalm info`: the buffers of one process of
// `sambalm train` on a device at a precision, taken from the same buffer plan the model sizes its
// arena with (Model<T>::plan_train_bytes), so the figure follows the code instead of a formula.
//
//   fp32 master parameters    4 P        (the optimizer's; the model reads them directly in fp32)
//   bf16 working copy         2 P        (bf16 only: the weights and GEMM operands)
//   gradients                 4 P        (fp32 in both precisions)
//   AdamW moments             8 P
//   activations               the model's training arena for (batch, seq-len): every residual stream
//                             and norm statistic (fp32), the saved intermediates of each sublayer
//                             (bf16 in bf16), logits and their gradient, and the backward's largest
//                             layer temporaries, including the backend's own scratch (the GPU scan
//                             backward's, attention_backward_scratch_size for the bf16 flash backward)
//
// Not counted: the cuBLASLt workspace (32 MiB), the CUDA context itself, allocator rounding, and
// buffers of data-parallel runs (see data_parallel_memory in memory_estimate.h).
#pragma once

#include <cstdint>

#include "model/config.h"
#include "ops/device.h"

namespace sambalm {

struct TrainMemory {
  Device device = Device::CPU;
  Precision precision = Precision::FP32;
  int64_t batch = 0, seq_len = 0;
  int64_t master = 0, working = 0, grads = 0, adam = 0, activations = 0, total = 0;
};

// seq_len 0: cfg.block_size. A GPU plan needs a build with the CUDA backend (not a GPU: nothing is
// allocated); bf16 needs a GPU device (the CPU computes in fp32 only). Throws Error otherwise, and for a
// shape whose memory would exceed 2^63 bytes.
TrainMemory training_memory(const ModelConfig& cfg, Device device, Precision precision, int64_t batch,
                            int64_t seq_len = 0);

}  // namespace sambalm
