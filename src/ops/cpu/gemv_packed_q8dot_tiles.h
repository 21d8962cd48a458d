// The q8 GEMV through integer dot products (gemv_packed.h, Q8Dot) and the tile loop that q4 shares,
// included by gemv_packed_q8dot.cpp
// once per instruction set inside a namespace, after defining SAMBALM_Q8DOT (1: AVX2 vpmaddubsw,
// 2: AVX512-VNNI vpdpbusd on 256-bit vectors, 3: AVX-VNNI vpdpbusd) with <immintrin.h> included: no
// include guard, no includes of its own.
//
// One block of 32 weights is one 256-bit vector of int8, and so is the block of the activations
// quantized the same way (QuantizedRows: int8 with one float scale per block, made once per GEMV), so
//   out[b, n] = sum_blk  w_scale[n, blk] * x_scale[b, blk] * sum_{k in blk} qw[n, k] * qx[b, k]
// with the inner sum exact in int32. The unsigned-by-signed products:
//   vpdpbusd   takes the weights as unsigned by flipping their sign bit (qw + 128, one xor) and the
//              activations signed; the 128 * sum(qx) this adds per block is the same for every row, so
//              the accumulator starts from its negative (QuantizedRows::corr, spread over the 8 lanes).
//   vpmaddubsw takes |qw| and qx with qw's sign (vpsignb twice): 16-bit pair sums of at most
//              2 * 127 * 127, which do not saturate (qw + 128 would), then vpmaddwd by ones to 32 bits.
// NOLINT(build/header_guard)

// The int32 sums of one block, 8 lanes whose total is sum_k qw[k] * qx[k].
__attribute__((always_inline)) inline __m256i block_dot(__m256i qw, __m256i qx, __m256i corr) {
#if SAMBALM_Q8DOT == 1
  (void)corr;
  const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(qw, qw), _mm256_sign_epi8(qx, qw));
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
#elif SAMBALM_Q8DOT == 2
  return _mm256_dpbusd_epi32(corr, _mm256_xor_si256(qw, _mm256_set1_epi8(char(0x80))), qx);
#else
  return _mm256_dpbusd_avx_epi32(corr, _mm256_xor_si256(qw, _mm256_set1_epi8(char(0x80))), qx);
#endif
}

__attribute__((always_inline)) inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The q8 weight format: a block is 32 int8 weights, already the operand of block_dot.
struct Q8Rows {
  static constexpr int64_t kBlock = kQ8Block;
  static int64_t row_bytes(int64_t K) { return K; }
  __attribute__((always_inline)) static const uint8_t* block(const uint8_t* row, int64_t blk) {
    return row + blk * kQ8Block;
  }
  __attribute__((always_inline)) static __m256i load(const uint8_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  __attribute__((always_inline)) static __m256i corr(int32_t c) {
    return SAMBALM_Q8DOT == 1 ? _mm256_setzero_si256() : _mm256_set1_epi32(c);
  }
  __attribute__((always_inline)) static __m256i dot(__m256i qw, __m256i qx, __m256i corr) {
    return block_dot(qw, qx, corr);
  }
};

// out[b, r] for r < NR rows from n, b < NB activation rows, weights in format F (Q8Rows, or Q4Rows of
// gemv_packed_q4dot_tiles.h): F::load turns a block of a weight row into the unsigned-or-signed int8
// vector F::dot multiplies with the activations' block, F::corr the per-lane offset it starts from.
// Prefetches the same block of the next tile's rows, as the float tiles do (gemv_packed_tiles.h: short
// rows leave the hardware prefetcher behind).
template <typename F, int NR, int NB>
__attribute__((always_inline)) inline void intdot_tile(float* out, int64_t ld_out, const QuantizedRows& X, int64_t b0,
                                                       const PackedMatrix& W, int64_t n) {
  const int64_t K = W.cols, nb = W.blocks_per_row(), row_bytes = F::row_bytes(K);
  const uint8_t* w = static_cast<const uint8_t*>(W.data) + n * row_bytes;
  const float* ws = W.scales + n * nb;
  __m256 acc[NR][NB];
  for (int r = 0; r < NR; ++r)
    for (int b = 0; b < NB; ++b) acc[r][b] = _mm256_setzero_ps();
  for (int64_t blk = 0; blk < nb; ++blk) {
    __m256i qx[NB], corr[NB];
    __m256 xs[NB];
#pragma GCC unroll 8
    for (int b = 0; b < NB; ++b) {
      qx[b] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(X.q + (b0 + b) * K + blk * F::kBlock));
      corr[b] = F::corr(X.corr[(b0 + b) * nb + blk]);
      xs[b] = _mm256_set1_ps(X.scale[(b0 + b) * nb + blk]);
    }
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) {
      const uint8_t* p = F::block(w + r * row_bytes, blk);
      __builtin_prefetch(p + NR * row_bytes, 0, 0);
      const __m256i qw = F::load(p);
      const __m256 s = _mm256_set1_ps(ws[r * nb + blk]);
#pragma GCC unroll 8
      for (int b = 0; b < NB; ++b) {
        const __m256 d = _mm256_cvtepi32_ps(F::dot(qw, qx[b], corr[b]));
        acc[r][b] = _mm256_fmadd_ps(d, _mm256_mul_ps(s, xs[b]), acc[r][b]);
      }
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int b = 0; b < NB; ++b) out[b * ld_out + r] = hsum8(acc[r][b]);
}

template <typename F, int NR>
__attribute__((always_inline)) inline void intdot_row_block(float* out, int64_t ld_out, const QuantizedRows& X,
                                                            int64_t B, const PackedMatrix& W, int64_t n) {
  int64_t b = 0;
  for (; b + 3 <= B; b += 3) intdot_tile<F, NR, 3>(out + b * ld_out + n, ld_out, X, b, W, n);
  if (B - b == 2) intdot_tile<F, NR, 2>(out + b * ld_out + n, ld_out, X, b, W, n);
  if (B - b == 1) intdot_tile<F, NR, 1>(out + b * ld_out + n, ld_out, X, b, W, n);
}

// Rows [n0, n1) of out[b, :] for b < B, tiled as packed_rows (gemv_packed_tiles.h).
template <typename F>
inline void intdot_rows(float* out, int64_t ld_out, const QuantizedRows& X, int64_t B, const PackedMatrix& W,
                        int64_t n0, int64_t n1) {
  int64_t n = n0;
  if (B == 1)
    for (; n + 8 <= n1; n += 8) intdot_tile<F, 8, 1>(out + n, ld_out, X, 0, W, n);
  for (; n + 4 <= n1; n += 4) intdot_row_block<F, 4>(out, ld_out, X, B, W, n);
  for (; n < n1; ++n) intdot_row_block<F, 1>(out, ld_out, X, B, W, n);
}

inline void q8dot_rows(float* out, int64_t ld_out, const QuantizedRows& X, int64_t B, const PackedMatrix& W, int64_t n0,
                       int64_t n1) {
  intdot_rows<Q8Rows>(out, ld_out, X, B, W, n0, n1);
}
