#include "core/packed_matrix.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"

namespace sambalm {

OwnedPackedMatrix pack_matrix(const float* w, int64_t rows, int64_t cols, MatrixFormat format) {
  OwnedPackedMatrix m;
  const size_t n = static_cast<size_t>(rows * cols);
  switch (format) {
    case MatrixFormat::F32:
      m.bytes.resize(n * 4);
      std::memcpy(m.bytes.data(), w, n * 4);
      break;
    case MatrixFormat::BF16:
    case MatrixFormat::F16: {
      m.bytes.resize(n * 2);
      convert_from_f32(w, format == MatrixFormat::BF16 ? DType::BF16 : DType::F16, m.bytes.data(), n);
      break;
    }
    case MatrixFormat::Q8: {
      SAMBALM_CHECK(cols % kQ8Block == 0, "q8: a row of {} weights is not a whole number of blocks of {}", cols,
                    kQ8Block);
      const int64_t nb = cols / kQ8Block;
      m.bytes.resize(n);
      m.scales.resize(static_cast<size_t>(rows * nb));
      auto* q = reinterpret_cast<int8_t*>(m.bytes.data());
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t b = 0; b < nb; ++b) {
          const float* src = w + r * cols + b * kQ8Block;
          float amax = 0;
          for (int64_t i = 0; i < kQ8Block; ++i) amax = std::max(amax, std::fabs(src[i]));
          const float scale = f16_to_f32(f32_to_f16(amax / 127.0f));
          m.scales[static_cast<size_t>(r * nb + b)] = scale;
          const float inv = scale > 0 ? 1.0f / scale : 0.0f;
          for (int64_t i = 0; i < kQ8Block; ++i)
            q[r * cols + b * kQ8Block + i] =
                static_cast<int8_t>(std::clamp(std::nearbyint(src[i] * inv), -127.0f, 127.0f));
        }
      break;
    }
    case MatrixFormat::Q4: {
      SAMBALM_CHECK(cols % kQ4Block == 0, "q4: a row of {} weights is not a whole number of blocks of {}", cols,
                    kQ4Block);
      const int64_t nb = cols / kQ4Block;
      m.bytes.assign(n / 2, 0);
      m.scales.resize(static_cast<size_t>(rows * nb));
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t b = 0; b < nb; ++b) {
          const float* src = w + r * cols + b * kQ4Block;
          float big = 0;  // the weight of largest magnitude, with its sign
          for (int64_t i = 0; i < kQ4Block; ++i)
            if (std::fabs(src[i]) > std::fabs(big)) big = src[i];
          const float scale = f16_to_f32(f32_to_f16(big / -8.0f));
          m.scales[static_cast<size_t>(r * nb + b)] = scale;
          const float inv = scale != 0 ? 1.0f / scale : 0.0f;
          uint8_t* dst = m.bytes.data() + (r * cols + b * kQ4Block) / 2;
          for (int64_t i = 0; i < kQ4Block; ++i) {
            const auto q = static_cast<uint8_t>(std::clamp(std::nearbyint(src[i] * inv) + 8.0f, 0.0f, 15.0f));
            dst[i % 16] |= static_cast<uint8_t>(i < 16 ? q : q << 4);
          }
        }
      break;
    }
  }
  m.view = {format, rows, cols, m.bytes.data(), m.scales.empty() ? nullptr : m.scales.data()};
  return m;
}

float packed_value(const PackedMatrix& W, int64_t n, int64_t k) {
  const int64_t i = n * W.cols + k;
  switch (W.format) {
    case MatrixFormat::F32:
      return static_cast<const float*>(W.data)[i];
    case MatrixFormat::BF16:
      return bf16_to_f32(static_cast<const uint16_t*>(W.data)[i]);
    case MatrixFormat::F16:
      return f16_to_f32(static_cast<const uint16_t*>(W.data)[i]);
    case MatrixFormat::Q8:
      return W.scales[n * W.blocks_per_row() + k / kQ8Block] * float(static_cast<const int8_t*>(W.data)[i]);
    case MatrixFormat::Q4: {
      const uint8_t byte = static_cast<const uint8_t*>(W.data)[(i - k % kQ4Block) / 2 + k % 16];
      const int q = (k % kQ4Block) < 16 ? byte & 15 : byte >> 4;
      return W.scales[n * W.blocks_per_row() + k / kQ4Block] * float(q - 8);
    }
  }
  return 0;
}

}  // namespace sambalm
