// The selective scan's inner loops, written once and compiled twice: scan_internal.h includes this
// file into namespace scan::generic (the project's baseline flags), scan_avx2.cpp into scan::avx2
// under `#pragma GCC target("avx2,fma")`. The two namespaces keep the copies apart (different
// symbols), and scan_dispatch.cpp picks one per process from what the CPU supports.
// No include guard and no #includes on purpose: include it only inside a namespace, after <bit>,
// <cmath>, <cstdint> and <type_traits>.

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

// Backward of one channel over one chunk (math: selective_scan_backward.cpp). Recomputes the
// channel's h_t and a_t from h_start into hs / as [len, N], then walks back in time. g [N] holds the
// carry a_{t+1} g_{t+1} on entry and a_{t0} g_{t0} on exit; dAd [N], dB_p / dC_p [len, N] (the
// block's partials) accumulate; du / ddelta (nullable) point at [t0, d] with row stride D.
// Returns this chunk's contribution to dDskip[d].
template <typename T>
inline T backward_channel(T* g, T* dAd, T* dB_p, T* dC_p, T* hs, T* as, T* du, T* ddelta, const T* dy, const T* u,
                          const T* delta, const T* Ad, const T* Bm, const T* Cm, int64_t ld_bc, T Dd, const T* h_start,
                          int64_t len, int64_t D, int64_t N) {
  for (int64_t i = 0; i < len; ++i) {
    const T dt = delta[i * D], dtu = dt * u[i * D];
    const T* Bt = Bm + i * ld_bc;
    const T* hp = i > 0 ? hs + (i - 1) * N : h_start;
    T* hi = hs + i * N;
    T* ai = as + i * N;
#pragma omp simd
    for (int64_t n = 0; n < N; ++n) {
      ai[n] = exp_scan(dt * Ad[n]);
      hi[n] = ai[n] * hp[n] + dtu * Bt[n];
    }
  }
  T dD = 0;
  for (int64_t i = len - 1; i >= 0; --i) {
    const T dyv = dy[i * D], uv = u[i * D], dt = delta[i * D], dtu = dt * uv;
    const T* Bt = Bm + i * ld_bc;
    const T* Ct = Cm + i * ld_bc;
    const T* hp = i > 0 ? hs + (i - 1) * N : h_start;
    const T* hi = hs + i * N;
    const T* ai = as + i * N;
    T* dBi = dB_p + i * N;
    T* dCi = dC_p + i * N;
    T sum_gb = 0, sum_dd = 0;
#pragma omp simd reduction(+ : sum_gb, sum_dd)
    for (int64_t n = 0; n < N; ++n) {
      const T gn = g[n] + dyv * Ct[n];
      const T ah = ai[n] * hp[n];
      dCi[n] += dyv * hi[n];
      dBi[n] += gn * dtu;
      sum_gb += gn * Bt[n];
      sum_dd += gn * (Ad[n] * ah + Bt[n] * uv);
      dAd[n] += gn * dt * ah;
      g[n] = ai[n] * gn;
    }
    if (du) du[i * D] += dyv * Dd + dt * sum_gb;
    if (ddelta) ddelta[i * D] += sum_dd;
    dD += dyv * uv;
  }
  return dD;
}
