// Matmuls over packed weights (core/packed_matrix.h: f32, bf16, f16, q8, q4), per instruction set.
// The packed kernels have their own run-time choice, separate from isa.h's (which the float32 kernels
// use), because they also have an AVX-512 build: Baseline (any x86-64), Avx2 (AVX2 + FMA + F16C) and
// Avx512 (AVX-512 F/BW/VL/DQ). SAMBALM_CPU_ISA=baseline or =avx2 caps the choice (to test or compare
// the narrower paths on a wider machine). Tests run every path that the machine supports.
#pragma once

#include <cstdint>

#include "core/packed_matrix.h"

namespace sambalm::ops::cpu {

enum class PackedIsa { Baseline, Avx2, Avx512 };

bool packed_isa_supported(PackedIsa isa);
PackedIsa packed_isa();  // the best supported one, capped by SAMBALM_CPU_ISA (cached after the first call)
const char* packed_isa_name(PackedIsa isa);

// out[m, n] = in[m, :] . W[n, :] (+ bias[n]) for m < M (any M; meant for M <= kGemvMaxRows), reading W
// in its own format with the given ISA's tiles (threads over blocks of output rows).
void gemv_packed(PackedIsa isa, float* out, int64_t ld_out, const float* in, int64_t ld_in, const PackedMatrix& W,
                 const float* bias, int64_t M);

// The q8 GEMV through integer dot products: the activations quantized once per call to int8 in blocks
// of 32 with a float scale each (as the weights are: a Q8_0 x Q8_0 product), then per block an exact
// int32 dot product times the two scales. Faster than widening the weights to float (fewer
// instructions per weight), with the activations' rounding as extra error (at most half a step of
// each activation block: |x - scale * q| <= scale / 2). Paths: Avx2 (vpmaddubsw), AvxVnni and
// Avx512Vnni (vpdpbusd, on 256-bit vectors: one block of 32 is one vector); Float is gemv_packed's
// float path. q8dot() picks the best that the CPU runs; SAMBALM_Q8_DOT=float or =avx2 caps it, and
// SAMBALM_CPU_ISA=baseline means Float. q4 weights take the same paths (q4 x q8: the codes 0..15 are
// the unsigned operand; gemv_packed_q4dot_tiles.h).
enum class Q8Dot { Float, Avx2, AvxVnni, Avx512Vnni };
bool q8dot_supported(Q8Dot dot);
Q8Dot q8dot();  // cached after the first call
const char* q8dot_name(Q8Dot dot);
// As gemv_packed, W in q8 or q4 (its rows whole blocks of 32), with the given path (one the CPU supports).
void gemv_q8dot(Q8Dot dot, float* out, int64_t ld_out, const float* in, int64_t ld_in, const PackedMatrix& W,
                const float* bias, int64_t M);
// The decoding GEMV with the run-time choices: q8 and q4 through q8dot() unless that is Float, every
// other format (and q8 / q4 then) through gemv_packed(packed_isa()).
void gemv_packed_auto(float* out, int64_t ld_out, const float* in, int64_t ld_in, const PackedMatrix& W,
                      const float* bias, int64_t M);

// dst[i, :] = W[row(i), :] in float32 for i < count, row(i) = rows ? rows[i] : first + i.
void dequantize_rows(PackedIsa isa, float* dst, const PackedMatrix& W, const int32_t* rows, int64_t first,
                     int64_t count);

}  // namespace sambalm::ops::cpu
