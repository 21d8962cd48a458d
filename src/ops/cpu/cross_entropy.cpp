// Mean cross-entropy over the whole (padded) vocabulary, fused with its gradient. Per counted row:
//   lse     = log sum_v exp(logits_v)       (max-subtracted)
//   loss    = lse - logits[target]
//   dlogits = (softmax(logits) - onehot(target)) * dloss_scale / count
// where count is the number of rows with target >= 0; ignored rows get loss 0 and gradient 0.
// dlogits may alias logits: each row is read completely (lse, logits[target]) before it is written.
#include <cmath>
#include <cstdint>

#include "ops/cpu/cpu_ops.h"

namespace sambalm::ops::cpu {

template <typename T>
double cross_entropy_forward_backward(T* dlogits, T* losses, const T* logits, const int32_t* targets, int64_t n,
                                      int64_t V, double dloss_scale) {
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) count += targets[i] >= 0;
  const double gscale = count > 0 ? dloss_scale / double(count) : 0.0;
  double total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (n * V > (1 << 15))
  for (int64_t i = 0; i < n; ++i) {
    const T* row = logits + i * V;
    const int32_t tgt = targets[i];
    if (tgt < 0) {
      if (losses) losses[i] = 0;
      if (dlogits)
        for (int64_t v = 0; v < V; ++v) dlogits[i * V + v] = 0;
      continue;
    }
    T mx = row[0];
    for (int64_t v = 1; v < V; ++v) mx = row[v] > mx ? row[v] : mx;
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t v = 0; v < V; ++v) sum += double(std::exp(row[v] - mx));
    const double lse = double(mx) + std::log(sum);
    const double loss = lse - double(row[tgt]);
    total += loss;
    if (losses) losses[i] = T(loss);
    if (dlogits) {
      // softmax_v = exp(logit_v - lse); the one-hot term is subtracted after the row is written.
      T* drow = dlogits + i * V;
      const T shift = T(lse), g = T(gscale);
      for (int64_t v = 0; v < V; ++v) drow[v] = std::exp(row[v] - shift) * g;
      drow[tgt] -= g;
    }
  }
  return count > 0 ? total / double(count) : 0.0;
}

template double cross_entropy_forward_backward<float>(float*, float*, const float*, const int32_t*, int64_t, int64_t,
                                                      double);
template double cross_entropy_forward_backward<double>(double*, double*, const double*, const int32_t*, int64_t,
                                                       int64_t, double);

}  // namespace sambalm::ops::cpu
