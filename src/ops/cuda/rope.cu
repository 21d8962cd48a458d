// RoPE (GPT-NeoX "rotate halves"), the split of the fused qkv projection, and the KV-cache write
// (CUDA). The formulas are the CPU's (src/ops/cpu/rope.cpp, attention_cache.cpp):
//   angle(p, i) = (p / condense_ratio) * base^(-2i / rope_dims)     in double, rounded once
//   rotation:  out[i] = x[i] c - x[i+half] s,   out[i+half] = x[i+half] c + x[i] s
//   transpose: dx[i] += d[i] c + d[i+half] s,   dx[i+half] += d[i+half] c - d[i] s
// The split and its backward move eight elements a thread (16-byte loads and stores, one block per
// qkv row, the table row read once per rotated pair of chunks) when the head size and rope_dims / 2
// are multiples of 8 and the buffers 16-byte aligned, as in every model here; otherwise, and for
// the table and cache kernels, one thread per element in grid-stride loops with scalar loads.
#include "ops/cuda/check.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/dense_common.cuh"
#include "ops/cuda/vec8.cuh"

namespace sambalm::ops::cuda {

namespace {

using namespace dense_detail;

// The table row entry i of absolute position p, computed as the CPU computes it (double precision
// pow, cos and sin; the GPU's double functions are within 2 ulp, far below the float rounding).
template <typename S>
__device__ __forceinline__ void rope_entry(S* cos, S* sin, int64_t p, int64_t i, int64_t rope_dims, double base,
                                           double condense_ratio) {
  const double pos = static_cast<double>(p) / condense_ratio;
  const double angle = pos * pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(rope_dims));
  double s, c;
  sincos(angle, &s, &c);
  store(cos, static_cast<float>(c));
  store(sin, static_cast<float>(s));
}

// cos/sin[p, i] for p < max_pos, i < half.
template <typename S>
__global__ void rope_table_kernel(S* cos, S* sin, int64_t max_pos, int64_t rope_dims, double base,
                                  double condense_ratio) {
  const int64_t half = rope_dims / 2, total = max_pos * half;
  for (int64_t e = global_index(); e < total; e += grid_stride()) {
    const int64_t p = e / half, i = e - p * half;
    rope_entry(cos + e, sin + e, p, i, rope_dims, base, condense_ratio);
  }
}

// cos/sin[b, t, i] for position pos[b] + t.
template <typename S>
__global__ void rope_at_positions_kernel(S* cos, S* sin, const int64_t* pos, int64_t B, int64_t L, int64_t rope_dims,
                                         double base, double condense_ratio) {
  const int64_t half = rope_dims / 2, total = B * L * half;
  for (int64_t e = global_index(); e < total; e += grid_stride()) {
    const int64_t row = e / half, i = e - row * half, b = row / L, t = row - b * L;
    rope_entry(cos + e, sin + e, pos[b] + t, i, rope_dims, base, condense_ratio);
  }
}

// Where element e of a fused qkv row (lit_gpt grouped layout: G groups of qpk query heads, one key,
// one value head, hs each) belongs: the destination offset in q/k/v, which tensor, and whether RoPE
// applies. Rows of qkv are (b, t).
struct QkvSlot {
  int which;       // 0 q, 1 k, 2 v
  int64_t offset;  // element offset of the head row's start in q/k/v
};
__device__ __forceinline__ QkvSlot qkv_slot(int64_t head, int64_t b, int64_t t, int64_t Tn, int64_t H, int64_t G,
                                            int64_t hs) {
  const int64_t qpk = H / G, g = head / (qpk + 2), j = head - g * (qpk + 2);
  if (j < qpk) return {0, ((b * H + g * qpk + j) * Tn + t) * hs};
  return {j == qpk ? 1 : 2, ((b * G + g) * Tn + t) * hs};
}

// q[B,H,T,hs], k, v[B,G,T,hs] from qkv[B,T,(H+2G)*hs]; q and k rotated at position pos0 + t, table
// rows (b * cs_batch_rows + pos0 + t). One thread per qkv element.
template <typename S>
__global__ void qkv_split_rope_forward_kernel(S* q, S* k, S* v, const S* qkv, const S* cos, const S* sin, int64_t B,
                                              int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t half, int64_t pos0,
                                              int64_t cs_batch_rows) {
  const int64_t heads = H + 2 * G, row_len = heads * hs, total = B * Tn * row_len;
  for (int64_t idx = global_index(); idx < total; idx += grid_stride()) {
    const int64_t bt = idx / row_len, in_row = idx - bt * row_len, head = in_row / hs, e = in_row - head * hs;
    const int64_t b = bt / Tn, t = bt - b * Tn;
    const QkvSlot slot = qkv_slot(head, b, t, Tn, H, G, hs);
    S* dst = (slot.which == 0 ? q : slot.which == 1 ? k : v) + slot.offset;
    const S* src = qkv + bt * row_len + head * hs;
    if (slot.which < 2 && e < 2 * half) {
      const int64_t cs_row = (b * cs_batch_rows + pos0 + t) * half;
      if (e < half) {
        const float c = load(cos + cs_row + e), s = load(sin + cs_row + e);
        store(dst + e, load(src + e) * c - load(src + e + half) * s);
      } else {
        const int64_t i = e - half;
        const float c = load(cos + cs_row + i), s = load(sin + cs_row + i);
        store(dst + e, load(src + e) * c + load(src + i) * s);
      }
    } else {
      dst[e] = src[e];
    }
  }
}

// dqkv[B,T,(H+2G)*hs] += the gradients dq, dk, dv mapped back through RoPE and the split (a null
// gradient adds nothing). One thread per dqkv element.
template <typename S>
__global__ void qkv_split_rope_backward_kernel(S* dqkv, const S* dq, const S* dk, const S* dv, const S* cos,
                                               const S* sin, int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs,
                                               int64_t half, int64_t pos0, int64_t cs_batch_rows) {
  const int64_t heads = H + 2 * G, row_len = heads * hs, total = B * Tn * row_len;
  for (int64_t idx = global_index(); idx < total; idx += grid_stride()) {
    const int64_t bt = idx / row_len, in_row = idx - bt * row_len, head = in_row / hs, e = in_row - head * hs;
    const int64_t b = bt / Tn, t = bt - b * Tn;
    const QkvSlot slot = qkv_slot(head, b, t, Tn, H, G, hs);
    const S* grad = slot.which == 0 ? dq : slot.which == 1 ? dk : dv;
    if (!grad) continue;
    const S* src = grad + slot.offset;
    float add;
    if (slot.which < 2 && e < 2 * half) {
      const int64_t cs_row = (b * cs_batch_rows + pos0 + t) * half;
      if (e < half) {
        const float c = load(cos + cs_row + e), s = load(sin + cs_row + e);
        add = load(src + e) * c + load(src + e + half) * s;
      } else {
        const int64_t i = e - half;
        const float c = load(cos + cs_row + i), s = load(sin + cs_row + i);
        add = load(src + e) * c - load(src + i) * s;
      }
    } else {
      add = load(src + e);
    }
    add_to(dqkv + idx, add);
  }
}

// ---- eight-wide split + RoPE (hs and half multiples of 8, every pointer 16-byte aligned) ----------
// A qkv row (b, t) is cut into units of eight elements. A rotated (query or key) head has Ur = hs/8 -
// half/8 units: unit u < half/8 is a pair (elements 8u.. and half + 8u.., which the rotation mixes),
// the rest copy the pass-through dims 2 half ..; a value head has hs/8 copy units. Within a group of
// qpk + 2 heads the units run q heads, key head, value head. One block per row (grid-stride over
// rows), its threads over the row's units; the row's cos/sin entries are read once per pair unit.
struct RopeUnits {
  int pairs;  // half / 8
  int rot;    // units of a rotated head: hs/8 - half/8
  int val;    // units of a value head: hs/8
  int group;  // (qpk + 1) * rot + val
  int qpk;
};

template <typename S>
__global__ void qkv_split_rope_forward_vec_kernel(S* q, S* k, S* v, const S* qkv, const S* cos, const S* sin, int64_t B,
                                                  int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t half,
                                                  int64_t pos0, int64_t cs_batch_rows, RopeUnits U) {
  const int64_t rows = B * Tn, row_len = (H + 2 * G) * hs;
  const int units = static_cast<int>(G) * U.group;
  for (int64_t bt = blockIdx.x; bt < rows; bt += gridDim.x) {
    const int64_t b = bt / Tn, t = bt - b * Tn;
    const S* src_row = qkv + bt * row_len;
    const int64_t cs_row = (b * cs_batch_rows + pos0 + t) * half;
    for (int u = threadIdx.x; u < units; u += blockDim.x) {
      const int g = u / U.group;
      int r = u - g * U.group;
      const int j = r < (U.qpk + 1) * U.rot ? r / U.rot : U.qpk + 1;  // head within the group
      r -= j * U.rot;                                                 // unit within the head
      const S* src = src_row + (static_cast<int64_t>(g) * (U.qpk + 2) + j) * hs;
      S* dst =
          j < U.qpk ? q + ((b * H + g * U.qpk + j) * Tn + t) * hs : (j == U.qpk ? k : v) + ((b * G + g) * Tn + t) * hs;
      if (j <= U.qpk && r < U.pairs) {
        const int64_t e = 8 * static_cast<int64_t>(r);
        const F8 x1 = load8(src + e), x2 = load8(src + e + half), c = load8(cos + cs_row + e),
                 sn = load8(sin + cs_row + e);
        F8 o1, o2;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          o1.v[i] = x1.v[i] * c.v[i] - x2.v[i] * sn.v[i];
          o2.v[i] = x2.v[i] * c.v[i] + x1.v[i] * sn.v[i];
        }
        store8(dst + e, o1);
        store8(dst + e + half, o2);
      } else {
        // Copy unit: a value head's unit r, or a rotated head's pass-through unit past the pairs.
        const int64_t e = j <= U.qpk ? 2 * half + 8 * static_cast<int64_t>(r - U.pairs) : 8 * static_cast<int64_t>(r);
        *reinterpret_cast<uint4*>(dst + e) = *reinterpret_cast<const uint4*>(src + e);
        if (sizeof(S) == 4) *reinterpret_cast<uint4*>(dst + e + 4) = *reinterpret_cast<const uint4*>(src + e + 4);
      }
    }
  }
}

// dqkv += the gradients mapped back through RoPE and the split, unit by unit as the forward (a null
// gradient adds nothing).
template <typename S>
__global__ void qkv_split_rope_backward_vec_kernel(S* dqkv, const S* dq, const S* dk, const S* dv, const S* cos,
                                                   const S* sin, int64_t B, int64_t Tn, int64_t H, int64_t G,
                                                   int64_t hs, int64_t half, int64_t pos0, int64_t cs_batch_rows,
                                                   RopeUnits U) {
  const int64_t rows = B * Tn, row_len = (H + 2 * G) * hs;
  const int units = static_cast<int>(G) * U.group;
  for (int64_t bt = blockIdx.x; bt < rows; bt += gridDim.x) {
    const int64_t b = bt / Tn, t = bt - b * Tn;
    S* dst_row = dqkv + bt * row_len;
    const int64_t cs_row = (b * cs_batch_rows + pos0 + t) * half;
    for (int u = threadIdx.x; u < units; u += blockDim.x) {
      const int g = u / U.group;
      int r = u - g * U.group;
      const int j = r < (U.qpk + 1) * U.rot ? r / U.rot : U.qpk + 1;
      r -= j * U.rot;
      const S* grad = j < U.qpk ? dq : j == U.qpk ? dk : dv;
      if (!grad) continue;
      const S* src = j < U.qpk ? grad + ((b * H + g * U.qpk + j) * Tn + t) * hs : grad + ((b * G + g) * Tn + t) * hs;
      S* dst = dst_row + (static_cast<int64_t>(g) * (U.qpk + 2) + j) * hs;
      if (j <= U.qpk && r < U.pairs) {
        const int64_t e = 8 * static_cast<int64_t>(r);
        const F8 d1 = load8(src + e), d2 = load8(src + e + half), c = load8(cos + cs_row + e),
                 sn = load8(sin + cs_row + e);
        F8 a1, a2;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          a1.v[i] = d1.v[i] * c.v[i] + d2.v[i] * sn.v[i];
          a2.v[i] = d2.v[i] * c.v[i] - d1.v[i] * sn.v[i];
        }
        add8(dst + e, a1);
        add8(dst + e + half, a2);
      } else {
        const int64_t e = j <= U.qpk ? 2 * half + 8 * static_cast<int64_t>(r - U.pairs) : 8 * static_cast<int64_t>(r);
        add8(dst + e, load8(src + e));
      }
    }
  }
}

// The eight-wide kernels apply when the units are whole and every pointer is 16-byte aligned (the
// row, head and table offsets are then multiples of eight elements), and the unit counts fit int.
template <typename S>
bool rope_vec_ok(int64_t H, int64_t G, int64_t hs, int64_t half, const S* a, const S* b, const S* c, const S* d,
                 const S* cos, const S* sin) {
  if (hs % 8 != 0 || half % 8 != 0 || G <= 0 || H % G != 0) return false;
  if ((H + 2 * G) * (hs / 8) > (int64_t(1) << 30)) return false;
  return aligned16(a, b, c, d) && (half == 0 || aligned16(cos, sin));
}
inline RopeUnits rope_units(int64_t H, int64_t G, int64_t hs, int64_t half) {
  RopeUnits U;
  U.pairs = static_cast<int>(half / 8);
  U.val = static_cast<int>(hs / 8);
  U.rot = U.val - U.pairs;
  U.qpk = static_cast<int>(H / G);
  U.group = (U.qpk + 1) * U.rot + U.val;
  return U;
}
// Threads per row block: the row's units rounded up to a warp when they fit kThreads; otherwise the
// warp multiple from 128 to kThreads that leaves the fewest idle threads in the row's last sweep
// (Samba's 384 units a row: 192 threads, two full sweeps).
inline int rope_threads(int64_t G, const RopeUnits& U) {
  const int64_t units = G * U.group;
  if (units <= kThreads) return static_cast<int>((units + 31) / 32 * 32);
  int best = kThreads;
  int64_t best_idle = (units + kThreads - 1) / kThreads * kThreads - units;
  for (int t = kThreads - 32; t >= 128; t -= 32) {
    const int64_t idle = (units + t - 1) / t * t - units;
    if (idle < best_idle) best = t, best_idle = idle;
  }
  return best;
}

// k_cache/v_cache[S, G, cap, hs] entry (pos[b] + t) % cap of slot slots[b] = k_new/v_new[b, g, t] for the
// last min(L, cap) new tokens t (earlier ones would be overwritten within this call: the CPU writes them
// in order, so only the last survive; skipping them keeps every written element single-writer).
template <typename S>
__global__ void kv_cache_write_kernel(S* k_cache, S* v_cache, const S* k_new, const S* v_new, const int32_t* slots,
                                      const int64_t* pos, int64_t B, int64_t L, int64_t G, int64_t hs, int64_t cap) {
  const int64_t keep = L < cap ? L : cap, first = L - keep, total = B * G * keep * hs;
  for (int64_t idx = global_index(); idx < total; idx += grid_stride()) {
    int64_t rest = idx;
    const int64_t e = rest % hs;
    rest /= hs;
    const int64_t t = first + rest % keep;
    rest /= keep;
    const int64_t g = rest % G, b = rest / G;
    const int64_t ring = (static_cast<int64_t>(slots[b]) * G + g) * cap * hs;
    const int64_t entry = (pos[b] + t) % cap;
    const int64_t src = ((b * G + g) * L + t) * hs + e, dst = ring + entry * hs + e;
    k_cache[dst] = k_new[src];
    v_cache[dst] = v_new[src];
  }
}

template <typename S>
void rope_table_impl(const Context& ctx, S* cos, S* sin, int64_t max_pos, int64_t rope_dims, double base,
                     double condense_ratio) {
  const int64_t total = max_pos * (rope_dims / 2);
  if (total <= 0) return;
  rope_table_kernel<<<blocks_for(total), kThreads, 0, stream_of(ctx)>>>(cos, sin, max_pos, rope_dims, base,
                                                                        condense_ratio);
  SAMBALM_CUDA_LAUNCH_CHECK();
}

template <typename S>
void rope_at_positions_impl(const Context& ctx, S* cos, S* sin, const int64_t* pos, int64_t B, int64_t L,
                            int64_t rope_dims, double base, double condense_ratio) {
  const int64_t total = B * L * (rope_dims / 2);
  if (total <= 0) return;
  rope_at_positions_kernel<<<blocks_for(total), kThreads, 0, stream_of(ctx)>>>(cos, sin, pos, B, L, rope_dims, base,
                                                                               condense_ratio);
  SAMBALM_CUDA_LAUNCH_CHECK();
}

template <typename S>
void qkv_forward_impl(const Context& ctx, S* q, S* k, S* v, const S* qkv, const S* cos, const S* sin, int64_t B,
                      int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t rope_dims, int64_t pos0,
                      int64_t cs_batch_rows) {
  const int64_t total = B * Tn * (H + 2 * G) * hs;
  if (total <= 0) return;
  const int64_t half = rope_dims / 2;
  if (rope_vec_ok(H, G, hs, half, q, k, v, qkv, cos, sin)) {
    const RopeUnits U = rope_units(H, G, hs, half);
    qkv_split_rope_forward_vec_kernel<<<row_blocks(B * Tn), rope_threads(G, U), 0, stream_of(ctx)>>>(
        q, k, v, qkv, cos, sin, B, Tn, H, G, hs, half, pos0, cs_batch_rows, U);
  } else {
    qkv_split_rope_forward_kernel<<<blocks_for(total), kThreads, 0, stream_of(ctx)>>>(q, k, v, qkv, cos, sin, B, Tn, H,
                                                                                      G, hs, half, pos0, cs_batch_rows);
  }
  SAMBALM_CUDA_LAUNCH_CHECK();
}

template <typename S>
void qkv_backward_impl(const Context& ctx, S* dqkv, const S* dq, const S* dk, const S* dv, const S* cos, const S* sin,
                       int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t rope_dims, int64_t pos0,
                       int64_t cs_batch_rows) {
  const int64_t total = B * Tn * (H + 2 * G) * hs;
  if (!dqkv || total <= 0 || (!dq && !dk && !dv)) return;
  const int64_t half = rope_dims / 2;
  if (rope_vec_ok(H, G, hs, half, dqkv, dq, dk, dv, cos, sin)) {
    const RopeUnits U = rope_units(H, G, hs, half);
    qkv_split_rope_backward_vec_kernel<<<row_blocks(B * Tn), rope_threads(G, U), 0, stream_of(ctx)>>>(
        dqkv, dq, dk, dv, cos, sin, B, Tn, H, G, hs, half, pos0, cs_batch_rows, U);
  } else {
    qkv_split_rope_backward_kernel<<<blocks_for(total), kThreads, 0, stream_of(ctx)>>>(
        dqkv, dq, dk, dv, cos, sin, B, Tn, H, G, hs, half, pos0, cs_batch_rows);
  }
  SAMBALM_CUDA_LAUNCH_CHECK();
}

template <typename S>
void kv_cache_write_impl(const Context& ctx, S* k_cache, S* v_cache, const S* k_new, const S* v_new,
                         const int32_t* slots, const int64_t* pos, int64_t B, int64_t L, int64_t G, int64_t hs,
                         int64_t cap) {
  if (cap <= 0) return;
  const int64_t total = B * G * (L < cap ? L : cap) * hs;
  if (total <= 0) return;
  kv_cache_write_kernel<<<blocks_for(total), kThreads, 0, stream_of(ctx)>>>(k_cache, v_cache, k_new, v_new, slots, pos,
                                                                            B, L, G, hs, cap);
  SAMBALM_CUDA_LAUNCH_CHECK();
}

}  // namespace

#define SAMBALM_CUDA_ROPE_DEF(T)                                                                                       \
  void rope_table(const Context& ctx, T* cos, T* sin, int64_t max_pos, int64_t rope_dims, double base,                 \
                  double condense_ratio) {                                                                             \
    rope_table_impl(ctx, dev(cos), dev(sin), max_pos, rope_dims, base, condense_ratio);                                \
  }                                                                                                                    \
  void rope_at_positions(const Context& ctx, T* cos, T* sin, const int64_t* pos, int64_t B, int64_t L,                 \
                         int64_t rope_dims, double base, double condense_ratio) {                                      \
    rope_at_positions_impl(ctx, dev(cos), dev(sin), pos, B, L, rope_dims, base, condense_ratio);                       \
  }                                                                                                                    \
  void qkv_split_rope_forward(const Context& ctx, T* q, T* k, T* v, const T* qkv, const T* cos, const T* sin,          \
                              int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs, int64_t rope_dims,              \
                              int64_t pos0, int64_t cs_batch_rows) {                                                   \
    qkv_forward_impl(ctx, dev(q), dev(k), dev(v), dev(qkv), dev(cos), dev(sin), B, Tn, H, G, hs, rope_dims, pos0,      \
                     cs_batch_rows);                                                                                   \
  }                                                                                                                    \
  void qkv_split_rope_backward(const Context& ctx, T* dqkv, const T* dq, const T* dk, const T* dv, const T* cos,       \
                               const T* sin, int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hs,                  \
                               int64_t rope_dims, int64_t pos0, int64_t cs_batch_rows) {                               \
    qkv_backward_impl(ctx, dev(dqkv), dev(dq), dev(dk), dev(dv), dev(cos), dev(sin), B, Tn, H, G, hs, rope_dims, pos0, \
                      cs_batch_rows);                                                                                  \
  }                                                                                                                    \
  void kv_cache_write(const Context& ctx, T* k_cache, T* v_cache, const T* k_new, const T* v_new,                      \
                      const int32_t* slots, const int64_t* pos, int64_t B, int64_t L, int64_t G, int64_t hs,           \
                      int64_t cap) {                                                                                   \
    kv_cache_write_impl(ctx, dev(k_cache), dev(v_cache), dev(k_new), dev(v_new), slots, pos, B, L, G, hs, cap);        \
  }
SAMBALM_CUDA_ROPE_DEF(float)
SAMBALM_CUDA_ROPE_DEF(bf16)
#undef SAMBALM_CUDA_ROPE_DEF

}  // namespace sambalm::ops::cuda
