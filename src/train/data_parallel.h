// The optimizer step of a data-parallel run: gradient averaging over the ranks, clipping by the
// global norm, AdamW, and with ZeRO stage 1 the sharded optimizer state. One process (world 1) is
// the plain path: clip_grad_norm + AdamW over the whole buffer, exactly as before.
//
// Every rank holds the full weights (the forward and backward need them) and a full gradient buffer
// its backward fills. Then, per step:
//   --zero 0   the gradients are summed over ranks by all-reduce, bucket by bucket (buckets of
//              `bucket_values` consecutive values of the flat buffer), and scaled by 1/world; every rank
//              clips the same averaged gradients and runs the same AdamW update on all parameters
//              (identical weights and moments on every rank; rank 0's are saved).
//   --zero 1   the flat buffer is cut into `world` contiguous shards (shard r: values [r*c, (r+1)*c),
//              c = ceil(P / world), the last one shorter). The gradients are reduce-scattered (bucket by
//              bucket), so rank r receives the sum of shard r only; scaled by 1/world. The global norm is
//              the square root of the all-reduced sum of the shards' squared norms; every rank clips its
//              shard by the same factor, runs AdamW on its shard with moments of its shard's size, and
//              the updated shards are all-gathered (bucket by bucket) into every rank's weights.
//              On the CPU the working weights are the fp32 weights, so what is sharded is the AdamW
//              state (2 of the 3 fp32 copies) and the update; a GPU backend with bf16 working weights
//              shards its fp32 master copy the same way.
// The buckets are reduced after the last micro-batch's backward (gradient accumulation reduces once
// per step); they do not overlap the backward on the CPU, where the collectives and the backward
// would share the same cores.
#pragma once

#include <cstdint>
#include <vector>

#include "core/context.h"
#include "train/adamw.h"
#include "train/communicator.h"

namespace sambalm {

// [begin, end) of rank r's shard of n values over `world` ranks (ZeRO-1 above).
struct Shard {
  size_t begin = 0, end = 0;
  size_t size() const { return end - begin; }
};
Shard shard_of(size_t n, int rank, int world);

class DataParallelOptimizer {
 public:
  // n: the parameter count; ranges: AdamW's weight-decay ranges over the whole buffer; zero: 0 or 1.
  DataParallelOptimizer(Communicator& comm, size_t n, AdamWOptions opts, const std::vector<DecayRange>& ranges,
                        const Context& ctx, int zero, int64_t bucket_values);

  // Averages the gradients over the ranks, returns their global L2 norm (before clipping) and clips
  // them to max_norm (<= 0: no clipping; a non-finite norm: left as is). `scratch`: one double of
  // device memory on a GPU (see clip_grad_norm). Every rank gets the same norm.
  double reduce_and_clip(float* grads, double max_norm, double* scratch = nullptr);
  // AdamW on this rank's part with the reduced gradients; afterwards every rank holds the same weights.
  void step(float* params, const float* grads, double lr);

  int64_t t() const { return adam_.t; }
  void set_t(int64_t t) { adam_.t = t; }
  // The full moments (ParamStore layout); with ZeRO-1 a collective (every rank must call it).
  std::vector<float> full_m();
  std::vector<float> full_v();
  // From full moments (a checkpoint written by any number of ranks): each rank keeps its shard.
  void set_full_moments(const std::vector<float>& m, const std::vector<float>& v);

  int zero() const { return zero_; }
  Shard shard() const { return shard_; }

 private:
  std::vector<float> gather(const std::vector<float>& local);
  std::vector<int64_t> bucket_counts(size_t a, size_t b) const;

  Communicator& comm_;
  size_t n_;
  int zero_;
  int64_t bucket_;
  Context ctx_;
  Shard shard_;                    // the whole buffer unless ZeRO-1
  AdamW adam_;                     // over the shard
  std::vector<float> grad_shard_;  // ZeRO-1: this rank's reduced gradients
};

// AdamW's decay ranges restricted to [s.begin, s.end), shifted to start at 0.
std::vector<DecayRange> ranges_in_shard(const std::vector<DecayRange>& ranges, Shard s);

}  // namespace sambalm
