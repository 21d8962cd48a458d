// The small-batch path of matmul_forward (float): a register-tiled GEMV that streams each weight row
// once for all M rows (gemv_tiles.h), compiled per ISA (isa.h). Decoding is bound by reading the
// weights, and below about kGemvMaxRows rows OpenBLAS's packing sgemm is slower than this (measured,
// mamba-130m on 2 cores); matmul_forward picks it by shape, so every caller gets it.
#pragma once

#include <cstdint>

#include "ops/cpu/isa.h"

namespace sambalm::ops::cpu {

inline constexpr int64_t kGemvMaxRows = 64;

// out[m, n] = in[m, :] . W[n, :] (+ bias[n]) for m < M <= kGemvMaxRows, with the given ISA's tiles.
void gemv_linear(Isa isa, float* out, int64_t ld_out, const float* in, int64_t ld_in, const float* W, const float* bias,
                 int64_t M, int64_t K, int64_t N);

}  // namespace sambalm::ops::cpu
