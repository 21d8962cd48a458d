// The q4 GEMV through integer dot products (gemv_packed.h, Q8Dot), included by gemv_packed_q8dot.cpp
// after gemv_packed_q8dot_tiles.h in each instruction set's namespace (SAMBALM_Q8DOT as there): no
// include guard, no includes of its own.
//
// A q4 block's 16 bytes become one 256-bit vector of its 32 codes 0..15 in weight order (low nibbles,
// then high ones: one shift and two masks), which is already the unsigned operand that vpdpbusd and
// vpmaddubsw take, beside the activations' int8 block (QuantizedRows, as for q8). With w = q - 8:
//   sum_k (q[k] - 8) * qx[k] = sum_k q[k] * qx[k] - 8 * sum_k qx[k]
// and the second term is QuantizedRows::corr / 16 per lane (corr holds -16 * sum qx per lane, for q8's
// offset of 128), exact in int32. vpmaddubsw's pair sums are at most 2 * 15 * 127: no saturation.
// NOLINT(build/header_guard)

__attribute__((always_inline)) inline __m256i q4_codes(const uint8_t* p) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i m = _mm_set1_epi8(15);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}

// 8 int32 lanes whose total is sum_k (q[k] - 8) * qx[k] over one block (corr4: -sum qx per lane).
__attribute__((always_inline)) inline __m256i q4_block_dot(__m256i q, __m256i qx, __m256i corr4) {
#if SAMBALM_Q8DOT == 1
  return _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(q, qx), _mm256_set1_epi16(1)), corr4);
#elif SAMBALM_Q8DOT == 2
  return _mm256_dpbusd_epi32(corr4, q, qx);
#else
  return _mm256_dpbusd_avx_epi32(corr4, q, qx);
#endif
}

// As q8dot_tile (gemv_packed_q8dot_tiles.h), over q4 rows of K / 2 bytes.
template <int NR, int NB>
__attribute__((always_inline)) inline void q4dot_tile(float* out, int64_t ld_out, const QuantizedRows& X, int64_t b0,
                                                      const PackedMatrix& W, int64_t n) {
  const int64_t K = W.cols, nb = W.blocks_per_row(), row_bytes = K / 2;
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
      qx[b] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(X.q + (b0 + b) * K + blk * kQ4Block));
      corr[b] = _mm256_set1_epi32(X.corr[(b0 + b) * nb + blk] / 16);
      xs[b] = _mm256_set1_ps(X.scale[(b0 + b) * nb + blk]);
    }
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) {
      const uint8_t* p = w + r * row_bytes + blk * (kQ4Block / 2);
      __builtin_prefetch(p + NR * row_bytes, 0, 0);
      const __m256i q = q4_codes(p);
      const __m256 s = _mm256_set1_ps(ws[r * nb + blk]);
#pragma GCC unroll 8
      for (int b = 0; b < NB; ++b) {
        const __m256 d = _mm256_cvtepi32_ps(q4_block_dot(q, qx[b], corr[b]));
        acc[r][b] = _mm256_fmadd_ps(d, _mm256_mul_ps(s, xs[b]), acc[r][b]);
      }
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int b = 0; b < NB; ++b) out[b * ld_out + r] = hsum8(acc[r][b]);
}

template <int NR>
__attribute__((always_inline)) inline void q4dot_row_block(float* out, int64_t ld_out, const QuantizedRows& X,
                                                           int64_t B, const PackedMatrix& W, int64_t n) {
  int64_t b = 0;
  for (; b + 3 <= B; b += 3) q4dot_tile<NR, 3>(out + b * ld_out + n, ld_out, X, b, W, n);
  if (B - b == 2) q4dot_tile<NR, 2>(out + b * ld_out + n, ld_out, X, b, W, n);
  if (B - b == 1) q4dot_tile<NR, 1>(out + b * ld_out + n, ld_out, X, b, W, n);
}

// Rows [n0, n1) of out[b, :] for b < B, tiled as q8dot_rows.
inline void q4dot_rows(float* out, int64_t ld_out, const QuantizedRows& X, int64_t B, const PackedMatrix& W, int64_t n0,
                       int64_t n1) {
  int64_t n = n0;
  if (B == 1)
    for (; n + 8 <= n1; n += 8) q4dot_tile<8, 1>(out + n, ld_out, X, 0, W, n);
  for (; n + 4 <= n1; n += 4) q4dot_row_block<4>(out, ld_out, X, B, W, n);
  for (; n < n1; ++n) q4dot_row_block<1>(out, ld_out, X, B, W, n);
}
