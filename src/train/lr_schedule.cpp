#include "train/lr_schedule.h"

#include <cmath>
#include <numbers>

namespace sambalm {

double LrSchedule::at(int64_t step) const {
  if (step < warmup) return lr * static_cast<double>(step) / static_cast<double>(warmup);
  if (!cosine) return lr;
  if (step > decay_steps || decay_steps <= warmup) return min_lr;
  const double ratio = static_cast<double>(step - warmup) / static_cast<double>(decay_steps - warmup);
  const double coeff = 0.5 * (1.0 + std::cos(std::numbers::pi * ratio));
  return min_lr + coeff * (lr - min_lr);
}

}  // namespace sambalm
