// Selective scan forward, CUDA: selective_scan_forward, selective_scan_ref_forward and the decode step
// selective_scan_step (the same kernel with L = 1, the state read and written in place).
// Math and layouts as cpu/selective_scan_ref.cpp (delta comes already softplus'ed; no gate here):
//   h_t[d, n] = exp(delta_t[d] A[d, n]) h_{t-1}[d, n] + delta_t[d] Bm_t[n] u_t[d]    (h_{-1} = h0 or 0)
//   y_t[d]    = sum_n Cm_t[n] h_t[d, n] + Dskip[d] u_t[d]
// u, delta, y [B, L, D]; Bm, Cm rows ld_bc apart; A [D, N]; h0 / h_last [slots or B, D, N];
// chunk_states [B, nck + 1, D, N], the CPU's layout (cpu/selective_scan.cpp) with chunks of
// kCudaScanCheckpoint = 16 steps whatever the caller's `chunk` (mamba_cuda.h): entry 0 = h0 or 0,
// entry c + 1 = the state after steps [16 c, 16 c + 16) (so the last entry is the final state); the
// backward's 16-step tiles restart from them. The caller's `chunk` (rounded up to a multiple of 16)
// is the length of the split below.
//
// The kernel follows dev/cuda/selective_scan_forward.cu's versions 4/5: a block owns 32 channels of
// one sequence, four threads per channel share its N states (N/4 each, in registers), tiles of TT
// steps of delta, delta*u, u, Bm and Cm are staged through shared memory (B and C widened to fp32
// once per tile, not once per channel), y is summed over the four threads with two shuffles and
// written in a tile epilogue with the D skip. bf16 uses exp2 on the special-function unit with A
// pre-scaled by log2(e); fp32 (--precision fp32) uses expf, to match the CPU to rounding.
// When B x D/32 blocks cannot fill the GPU (one sequence, long L), v6's split over the sequence, on
// split chunks of `chunk` steps rounded up to a multiple of 16, so each split chunk ends on a
// checkpoint (the recurrence is linear in h: h_end = exp(A sum_chunk delta) h_start + E_c, E_c the
// chunk's end state from zero):
//   pass 1 (block per channel block x chunk): E_c into the checkpoint entry at the chunk's end
//          (chunk 0 from h0: its true end state); pass 2 (thread per channel): carry the true
//          states across the chunks in order, and h_last; pass 3 (block per channel block x chunk):
//          rescan each chunk from its true entering state, writing y and the checkpoints inside the
//          chunk (not the one at its end: the next chunk's blocks read it). About twice the
//          exponentials of the one-pass kernel.
#include <cuda_bf16.h>

#include "ops/cuda/check.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/mixer_common.cuh"
#include "ops/cuda/scan_common.cuh"

namespace sambalm::ops::cuda {

namespace {

constexpr int kLanes = 4;  // threads per channel
constexpr int kChan = 32;  // channels per block
constexpr int kThreads = kChan * kLanes;

template <typename D>
struct ScanArgs {
  D* y;
  float* h_last;        // nullable
  float* chunk_states;  // nullable (ref forward, decode step)
  const D* u;
  const D* delta;
  const float* A;
  const D* Bm;
  const D* Cm;
  int64_t ld_bc;
  const float* Dskip;
  const float* h0;  // nullable
  const int32_t* slots;
  int64_t B, L, Dn, N;
  int64_t chunk, nch;  // split chunks: length (a multiple of kCudaScanCheckpoint) and count
  int64_t nck;         // checkpoints (chunk_states has nck + 1 entries per sequence)
  int TT;              // steps per tile
};

// How a block covers the sequence (see the file comment).
enum Mode : int {
  kWhole = 0,      // the whole sequence, writing y and every chunk-boundary state on the way
  kChunkEnds = 1,  // split pass 1: chunk blockIdx.y from zero (chunk 0 from h0), its end state only
  kChunkOut = 2,   // split pass 3: chunk blockIdx.y from its true entering state, y only
};

// NPL states per thread (N <= 4 NPL); FAST: exp2 on the SFU (bf16), else expf (fp32).
template <typename D, int NPL, bool FAST, int MODE>
__global__ void __launch_bounds__(kThreads) scan_forward_kernel(ScanArgs<D> p) {
  extern __shared__ float smem[];
  const int TT = p.TT;
  const int64_t N = p.N;
  float* s_delta = smem;               // [TT][kChan]
  float* s_du = s_delta + TT * kChan;  // [TT][kChan]
  float* s_u = s_du + TT * kChan;      // [TT][kChan]
  float* s_y = s_u + TT * kChan;       // [TT][kChan]
  float* s_B = s_y + TT * kChan;       // [TT][N]
  float* s_C = s_B + TT * N;           // [TT][N]

  const int64_t b = blockIdx.z, c0 = int64_t(blockIdx.x) * kChan, chunk_id = blockIdx.y;
  const int64_t t_begin = MODE == kWhole ? 0 : chunk_id * p.chunk;
  const int64_t t_end = MODE == kWhole || t_begin + p.chunk > p.L ? p.L : t_begin + p.chunk;
  constexpr bool kWithY = MODE != kChunkEnds;
  const int tid = threadIdx.x, cl = tid / kLanes, sub = tid % kLanes;
  const int64_t d = c0 + cl;
  const bool dvalid = d < p.Dn;
  const int64_t sb = p.slots ? p.slots[b] : b;  // state row of this sequence

  float A2[NPL], h[NPL];
#pragma unroll
  for (int k = 0; k < NPL; ++k) {
    const int64_t n = sub * NPL + k;
    const bool ok = dvalid && n < N;
    A2[k] = ok ? p.A[d * N + n] * (FAST ? kLog2e : 1.f) : 0.f;
    if (MODE == kChunkOut)
      h[k] = ok ? p.chunk_states[((b * (p.nck + 1) + t_begin / kCudaScanCheckpoint) * p.Dn + d) * N + n] : 0.f;
    else
      h[k] = ok && p.h0 && t_begin == 0 ? p.h0[(sb * p.Dn + d) * N + n] : 0.f;
  }
  auto save_state = [&](int64_t entry) {
    if (!dvalid) return;
    float* dst = p.chunk_states + ((b * (p.nck + 1) + entry) * p.Dn + d) * N;
#pragma unroll
    for (int k = 0; k < NPL; ++k)
      if (sub * NPL + k < N) dst[sub * NPL + k] = h[k];
  };
  if (MODE == kWhole && p.chunk_states) save_state(0);
  if (MODE == kChunkEnds && chunk_id == 0) save_state(0);

  for (int64_t t0 = t_begin; t0 < t_end; t0 += TT) {
    const int steps = static_cast<int>(t_end - t0 < TT ? t_end - t0 : TT);
    __syncthreads();  // the previous tile's epilogue is done with shared memory
    for (int e = tid; e < TT * kChan; e += kThreads) {
      const int r = e / kChan, c = e % kChan;
      const int64_t ch = c0 + c, row = b * p.L + t0 + r;
      const bool ok = r < steps && ch < p.Dn;
      const float dl = ok ? to_f32(p.delta[row * p.Dn + ch]) : 0.f;
      const float uu = ok ? to_f32(p.u[row * p.Dn + ch]) : 0.f;
      s_delta[e] = dl, s_du[e] = dl * uu, s_u[e] = uu;
    }
    for (int64_t e = tid; e < TT * N; e += kThreads) {
      const int64_t r = e / N, n = e % N, row = b * p.L + t0 + r;
      const bool ok = r < steps;
      s_B[e] = ok ? to_f32(p.Bm[row * p.ld_bc + n]) : 0.f;
      s_C[e] = ok ? to_f32(p.Cm[row * p.ld_bc + n]) : 0.f;
    }
    __syncthreads();
    for (int s = 0; s < steps; ++s) {
      const float dl = s_delta[s * kChan + cl], du = s_du[s * kChan + cl];
      const float* Bt = s_B + s * N;
      const float* Ct = s_C + s * N;
      float acc = 0.f;
#pragma unroll
      for (int k = 0; k < NPL; ++k) {
        const int64_t n = sub * NPL + k;
        if (n < N) {
          const float a = FAST ? ex2_approx(dl * A2[k]) : expf(dl * A2[k]);
          h[k] = fmaf(a, h[k], du * Bt[n]);
          if (kWithY) acc = fmaf(Ct[n], h[k], acc);
        }
      }
      if (kWithY) {
        acc += __shfl_xor_sync(0xffffffffu, acc, 1);
        acc += __shfl_xor_sync(0xffffffffu, acc, 2);
        if (sub == 0) s_y[s * kChan + cl] = acc;
      }
      if (MODE != kChunkEnds && p.chunk_states) {  // the checkpoint after step t = t0 + s
        const int64_t t1 = t0 + s + 1;
        if (MODE == kWhole ? t1 % kCudaScanCheckpoint == 0 || t1 == p.L : t1 % kCudaScanCheckpoint == 0 && t1 < t_end)
          save_state((t1 + kCudaScanCheckpoint - 1) / kCudaScanCheckpoint);
      }
    }
    if (!kWithY) continue;
    __syncthreads();
    for (int e = tid; e < steps * kChan; e += kThreads) {
      const int r = e / kChan, c = e % kChan;
      const int64_t ch = c0 + c;
      if (ch < p.Dn) p.y[(b * p.L + t0 + r) * p.Dn + ch] = from_f32<D>(fmaf(p.Dskip[ch], s_u[e], s_y[e]));
    }
  }
  if (MODE == kChunkEnds) {
    save_state((t_end + kCudaScanCheckpoint - 1) / kCudaScanCheckpoint);  // E_c (chunk 0: the true state, from h0)
    return;
  }
  if (p.h_last && dvalid && t_end == p.L) {
#pragma unroll
    for (int k = 0; k < NPL; ++k)
      if (sub * NPL + k < N) p.h_last[(sb * p.Dn + d) * N + sub * NPL + k] = h[k];
  }
}

// Split pass 2: one thread per (b, d) carries the state across the split chunks in order,
//   end(c) <- exp(A * sum_{t in chunk c} delta_t) * end(c - 1) + E_c      (c = 1 .. nch-1)
// where end(c) is the checkpoint entry at split chunk c's end (it holds E_c on entry; entry 0 and
// end(0) are already true states).
template <typename D, bool FAST>
__global__ void scan_carry_kernel(ScanArgs<D> p) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= p.B * p.Dn) return;
  const int64_t d = idx % p.Dn, b = idx / p.Dn, N = p.N;
  for (int64_t c = 1; c < p.nch; ++c) {
    const int64_t t0 = c * p.chunk, t1 = t0 + p.chunk < p.L ? t0 + p.chunk : p.L;
    float sum_dt = 0.f;
    for (int64_t t = t0; t < t1; ++t) sum_dt += to_f32(p.delta[(b * p.L + t) * p.Dn + d]);
    const int64_t e_prev = t0 / kCudaScanCheckpoint, e_next = (t1 + kCudaScanCheckpoint - 1) / kCudaScanCheckpoint;
    const float* prev = p.chunk_states + ((b * (p.nck + 1) + e_prev) * p.Dn + d) * N;
    float* next = p.chunk_states + ((b * (p.nck + 1) + e_next) * p.Dn + d) * N;
    for (int64_t n = 0; n < N; ++n) {
      const float x = sum_dt * p.A[d * N + n];
      next[n] = fmaf(FAST ? ex2_approx(x * kLog2e) : expf(x), prev[n], next[n]);
    }
  }
  if (p.h_last) {
    const int64_t sb = p.slots ? p.slots[b] : b;
    const float* last = p.chunk_states + ((b * (p.nck + 1) + p.nck) * p.Dn + d) * N;
    for (int64_t n = 0; n < N; ++n) p.h_last[(sb * p.Dn + d) * N + n] = last[n];
  }
}

// Whether to split the sequence: when the (channel block, sequence) blocks cannot fill the GPU and
// there are chunks to spread the work over. The split costs a second round of exponentials.
template <typename D>
bool split_pays(const ScanArgs<D>& a) {
  if (!a.chunk_states || a.nch < 4 || a.nch > 65535) return false;  // grid.y holds the chunks
  int device = 0, sms = 0;
  SAMBALM_CUDA_CHECK(cudaGetDevice(&device));
  SAMBALM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return a.B * ((a.Dn + kChan - 1) / kChan) < 2 * int64_t(sms);
}

template <typename D, int NPL>
void launch_npl(const Context& ctx, ScanArgs<D> a) {
  constexpr bool kFast = sizeof(D) == 2;
  a.TT = NPL <= 16 ? 32 : 8;
  const size_t smem = sizeof(float) * a.TT * (4 * kChan + 2 * a.N);
  const unsigned dblocks = blocks_for(a.Dn, kChan), nb = static_cast<unsigned>(a.B);
  if (!split_pays(a)) {
    scan_forward_kernel<D, NPL, kFast, kWhole><<<dim3(dblocks, 1, nb), kThreads, smem, stream_of(ctx)>>>(a);
    SAMBALM_CUDA_LAUNCH_CHECK();
    return;
  }
  // The h_last of pass 3 would be written by the last chunk's blocks; pass 2 writes it instead, so
  // pass 3 may run with h_last cleared (h_last may alias h0, which pass 1 has read by then).
  const dim3 grid(dblocks, static_cast<unsigned>(a.nch), nb);
  ScanArgs<D> no_last = a;
  no_last.h_last = nullptr;
  scan_forward_kernel<D, NPL, kFast, kChunkEnds><<<grid, kThreads, smem, stream_of(ctx)>>>(no_last);
  SAMBALM_CUDA_LAUNCH_CHECK();
  scan_carry_kernel<D, kFast><<<blocks_for(a.B * a.Dn, 128), 128, 0, stream_of(ctx)>>>(a);
  SAMBALM_CUDA_LAUNCH_CHECK();
  scan_forward_kernel<D, NPL, kFast, kChunkOut><<<grid, kThreads, smem, stream_of(ctx)>>>(no_last);
  SAMBALM_CUDA_LAUNCH_CHECK();
}

template <typename T>
void scan_forward(const Context& ctx, const char* op, T* y, float* h_last, float* chunk_states, const T* u,
                  const T* delta, const float* A, const T* Bm, const T* Cm, int64_t ld_bc, const float* Dskip,
                  const float* h0, int64_t B, int64_t L, int64_t D, int64_t N, int64_t chunk, const int32_t* slots) {
  if (N > kCudaScanMaxN) raise_unsupported(op, "N (d_state)", N, kCudaScanMaxN);
  if (B == 0 || D == 0) return;
  using Dv = device_t<T>;
  // Split chunks end on checkpoints: their length is `chunk` rounded up to a multiple of 16.
  const int64_t split =
      chunk > 0 ? (chunk + kCudaScanCheckpoint - 1) / kCudaScanCheckpoint * kCudaScanCheckpoint : kCudaScanCheckpoint;
  ScanArgs<Dv> a{};
  a.y = dev(y), a.h_last = h_last, a.chunk_states = chunk_states, a.u = dev(u), a.delta = dev(delta), a.A = A;
  a.Bm = dev(Bm), a.Cm = dev(Cm), a.ld_bc = ld_bc, a.Dskip = Dskip, a.h0 = h0, a.slots = slots;
  a.B = B, a.L = L, a.Dn = D, a.N = N, a.chunk = split, a.nch = (L + split - 1) / split;
  a.nck = cuda_scan_checkpoints(L), a.TT = 0;
  // NPL = capacity / kLanes states per thread.
  with_state_capacity<4, 16, 32, 64, kCudaScanMaxN>(
      N, [&](auto cap) { launch_npl<Dv, decltype(cap)::value / kLanes>(ctx, a); });
}

}  // namespace

#define SAMBALM_CUDA_SCAN_FWD_DEF(T)                                                                                   \
  void selective_scan_ref_forward(const Context& ctx, T* y, float* h_last, const T* u, const T* delta, const float* A, \
                                  const T* Bm, const T* Cm, int64_t ld_bc, const float* Dskip, const float* h0,        \
                                  int64_t B, int64_t L, int64_t D, int64_t N) {                                        \
    scan_forward(ctx, "selective_scan_ref_forward", y, h_last, nullptr, u, delta, A, Bm, Cm, ld_bc, Dskip, h0, B, L,   \
                 D, N, 0, nullptr);                                                                                    \
  }                                                                                                                    \
  void selective_scan_forward(const Context& ctx, T* y, float* h_last, float* chunk_states, const T* u,                \
                              const T* delta, const float* A, const T* Bm, const T* Cm, int64_t ld_bc,                 \
                              const float* Dskip, const float* h0, int64_t B, int64_t L, int64_t D, int64_t N,         \
                              int64_t chunk, const int32_t* slots) {                                                   \
    if (chunk <= 0) raise_not_positive("selective_scan_forward", "chunk", chunk);                                      \
    scan_forward(ctx, "selective_scan_forward", y, h_last, chunk_states, u, delta, A, Bm, Cm, ld_bc, Dskip, h0, B, L,  \
                 D, N, chunk, slots);                                                                                  \
  }                                                                                                                    \
  void selective_scan_step(const Context& ctx, T* y, float* h, const T* u, const T* delta, const float* A,             \
                           const T* Bm, const T* Cm, int64_t ld_bc, const float* Dskip, int64_t B, int64_t D,          \
                           int64_t N, const int32_t* slots) {                                                          \
    scan_forward(ctx, "selective_scan_step", y, h, nullptr, u, delta, A, Bm, Cm, ld_bc, Dskip, h, B, 1, D, N, 0,       \
                 slots);                                                                                               \
  }
SAMBALM_CUDA_SCAN_FWD_DEF(float)
SAMBALM_CUDA_SCAN_FWD_DEF(bf16)
#undef SAMBALM_CUDA_SCAN_FWD_DEF

}  // namespace sambalm::ops::cuda
