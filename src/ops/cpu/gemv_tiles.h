// The small-batch GEMV of matmul_forward, included by gemv.cpp once per instruction set
// (inside a namespace and, for AVX2, a target pragma): no include guard, no includes of its own.
// NOLINT(build/header_guard)

// Small-batch GEMV: out[b, n] = W[n, :] . X[b, :] for rows n in [n0, n1) and all b < B.
// Register tiles of NR weight rows x NB batch rows, 8 lanes of k at a time: each 8-float piece of a
// weight row is loaded once and multiplied into NB accumulators, each piece of x once into NR. With
// NR = 4, NB = 3 that is 12 accumulators + 3 x + 1 w = 16 vector registers (AVX2 has 16), 7 loads
// per 12 FMAs; the weights stream from memory once per call whatever B is, so up to B of about 16
// the step stays bound by reading the weights rather than by arithmetic.
using v8 = float __attribute__((vector_size(32)));

__attribute__((always_inline)) inline v8 load8(const float* p) {
  v8 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

template <int NR, int NB>
__attribute__((always_inline)) inline void gemv_tile(float* out, int64_t ld_out, const float* X, int64_t ld_x,
                                                     const float* W, int64_t K) {
  v8 acc[NR][NB] = {};  // fully unrolled loops below keep these in registers
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    v8 x[NB];
#pragma GCC unroll 8
    for (int b = 0; b < NB; ++b) x[b] = load8(X + b * ld_x + k);
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      const v8 w = load8(W + r * K + k);
#pragma GCC unroll 8
      for (int b = 0; b < NB; ++b) acc[r][b] += w * x[b];
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int b = 0; b < NB; ++b) {
      float s = 0;
      for (int l = 0; l < 8; ++l) s += acc[r][b][l];
      for (int64_t kk = k; kk < K; ++kk) s += W[r * K + kk] * X[b * ld_x + kk];
      out[b * ld_out + r] = s;
    }
}

template <int NR>
__attribute__((always_inline)) inline void gemv_row_block(float* out, int64_t ld_out, const float* X, int64_t ld_x,
                                                          int64_t B, const float* W, int64_t K) {
  int64_t b = 0;
  for (; b + 3 <= B; b += 3) gemv_tile<NR, 3>(out + b * ld_out, ld_out, X + b * ld_x, ld_x, W, K);
  if (B - b == 2) gemv_tile<NR, 2>(out + b * ld_out, ld_out, X + b * ld_x, ld_x, W, K);
  if (B - b == 1) gemv_tile<NR, 1>(out + b * ld_out, ld_out, X + b * ld_x, ld_x, W, K);
}

inline void gemv_rows(float* out, int64_t ld_out, const float* X, int64_t ld_x, int64_t B, const float* W, int64_t n0,
                      int64_t n1, int64_t K) {
  int64_t n = n0;
  // One sequence: 8 weight rows at a time, 8 streams in flight (one row each), which is what it takes
  // to reach the memory's bandwidth; with more sequences 4 rows x 3 sequences keep the FMAs busy.
  if (B == 1)
    for (; n + 8 <= n1; n += 8) gemv_tile<8, 1>(out + n, ld_out, X, ld_x, W + n * K, K);
  for (; n + 4 <= n1; n += 4) gemv_row_block<4>(out + n, ld_out, X, ld_x, B, W + n * K, K);
  for (; n < n1; ++n) gemv_row_block<1>(out + n, ld_out, X, ld_x, B, W + n * K, K);
}
