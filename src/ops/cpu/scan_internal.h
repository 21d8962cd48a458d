// Internals shared by the CPU selective-scan files (forward, backward, decode step) and their tests.
// Not part of the op interface: layers call the ops declared in ops/mamba_ops.h.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace sambalm::ops::scan {

// Channels per task. 16 float channels = one cache line of u / delta / y per time step, and the
// block's state (16 x N) stays in L1 while the task walks through time.
constexpr int64_t kBlock = 16;

// The forward splits the sequence across threads (three passes, twice the exp work) only when the
// (batch x channel-block) tasks are too few to keep threads busy. The rule depends on shapes only,
// never on the thread count, so a run gives the same bits on any number of threads.
constexpr int64_t kMinChannelTasks = 32;

enum class ForwardMode {
  kAuto,          // by the rule above
  kChannels,      // one pass per (batch, channel block) through the whole sequence
  kSequenceSplit  // chunks scanned concurrently from zero, boundaries carried, chunks rescanned
};

// min(max(x, lo), hi) as bit selects: GCC will not if-convert float compares into a vector loop
// under the default -ftrapping-math, but it vectorises this form.
inline float clamp_bits(float x, float lo, float hi) {
  uint32_t xi = std::bit_cast<uint32_t>(x);
  const uint32_t below = 0u - static_cast<uint32_t>(x < lo), above = 0u - static_cast<uint32_t>(x > hi);
  xi = (xi & ~below) | (std::bit_cast<uint32_t>(lo) & below);
  xi = (xi & ~above) | (std::bit_cast<uint32_t>(hi) & above);
  return std::bit_cast<float>(xi);
}

// exp for the scan's decays. float: a branch-free exp that vectorises (glibc's expf does not at our
// compile flags): e^x = 2^k * e^r with k = round(x / ln2), r = x - k ln2 (ln2 split in two parts so
// that r is exact to float precision), e^r by a degree-7 polynomial (Cephes' expf coefficients),
// 2^k built in the exponent bits. Relative error ~2 ulp over [-87, 88]; inputs are clamped there, so
// large negative arguments give ~1e-38 instead of 0 (harmless for a decay). double: std::exp (the
// double build exists for finite-difference checks, where accuracy matters more than speed).
template <typename T>
inline T exp_scan(T x) {
  if constexpr (std::is_same_v<T, float>) {
    x = clamp_bits(x, -87.0f, 88.0f);
    const float kf = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round-to-nearest
    float r = x - kf * 0.693359375f;
    r = r - kf * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = (static_cast<int32_t>(kf) + 127) << 23;
    return p * std::bit_cast<float>(bits);
  } else {
    return std::exp(x);
  }
}

// Scans `len` steps for `nd` consecutive channels of one batch row, updating their states h[nd, N]
// in place:  h[i, n] = exp(dt_i A[i, n]) h[i, n] + dt_i u_i Bm_t[n];  y_i = sum_n Cm_t[n] h[i, n] + Dskip_i u_i.
// u, delta (and y) point at [t0, d0] of a [., D] row-major array; Bm, Cm at row t0 (stride ld_bc);
// A at row d0 of [D, N]; Dskip at d0. kWithY = false skips the outputs (pass 1 of the split scan).
template <typename T, bool kWithY>
inline void scan_block(T* h, T* y, const T* u, const T* delta, const T* A, const T* Bm, const T* Cm, int64_t ld_bc,
                       const T* Dskip, int64_t len, int64_t nd, int64_t D, int64_t N) {
  for (int64_t t = 0; t < len; ++t) {
    const T* Bt = Bm + t * ld_bc;
    const T* Ct = Cm + t * ld_bc;
    for (int64_t i = 0; i < nd; ++i) {
      const T dt = delta[t * D + i], dtu = dt * u[t * D + i];
      T* hi = h + i * N;
      const T* Ai = A + i * N;
      if constexpr (kWithY) {
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t n = 0; n < N; ++n) {
          const T hn = exp_scan(dt * Ai[n]) * hi[n] + dtu * Bt[n];
          hi[n] = hn;
          acc += Ct[n] * hn;
        }
        y[t * D + i] = acc + Dskip[i] * u[t * D + i];
      } else {
#pragma omp simd
        for (int64_t n = 0; n < N; ++n) hi[n] = exp_scan(dt * Ai[n]) * hi[n] + dtu * Bt[n];
      }
    }
  }
}

// selective_scan_forward with the strategy chosen explicitly (tests run both on the same inputs).
template <typename T>
void forward(ForwardMode mode, T* y, T* h_last, T* chunk_states, const T* u, const T* delta, const T* A, const T* Bm,
             const T* Cm, int64_t ld_bc, const T* Dskip, const T* h0, int64_t B, int64_t L, int64_t D, int64_t N,
             int64_t chunk);

// The mode kAuto picks for these shapes.
ForwardMode auto_mode(int64_t B, int64_t L, int64_t D, int64_t chunk);

}  // namespace sambalm::ops::scan
