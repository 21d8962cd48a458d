// Reference attention, the oracle for attention_forward: for each (b, h) it fills the whole masked
// score matrix
//   S[t, s] = scale * q_t . k_s   if lo(t) <= s <= t, else -inf   (lo(t) = max(0, t - window + 1))
// then takes a row softmax P, out_t = sum_s P[t, s] v_s and lse_t = log sum_s exp(S[t, s]).
// Plain loops, double accumulation, O(T^2) memory in the caller's scores[T * T] scratch.
#include <cmath>
#include <cstdint>
#include <limits>

#include "ops/cpu/cpu_ops.h"

namespace sambalm::ops::cpu {

template <typename T>
void attention_ref_forward(T* out, T* lse, T* scores, const T* q, const T* k, const T* v, int64_t B, int64_t Tn,
                           int64_t H, int64_t G, int64_t hs, int64_t window, double scale) {
  const int64_t qpk = H / G;
  const double neg_inf = -std::numeric_limits<double>::infinity();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / qpk;
      const T* kb = k + (b * G + g) * Tn * hs;
      const T* vb = v + (b * G + g) * Tn * hs;
      for (int64_t t = 0; t < Tn; ++t) {
        const T* qt = q + ((b * H + h) * Tn + t) * hs;
        for (int64_t s = 0; s < Tn; ++s) {
          const bool visible = s <= t && (window <= 0 || s > t - window);
          double d = 0;
          for (int64_t i = 0; i < hs; ++i) d += double(qt[i]) * double(kb[s * hs + i]);
          scores[t * Tn + s] = visible ? T(scale * d) : T(neg_inf);
        }
      }
      for (int64_t t = 0; t < Tn; ++t) {
        const T* row = scores + t * Tn;
        double mx = neg_inf;
        for (int64_t s = 0; s < Tn; ++s) mx = std::fmax(mx, double(row[s]));
        double sum = 0;
        for (int64_t s = 0; s < Tn; ++s) sum += std::exp(double(row[s]) - mx);
        T* o = out + (b * Tn + t) * H * hs + h * hs;
        for (int64_t i = 0; i < hs; ++i) {
          double acc = 0;
          for (int64_t s = 0; s < Tn; ++s) acc += std::exp(double(row[s]) - mx) / sum * double(vb[s * hs + i]);
          o[i] = T(acc);
        }
        lse[(b * H + h) * Tn + t] = T(mx + std::log(sum));
      }
    }
  }
}

template void attention_ref_forward<float>(float*, float*, float*, const float*, const float*, const float*, int64_t,
                                           int64_t, int64_t, int64_t, int64_t, int64_t, double);
template void attention_ref_forward<double>(double*, double*, double*, const double*, const double*, const double*,
                                            int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, double);

}  // namespace sambalm::ops::cpu
