// Kernels specific to decoding and chunked prefill: few rows at a time, states carried between calls.
// They follow the op conventions of ops.h (raw pointers, caller-owned buffers, no allocation).
#pragma once

#include <cstdint>

namespace sambalm::infer {

// out[m, :] = in[m, :] @ W^T (+ bias), W [N, K] in Linear layout, row strides ld_in / ld_out.
// Up to 64 rows (decode batches) a register-tiled GEMV that streams each weight once for all rows (the
// decode step is bound by reading weights); more rows are a GEMM. Like every BLAS call here, not to be called inside an
// OpenMP region.
void linear(float* out, int64_t ld_out, const float* in, int64_t ld_in, const float* W, const float* bias, int64_t M,
            int64_t K, int64_t N);
inline void linear(float* out, const float* in, const float* W, const float* bias, int64_t M, int64_t K, int64_t N) {
  linear(out, N, in, K, W, bias, M, K, N);
}

// RoPE rows for n consecutive absolute positions pos0 .. pos0 + n - 1: cos/sin[n, rope_dims / 2],
// with exactly the formula of ops::rope_table, so a token at position p gets the same rotation as
// in the one-pass forward however far p is (no table of max_context rows).
void rope_rows(float* cos, float* sin, int64_t pos0, int64_t n, int64_t rope_dims, double base, double condense_ratio);

// Attention of one chunk of C new queries over S keys stored contiguously:
//   q [H, C, hs] (ops::qkv_split_rope_forward layout), k/v [G, S, hs], out [C, H * hs].
// The keys are the last L = S - C cached positions followed by the chunk's own, so query i sits at
// key index L + i and sees indices s with L + i - window < s <= L + i (window <= 0: all s <= L + i).
void attend_chunk(float* out, const float* q, const float* k, const float* v, int64_t C, int64_t S, int64_t H,
                  int64_t G, int64_t hs, int64_t window, double scale);

// Attention of one new query per head over a ring buffer: q [H, hs], k/v rings [G, cap, hs] where
// absolute position p sits in slot p % cap; the query sees positions lo .. hi (inclusive).
void attend_ring(float* out, const float* q, const float* k, const float* v, int64_t cap, int64_t lo, int64_t hi,
                 int64_t H, int64_t G, int64_t hs, double scale);

}  // namespace sambalm::infer
