// The selective scan forward (default, parallel). Math: selective_scan_ref.cpp. The sequence is cut
// into chunks of `chunk` steps; chunk_states[b, c] (layout [B, nchunks + 1, D, N]) is the true state
// entering chunk c (entry 0 = h0 or zeros, entry nchunks = the final state). The backward restarts
// from these states instead of storing every h_t.
//
// Two ways to fill the machine, chosen by shape (scan_internal.h, kMinChannelTasks):
//  * channels: tasks are (batch, block of 16 channels), each walks the whole sequence once and
//    writes chunk_states as it crosses chunk boundaries. Least work; enough parallelism whenever
//    B x D/16 is large (mamba-130m: D = 1536 gives 96 tasks per sequence).
//  * sequence split, for few channels: the recurrence is linear in h, so over a chunk c
//        h_end = P_c * h_start + E_c,   P_c[d, n] = prod_t exp(dt_t A[d, n]) = exp(A[d, n] sum_t dt_t)
//    with E_c the chunk's end state when started from zero.
//      pass 1 (parallel over b x chunk x block): E_c for every chunk (chunk 0 starts from the true
//              h0 and writes its outputs at once);
//      pass 2 (parallel over b x block, sequential over chunks): S_c = exp(A sum dt) S_{c-1} + E_c;
//      pass 3 (parallel over b x chunk x block): rescan chunks 1.. from their true states, writing y.
//    About twice the exp work of one pass, spread over L/chunk times more tasks.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/error.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/scan_internal.h"

namespace sambalm::ops::cpu {

int64_t selective_scan_chunk_states_size(int64_t B, int64_t L, int64_t D, int64_t N, int64_t chunk) {
  SAMBALM_CHECK(chunk > 0, "selective scan: chunk must be positive, got {}", chunk);
  return B * ((L + chunk - 1) / chunk + 1) * D * N;
}

namespace scan {

namespace {
constexpr int64_t kMaxSplitN = 1024;  // states per stack buffer in pass 3 (d_state is 16 to 128 in practice)
}  // namespace

ForwardMode auto_mode(int64_t B, int64_t L, int64_t D, int64_t chunk) {
  const int64_t tasks = B * ((D + kBlock - 1) / kBlock);
  return (L <= chunk || tasks >= kMinChannelTasks) ? ForwardMode::kChannels : ForwardMode::kSequenceSplit;
}

template <typename T>
void forward(ForwardMode mode, T* y, T* h_last, T* chunk_states, const T* u, const T* delta, const T* A, const T* Bm,
             const T* Cm, int64_t ld_bc, const T* Dskip, const T* h0, int64_t B, int64_t L, int64_t D, int64_t N,
             int64_t chunk, const int32_t* slots) {
  const Kernels<T>& K = kernels<T>();
  if (mode == ForwardMode::kAuto) mode = auto_mode(B, L, D, chunk);
  if (N > kMaxSplitN) mode = ForwardMode::kChannels;  // pass 3 keeps a block's state on the stack
  const int64_t nch = (L + chunk - 1) / chunk, nblk = (D + kBlock - 1) / kBlock;
  // Block (d0 .. d0+nd) of state entry c of batch b: nd * N contiguous values.
  auto state = [&](int64_t b, int64_t c, int64_t d0) { return chunk_states + ((b * (nch + 1) + c) * D + d0) * N; };
  // Everything for channels d0.. at time t of batch b.
  auto at = [&](const T* p, int64_t b, int64_t t, int64_t d0) { return p + (b * L + t) * D + d0; };
  auto init = [&](int64_t b, int64_t d0, int64_t nd) {
    T* s = state(b, 0, d0);
    if (h0)
      std::memcpy(s, h0 + ((slots ? slots[b] : b) * D + d0) * N, sizeof(T) * nd * N);
    else
      std::fill(s, s + nd * N, T(0));
  };
  auto finish = [&](int64_t b, int64_t d0, int64_t nd) {
    if (h_last) std::memcpy(h_last + ((slots ? slots[b] : b) * D + d0) * N, state(b, nch, d0), sizeof(T) * nd * N);
  };
  // Scans chunk c of (b, block) on the state `h`, from its current value.
  auto scan_chunk = [&]<bool kWithY>(T* h, int64_t b, int64_t c, int64_t d0, int64_t nd) {
    const int64_t t0 = c * chunk, len = std::min(chunk, L - t0);
    (kWithY ? K.scan_y : K.scan_no_y)(h, kWithY ? y + (b * L + t0) * D + d0 : nullptr, at(u, b, t0, d0),
                                      at(delta, b, t0, d0), A + d0 * N, Bm + (b * L + t0) * ld_bc,
                                      Cm + (b * L + t0) * ld_bc, ld_bc, Dskip + d0, len, nd, D, N);
  };

  if (mode == ForwardMode::kChannels) {
#pragma omp parallel for collapse(2) schedule(static) if (B * L * D * N >= scan::kScanParallelWork)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t blk = 0; blk < nblk; ++blk) {
        const int64_t d0 = blk * kBlock, nd = std::min(kBlock, D - d0);
        init(b, d0, nd);
        for (int64_t c = 0; c < nch; ++c) {
          T* h = state(b, c + 1, d0);
          std::memcpy(h, state(b, c, d0), sizeof(T) * nd * N);
          scan_chunk.template operator()<true>(h, b, c, d0, nd);
        }
        finish(b, d0, nd);
      }
    }
    return;
  }

  // Pass 1: entry c + 1 <- E_c (chunk c scanned from zero), except chunk 0, scanned from h0 with outputs.
#pragma omp parallel for collapse(3) schedule(static) if (B * L * D * N >= scan::kScanParallelWork)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t c = 0; c < nch; ++c) {
      for (int64_t blk = 0; blk < nblk; ++blk) {
        const int64_t d0 = blk * kBlock, nd = std::min(kBlock, D - d0);
        T* h = state(b, c + 1, d0);
        if (c == 0) {
          init(b, d0, nd);
          std::memcpy(h, state(b, 0, d0), sizeof(T) * nd * N);
          scan_chunk.template operator()<true>(h, b, c, d0, nd);
        } else {
          std::fill(h, h + nd * N, T(0));
          scan_chunk.template operator()<false>(h, b, c, d0, nd);
        }
      }
    }
  }
  // Pass 2: entry c + 1 <- exp(A * sum_{t in chunk c} dt_t) * entry c + E_c, for c = 1 .. nch-1.
#pragma omp parallel for collapse(2) schedule(static) if (B * L * D * N >= scan::kScanParallelWork)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t blk = 0; blk < nblk; ++blk) {
      const int64_t d0 = blk * kBlock, nd = std::min(kBlock, D - d0);
      for (int64_t c = 1; c < nch; ++c) {
        const int64_t t0 = c * chunk, len = std::min(chunk, L - t0);
        const T* prev = state(b, c, d0);
        T* next = state(b, c + 1, d0);
        for (int64_t i = 0; i < nd; ++i) {
          T sum_dt = 0;
          for (int64_t t = 0; t < len; ++t) sum_dt += delta[(b * L + t0 + t) * D + d0 + i];
          const T* Ai = A + (d0 + i) * N;
#pragma omp simd
          for (int64_t n = 0; n < N; ++n) next[i * N + n] += generic::exp_scan(Ai[n] * sum_dt) * prev[i * N + n];
        }
      }
      finish(b, d0, nd);
    }
  }
  // Pass 3: outputs of chunks 1.. from their true entering states (copied: the entries stay for the backward).
#pragma omp parallel for collapse(3) schedule(static) if (B * L * D * N >= scan::kScanParallelWork)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t c = 1; c < nch; ++c) {
      for (int64_t blk = 0; blk < nblk; ++blk) {
        const int64_t d0 = blk * kBlock, nd = std::min(kBlock, D - d0);
        // Sub-blocks of channels whose states fit the stack buffer.
        T h[kMaxSplitN];
        const int64_t per = std::min(nd, kMaxSplitN / N);
        for (int64_t i0 = 0; i0 < nd; i0 += per) {
          const int64_t ni = std::min(per, nd - i0);
          std::memcpy(h, state(b, c, d0 + i0), sizeof(T) * ni * N);
          scan_chunk.template operator()<true>(h, b, c, d0 + i0, ni);
        }
      }
    }
  }
}

}  // namespace scan

template <typename T>
void selective_scan_forward(T* y, T* h_last, T* chunk_states, const T* u, const T* delta, const T* A, const T* Bm,
                            const T* Cm, int64_t ld_bc, const T* Dskip, const T* h0, int64_t B, int64_t L, int64_t D,
                            int64_t N, int64_t chunk, const int32_t* slots) {
  scan::forward(scan::ForwardMode::kAuto, y, h_last, chunk_states, u, delta, A, Bm, Cm, ld_bc, Dskip, h0, B, L, D, N,
                chunk, slots);
}

#define SAMBALM_INSTANTIATE(T)                                                                                    \
  template void scan::forward<T>(scan::ForwardMode, T*, T*, T*, const T*, const T*, const T*, const T*, const T*, \
                                 int64_t, const T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t,        \
                                 const int32_t*);                                                                 \
  template void selective_scan_forward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, int64_t,  \
                                          const T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t,        \
                                          const int32_t*);
SAMBALM_INSTANTIATE(float)
SAMBALM_INSTANTIATE(double)
#undef SAMBALM_INSTANTIATE

}  // namespace sambalm::ops::cpu
