// Mean cross-entropy over the whole (padded) vocabulary fused with its gradient (CUDA), the CPU's
// semantics (src/ops/cpu/cross_entropy.cpp). Per counted row (target >= 0):
//   mx = max_v logits_v,  lse = mx + log sum_v exp(logits_v - mx),  loss = lse - logits[target]
//   dlogits_v = exp(logits_v - lse) * g - [v == target] * g,   g = dloss_scale / count
// count = number of rows with target >= 0; ignored rows get loss 0 and a zero gradient row; the mean
// is sum(loss) / count (0 when count is 0). dlogits may alias logits: a block reads its whole row
// (max, sum, logits[target]) before it writes any of it.
//
// Three launches and one synchronisation (the op returns the mean to the host):
//   1. one block counts the counted rows into a device-side word;
//   2. kBlocks blocks take rows blockIdx.x, + kBlocks, ... (one block per row at a time) and write
//      losses and dlogits; each block's thread 0 adds its rows' losses in row order into its slot
//      of a fixed array of partial sums (double);
//   3. one block adds the partials in a fixed order; the total and the count are copied back.
// Fixed orders everywhere: the mean has the same bits every run. The partials and the count live in
// this file's device globals, so at most one call may be in flight per GPU (calls on one context are
// ordered by its stream; the engine runs one stream per GPU).
#include "ops/cuda/check.cuh"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/dense_common.cuh"

namespace sambalm::ops::cuda {

namespace {

using namespace dense_detail;

constexpr int kBlocks = 1024;

struct CeTotals {
  double total;
  long long count;
};
__device__ double ce_partials[kBlocks];
__device__ CeTotals ce_totals;

__global__ void ce_count_kernel(const int32_t* targets, int64_t n) {
  __shared__ long long shared[33];
  long long c = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) c += targets[i] >= 0;
  c = block_sum(c, shared);
  if (threadIdx.x == 0) ce_totals.count = c;
}

template <typename S>
__global__ void ce_rows_kernel(S* dlogits, float* losses, const S* logits, const int32_t* targets, int64_t n, int64_t V,
                               double dloss_scale) {
  __shared__ float shared[33];
  const long long count = ce_totals.count;
  const double gscale = count > 0 ? dloss_scale / static_cast<double>(count) : 0.0;
  const float g = static_cast<float>(gscale);
  double block_total = 0.0;  // thread 0's running sum of this block's row losses
  for (int64_t row = blockIdx.x; row < n; row += gridDim.x) {
    const S* x = logits + row * V;
    S* d = dlogits ? dlogits + row * V : nullptr;
    const int32_t tgt = targets[row];
    if (tgt < 0) {
      if (losses && threadIdx.x == 0) losses[row] = 0.f;
      if (d)
        for (int64_t v = threadIdx.x; v < V; v += blockDim.x) store(d + v, 0.f);
      continue;
    }
    float mx = -INFINITY;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, load(x + v));
    mx = block_max(mx, shared);
    float sum = 0.f;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) sum += expf(load(x + v) - mx);
    sum = block_sum(sum, shared);  // its barriers also order every read of logits[tgt] below before the writes
    const double lse = static_cast<double>(mx) + log(static_cast<double>(sum));
    const double loss = lse - static_cast<double>(load(x + tgt));
    __syncthreads();  // every thread has read logits[tgt] before any thread overwrites the row
    if (threadIdx.x == 0) {
      block_total += loss;
      if (losses) losses[row] = static_cast<float>(loss);
    }
    if (d) {
      const float shift = static_cast<float>(lse);
      for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
        float dv = expf(load(x + v) - shift) * g;
        if (v == tgt) dv -= g;
        store(d + v, dv);
      }
    }
  }
  if (threadIdx.x == 0) ce_partials[blockIdx.x] = block_total;
}

__global__ void ce_total_kernel(int blocks) {
  __shared__ double shared[33];
  double s = 0.0;
  for (int b = threadIdx.x; b < blocks; b += blockDim.x) s += ce_partials[b];
  s = block_sum(s, shared);
  if (threadIdx.x == 0) ce_totals.total = s;
}

template <typename S>
double cross_entropy_impl(const Context& ctx, S* dlogits, float* losses, const S* logits, const int32_t* targets,
                          int64_t n, int64_t V, double dloss_scale) {
  if (n <= 0) return 0.0;
  const cudaStream_t stream = stream_of(ctx);
  ce_count_kernel<<<1, 1024, 0, stream>>>(targets, n);
  SAMBALM_CUDA_LAUNCH_CHECK();
  const int blocks = static_cast<int>(n < kBlocks ? n : kBlocks);
  ce_rows_kernel<<<blocks, kThreads, 0, stream>>>(dlogits, losses, logits, targets, n, V, dloss_scale);
  SAMBALM_CUDA_LAUNCH_CHECK();
  ce_total_kernel<<<1, kThreads, 0, stream>>>(blocks);
  SAMBALM_CUDA_LAUNCH_CHECK();
  CeTotals host{};
  SAMBALM_CUDA_CHECK(cudaMemcpyFromSymbolAsync(&host, ce_totals, sizeof(host), 0, cudaMemcpyDeviceToHost, stream));
  SAMBALM_CUDA_CHECK(cudaStreamSynchronize(stream));  // the one synchronisation: the mean goes to the host
  return host.count > 0 ? host.total / static_cast<double>(host.count) : 0.0;
}

}  // namespace

double cross_entropy_forward_backward(const Context& ctx, float* dlogits, float* losses, const float* logits,
                                      const int32_t* targets, int64_t n, int64_t V, double dloss_scale) {
  return cross_entropy_impl(ctx, dlogits, losses, logits, targets, n, V, dloss_scale);
}
double cross_entropy_forward_backward(const Context& ctx, bf16* dlogits, float* losses, const bf16* logits,
                                      const int32_t* targets, int64_t n, int64_t V, double dloss_scale) {
  return cross_entropy_impl(ctx, dev(dlogits), losses, dev(logits), targets, n, V, dloss_scale);
}

}  // namespace sambalm::ops::cuda
