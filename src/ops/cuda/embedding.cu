// Token embedding (CUDA).
#include "ops/cuda/check.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/dense_common.cuh"

namespace sambalm::ops::cuda {

namespace {

using namespace dense_detail;

// out[i, c] = table[ids[i], c]: one thread per output element (grid-stride).
template <typename S>
__global__ void embedding_forward_kernel(S* out, const int32_t* ids, const S* table, int64_t n, int64_t C) {
  const int64_t total = n * C;
  for (int64_t e = global_index(); e < total; e += grid_stride()) {
    const int64_t i = e / C, c = e - i * C;
    out[e] = table[static_cast<int64_t>(ids[i]) * C + c];
  }
}

// dtable[ids[i], c] += dout[i, c] for every token i, deterministically and without atomics or a
// sort: thread (c, bucket) owns column c of every table row whose id % buckets == bucket, walks all
// tokens in order and adds the ones of its bucket. No two threads write the same element, and each
// element receives its tokens in token order (the CPU's order: the same float sums). The ids of a
// tile of tokens are staged in shared memory for the block's warps; a warp's 32 lanes are 32
// consecutive columns of one bucket, so the bucket test is warp-uniform and the row accesses
// coalesce. Cost: every (column, bucket) thread reads all n ids (from shared memory) and adds n /
// buckets rows on average; buckets is chosen to give the GPU some 64K threads.
constexpr int kTile = 1024;
constexpr int kColsPerBlock = 128;

template <typename S>
__global__ void embedding_backward_kernel(S* dtable, const S* dout, const int32_t* ids, int64_t n, int64_t C,
                                          int buckets) {
  __shared__ int32_t tile_ids[kTile];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColsPerBlock + threadIdx.x;
  const int bucket = blockIdx.y;
  for (int64_t t0 = 0; t0 < n; t0 += kTile) {
    const int64_t tn = n - t0 < kTile ? n - t0 : kTile;
    __syncthreads();  // the previous tile's readers are done
    for (int64_t j = threadIdx.x; j < tn; j += blockDim.x) tile_ids[j] = ids[t0 + j];
    __syncthreads();
    if (c < C) {
      for (int64_t j = 0; j < tn; ++j) {
        const int32_t id = tile_ids[j];
        if (id % buckets != bucket) continue;
        add_to(dtable + static_cast<int64_t>(id) * C + c, load(dout + (t0 + j) * C + c));
      }
    }
  }
}

template <typename S>
void embedding_forward_impl(const Context& ctx, S* out, const int32_t* ids, const S* table, int64_t n, int64_t C) {
  if (n <= 0 || C <= 0) return;
  embedding_forward_kernel<<<blocks_for(n * C), kThreads, 0, stream_of(ctx)>>>(out, ids, table, n, C);
  SAMBALM_CUDA_LAUNCH_CHECK();
}

template <typename S>
void embedding_backward_impl(const Context& ctx, S* dtable, const S* dout, const int32_t* ids, int64_t n, int64_t C) {
  if (!dtable || n <= 0 || C <= 0) return;
  const int64_t col_blocks = (C + kColsPerBlock - 1) / kColsPerBlock;
  // About 64K threads in all, at most 64 buckets (each thread still scans every id) and no more
  // buckets than tokens.
  int64_t buckets = (int64_t{1} << 16) / (col_blocks * kColsPerBlock);
  buckets = buckets < 1 ? 1 : (buckets > 64 ? 64 : buckets);
  if (buckets > n) buckets = n;
  const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(buckets));
  embedding_backward_kernel<<<grid, kColsPerBlock, 0, stream_of(ctx)>>>(dtable, dout, ids, n, C,
                                                                        static_cast<int>(buckets));
  SAMBALM_CUDA_LAUNCH_CHECK();
}

}  // namespace

void embedding_forward(const Context& ctx, float* out, const int32_t* ids, const float* table, int64_t n, int64_t C) {
  embedding_forward_impl(ctx, out, ids, table, n, C);
}
void embedding_forward(const Context& ctx, bf16* out, const int32_t* ids, const bf16* table, int64_t n, int64_t C) {
  embedding_forward_impl(ctx, dev(out), ids, dev(table), n, C);
}
void embedding_backward(const Context& ctx, float* dtable, const float* dout, const int32_t* ids, int64_t n,
                        int64_t C) {
  embedding_backward_impl(ctx, dtable, dout, ids, n, C);
}
void embedding_backward(const Context& ctx, bf16* dtable, const bf16* dout, const int32_t* ids, int64_t n, int64_t C) {
  embedding_backward_impl(ctx, dev(dtable), dev(dout), ids, n, C);
}

}  // namespace sambalm::ops::cuda
