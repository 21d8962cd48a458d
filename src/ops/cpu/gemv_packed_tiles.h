// The small-batch GEMV and the row dequantizer over packed weights (core/packed_matrix.h), included by
// gemv_packed.cpp once per instruction set (inside a namespace, after defining SAMBALM_VW, the float
// lanes of a vector: 8 for the baseline and AVX2 builds, 16 for AVX-512) and SAMBALM_PACKED_LEVEL
// (0 generic, 1 AVX2, 2 AVX-512; <immintrin.h> included before): no include guard, no includes of its own. The generic
// vector code below becomes, per build:
//   bf16 -> f32: zero-extend 16 -> 32 bits and shift left by 16 (vpmovzxwd + vpslld)
//   f16  -> f32: vcvtph2ps (F16C; the baseline build converts lane by lane)
//   int8 -> f32: vpmovsxbd + vcvtdq2ps, then times the block's scale
//   q4 -> f32:   vpmovzxbd of kVW bytes, a shift (high nibbles) and a mask, minus 8, vcvtdq2ps, times
//                the block's scale
// (through intrinsics in the x86 builds, where GCC's generic conversions go in halves or lane by lane).
// so each weight is read once in its own size and widened in registers.
// NOLINT(build/header_guard)

using vf = float __attribute__((vector_size(SAMBALM_VW * 4)));
using vu16 = uint16_t __attribute__((vector_size(SAMBALM_VW * 2)));
using vu32 = uint32_t __attribute__((vector_size(SAMBALM_VW * 4)));
using vi8 = int8_t __attribute__((vector_size(SAMBALM_VW)));
using vu8 = uint8_t __attribute__((vector_size(SAMBALM_VW)));
using vi32 = int32_t __attribute__((vector_size(SAMBALM_VW * 4)));
using vh = _Float16 __attribute__((vector_size(SAMBALM_VW * 2)));
constexpr int kVW = SAMBALM_VW;

template <typename V, typename E>
__attribute__((always_inline)) inline V load_vec(const E* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

// One format's elements: `vec(p)` converts kVW consecutive weights at p, `one(p)` a single one.
template <MatrixFormat F>
struct Fmt;
template <>
struct Fmt<MatrixFormat::F32> {
  using E = float;
  __attribute__((always_inline)) static vf vec(const E* p) { return load_vec<vf>(p); }
  static float one(const E* p) { return *p; }
};
template <>
struct Fmt<MatrixFormat::BF16> {
  using E = uint16_t;
  // One vpmovzxwd from memory and a shift, said explicitly: GCC 12 widens a 16-bit vector in halves.
  __attribute__((always_inline)) static vf vec(const E* p) {
#if SAMBALM_PACKED_LEVEL == 2
    const vu32 w = (vu32)_mm512_maskz_cvtepu16_epi32(0xffff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return (vf)(w << 16);
#elif SAMBALM_PACKED_LEVEL == 1
    const vu32 w = (vu32)_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return (vf)(w << 16);
#else
    const vu32 w = __builtin_convertvector(load_vec<vu16>(p), vu32) << 16;
    return (vf)w;  // the same 32-bit lanes, read as floats
#endif
  }
  static float one(const E* p) {
    const uint32_t u = uint32_t(*p) << 16;
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
  }
};
template <>
struct Fmt<MatrixFormat::F16> {
  using E = uint16_t;
  // vcvtph2ps (F16C) said explicitly: GCC 12 converts a _Float16 vector one lane at a time.
  __attribute__((always_inline)) static vf vec(const E* p) {
#if SAMBALM_PACKED_LEVEL == 2
    return (vf)_mm512_maskz_cvtph_ps(0xffff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
#elif SAMBALM_PACKED_LEVEL == 1
    return (vf)_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#else
    return __builtin_convertvector(load_vec<vh>(p), vf);
#endif
  }
  static float one(const E* p) {
    _Float16 h;
    __builtin_memcpy(&h, p, 2);
    return float(h);
  }
};
template <>
struct Fmt<MatrixFormat::Q8> {  // unscaled: the tile multiplies by the block's scale
  using E = int8_t;
  // GCC's generic int8 -> int32 widening goes lane by lane through general registers, so the x86
  // builds say vpmovsxbd themselves.
  __attribute__((always_inline)) static vf vec(const E* p) {
#if SAMBALM_PACKED_LEVEL == 2
    // (The maskz form with every lane on: the unmasked intrinsic trips GCC 12's -Wmaybe-uninitialized.)
    const __m512i w = _mm512_maskz_cvtepi8_epi32(0xffff, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return __builtin_convertvector((vi32)w, vf);
#elif SAMBALM_PACKED_LEVEL == 1
    const __m256i w = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    return __builtin_convertvector((vi32)w, vf);
#else
    return __builtin_convertvector(__builtin_convertvector(load_vec<vi8>(p), vi32), vf);
#endif
  }
  static float one(const E* p) { return float(*p); }
};

template <>
struct Fmt<MatrixFormat::Q4> {  // unscaled codes minus 8: the tile multiplies by the block's scale
  using E = uint8_t;
  // kVW consecutive bytes at p, their low (shift 0) or high (shift 4) nibbles, as q - 8 in float.
  __attribute__((always_inline)) static vf nibbles(const E* p, int shift) {
#if SAMBALM_PACKED_LEVEL == 2
    const vi32 w = (vi32)_mm512_maskz_cvtepu8_epi32(0xffff, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#elif SAMBALM_PACKED_LEVEL == 1
    const vi32 w = (vi32)_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
#else
    const vi32 w = __builtin_convertvector(load_vec<vu8>(p), vi32);
#endif
    return __builtin_convertvector(((w >> shift) & 15) - 8, vf);
  }
};
// Piece j (of kQ4Block / kVW) of a q4 block: its kVW weights start at weight j * kVW of the block and
// are the nibbles q4_shift(j) of the block's bytes from q4_byte(j) (weights 0..15 low, 16..31 high).
constexpr int64_t q4_byte(int64_t j) { return (j % (16 / kVW)) * kVW; }
constexpr int q4_shift(int64_t j) { return int(j / (16 / kVW)) * 4; }

__attribute__((always_inline)) inline float hsum(vf v) {
  float s = 0;
  for (int l = 0; l < kVW; ++l) s += v[l];
  return s;
}

// out[b, r] = W[n + r, :] . X[b, :] for r < NR, b < NB. Each step also prefetches the same columns of
// the next tile's rows (NR rows further on): the rows of a narrow format are short (768 bytes for a q8
// row of 768), too short for the hardware prefetcher to ramp up on each, and the next tile is exactly
// what it cannot guess. Measured from DRAM on one core (48 matrices of 3072 x 768): bf16 37-42 -> 23 ms,
// f16 33-37 -> 27 ms, q8 27-29 -> 19 ms. (Past the matrix's end it is harmless: prefetches never fault.) Float formats:
// kVW weights of each row per step, each converted piece multiplied into NB accumulators (as gemv_tiles.h does for
// float32), the K % kVW tail in scalar code. Q8 (K a multiple of kQ8Block, checked at load): the converted piece times
// the row's block scale, so the accumulators hold float sums of dequantized weights.
template <MatrixFormat F, int NR, int NB>
__attribute__((always_inline)) inline void packed_tile(float* out, int64_t ld_out, const float* X, int64_t ld_x,
                                                       const PackedMatrix& W, int64_t n) {
  using E = typename Fmt<F>::E;
  const int64_t K = W.cols;
  const E* w = static_cast<const E*>(W.data) + n * (F == MatrixFormat::Q4 ? K / 2 : K);
  vf acc[NR][NB] = {};
  int64_t k = 0;
  if constexpr (F == MatrixFormat::Q8) {
    const int64_t nb = W.blocks_per_row();
    const float* sc = W.scales + n * nb;
    for (int64_t blk = 0; blk < nb; ++blk) {
      vf s[NR];
#pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) s[r] = vf{} + sc[r * nb + blk];
#pragma GCC unroll 4
      for (int64_t kk = blk * kQ8Block; kk < (blk + 1) * kQ8Block; kk += kVW) {
        vf x[NB];
#pragma GCC unroll 8
        for (int b = 0; b < NB; ++b) x[b] = load_vec<vf>(X + b * ld_x + kk);
#pragma GCC unroll 16
        for (int r = 0; r < NR; ++r) {
          __builtin_prefetch(w + (r + NR) * K + kk, 0, 0);
          const vf wv = Fmt<F>::vec(w + r * K + kk) * s[r];
#pragma GCC unroll 8
          for (int b = 0; b < NB; ++b) acc[r][b] += wv * x[b];
        }
      }
    }
    k = nb * kQ8Block;
  } else if constexpr (F == MatrixFormat::Q4) {
    const int64_t nb = W.blocks_per_row(), row_bytes = K / 2;
    const float* sc = W.scales + n * nb;
    for (int64_t blk = 0; blk < nb; ++blk) {
      vf s[NR];
#pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) s[r] = vf{} + sc[r * nb + blk];
#pragma GCC unroll 4
      for (int64_t j = 0; j < kQ4Block / kVW; ++j) {
        const int64_t kk = blk * kQ4Block + j * kVW;
        vf x[NB];
#pragma GCC unroll 8
        for (int b = 0; b < NB; ++b) x[b] = load_vec<vf>(X + b * ld_x + kk);
#pragma GCC unroll 16
        for (int r = 0; r < NR; ++r) {
          const E* p = w + r * row_bytes + blk * (kQ4Block / 2) + q4_byte(j);
          __builtin_prefetch(p + NR * row_bytes, 0, 0);
          const vf wv = Fmt<F>::nibbles(p, q4_shift(j)) * s[r];
#pragma GCC unroll 8
          for (int b = 0; b < NB; ++b) acc[r][b] += wv * x[b];
        }
      }
    }
    k = K;
  } else {
    for (; k + kVW <= K; k += kVW) {
      vf x[NB];
#pragma GCC unroll 8
      for (int b = 0; b < NB; ++b) x[b] = load_vec<vf>(X + b * ld_x + k);
#pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) {
        __builtin_prefetch(w + (r + NR) * K + k, 0, 0);
        const vf wv = Fmt<F>::vec(w + r * K + k);
#pragma GCC unroll 8
        for (int b = 0; b < NB; ++b) acc[r][b] += wv * x[b];
      }
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int b = 0; b < NB; ++b) {
      float s = hsum(acc[r][b]);
      if constexpr (F != MatrixFormat::Q4)  // (q4 rows are whole blocks: no tail)
        for (int64_t kk = k; kk < K; ++kk) s += Fmt<F>::one(w + r * K + kk) * X[b * ld_x + kk];
      out[b * ld_out + r] = s;
    }
}

template <MatrixFormat F, int NR>
__attribute__((always_inline)) inline void packed_row_block(float* out, int64_t ld_out, const float* X, int64_t ld_x,
                                                            int64_t B, const PackedMatrix& W, int64_t n) {
  int64_t b = 0;
  for (; b + 3 <= B; b += 3) packed_tile<F, NR, 3>(out + b * ld_out + n, ld_out, X + b * ld_x, ld_x, W, n);
  if (B - b == 2) packed_tile<F, NR, 2>(out + b * ld_out + n, ld_out, X + b * ld_x, ld_x, W, n);
  if (B - b == 1) packed_tile<F, NR, 1>(out + b * ld_out + n, ld_out, X + b * ld_x, ld_x, W, n);
}

// Rows [n0, n1) of out[b, :] for all b < B: as gemv_rows (gemv_tiles.h), 8 rows at a time for one
// sequence (8 weight streams in flight), 4 rows x 3 sequences otherwise, single rows at the end.
template <MatrixFormat F>
void packed_rows(float* out, int64_t ld_out, const float* X, int64_t ld_x, int64_t B, const PackedMatrix& W, int64_t n0,
                 int64_t n1) {
  int64_t n = n0;
  if (B == 1)
    for (; n + 8 <= n1; n += 8) packed_tile<F, 8, 1>(out + n, ld_out, X, ld_x, W, n);
  for (; n + 4 <= n1; n += 4) packed_row_block<F, 4>(out, ld_out, X, ld_x, B, W, n);
  for (; n < n1; ++n) packed_row_block<F, 1>(out, ld_out, X, ld_x, B, W, n);
}

// dst[i, :] = W[row(i), :] as float32 for i < count, row(i) = rows ? rows[i] : first + i.
template <MatrixFormat F>
void dequantize_rows(float* dst, const PackedMatrix& W, const int32_t* rows, int64_t first, int64_t count) {
  using E = typename Fmt<F>::E;
  const int64_t K = W.cols;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t n = rows ? rows[i] : first + i;
    const E* w = static_cast<const E*>(W.data) + n * (F == MatrixFormat::Q4 ? K / 2 : K);
    float* d = dst + i * K;
    int64_t k = 0;
    if constexpr (F == MatrixFormat::Q4) {
      const int64_t nb = W.blocks_per_row();
      for (int64_t blk = 0; blk < nb; ++blk) {
        const vf s = vf{} + W.scales[n * nb + blk];
        for (int64_t j = 0; j < kQ4Block / kVW; ++j) {
          const vf v = Fmt<F>::nibbles(w + blk * (kQ4Block / 2) + q4_byte(j), q4_shift(j)) * s;
          __builtin_memcpy(d + blk * kQ4Block + j * kVW, &v, sizeof v);
        }
      }
    } else if constexpr (F == MatrixFormat::Q8) {
      const int64_t nb = W.blocks_per_row();
      for (int64_t blk = 0; blk < nb; ++blk) {
        const vf s = vf{} + W.scales[n * nb + blk];
        for (int64_t kk = blk * kQ8Block; kk < (blk + 1) * kQ8Block; kk += kVW) {
          const vf v = Fmt<F>::vec(w + kk) * s;
          __builtin_memcpy(d + kk, &v, sizeof v);
        }
      }
    } else {
      for (; k + kVW <= K; k += kVW) {
        const vf v = Fmt<F>::vec(w + k);
        __builtin_memcpy(d + k, &v, sizeof v);
      }
      for (; k < K; ++k) d[k] = Fmt<F>::one(w + k);
    }
  }
}

// The entry points of this build, by format.
using RowsFn = void (*)(float*, int64_t, const float*, int64_t, int64_t, const PackedMatrix&, int64_t, int64_t);
using DequantFn = void (*)(float*, const PackedMatrix&, const int32_t*, int64_t, int64_t);
inline RowsFn rows_fn(MatrixFormat f) {
  switch (f) {
    case MatrixFormat::F32:
      return packed_rows<MatrixFormat::F32>;
    case MatrixFormat::BF16:
      return packed_rows<MatrixFormat::BF16>;
    case MatrixFormat::F16:
      return packed_rows<MatrixFormat::F16>;
    case MatrixFormat::Q8:
      return packed_rows<MatrixFormat::Q8>;
    case MatrixFormat::Q4:
      return packed_rows<MatrixFormat::Q4>;
  }
  return nullptr;
}
inline DequantFn dequant_fn(MatrixFormat f) {
  switch (f) {
    case MatrixFormat::F32:
      return dequantize_rows<MatrixFormat::F32>;
    case MatrixFormat::BF16:
      return dequantize_rows<MatrixFormat::BF16>;
    case MatrixFormat::F16:
      return dequantize_rows<MatrixFormat::F16>;
    case MatrixFormat::Q8:
      return dequantize_rows<MatrixFormat::Q8>;
    case MatrixFormat::Q4:
      return dequantize_rows<MatrixFormat::Q4>;
  }
  return nullptr;
}
