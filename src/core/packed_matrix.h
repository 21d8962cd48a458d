// A weight matrix kept for inference in the format it was stored in (docs/FORMATS.md, "Weight formats
// for inference"): float32, bfloat16, float16, Q8 (int8 in blocks of kQ8Block weights along the
// input dimension, one float scale per block: w = scale[n, k / 32] * q[n, k], as GGUF's Q8_0) or Q4
// (4-bit codes 0..15 in the same blocks, two per byte: w = scale[n, k / 32] * (q[n, k] - 8), as GGUF's
// Q4_0; in each block's 16 bytes, byte i holds weight i in its low nibble and weight i + 16 in its high).
// The small-batch matmul reads it directly and converts in registers (ops::matmul_forward_packed), so
// decoding reads 2 or about 1 byte per weight instead of 4. Rows are the output dimension (PyTorch
// Linear layout [N, K]); the embedding table is one too ([V, d], a row per token).
#pragma once

#include <cstdint>
#include <vector>

namespace sambalm {

enum class MatrixFormat : uint8_t { F32, BF16, F16, Q8, Q4 };

inline constexpr int64_t kQ8Block = 32;        // weights per scale, along K (the only block size allowed)
inline constexpr int64_t kQ4Block = kQ8Block;  // the same blocks (blocks_per_row serves both)

// Whether the format has block scales (and needs rows of whole blocks).
inline bool is_block_format(MatrixFormat f) { return f == MatrixFormat::Q8 || f == MatrixFormat::Q4; }

inline const char* matrix_format_name(MatrixFormat f) {
  switch (f) {
    case MatrixFormat::F32:
      return "f32";
    case MatrixFormat::BF16:
      return "bf16";
    case MatrixFormat::F16:
      return "f16";
    case MatrixFormat::Q8:
      return "q8";
    case MatrixFormat::Q4:
      return "q4";
  }
  return "?";
}

// A view: the bytes belong to whoever made it (PackedWeights, model/packed_weights.h).
struct PackedMatrix {
  MatrixFormat format = MatrixFormat::F32;
  int64_t rows = 0, cols = 0;     // N, K
  const void* data = nullptr;     // rows * cols elements: float, bf16 / f16 bits (uint16_t), int8, or
                                  // for Q4 rows * cols / 2 bytes of nibble pairs
  const float* scales = nullptr;  // Q8, Q4: [rows, cols / kQ8Block]
  int64_t blocks_per_row() const { return cols / kQ8Block; }
  // Bytes of `data` (without the scales).
  int64_t data_bytes() const {
    const int64_t n = rows * cols;
    switch (format) {
      case MatrixFormat::F32:
        return 4 * n;
      case MatrixFormat::BF16:
      case MatrixFormat::F16:
        return 2 * n;
      case MatrixFormat::Q8:
        return n;
      case MatrixFormat::Q4:
        return n / 2;
    }
    return 0;
  }
  // Bytes a pass over the matrix reads (data and scales).
  int64_t bytes() const { return data_bytes() + (is_block_format(format) ? 4 * rows * blocks_per_row() : 0); }
};

// A packed matrix with its own storage (packed_matrix.cpp).
struct OwnedPackedMatrix {
  std::vector<uint8_t> bytes;
  std::vector<float> scales;
  PackedMatrix view;
};
// Converts w[rows, cols] (float32) to `format`: bf16 and f16 round to nearest even; Q8 (cols a multiple
// of kQ8Block) takes each block's scale = max|w| / 127 rounded to float16 (the file stores it so; the
// same value in memory, so a written and re-read matrix is bit-identical) and q = round(w / scale) in
// [-127, 127]. Q4 (the same blocks) as GGUF's Q4_0: the block's weight of largest magnitude m gives
// scale = -m / 8 (rounded to float16 as well) and q = round(w / scale) + 8 clamped to [0, 15], so m
// itself is exact (code 0) and the codes use all 16 levels.
OwnedPackedMatrix pack_matrix(const float* w, int64_t rows, int64_t cols, MatrixFormat format);
// W[n, k] dequantized (exact: the value every kernel multiplies by).
float packed_value(const PackedMatrix& W, int64_t n, int64_t k);

}  // namespace sambalm
