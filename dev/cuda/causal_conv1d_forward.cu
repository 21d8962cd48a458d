// Causal depthwise conv1d + bias + SiLU forward, bf16 activations, fp32 weights: development file.
//
// The math (the project's causal_conv1d_forward followed by silu_forward, fused):
//   out[b, t, d] = silu(bias[d] + sum_{j<K} w[d, j] * xx[b, t - (K-1) + j, d])
// where xx is x preceded by the K-1 rows of `state` ([B, K-1, D]; zeros when absent).
// x: [B, L] rows of stride ld_x (a view into the in_proj output in the model); out: [B, L, D] dense;
// w: [D, K]; bias: [D]. silu(v) = v / (1 + exp(-v)).
//
// Build: nvcc -O3 -arch=sm_90 -std=c++20 -o causal_conv1d_forward causal_conv1d_forward.cu
// Run:   ./causal_conv1d_forward [version] [--check-only]
//
// Versions:
//   1  one thread per output element, K scalar loads (neighbouring steps share them through L1).
//   2  one thread per 8 channels x 16 steps: 16-byte loads of the K-1+16 rows it needs, all issued
//      before the first use, the K-tap window slides in registers; 16-byte stores.
//   3  as 2 with 8 steps a thread (fewer registers, more threads in flight; the halo rows re-read by
//      the next thread mostly come from L2) and streaming stores (the output is not read again here).
//   4  as 2 with streaming stores. (32 steps a thread needs over 255 registers: spills.)
// Versions 2-4 reach about half the copy bandwidth: at ~200 registers only ~8 warps fit an SM, every
// thread loads its whole tile, then computes, then stores, and exits, so the memory system idles
// between a wave's loads and its stores, and 3 of every 19 rows read are halo re-reads.
// Versions 5-8 stream instead: a block owns 128 x V channels (V = 8: one 16-byte vector a thread;
// V = 4: 8 bytes) of one sequence and a run of T steps (the grid is sized from the occupancy so that
// about one wave of blocks covers B x L x D, T >= 64, so the halo is < 5% of the reads); each thread
// walks its V channels down the run, keeps the last K-1 inputs in registers and has the next rows'
// loads in flight while it computes and stores the current one, so every input row is read once and
// the memory stays busy.
//   5  V = 8, the next PF = 8 rows prefetched into registers (the loop unrolled by 8; 164 registers).
//   6  V = 8, the next S-1 = 7 rows in flight as cp.async 16-byte copies into a per-thread ring of
//      S = 8 slots in shared memory (slot-major, so a warp's accesses are conflict-free); a thread
//      reads back only what it copied itself, so no block barrier is needed; 96 registers.
//   7  as 6 with S = 16 (more bytes in flight per thread, fewer blocks per SM).
//   8  as 6 with V = 4 and S = 16: half the registers, twice the threads, the same bytes in flight
//      per thread as 6.
// Versions 5-8 use silu(v) = h + h tanh(h), h = v/2: one special-function op (tanh.approx) a value.
#include <string>

#include "common.h"

struct ConvParams {
  bf16* out;
  const bf16* x;
  int64_t ld_x;
  const float* w;
  const float* bias;
  const bf16* state;  // nullable
  int B, L, D, K;
  bool vec_x, vec_out, vec_state;
};

// =================================================================================================
// CPU reference, double accumulation.
// =================================================================================================
struct ConvHost {
  int B, L, D, K;
  int64_t ld_x;
  std::vector<float> x, w, bias, state;
  bool use_state;
};

static void conv_reference(const ConvHost& s, std::vector<double>& out) {
  out.assign(size_t(s.B) * s.L * s.D, 0.0);
  for (int b = 0; b < s.B; ++b)
    for (int t = 0; t < s.L; ++t)
      for (int d = 0; d < s.D; ++d) {
        double acc = s.bias[d];
        for (int j = 0; j < s.K; ++j) {
          const int r = t - (s.K - 1) + j;  // x row; negative rows come from the state
          double xv = 0;
          if (r >= 0) xv = s.x[(size_t(b) * s.L + r) * s.ld_x + d];
          else if (s.use_state) xv = s.state[(size_t(b) * (s.K - 1) + (s.K - 1) + r) * s.D + d];
          acc += double(s.w[size_t(d) * s.K + j]) * xv;
        }
        out[(size_t(b) * s.L + t) * s.D + d] = acc / (1.0 + std::exp(-acc));
      }
}

__device__ __forceinline__ float silu_f(float v) { return __fdividef(v, 1.f + __expf(-v)); }

// =================================================================================================
// Version 1: one thread per output element.
// =================================================================================================
template <int K>
__global__ void conv_v1_kernel(ConvParams p) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= int64_t(p.B) * p.L * p.D) return;
  const int d = idx % p.D;
  const int t = (idx / p.D) % p.L;
  const int b = idx / (int64_t(p.D) * p.L);
  float acc = p.bias[d];
#pragma unroll
  for (int j = 0; j < K; ++j) {
    const int r = t - (K - 1) + j;
    float xv = 0.f;
    if (r >= 0) xv = __bfloat162float(p.x[(int64_t(b) * p.L + r) * p.ld_x + d]);
    else if (p.state) xv = __bfloat162float(p.state[(int64_t(b) * (K - 1) + (K - 1) + r) * p.D + d]);
    acc = fmaf(p.w[d * K + j], xv, acc);
  }
  p.out[idx] = __float2bfloat16(silu_f(acc));
}

// =================================================================================================
// Versions 2-3: 8 channels x TT steps a thread.
// =================================================================================================
__device__ __forceinline__ uint4 load8(const bf16* ptr, int nvalid, bool vec) {
  uint4 v = make_uint4(0, 0, 0, 0);
  if (nvalid <= 0) return v;
  if (vec && nvalid >= 8) return __ldg(reinterpret_cast<const uint4*>(ptr));
  uint16_t tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const uint16_t* q = reinterpret_cast<const uint16_t*>(ptr);
#pragma unroll
  for (int k = 0; k < 8; ++k)
    if (k < nvalid) tmp[k] = q[k];
  memcpy(&v, tmp, 16);
  return v;
}

template <int K, int TT, bool STREAM>
__global__ void __launch_bounds__(128) conv_tiled_kernel(ConvParams p) {
  const int nc8 = (p.D + 7) / 8, ntb = (p.L + TT - 1) / TT;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= int64_t(p.B) * ntb * nc8) return;
  const int c8 = idx % nc8;
  const int tb = (idx / nc8) % ntb;
  const int b = idx / (int64_t(nc8) * ntb);
  const int ch = c8 * 8, t0 = tb * TT, nvalid = p.D - ch;

  float w[K][8], bias[8];
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const bool ok = k < nvalid;
    bias[k] = ok ? p.bias[ch + k] : 0.f;
#pragma unroll
    for (int j = 0; j < K; ++j) w[j][k] = ok ? p.w[(ch + k) * K + j] : 0.f;
  }

  // Rows t0-(K-1) .. t0+TT-1 of xx, all loads in flight before the first use.
  uint4 rows[TT + K - 1];
#pragma unroll
  for (int i = 0; i < TT + K - 1; ++i) {
    const int r = t0 - (K - 1) + i;
    if (r >= 0) {
      rows[i] = r < p.L ? load8(p.x + (int64_t(b) * p.L + r) * p.ld_x + ch, nvalid, p.vec_x) : make_uint4(0, 0, 0, 0);
    } else {
      rows[i] = p.state ? load8(p.state + (int64_t(b) * (K - 1) + (K - 1) + r) * p.D + ch, nvalid, p.vec_state)
                        : make_uint4(0, 0, 0, 0);
    }
  }

#pragma unroll
  for (int s = 0; s < TT; ++s) {
    const int t = t0 + s;
    if (t >= p.L) break;
    float acc[8];
#pragma unroll
    for (int k = 0; k < 8; ++k) acc[k] = bias[k];
#pragma unroll
    for (int j = 0; j < K; ++j) {
      float f[8];
      unpack8(rows[s + j], f);
#pragma unroll
      for (int k = 0; k < 8; ++k) acc[k] = fmaf(w[j][k], f[k], acc[k]);
    }
#pragma unroll
    for (int k = 0; k < 8; ++k) acc[k] = silu_f(acc[k]);
    const uint4 packed = pack8(acc);
    bf16* dst = p.out + (int64_t(b) * p.L + t) * p.D + ch;
    if (p.vec_out && nvalid >= 8) {
      if constexpr (STREAM) __stcs(reinterpret_cast<uint4*>(dst), packed);
      else *reinterpret_cast<uint4*>(dst) = packed;
    } else {
      uint16_t tmp[8];
      memcpy(tmp, &packed, 16);
      for (int k = 0; k < 8 && k < nvalid; ++k) reinterpret_cast<uint16_t*>(dst)[k] = tmp[k];
    }
  }
}

// =================================================================================================
// Versions 5-8: a thread streams V channels (one 16- or 8-byte vector) down a run of T steps.
// =================================================================================================
constexpr int kStreamThreads = 128;  // threads of a block, side by side over channels
constexpr int kStreamMinSteps = 64;  // shortest run: keeps the halo re-reads under 5%

__device__ __forceinline__ float silu_tanh(float v) {
  const float h = 0.5f * v;
  return fmaf(h, tanh_approx(h), h);
}

// V bf16 values in one access: uint4 (V = 8) or uint2 (V = 4).
template <int V>
struct BfVec;
template <>
struct BfVec<8> {
  using T = uint4;
};
template <>
struct BfVec<4> {
  using T = uint2;
};
template <int V>
using bfvec = typename BfVec<V>::T;

template <int V>
__device__ __forceinline__ bfvec<V> zerov() {
  if constexpr (V == 8) return make_uint4(0, 0, 0, 0);
  else return make_uint2(0, 0);
}
template <int V>
__device__ __forceinline__ void unpackv(const bfvec<V>& v, float (&f)[V]) {
  if constexpr (V == 8) {
    unpack8(v, f);
  } else {
    f[0] = __uint_as_float(v.x << 16), f[1] = __uint_as_float(v.x & 0xffff0000u);
    f[2] = __uint_as_float(v.y << 16), f[3] = __uint_as_float(v.y & 0xffff0000u);
  }
}
template <int V>
__device__ __forceinline__ bfvec<V> packv(const float (&f)[V]) {
  if constexpr (V == 8) {
    return pack8(f);
  } else {
    uint32_t w[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const __nv_bfloat162 q = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
      memcpy(&w[i], &q, 4);
    }
    return make_uint2(w[0], w[1]);
  }
}
// V channels at ptr, of which nvalid (may be <= 0) exist; vec: one aligned vector access allowed.
template <int V>
__device__ __forceinline__ bfvec<V> loadv(const bf16* ptr, int nvalid, bool vec) {
  if (nvalid <= 0) return zerov<V>();
  if (vec && nvalid >= V) return __ldg(reinterpret_cast<const bfvec<V>*>(ptr));
  uint16_t tmp[V];
  const uint16_t* q = reinterpret_cast<const uint16_t*>(ptr);
#pragma unroll
  for (int k = 0; k < V; ++k) tmp[k] = k < nvalid ? q[k] : uint16_t(0);
  bfvec<V> v;
  memcpy(&v, tmp, sizeof(v));
  return v;
}
template <int V>
__device__ __forceinline__ void storev_stream(bf16* dst, const bfvec<V>& v, int nvalid, bool vec) {
  if (vec && nvalid >= V) {
    __stcs(reinterpret_cast<bfvec<V>*>(dst), v);
  } else {
    uint16_t tmp[V];
    memcpy(tmp, &v, sizeof(v));
    for (int k = 0; k < V && k < nvalid; ++k) reinterpret_cast<uint16_t*>(dst)[k] = tmp[k];
  }
}

// Row r of xx (r < 0: the state, or zeros; r >= L: zeros) at channels ch..ch+V-1.
template <int K, int V>
__device__ __forceinline__ bfvec<V> load_xx_row(const ConvParams& p, int b, int r, int ch, int nvalid) {
  if (r >= p.L) return zerov<V>();
  if (r >= 0) return loadv<V>(p.x + (int64_t(b) * p.L + r) * p.ld_x + ch, nvalid, p.vec_x);
  if (!p.state) return zerov<V>();
  return loadv<V>(p.state + (int64_t(b) * (K - 1) + (K - 1) + r) * p.D + ch, nvalid, p.vec_state);
}

// Which (sequence, channel strip, run of steps) a block owns; the runs of one strip are neighbours
// in blockIdx.x.
struct StreamTile {
  int b, ch, nvalid, t0, t1;
  bool active;
};
template <int V>
__device__ __forceinline__ StreamTile stream_tile(const ConvParams& p, int T, int nchunks) {
  const int ncv = (p.D + V - 1) / V;
  const int nstrips = (ncv + kStreamThreads - 1) / kStreamThreads;
  const int chunk = blockIdx.x % nchunks;
  const int strip = (blockIdx.x / nchunks) % nstrips;
  StreamTile tile;
  tile.b = blockIdx.x / (nchunks * nstrips);
  const int cv = strip * kStreamThreads + threadIdx.x;
  tile.ch = cv * V;
  tile.nvalid = p.D - tile.ch;
  tile.t0 = chunk * T;
  tile.t1 = min(p.L, tile.t0 + T);
  tile.active = cv < ncv && tile.t0 < tile.t1;
  return tile;
}

// The per-step work shared by versions 5-8: out row t from the K-1 previous inputs (win, fp32) and
// the current one (cur), then slide the window. VEC: the whole problem is in aligned V-wide vectors
// (D % V == 0, ld_x % V == 0, aligned pointers), so no scalar paths (fewer registers).
template <int K, int V, bool VEC>
struct StreamStep {
  float w[K][V], bias[V], win[K - 1][V];

  __device__ __forceinline__ void init(const ConvParams& p, const StreamTile& tile) {
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const bool ok = k < tile.nvalid;
      bias[k] = ok ? p.bias[tile.ch + k] : 0.f;
#pragma unroll
      for (int j = 0; j < K; ++j) w[j][k] = ok ? p.w[(tile.ch + k) * K + j] : 0.f;
    }
#pragma unroll
    for (int j = 0; j < K - 1; ++j)
      unpackv<V>(load_xx_row<K, V>(p, tile.b, tile.t0 - (K - 1) + j, tile.ch, tile.nvalid), win[j]);
  }

  __device__ __forceinline__ void step(const ConvParams& p, const StreamTile& tile, int t, const bfvec<V>& cur) {
    float f[V], acc[V];
    unpackv<V>(cur, f);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      float a = fmaf(w[K - 1][k], f[k], bias[k]);
#pragma unroll
      for (int j = 0; j < K - 1; ++j) a = fmaf(w[j][k], win[j][k], a);
      acc[k] = silu_tanh(a);
    }
#pragma unroll
    for (int k = 0; k < V; ++k) {
#pragma unroll
      for (int j = 0; j + 1 < K - 1; ++j) win[j][k] = win[j + 1][k];
      win[K - 2][k] = f[k];
    }
    bf16* dst = p.out + (int64_t(tile.b) * p.L + t) * p.D + tile.ch;
    if constexpr (VEC) __stcs(reinterpret_cast<bfvec<V>*>(dst), packv<V>(acc));
    else storev_stream<V>(dst, packv<V>(acc), tile.nvalid, p.vec_out);
  }
};

template <int V, bool VEC>
__device__ __forceinline__ bfvec<V> load_x(const bf16* ptr, int nvalid) {
  if constexpr (VEC) return __ldg(reinterpret_cast<const bfvec<V>*>(ptr));
  else return loadv<V>(ptr, nvalid, false);
}

// Version 5: the next PF rows in registers.
template <int K, int PF, int V, bool VEC>
__global__ void __launch_bounds__(kStreamThreads) conv_stream_reg_kernel(ConvParams p, int T, int nchunks) {
  const StreamTile tile = stream_tile<V>(p, T, nchunks);
  if (!tile.active) return;
  StreamStep<K, V, VEC> st;
  st.init(p, tile);
  const bf16* xb = p.x + int64_t(tile.b) * p.L * p.ld_x + tile.ch;
  bfvec<V> buf[PF];
#pragma unroll
  for (int i = 0; i < PF; ++i) {
    const int t = tile.t0 + i;
    buf[i] = t < tile.t1 ? load_x<V, VEC>(xb + int64_t(t) * p.ld_x, tile.nvalid) : zerov<V>();
  }
  for (int tb = tile.t0; tb < tile.t1; tb += PF) {
#pragma unroll
    for (int i = 0; i < PF; ++i) {
      const int t = tb + i;
      if (t >= tile.t1) break;
      const bfvec<V> cur = buf[i];
      const int tn = t + PF;  // refill the slot just emptied: PF rows ahead
      buf[i] = tn < tile.t1 ? load_x<V, VEC>(xb + int64_t(tn) * p.ld_x, tile.nvalid) : zerov<V>();
      st.step(p, tile, t, cur);
    }
  }
}

// 16 bytes: cp.async.cg (L2 only); 8 bytes: cp.async.ca (the .cg form takes 16 bytes only).
template <int V>
__device__ __forceinline__ void cp_async_v(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  if constexpr (V == 8) asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
  else asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Versions 6-8: the next S-1 rows in flight as cp.async copies into a per-thread ring of S slots.
// Row t0+i lives in slot i % S; a copy group is committed for every row (empty past the run's end),
// so after the prologue's S-1 groups and i more, wait_group(S-2) means rows up to t0+i have landed.
// A lane whose V channels are not one aligned vector (odd stride, the last partial vector) loads
// synchronously and stores into its slot itself.
template <int K, int S, int V, bool VEC>
__global__ void __launch_bounds__(kStreamThreads) conv_stream_async_kernel(ConvParams p, int T, int nchunks) {
  static_assert((S & (S - 1)) == 0 && S >= 2, "S: a power of two");
  extern __shared__ uint4 ring[];  // [S][kStreamThreads] vectors of V bf16
  const StreamTile tile = stream_tile<V>(p, T, nchunks);
  if (!tile.active) return;
  StreamStep<K, V, VEC> st;
  st.init(p, tile);
  const bf16* xb = p.x + int64_t(tile.b) * p.L * p.ld_x + tile.ch;
  const bool async_ok = VEC || (p.vec_x && tile.nvalid >= V);
  bfvec<V>* my = reinterpret_cast<bfvec<V>*>(ring) + threadIdx.x;
  auto issue = [&](int t, int slot) {
    if (t >= tile.t1) return;
    const bf16* src = xb + int64_t(t) * p.ld_x;
    if (async_ok) cp_async_v<V>(my + slot * kStreamThreads, src);
    else my[slot * kStreamThreads] = loadv<V>(src, tile.nvalid, false);
  };
#pragma unroll
  for (int s = 0; s < S - 1; ++s) {
    issue(tile.t0 + s, s);
    cp_async_commit();
  }
  const int n = tile.t1 - tile.t0;
#pragma unroll 2
  for (int i = 0; i < n; ++i) {
    cp_async_wait<S - 2>();
    const bfvec<V> cur = my[(i & (S - 1)) * kStreamThreads];
    issue(tile.t0 + i + S - 1, (i + S - 1) & (S - 1));  // the slot read one step ago
    cp_async_commit();
    st.step(p, tile, tile.t0 + i, cur);
  }
  cp_async_wait<0>();  // nothing left in flight at exit (the last groups are empty)
}

// Grid of versions 5-8: B x strips x runs, with the run length T chosen so that the grid is about one
// wave at the kernel's occupancy (runs no shorter than kStreamMinSteps).
template <int V, typename Kernel>
static void launch_stream(Kernel kernel, const ConvParams& p, size_t smem, int blocks_per_sm) {
  static const int num_sms = [] {
    int dev = 0, n = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    return n;
  }();
  const int ncv = (p.D + V - 1) / V;
  const int64_t strips = int64_t(p.B) * ((ncv + kStreamThreads - 1) / kStreamThreads);
  const int64_t wave = int64_t(num_sms) * blocks_per_sm;
  const int64_t max_chunks = (p.L + kStreamMinSteps - 1) / kStreamMinSteps;
  const int64_t want = std::clamp<int64_t>(wave / strips, 1, std::max<int64_t>(max_chunks, 1));
  const int T = int((p.L + want - 1) / want);
  const int nchunks = (p.L + T - 1) / T;
  kernel<<<unsigned(strips * nchunks), kStreamThreads, smem>>>(p, T, nchunks);
}

template <typename Kernel>
static int occupancy(Kernel kernel, size_t smem) {
  int n = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, kStreamThreads, smem));
  return std::max(n, 1);
}

// The vector flags for V-wide accesses (run_version sets them for 16 bytes).
static ConvParams with_vec_flags(ConvParams p, int V) {
  const uintptr_t mask = uintptr_t(2 * V - 1);
  p.vec_x = p.ld_x % V == 0 && (reinterpret_cast<uintptr_t>(p.x) & mask) == 0;
  p.vec_out = p.D % V == 0 && (reinterpret_cast<uintptr_t>(p.out) & mask) == 0;
  p.vec_state = p.D % V == 0 && (reinterpret_cast<uintptr_t>(p.state) & mask) == 0;
  return p;
}
static bool all_vec(const ConvParams& p, int V) {
  return p.vec_x && p.vec_out && p.D % V == 0 && (!p.state || p.vec_state);
}

template <int K, int PF, int V, bool VEC>
static void run_stream_reg_t(const ConvParams& p) {
  static const int occ = occupancy(conv_stream_reg_kernel<K, PF, V, VEC>, 0);
  launch_stream<V>(conv_stream_reg_kernel<K, PF, V, VEC>, p, 0, occ);
}
template <int K, int PF, int V>
static void run_stream_reg(const ConvParams& p0) {
  const ConvParams p = with_vec_flags(p0, V);
  if (all_vec(p, V)) run_stream_reg_t<K, PF, V, true>(p);
  else run_stream_reg_t<K, PF, V, false>(p);
}

template <int K, int S, int V, bool VEC>
static void run_stream_async_t(const ConvParams& p) {
  constexpr size_t smem = size_t(S) * kStreamThreads * sizeof(bfvec<V>);
  static_assert(smem <= 48 * 1024, "over the default dynamic shared-memory limit");
  static const int occ = occupancy(conv_stream_async_kernel<K, S, V, VEC>, smem);
  launch_stream<V>(conv_stream_async_kernel<K, S, V, VEC>, p, smem, occ);
}
template <int K, int S, int V>
static void run_stream_async(const ConvParams& p0) {
  const ConvParams p = with_vec_flags(p0, V);
  if (all_vec(p, V)) run_stream_async_t<K, S, V, true>(p);
  else run_stream_async_t<K, S, V, false>(p);
}

// =================================================================================================
// Launchers
// =================================================================================================
constexpr int kNumVersions = 8;

template <int K>
static void run_version_k(int version, const ConvParams& p) {
  const int64_t nc8 = (p.D + 7) / 8;
  switch (version) {
    case 1: {
      const int64_t n = int64_t(p.B) * p.L * p.D;
      conv_v1_kernel<K><<<(n + 255) / 256, 256>>>(p);
      break;
    }
    case 2: {
      const int64_t n = int64_t(p.B) * ((p.L + 15) / 16) * nc8;
      conv_tiled_kernel<K, 16, false><<<(n + 127) / 128, 128>>>(p);
      break;
    }
    case 3: {
      const int64_t n = int64_t(p.B) * ((p.L + 7) / 8) * nc8;
      conv_tiled_kernel<K, 8, true><<<(n + 127) / 128, 128>>>(p);
      break;
    }
    case 4: {
      const int64_t n = int64_t(p.B) * ((p.L + 15) / 16) * nc8;
      conv_tiled_kernel<K, 16, true><<<(n + 127) / 128, 128>>>(p);
      break;
    }
    case 5: run_stream_reg<K, 8, 8>(p); break;
    case 6: run_stream_async<K, 8, 8>(p); break;
    case 7: run_stream_async<K, 16, 8>(p); break;
    case 8: run_stream_async<K, 16, 4>(p); break;
    default: std::fprintf(stderr, "no version %d\n", version); std::exit(2);
  }
  CUDA_CHECK_LAUNCH();
}

static void run_version(int version, ConvParams p) {
  p.vec_x = p.ld_x % 8 == 0 && aligned16(p.x);
  p.vec_out = p.D % 8 == 0 && aligned16(p.out);
  p.vec_state = p.D % 8 == 0 && aligned16(p.state);
  switch (p.K) {
    case 2: run_version_k<2>(version, p); break;
    case 3: run_version_k<3>(version, p); break;
    case 4: run_version_k<4>(version, p); break;
    default: std::fprintf(stderr, "K=%d not built (2..4)\n", p.K); std::exit(2);
  }
}

// =================================================================================================
// Check and timing
// =================================================================================================
static ConvHost make_host_problem(int B, int L, int D, int K, int64_t ld_x, bool use_state, uint64_t seed) {
  HostRng rng(seed);
  ConvHost s;
  s.B = B, s.L = L, s.D = D, s.K = K, s.ld_x = ld_x, s.use_state = use_state;
  s.x = host_random_bf(size_t(B) * L * ld_x, rng, -2.f, 2.f);
  s.w = host_random_f(size_t(D) * K, rng, -0.7f, 0.7f);
  s.bias = host_random_f(D, rng, -0.5f, 0.5f);
  s.state = use_state ? host_random_bf(size_t(B) * (K - 1) * D, rng, -2.f, 2.f) : std::vector<float>();
  return s;
}

static bool check_version(int version, const ConvHost& s, const char* label) {
  std::vector<double> ref;
  conv_reference(s, ref);
  bf16* x = device_upload_bf(s.x);
  float* w = device_upload_f(s.w);
  float* bias = device_upload_f(s.bias);
  bf16* state = s.use_state ? device_upload_bf(s.state) : nullptr;
  const size_t n = size_t(s.B) * s.L * s.D;
  bf16* out = device_alloc<bf16>(n);
  device_poison_bf16(out, n);
  ConvParams p{};
  p.out = out, p.x = x, p.ld_x = s.ld_x, p.w = w, p.bias = bias, p.state = state;
  p.B = s.B, p.L = s.L, p.D = s.D, p.K = s.K;
  run_version(version, p);
  CUDA_CHECK(cudaDeviceSynchronize());
  const ErrorReport e = compare(device_download_bf(out, n), ref);
  const bool ok = e.ok(1e-2);
  std::printf("check v%d %-40s out rel %.2e max abs %.2e (nonfinite %zu)  %s\n", version, label, e.rel_l2, e.max_abs,
              e.nonfinite, ok ? "OK" : "FAIL");
  for (void* ptr : {(void*)x, (void*)w, (void*)bias, (void*)state, (void*)out})
    if (ptr) CUDA_CHECK(cudaFree(ptr));
  return ok;
}

static unsigned check_all(int version) {
  const ConvHost s1 = make_host_problem(2, 333, 97, 4, 2 * 97 + 3, true, 7);  // odd: scalar paths, state
  const ConvHost s2 = make_host_problem(1, 1000, 256, 4, 2 * 256, false, 8);  // aligned view, 16-byte paths
  const ConvHost s3 = make_host_problem(3, 45, 64, 4, 64, true, 9);           // aligned with state, L < tile
  const ConvHost s4 = make_host_problem(2, 77, 40, 3, 40, true, 10);          // K = 3
  const ConvHost s5 = make_host_problem(2, 2, 72, 4, 72, true, 13);           // L < K-1: window spans state
  const ConvHost s6 = make_host_problem(1, 300, 1096, 4, 1096, false, 14);    // 2 strips of 1024 channels
  const ConvHost s7 = make_host_problem(2, 200, 61, 3, 67, true, 15);         // K = 3, odd D and stride
  unsigned passed = 0;  // bit v: version v passed every check
  for (int v = 1; v <= kNumVersions; ++v) {
    if (version && v != version) continue;
    bool ok = check_version(v, s1, "B2 L333 D97 K4 state, odd stride");
    ok &= check_version(v, s2, "B1 L1000 D256 K4 view (ld 2D)");
    ok &= check_version(v, s3, "B3 L45 D64 K4 state");
    ok &= check_version(v, s4, "B2 L77 D40 K3 state");
    ok &= check_version(v, s5, "B2 L2 D72 K4 state");
    ok &= check_version(v, s6, "B1 L300 D1096 K4");
    ok &= check_version(v, s7, "B2 L200 D61 K3 state, odd stride");
    if (ok) passed |= 1u << v;
  }
  return passed;
}

// causal_conv1d_backward.cu includes this file for the forward kernels (its fwd+bwd timing).
#ifndef CAUSAL_CONV1D_FORWARD_NO_MAIN
int main(int argc, char** argv) {
  int version = 0;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--check-only") check_only = true;
    else version = std::atoi(a.c_str());
  }
  CUDA_CHECK(cudaSetDevice(0));
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, sm_%d%d\n", prop.name, prop.multiProcessorCount, prop.major, prop.minor);
  const unsigned passed = check_all(version);
  const unsigned wanted = version ? 1u << version : ((1u << (kNumVersions + 1)) - 2);
  const bool ok = passed == wanted;
  std::printf("checks: %s\n", ok ? "all passed" : "FAILED (failing versions are not timed)");
  if (check_only) return ok ? 0 : 1;

  const int B = 4, L = 4096, D = 3072, K = 4;
  const size_t n = size_t(B) * L * D;
  bf16* x = device_alloc<bf16>(n);
  bf16* out = device_alloc<bf16>(n);
  device_fill_uniform_bf16(x, n, 11, -2.f, 2.f);
  HostRng rng(12);
  float* w = device_upload_f(host_random_f(size_t(D) * K, rng, -0.7f, 0.7f));
  float* bias = device_upload_f(host_random_f(D, rng, -0.5f, 0.5f));
  ConvParams p{};
  p.out = out, p.x = x, p.ld_x = D, p.w = w, p.bias = bias, p.state = nullptr;
  p.B = B, p.L = L, p.D = D, p.K = K;
  for (int v = 1; v <= kNumVersions; ++v) {
    if (!(passed >> v & 1)) continue;
    device_poison_bf16(out, n);
    const float ms = time_median_ms([&] { run_version(v, p); });
    std::vector<bf16> probe(4096);
    CUDA_CHECK(cudaMemcpy(probe.data(), out + n - probe.size(), probe.size() * sizeof(bf16), cudaMemcpyDeviceToHost));
    size_t bad = 0;
    for (auto xx : probe) bad += !std::isfinite(host_bf2f(xx));
    std::printf("time  v%d B%d L%d D%d W%d  median %.4f ms  %.2f TB/s (x read once + out written)%s\n", v, B, L, D, K,
                ms, 2.0 * n * sizeof(bf16) / ms * 1e-9, bad ? "  UNWRITTEN OUTPUT" : "");
    std::printf("RESULT|causal_conv1d_fwd|B%d L%d D%d W%d|v%d|%.4f\n", B, L, D, K, v, ms);
  }
  for (void* ptr : {(void*)x, (void*)out, (void*)w, (void*)bias}) CUDA_CHECK(cudaFree(ptr));
  return ok ? 0 : 1;
}
#endif  // CAUSAL_CONV1D_FORWARD_NO_MAIN
