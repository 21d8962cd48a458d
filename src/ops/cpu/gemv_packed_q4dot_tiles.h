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

// The q4 weight format for intdot_rows (gemv_packed_q8dot_tiles.h): rows of K / 2 bytes, a block's
// 16 bytes unpacked into its 32 codes, corr4 = corr / 16.
struct Q4Rows {
  static constexpr int64_t kBlock = kQ4Block;
  static int64_t row_bytes(int64_t K) { return K / 2; }
  __attribute__((always_inline)) static const uint8_t* block(const uint8_t* row, int64_t blk) {
    return row + blk * (kQ4Block / 2);
  }
  __attribute__((always_inline)) static __m256i load(const uint8_t* p) { return q4_codes(p); }
  __attribute__((always_inline)) static __m256i corr(int32_t c) { return _mm256_set1_epi32(c / 16); }
  __attribute__((always_inline)) static __m256i dot(__m256i q, __m256i qx, __m256i corr4) {
    return q4_block_dot(q, qx, corr4);
  }
};

inline void q4dot_rows(float* out, int64_t ld_out, const QuantizedRows& X, int64_t B, const PackedMatrix& W, int64_t n0,
                       int64_t n1) {
  intdot_rows<Q4Rows>(out, ld_out, X, B, W, n0, n1);
}
