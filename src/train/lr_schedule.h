// Learning-rate schedule of microsoft/Samba pretrain.py (`get_lr`): linear warmup from 0, then a
// half-cosine from `lr` down to `min_lr` at `decay_steps`, constant `min_lr` after that.
//
//   lr(s) = lr * s / warmup                                              s < warmup
//         = min_lr + 0.5 * (lr - min_lr) * (1 + cos(pi * (s - warmup) / (decay_steps - warmup)))
//                                                                         warmup <= s <= decay_steps
//         = min_lr                                                        s > decay_steps
//
// The trainer evaluates it before the update of step s = 0, 1, ..., steps-1 with decay_steps =
// steps (pretrain.py's max_iters), so step 0 runs with lr 0 when warmup > 0, as in the original.
#pragma once

#include <cstdint>

namespace sambalm {

struct LrSchedule {
  double lr = 4e-4;
  double min_lr = 4e-5;
  int64_t warmup = 0;
  int64_t decay_steps = 0;  // usually the total number of steps
  bool cosine = true;       // false: constant lr after warmup

  double at(int64_t step) const;
};

}  // namespace sambalm
