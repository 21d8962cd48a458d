#include "train/data_parallel.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "ops/optim_ops.h"

namespace sambalm {

Shard shard_of(size_t n, int rank, int world) {
  const size_t c = (n + size_t(world) - 1) / size_t(world);
  const size_t b = std::min(n, c * size_t(rank));
  return {b, std::min(n, b + c)};
}

std::vector<DecayRange> ranges_in_shard(const std::vector<DecayRange>& ranges, Shard s) {
  std::vector<DecayRange> out;
  for (const DecayRange& r : ranges) {
    const size_t lo = std::max(r.offset, s.begin), hi = std::min(r.offset + r.size, s.end);
    if (lo < hi) out.push_back({lo - s.begin, hi - lo, r.decay});
  }
  if (out.empty()) out.push_back({0, 0, true});  // an empty shard (more ranks than values)
  return out;
}

DataParallelOptimizer::DataParallelOptimizer(Communicator& comm, size_t n, AdamWOptions opts,
                                             const std::vector<DecayRange>& ranges, const Context& ctx, int zero,
                                             int64_t bucket_values)
    : comm_(comm),
      n_(n),
      zero_(zero),
      bucket_(std::max<int64_t>(1, bucket_values)),
      ctx_(ctx),
      shard_(zero == 1 ? shard_of(n, comm.rank(), comm.size()) : Shard{0, n}),
      adam_(shard_.size(), opts,
            ranges_in_shard(ranges.empty() ? std::vector<DecayRange>{{0, n, true}} : ranges, shard_), ctx) {
  SAMBALM_CHECK(zero == 0 || zero == 1, "--zero {}: stages 0 (off) and 1 (sharded optimizer state) exist", zero);
  SAMBALM_CHECK(!comm.distributed() || (ctx.device == Device::CPU) == (comm.backend() != "nccl"),
                "distributed training on {} with the {} backend: NCCL exchanges GPU buffers, MPI the CPU's "
                "(--dist-backend auto picks the one that fits --device)",
                ctx.name(), comm.backend());
  SAMBALM_CHECK(zero == 0 || ctx.device == Device::CPU,
                "--zero 1 on {}: the sharded optimizer runs on the CPU only so far; use --zero 0 on GPUs", ctx.name());
  if (zero_ == 1) grad_shard_.resize(shard_.size());
}

// Blocks of [a, b) that fall in each rank's shard.
std::vector<int64_t> DataParallelOptimizer::bucket_counts(size_t a, size_t b) const {
  std::vector<int64_t> c(size_t(comm_.size()));
  for (int r = 0; r < comm_.size(); ++r) {
    const Shard s = shard_of(n_, r, comm_.size());
    const size_t lo = std::max(a, s.begin), hi = std::min(b, s.end);
    c[size_t(r)] = lo < hi ? int64_t(hi - lo) : 0;
  }
  return c;
}

double DataParallelOptimizer::reduce_and_clip(float* grads, double max_norm, double* scratch) {
  const int W = comm_.size();
  // One process without a communicator: no collective. (NCCL with one rank still runs them: that run
  // checks the backend against this path.)
  if (!comm_.distributed() && zero_ == 0) return clip_grad_norm(grads, n_, max_norm, ctx_, scratch);
  const double inv_world = 1.0 / double(W);
  if (zero_ == 0) {
    for (size_t a = 0; a < n_; a += size_t(bucket_))
      comm_.all_reduce_sum(grads + a, std::min<int64_t>(bucket_, n_ - a));
    ops::scale_inplace(ctx_, grads, int64_t(n_), inv_world);
    return clip_grad_norm(grads, n_, max_norm, ctx_, scratch);
  }
  // ZeRO-1: each bucket's blocks land in their ranks' shards, in order.
  for (size_t a = 0; a < n_; a += size_t(bucket_)) {
    const size_t b = std::min(n_, a + size_t(bucket_));
    const size_t lo = std::clamp(a, shard_.begin, shard_.end);
    comm_.reduce_scatter_sum(grads + a, grad_shard_.data() + (lo - shard_.begin), bucket_counts(a, b));
  }
  float* g = grad_shard_.data();
  const int64_t k = int64_t(grad_shard_.size());
  ops::scale_inplace(ctx_, g, k, inv_world);
  double sq = 0;
  if (k > 0) ops::sum_squares(ctx_, &sq, g, k);
  comm_.all_reduce_sum(&sq, 1);
  const double norm = std::sqrt(sq);
  if (max_norm > 0 && std::isfinite(norm)) {
    const double coef = max_norm / (norm + 1e-6);  // as clip_grad_norm
    if (coef < 1.0 && k > 0) ops::scale_inplace(ctx_, g, k, static_cast<double>(static_cast<float>(coef)));
  }
  return norm;
}

void DataParallelOptimizer::step(float* params, const float* grads, double lr) {
  if (zero_ == 0) {
    adam_.step(params, grads, lr);
    return;
  }
  adam_.step(params + shard_.begin, grad_shard_.data(), lr);
  for (size_t a = 0; a < n_; a += size_t(bucket_))
    comm_.all_gather_inplace(params + a, bucket_counts(a, std::min(n_, a + size_t(bucket_))));
}

std::vector<float> DataParallelOptimizer::gather(const std::vector<float>& local) {
  if (zero_ == 0) return local;
  std::vector<float> full(n_, 0.0f);
  std::copy(local.begin(), local.end(), full.begin() + std::ptrdiff_t(shard_.begin));
  for (size_t a = 0; a < n_; a += size_t(bucket_))
    comm_.all_gather_inplace(full.data() + a, bucket_counts(a, std::min(n_, a + size_t(bucket_))));
  return full;
}

std::vector<float> DataParallelOptimizer::full_m() { return gather(adam_.m()); }
std::vector<float> DataParallelOptimizer::full_v() { return gather(adam_.v()); }

void DataParallelOptimizer::set_full_moments(const std::vector<float>& m, const std::vector<float>& v) {
  SAMBALM_CHECK(m.size() == n_ && v.size() == n_, "optimizer state: moments of {} / {} values for {} parameters",
                m.size(), v.size(), n_);
  const auto b = std::ptrdiff_t(shard_.begin), e = std::ptrdiff_t(shard_.end);
  adam_.set_moments(std::vector<float>(m.begin() + b, m.begin() + e), std::vector<float>(v.begin() + b, v.begin() + e));
}

}  // namespace sambalm
