// Differential attention (SambaY, ArchScale lit_gpt/diff_attn.py), CPU reference bodies.
//
// H query heads and G key/value heads (both even), head size hd. Heads pair as (2m, 2m+1): the even
// ones form half "1", the odd ones half "2", for queries and keys/values alike; within a half, query
// head m (of H/2) reads kv head m / (H/G) of that half:
//   h1 = 2m, h2 = 2m + 1, g1 = 2 (m / (H/G)), g2 = g1 + 1
//   P1_s = softmax_s(scale * q_h1 . k_g1(s)),  P2_s = softmax_s(scale * q_h2 . k_g2(s))
//          over the keys s that query t sees: t - window < s <= t (window <= 0: all s <= t)
//   V_s  = [v_g1(s) | v_g2(s)]                  (2 hd values)
//   a    = sum_s P1_s V_s - lambda * sum_s P2_s V_s,  written at out[b, t, 2m*hd .. 2m*hd + 2hd)
//   lse  = log-sum-exp of each half's scaled scores (head h1 and h2), saved for the backward
// lambda is one scalar per layer (diff_lambda_forward):
//   lambda = exp(sum_i lq1_i lk1_i) - exp(sum_i lq2_i lk2_i) + lambda_init
//
// Backward, recomputing P_c = exp(S_c - lse_c), with u_s = da . V_s:
//   dO1 = da, dO2 = -lambda da                  so dP1_s = u_s, dP2_s = -lambda u_s
//   D1 = sum_s P1_s u_s,  S2 = sum_s P2_s u_s   (D2 = -lambda S2)
//   dS1_s = P1_s (u_s - D1),  dS2_s = -lambda P2_s (u_s - S2)
//   dq_hc += scale sum_s dSc_s k_gc(s),  dk_gc(s) += scale dSc_s q_hc
//   dV_s  += (P1_s - lambda P2_s) da            (split into dv_g1(s), dv_g2(s))
//   dlambda += -S2                              (= -da . O2)
//
// q rows are ldq apart (the fused [q | k | v] projection or a q-only one), k and v rows ldkv apart:
// query head h of token (b, t) is q[(b*T + t) * ldq + h*hd], kv head g of (b, s) is
// k[(b*T + s) * ldkv + g*hd]. lse is [B, T, H]. The forward runs one (b, pair m) per task. The
// backward runs one (b, kv pair j) per task: the query pairs m with m / (H/G) == j are the only
// readers of kv heads 2j and 2j+1, so dk/dv never race; each task's share of dlambda goes to
// dlambda_parts[b * G/2 + j], summed in that order afterwards (the same result on any thread count).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "ops/cpu/cpu_ops.h"

namespace sambalm::ops::cpu {

namespace {

template <typename T>
inline double dotd(const T* a, const T* b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += double(a[i]) * double(b[i]);
  return s;
}

inline int64_t first_key(int64_t t, int64_t window) { return window > 0 ? std::max<int64_t>(0, t - window + 1) : 0; }

}  // namespace

template <typename T>
void diff_lambda_forward(T* lambda, const T* lq1, const T* lk1, const T* lq2, const T* lk2, int64_t hd,
                         double lambda_init) {
  lambda[0] = T(std::exp(dotd(lq1, lk1, hd)) - std::exp(dotd(lq2, lk2, hd)) + lambda_init);
}

// d lambda / d lq1_i = exp(lq1 . lk1) lk1_i (and symmetrically); the second term enters with a minus.
template <typename T>
void diff_lambda_backward(T* dlq1, T* dlk1, T* dlq2, T* dlk2, const T* dlambda, const T* lq1, const T* lk1,
                          const T* lq2, const T* lk2, int64_t hd) {
  const double g = double(dlambda[0]);
  const double e1 = std::exp(dotd(lq1, lk1, hd)), e2 = std::exp(dotd(lq2, lk2, hd));
  for (int64_t i = 0; i < hd; ++i) {
    dlq1[i] += T(g * e1 * double(lk1[i]));
    dlk1[i] += T(g * e1 * double(lq1[i]));
    dlq2[i] -= T(g * e2 * double(lk2[i]));
    dlk2[i] -= T(g * e2 * double(lq2[i]));
  }
}

template <typename T>
void diff_attention_forward(T* out, T* lse, const T* q, int64_t ldq, const T* k, const T* v, int64_t ldkv,
                            const T* lambda, int64_t B, int64_t Tn, int64_t H, int64_t G, int64_t hd, int64_t window,
                            double scale) {
  const int64_t pairs = H / 2, per_kv = H / G;
  const double lam = double(lambda[0]);
#pragma omp parallel for collapse(2) schedule(static) if (B * pairs * Tn * Tn * hd > (int64_t(1) << 16))
  for (int64_t b = 0; b < B; ++b)
    for (int64_t m = 0; m < pairs; ++m) {
      const int64_t h1 = 2 * m, h2 = h1 + 1, g1 = 2 * (m / per_kv), g2 = g1 + 1;
      for (int64_t t = 0; t < Tn; ++t) {
        const T* qrow = q + (b * Tn + t) * ldq;
        const T *q1 = qrow + h1 * hd, *q2 = qrow + h2 * hd;
        const int64_t lo = first_key(t, window);
        // Maxima first (two passes over the keys: the reference favours clarity over speed).
        double m1 = -std::numeric_limits<double>::infinity(), m2 = m1;
        for (int64_t s = lo; s <= t; ++s) {
          const T* krow = k + (b * Tn + s) * ldkv;
          m1 = std::max(m1, scale * dotd(q1, krow + g1 * hd, hd));
          m2 = std::max(m2, scale * dotd(q2, krow + g2 * hd, hd));
        }
        double l1 = 0, l2 = 0;
        for (int64_t s = lo; s <= t; ++s) {
          const T* krow = k + (b * Tn + s) * ldkv;
          l1 += std::exp(scale * dotd(q1, krow + g1 * hd, hd) - m1);
          l2 += std::exp(scale * dotd(q2, krow + g2 * hd, hd) - m2);
        }
        const double lse1 = m1 + std::log(l1), lse2 = m2 + std::log(l2);
        T* o = out + (b * Tn + t) * H * hd + h1 * hd;  // 2 hd values: slots h1 and h2
        std::fill(o, o + 2 * hd, T(0));
        for (int64_t s = lo; s <= t; ++s) {
          const T* krow = k + (b * Tn + s) * ldkv;
          const double p1 = std::exp(scale * dotd(q1, krow + g1 * hd, hd) - lse1);
          const double p2 = std::exp(scale * dotd(q2, krow + g2 * hd, hd) - lse2);
          const T w = T(p1 - lam * p2);
          const T* vrow = v + (b * Tn + s) * ldkv;
          for (int64_t i = 0; i < hd; ++i) o[i] += w * vrow[g1 * hd + i];
          for (int64_t i = 0; i < hd; ++i) o[hd + i] += w * vrow[g2 * hd + i];
        }
        if (lse) {
          lse[(b * Tn + t) * H + h1] = T(lse1);
          lse[(b * Tn + t) * H + h2] = T(lse2);
        }
      }
    }
}

template <typename T>
void diff_attention_backward(T* dq, T* dk, T* dv, T* dlambda, T* dlambda_parts, const T* dout, const T* lse, const T* q,
                             int64_t ldq, const T* k, const T* v, int64_t ldkv, const T* lambda, int64_t B, int64_t Tn,
                             int64_t H, int64_t G, int64_t hd, int64_t window, double scale) {
  const int64_t per_kv = H / G, kv_pairs = G / 2;
  const double lam = double(lambda[0]);
#pragma omp parallel for collapse(2) schedule(dynamic) if (B * H * Tn * Tn * hd > (int64_t(1) << 16))
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < kv_pairs; ++j) {
      double dlam = 0;
      const int64_t g1 = 2 * j, g2 = g1 + 1;
      for (int64_t m = j * per_kv; m < (j + 1) * per_kv; ++m) {
        const int64_t h1 = 2 * m, h2 = h1 + 1;
        for (int64_t t = 0; t < Tn; ++t) {
          const int64_t row = b * Tn + t;
          const T *q1 = q + row * ldq + h1 * hd, *q2 = q + row * ldq + h2 * hd;
          T *dq1 = dq + row * ldq + h1 * hd, *dq2 = dq + row * ldq + h2 * hd;
          const T* da = dout + row * H * hd + h1 * hd;
          const double lse1 = double(lse[row * H + h1]), lse2 = double(lse[row * H + h2]);
          const int64_t lo = first_key(t, window);
          auto probs = [&](int64_t s, double& p1, double& p2, double& u) {
            const T* krow = k + (b * Tn + s) * ldkv;
            const T* vrow = v + (b * Tn + s) * ldkv;
            p1 = std::exp(scale * dotd(q1, krow + g1 * hd, hd) - lse1);
            p2 = std::exp(scale * dotd(q2, krow + g2 * hd, hd) - lse2);
            u = dotd(da, vrow + g1 * hd, hd) + dotd(da + hd, vrow + g2 * hd, hd);
          };
          double D1 = 0, S2 = 0;
          for (int64_t s = lo; s <= t; ++s) {
            double p1, p2, u;
            probs(s, p1, p2, u);
            D1 += p1 * u;
            S2 += p2 * u;
          }
          dlam -= S2;
          for (int64_t s = lo; s <= t; ++s) {
            double p1, p2, u;
            probs(s, p1, p2, u);
            const double ds1 = scale * p1 * (u - D1), ds2 = -scale * lam * p2 * (u - S2);
            const int64_t srow = (b * Tn + s) * ldkv;
            const T *k1 = k + srow + g1 * hd, *k2 = k + srow + g2 * hd;
            T *dk1 = dk + srow + g1 * hd, *dk2 = dk + srow + g2 * hd;
            T *dv1 = dv + srow + g1 * hd, *dv2 = dv + srow + g2 * hd;
            const T w = T(p1 - lam * p2);
            for (int64_t i = 0; i < hd; ++i) {
              dq1[i] += T(ds1 * double(k1[i]));
              dq2[i] += T(ds2 * double(k2[i]));
              dk1[i] += T(ds1 * double(q1[i]));
              dk2[i] += T(ds2 * double(q2[i]));
              dv1[i] += w * da[i];
              dv2[i] += w * da[hd + i];
            }
          }
        }
      }
      dlambda_parts[b * kv_pairs + j] = T(dlam);
    }
  double total = 0;
  for (int64_t i = 0; i < B * kv_pairs; ++i) total += double(dlambda_parts[i]);
  dlambda[0] += T(total);
}

#define SAMBALM_INSTANTIATE(T)                                                                                       \
  template void diff_lambda_forward<T>(T*, const T*, const T*, const T*, const T*, int64_t, double);                 \
  template void diff_lambda_backward<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*, const T*, int64_t);  \
  template void diff_attention_forward<T>(T*, T*, const T*, int64_t, const T*, const T*, int64_t, const T*, int64_t, \
                                          int64_t, int64_t, int64_t, int64_t, int64_t, double);                      \
  template void diff_attention_backward<T>(T*, T*, T*, T*, T*, const T*, const T*, const T*, int64_t, const T*,      \
                                           const T*, int64_t, const T*, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                           int64_t, double);
SAMBALM_INSTANTIATE(float)
SAMBALM_INSTANTIATE(double)
#undef SAMBALM_INSTANTIATE

}  // namespace sambalm::ops::cpu
