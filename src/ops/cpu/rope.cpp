// Rotary position embedding (GPT-NeoX "rotate halves") and the split of the fused qkv projection.
//
// Table, for position p and frequency i < half = rope_dims / 2:
//   angle(p, i) = (p / condense_ratio) * base^(-2i / rope_dims)       (computed in double)
//   cos[p, i] = cos(angle), sin[p, i] = sin(angle)
// Rotation of one head x[hs] at position p (dims >= 2 * half pass through unchanged):
//   out[i]        = x[i] cos - x[i + half] sin
//   out[i + half] = x[i + half] cos + x[i] sin
// Its transpose, for the backward pass:
//   dx[i]        =  dout[i] cos + dout[i + half] sin
//   dx[i + half] = -dout[i] sin + dout[i + half] cos
//
// Fused qkv row of one token (lit_gpt grouped layout), G groups of (q_per_kv + 2) heads of hs:
//   [g0: q_0 .. q_{qpk-1}, k, v | g1: ... ]      query head h = g * qpk + j
#include <cmath>
#include <cstdint>

#include "ops/cpu/cpu_ops.h"

namespace sambalm::ops::cpu {

namespace {

// Row r of cos/sin for absolute position p: angle(p, i) = (p / condense_ratio) * base^(-2i / rope_dims),
// in double, rounded to T once.
template <typename T>
void rope_row(T* cos, T* sin, int64_t p, int64_t rope_dims, double base, double condense_ratio) {
  const int64_t half = rope_dims / 2;
  const double pos = double(p) / condense_ratio;
  for (int64_t i = 0; i < half; ++i) {
    const double angle = pos * std::pow(base, -2.0 * double(i) / double(rope_dims));
    cos[i] = T(std::cos(angle));
    sin[i] = T(std::sin(angle));
  }
}

template <typename T>
void rope_table_impl(T* cos, T* sin, int64_t max_pos, int64_t rope_dims, double base, double condense_ratio) {
  const int64_t half = rope_dims / 2;
  for (int64_t p = 0; p < max_pos; ++p) rope_row(cos + p * half, sin + p * half, p, rope_dims, base, condense_ratio);
}

// dst = RoPE(src) for one head; c, s are the table rows of its position (nullptr: copy only).
template <typename T>
inline void rotate(T* dst, const T* src, const T* c, const T* s, int64_t half, int64_t hs) {
  int64_t i0 = 0;
  if (c) {
    for (int64_t i = 0; i < half; ++i) {
      const T x1 = src[i], x2 = src[i + half];
      dst[i] = x1 * c[i] - x2 * s[i];
      dst[i + half] = x2 * c[i] + x1 * s[i];
    }
    i0 = 2 * half;
  }
  for (int64_t i = i0; i < hs; ++i) dst[i] = src[i];
}

// dst += RoPE^T(src): the gradient of one head mapped back through the rotation.
template <typename T>
inline void rotate_back_add(T* dst, const T* src, const T* c, const T* s, int64_t half, int64_t hs) {
  int64_t i0 = 0;
  if (c) {
    for (int64_t i = 0; i < half; ++i) {
      const T d1 = src[i], d2 = src[i + half];
      dst[i] += d1 * c[i] + d2 * s[i];
      dst[i + half] += d2 * c[i] - d1 * s[i];
    }
    i0 = 2 * half;
  }
  for (int64_t i = i0; i < hs; ++i) dst[i] += src[i];
}

}  // namespace

void rope_table(float* cos, float* sin, int64_t max_pos, int64_t rope_dims, double base, double condense_ratio) {
  rope_table_impl(cos, sin, max_pos, rope_dims, base, condense_ratio);
}
void rope_table(double* cos, double* sin, int64_t max_pos, int64_t rope_dims, double base, double condense_ratio) {
  rope_table_impl(cos, sin, max_pos, rope_dims, base, condense_ratio);
}

template <typename T>
void rope_at_positions(T* cos, T* sin, const int64_t* pos, int64_t B, int64_t L, int64_t rope_dims, double base,
                       double condense_ratio) {
  const int64_t half = rope_dims / 2;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t)
      rope_row(cos + (b * L + t) * half, sin + (b * L + t) * half, pos[b] + t, rope_dims, base, condense_ratio);
}

template <typename T>
void qkv_split_rope_forward(T* q, T* k, T* v, const T* qkv, const T* cos, const T* sin, int64_t B, int64_t Tn,
                            int64_t H, int64_t G, int64_t hs, int64_t rope_dims, int64_t pos0, int64_t cs_batch_rows) {
  const int64_t qpk = H / G, row = (H + 2 * G) * hs, half = rope_dims / 2;
#pragma omp parallel for collapse(2) schedule(static) if (B * Tn * row > (1 << 15))
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < Tn; ++t) {
      const T* src = qkv + (b * Tn + t) * row;
      const T* c = half > 0 ? cos + (b * cs_batch_rows + pos0 + t) * half : nullptr;
      const T* s = half > 0 ? sin + (b * cs_batch_rows + pos0 + t) * half : nullptr;
      for (int64_t g = 0; g < G; ++g) {
        const T* grp = src + g * (qpk + 2) * hs;
        for (int64_t j = 0; j < qpk; ++j) {
          const int64_t h = g * qpk + j;
          rotate(q + ((b * H + h) * Tn + t) * hs, grp + j * hs, c, s, half, hs);
        }
        rotate(k + ((b * G + g) * Tn + t) * hs, grp + qpk * hs, c, s, half, hs);
        rotate(v + ((b * G + g) * Tn + t) * hs, grp + (qpk + 1) * hs, (const T*)nullptr, (const T*)nullptr, 0, hs);
      }
    }
  }
}

template <typename T>
void qkv_split_rope_backward(T* dqkv, const T* dq, const T* dk, const T* dv, const T* cos, const T* sin, int64_t B,
                             int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t rope_dims, int64_t pos0,
                             int64_t cs_batch_rows) {
  if (!dqkv) return;
  const int64_t qpk = H / G, row = (H + 2 * G) * hs, half = rope_dims / 2;
#pragma omp parallel for collapse(2) schedule(static) if (B * Tn * row > (1 << 15))
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < Tn; ++t) {
      T* dst = dqkv + (b * Tn + t) * row;
      const T* c = half > 0 ? cos + (b * cs_batch_rows + pos0 + t) * half : nullptr;
      const T* s = half > 0 ? sin + (b * cs_batch_rows + pos0 + t) * half : nullptr;
      for (int64_t g = 0; g < G; ++g) {
        T* grp = dst + g * (qpk + 2) * hs;
        if (dq) {
          for (int64_t j = 0; j < qpk; ++j) {
            const int64_t h = g * qpk + j;
            rotate_back_add(grp + j * hs, dq + ((b * H + h) * Tn + t) * hs, c, s, half, hs);
          }
        }
        if (dk) rotate_back_add(grp + qpk * hs, dk + ((b * G + g) * Tn + t) * hs, c, s, half, hs);
        if (dv) {
          rotate_back_add(grp + (qpk + 1) * hs, dv + ((b * G + g) * Tn + t) * hs, (const T*)nullptr, (const T*)nullptr,
                          0, hs);
        }
      }
    }
  }
}

#define SAMBALM_INSTANTIATE(T)                                                                                     \
  template void rope_at_positions<T>(T*, T*, const int64_t*, int64_t, int64_t, int64_t, double, double);           \
  template void qkv_split_rope_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t,     \
                                          int64_t, int64_t, int64_t, int64_t, int64_t);                            \
  template void qkv_split_rope_backward<T>(T*, const T*, const T*, const T*, const T*, const T*, int64_t, int64_t, \
                                           int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
SAMBALM_INSTANTIATE(float)
SAMBALM_INSTANTIATE(double)
#undef SAMBALM_INSTANTIATE

}  // namespace sambalm::ops::cpu
