// Tensor-core building blocks for sm_80 and later (Ampere, Hopper): cp.async copies into shared
// memory, ldmatrix, mma.sync m16n8k16 bf16 -> fp32, bf16 packing. Used by the FlashAttention-style
// kernels (attention_flash_*.cu); developed and checked in dev/cuda/sliding_window_attention.cu.
// Included by .cu files only (C++17, no fmt).
//
// Fragment layouts of mma.m16n8k16.row.col (lane = 4 * gid + tig, gid = lane >> 2, tig = lane & 3;
// each .b32 register holds two bf16, the lower column/k index in the low half):
//   A (16 x 16, rows m, columns k):  a0 = (m gid,   k 2tig..2tig+1)   a1 = (m gid+8, k 2tig..2tig+1)
//                                    a2 = (m gid,   k 2tig+8..+9)     a3 = (m gid+8, k 2tig+8..+9)
//   B (16 x 8, k x n):               b0 = (k 2tig..2tig+1, n gid)     b1 = (k 2tig+8..+9, n gid)
//   C/D (16 x 8 fp32):               c0, c1 = (m gid, n 2tig, 2tig+1) c2, c3 = (m gid+8, n 2tig, 2tig+1)
// ldmatrix.x4: lanes 8i..8i+7 give the row addresses of 8x8 matrix i (16 bytes each); register i of a
// lane then holds row (lane >> 2), columns 2(lane & 3)..+1 of matrix i; with .trans it holds rows
// 2(lane & 3)..+1 of column (lane >> 2), i.e. the transposed matrix.
// So, for a row-major smem tile X[r][c] (c contiguous), lane `l`, with r8 = l & 7:
//   A operand of X[m0.., k0..] (X rows = m):       row m0 + r8 + 8((l>>3)&1), col k0 + 8(l>>4)     (plain)
//   B operands of two n8 tiles with X[n][k] (X rows = n, e.g. K for S = Q K^T):
//                       row n0 + r8 + 8(l>>4),     col k0 + 8((l>>3)&1)  (plain) -> {b0,b1} n0, {b0,b1} n0+8
//   B operands of two n8 tiles with X[k][n] (X rows = k, e.g. V for O = P V):
//                       row k0 + r8 + 8((l>>3)&1), col n0 + 8(l>>4)      (.trans) -> {b0,b1} n0, {b0,b1} n0+8
//   A operand of X^T where X[k][m] is stored (X rows = k, e.g. dS^T for dQ = dS K):
//                       row k0 + r8 + 8(l>>4),     col m0 + 8((l>>3)&1)  (.trans)
// The C fragments of S (16 x 8 tiles 2j, 2j+1) become the A fragment of keys 16j..16j+15:
//   a0 = pack(c[2j][0..1]), a1 = pack(c[2j][2..3]), a2 = pack(c[2j+1][0..1]), a3 = pack(c[2j+1][2..3]).
// Shared-memory rows are padded by 16 bytes (D + 8 elements): the 8 rows one ldmatrix reads then start
// in 8 different 16-byte bank groups, so ldmatrix is conflict-free without a swizzle.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>
#include <cstring>

namespace sambalm::ops::cuda::tc {

using nv_bf16 = __nv_bfloat16;

constexpr float kLog2e = 1.4426950408889634f;

// 2^x on the special-function unit (flushes denormals; 2^-inf = 0).
__device__ __forceinline__ float ex2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy global -> shared; !valid zero-fills the destination (rows past T must be finite
// zeros). Both addresses 16-byte aligned.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem), "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem), "r"(valid ? 4 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most N committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const nv_bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p))
               : "memory");
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], const nv_bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p))
               : "memory");
}
// c += a b (16 x 16 by 16 x 8, fp32 accumulators).
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
  uint32_t r;
  memcpy(&r, &v, 4);
  return r;
}

// 8 bf16 packed in 16 bytes <-> 8 floats.
__device__ __forceinline__ void unpack8(const uint4& v, float (&f)[8]) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}
__device__ __forceinline__ uint4 pack8(const float (&f)[8]) {
  return make_uint4(pack_bf16(f[0], f[1]), pack_bf16(f[2], f[3]), pack_bf16(f[4], f[5]), pack_bf16(f[6], f[7]));
}

// Rows r0 .. r0+R-1 of a [rows, D] bf16 matrix (rows `ld` elements apart) into shared-memory rows SD
// apart, by the block's NT threads; rows at or past T are zero-filled.
template <int D, int R, int SD, int NT>
__device__ __forceinline__ void load_tile(nv_bf16* dst, const nv_bf16* src, size_t ld, int r0, int T) {
  constexpr int CPR = D / 8;
  for (int c = threadIdx.x; c < R * CPR; c += NT) {
    const int r = c / CPR, ch = c % CPR, t = r0 + r;
    const bool ok = t < T;
    cp_async16(dst + r * SD + ch * 8, src + size_t(ok ? t : 0) * ld + ch * 8, ok);
  }
}

}  // namespace sambalm::ops::cuda::tc
