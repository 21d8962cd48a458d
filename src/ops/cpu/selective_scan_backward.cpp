// Backward of the selective scan (forward: selective_scan.cpp, math: selective_scan_ref.cpp).
// Per batch b and channel d, with a_t[n] = exp(dt_t A[n]) and g_t[n] = dL/dh_t[n] (all paths):
//   g_t[n]      = dy_t Cm_t[n] + a_{t+1}[n] g_{t+1}[n]                (g_L = 0: nothing after the end)
//   dCm_t[n]   += dy_t h_t[n]                                          (summed over d)
//   dBm_t[n]   += g_t[n] dt_t u_t                                      (summed over d)
//   du_t       += dy_t Dskip + dt_t sum_n g_t[n] Bm_t[n]
//   ddelta_t   += sum_n g_t[n] (A[n] a_t[n] h_{t-1}[n] + Bm_t[n] u_t)
//   dA[n]      += g_t[n] dt_t a_t[n] h_{t-1}[n]                        (summed over b, t)
//   dDskip     += dy_t u_t                                             (summed over b, t)
//   dh0[n]     += a_0[n] g_0[n]
// The per-channel loops are scan_kernels.h backward_channel. The states h_t are not stored by the
// forward: each chunk restarts from chunk_states[b, c] and
// recomputes its h_t and a_t into scratch, then runs the adjoint recurrence backwards in time.
// Chunks go from last to first; the carry a_{t0} g_{t0} crosses into the previous chunk.
//
// Work split and determinism: for each chunk, tasks are (b, block of 16 channels); every du/ddelta
// /dh0 element belongs to one task. Sums across tasks go through scratch and are reduced in a
// fixed order: dBm/dCm per (task, t) partials, summed over blocks after each chunk; dA/dDskip per
// (b, d) partials, summed over b at the end. Nothing depends on the thread count or scheduling, so
// the gradients are bit-identical from run to run and on any number of threads.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/error.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/scan_internal.h"

namespace sambalm::ops::cpu {

namespace {

// Scratch layout, in elements (see selective_scan_backward_scratch_size).
struct BackwardScratch {
  int64_t clen, nblk;
  int64_t carry, dA_part, dD_part, bc_part, recompute, total;
  BackwardScratch(int64_t B, int64_t L, int64_t D, int64_t N, int64_t chunk) {
    clen = std::min(chunk, L);
    nblk = (D + scan::kBlock - 1) / scan::kBlock;
    carry = 0;                                      // [B, D, N]  g flowing into the current chunk
    dA_part = carry + B * D * N;                    // [B, D, N]
    dD_part = dA_part + B * D * N;                  // [B, D]
    bc_part = dD_part + B * D;                      // [B, nblk, clen, 2N]: dBm | dCm partials of a chunk
    recompute = bc_part + B * nblk * clen * 2 * N;  // [B, nblk, 2, clen, N]: h_t, a_t of one channel
    total = recompute + B * nblk * 2 * clen * N;
  }
};

}  // namespace

int64_t selective_scan_backward_scratch_size(int64_t B, int64_t L, int64_t D, int64_t N, int64_t chunk) {
  SAMBALM_CHECK(chunk > 0, "selective scan: chunk must be positive, got {}", chunk);
  return BackwardScratch(B, L, D, N, chunk).total;
}

template <typename T>
void selective_scan_backward(T* du, T* ddelta, T* dA, T* dBm, T* dCm, T* dDskip, T* dh0, const T* dy,
                             const T* chunk_states, const T* u, const T* delta, const T* A, const T* Bm, const T* Cm,
                             int64_t ld_bc, const T* Dskip, const T* h0, int64_t B, int64_t L, int64_t D, int64_t N,
                             int64_t chunk, T* scratch) {
  const scan::Kernels<T>& K = scan::kernels<T>();
  const BackwardScratch s(B, L, D, N, chunk);
  const int64_t nch = (L + chunk - 1) / chunk, nblk = s.nblk, clen = s.clen;
  T* carry = scratch + s.carry;
  T* dA_part = scratch + s.dA_part;
  T* dD_part = scratch + s.dD_part;
  std::fill(scratch, scratch + s.bc_part, T(0));

#pragma omp parallel if (B * L * D * N >= scan::kScanParallelWork)
  for (int64_t c = nch - 1; c >= 0; --c) {
    const int64_t t0 = c * chunk, len = std::min(chunk, L - t0);
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t blk = 0; blk < nblk; ++blk) {
        const int64_t task = b * nblk + blk, d0 = blk * scan::kBlock, nd = std::min(scan::kBlock, D - d0);
        T* dB_p = scratch + s.bc_part + task * clen * 2 * N;  // [len, N] then dC_p [len, N]
        T* dC_p = dB_p + clen * N;
        T* hs = scratch + s.recompute + task * 2 * clen * N;  // h_t after step t0 + i
        T* as = hs + clen * N;                                // a_t of step t0 + i
        std::fill(dB_p, dB_p + 2 * clen * N, T(0));
        for (int64_t d = d0; d < d0 + nd; ++d) {
          const int64_t r0 = b * L + t0;
          dD_part[b * D + d] += K.backward_channel(
              carry + (b * D + d) * N, dA_part + (b * D + d) * N, dB_p, dC_p, hs, as, du ? du + r0 * D + d : nullptr,
              ddelta ? ddelta + r0 * D + d : nullptr, dy + r0 * D + d, u + r0 * D + d, delta + r0 * D + d, A + d * N,
              Bm + r0 * ld_bc, Cm + r0 * ld_bc, ld_bc, Dskip[d], chunk_states + ((b * (nch + 1) + c) * D + d) * N, len,
              D, N);
        }
      }
    }
    // (implicit barrier) dBm / dCm rows of this chunk: sum the blocks' partials in block order.
    if (dBm || dCm) {
#pragma omp for collapse(2) schedule(static)
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t i = 0; i < len; ++i) {
          const int64_t r = b * L + t0 + i;
          for (int64_t blk = 0; blk < nblk; ++blk) {
            const T* dB_p = scratch + s.bc_part + (b * nblk + blk) * clen * 2 * N + i * N;
            const T* dC_p = dB_p + clen * N;
            if (dBm)
              for (int64_t n = 0; n < N; ++n) dBm[r * ld_bc + n] += dB_p[n];
            if (dCm)
              for (int64_t n = 0; n < N; ++n) dCm[r * ld_bc + n] += dC_p[n];
          }
        }
      }
    }
  }

  // Per-(b, d) results: what is left in the carry is dL/dh0; dA and dDskip sum their partials over b.
#pragma omp parallel for schedule(static)
  for (int64_t d = 0; d < D; ++d) {
    for (int64_t b = 0; b < B; ++b) {
      const T* gb = carry + (b * D + d) * N;
      const T* dAb = dA_part + (b * D + d) * N;
      if (dh0)
        for (int64_t n = 0; n < N; ++n) dh0[(b * D + d) * N + n] += gb[n];
      if (dA)
        for (int64_t n = 0; n < N; ++n) dA[d * N + n] += dAb[n];
      if (dDskip) dDskip[d] += dD_part[b * D + d];
    }
  }
}

#define SAMBALM_INSTANTIATE(T)                                                                                 \
  template void selective_scan_backward<T>(T*, T*, T*, T*, T*, T*, T*, const T*, const T*, const T*, const T*, \
                                           const T*, const T*, const T*, int64_t, const T*, const T*, int64_t, \
                                           int64_t, int64_t, int64_t, int64_t, T*);
SAMBALM_INSTANTIATE(float)
SAMBALM_INSTANTIATE(double)
#undef SAMBALM_INSTANTIATE

}  // namespace sambalm::ops::cpu
