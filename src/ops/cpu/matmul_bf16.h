// The prefill / batched-decode GEMM over bf16 weights on AVX512-BF16 (vdpbf16ps), and what the CPU
// offers for it. f16 and q8 weights take it too, each panel converted to bf16 first.
//
//   out[m, n] = sum_k bf16(inp[m, k]) * W[n, k]  (+ bias[n]),   W in bf16, accumulated in float32
//
// vdpbf16ps multiplies pairs of bf16 values and adds both products to a float32 lane: for each lane,
// acc += a[2i] * b[2i] + a[2i+1] * b[2i+1]. So both operands are laid out in pairs along K: the
// activations are rounded to bf16 (nearest even) once per call, row by row, and each panel of 32
// weight rows is repacked as [K/2][32 rows][2], so that one 64-byte load gives 16 rows' pair at k.
// A tile of 8 activation rows x 32 weight rows keeps 16 accumulators in registers; the pair of row m
// is broadcast from memory. An odd K gets a zero pair partner, rows past N zero weights (masked out
// of the store). Against the float32 path the only extra error is the activations' rounding to bf16
// (relative 2^-9 per product, about 3 significant digits, the precision of the weights themselves).
//
// AMX (tile registers, TDPBF16PS) would be faster still, but this build has no AMX kernel: amx_status()
// only reports whether one could run (the CPU's AMX-TILE/AMX-BF16 bits and Linux's arch_prctl
// permission for tile data), so that a future kernel and the warnings can say why it is not used.
#pragma once

#include <cstdint>
#include <string>

#include "core/packed_matrix.h"

namespace sambalm::ops::cpu {

// Whether this CPU can run the bf16 GEMM (AVX-512 F/BW/VL/DQ and AVX512-BF16).
bool bf16_gemm_supported();
// Whether matmul_forward_packed uses it for bf16 weights: supported and not capped by
// SAMBALM_CPU_ISA=baseline|avx2|avx512 (avx512 meaning "without the BF16 extension"), to compare the
// float32 fallback on a machine that has it. Cached after the first call.
bool bf16_gemm_enabled();
// Why bf16 prefill falls back to widening the weights to float32 for sgemm; "" when it does not.
std::string bf16_gemm_fallback_reason();

// out[m, n] for m < M over W in bf16, f16, q8 or q4 (f16 / q8 / q4: each weight rounded to bf16 after
// dequantizing; requires bf16_gemm_supported()); threads over panels of output columns and blocks of rows.
void matmul_bf16(float* out, int64_t ld_out, const float* inp, int64_t ld_inp, const PackedMatrix& W, const float* bias,
                 int64_t M);

struct AmxStatus {
  bool usable = false;
  std::string reason;  // why not, or what was granted
};
// Whether AMX-BF16 tiles could be used by this process: the CPU reports AMX-TILE and AMX-BF16, and the
// Linux kernel grants tile data (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)); asked once.
AmxStatus amx_status();

}  // namespace sambalm::ops::cpu
