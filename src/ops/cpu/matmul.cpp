// Linear layers through BLAS. Weights are in PyTorch Linear layout, weight[N, K], so
//   out[M, N] = inp[M, K] @ weight^T (+ bias)
// and the backward pass is three reductions:
//   dinp[M, K]    += dout[M, N] @ weight[N, K]
//   dweight[N, K] += dout^T[N, M] @ inp[M, K]
//   dbias[N]      += sum_m dout[m, :]
// Up to kGemvMaxRows rows the forward is our register-tiled GEMV instead (gemv.h: decoding reads each
// weight once for the whole batch). OpenBLAS threads the GEMMs itself, so nothing here may run inside an OpenMP
// parallel region.
#include <cblas.h>

#include <cstdint>
#include <type_traits>

#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/gemv.h"

namespace sambalm::ops::cpu {

namespace {

// One overload per precision, so the templates below read like the math.
void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, int(m), int(n), int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}
void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
          int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, int(m), int(n), int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}

}  // namespace

template <typename T>
void matmul_forward_strided(T* out, int64_t ld_out, const T* inp, int64_t ld_inp, const T* weight, const T* bias,
                            int64_t M, int64_t K, int64_t N) {
  if (M == 0 || N == 0) return;
  if constexpr (std::is_same_v<T, float>) {
    if (M <= kGemvMaxRows && K > 0) return gemv_linear(cpu_isa(), out, ld_out, inp, ld_inp, weight, bias, M, K, N);
  }
  // The bias is broadcast into the output first so one GEMM with beta = 1 finishes the job.
  T beta = 0;
  if (bias) {
    for (int64_t m = 0; m < M; ++m) {
      T* o = out + m * ld_out;
      for (int64_t n = 0; n < N; ++n) o[n] = bias[n];
    }
    beta = 1;
  }
  if (K == 0) {
    if (!bias)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) out[m * ld_out + n] = 0;
    return;
  }
  gemm(CblasNoTrans, CblasTrans, M, N, K, T(1), inp, ld_inp, weight, K, beta, out, ld_out);
}

template <typename T>
void matmul_forward(T* out, const T* inp, const T* weight, const T* bias, int64_t M, int64_t K, int64_t N) {
  matmul_forward_strided(out, N, inp, K, weight, bias, M, K, N);
}

template <typename T>
void matmul_backward_strided(T* dinp, int64_t ld_dinp, T* dweight, T* dbias, const T* dout, int64_t ld_dout,
                             const T* inp, int64_t ld_inp, const T* weight, int64_t M, int64_t K, int64_t N) {
  if (M == 0 || N == 0) return;
  if (K > 0) {
    if (dinp) gemm(CblasNoTrans, CblasNoTrans, M, K, N, T(1), dout, ld_dout, weight, K, T(1), dinp, ld_dinp);
    if (dweight) gemm(CblasTrans, CblasNoTrans, N, K, M, T(1), dout, ld_dout, inp, ld_inp, T(1), dweight, K);
  }
  if (dbias) {
    // Column sums: rows outer so the inner loop is contiguous and vectorises.
    for (int64_t m = 0; m < M; ++m) {
      const T* d = dout + m * ld_dout;
      for (int64_t n = 0; n < N; ++n) dbias[n] += d[n];
    }
  }
}

template <typename T>
void matmul_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, int64_t M, int64_t K,
                     int64_t N) {
  matmul_backward_strided(dinp, K, dweight, dbias, dout, N, inp, K, weight, M, K, N);
}

#define SAMBALM_INSTANTIATE(T)                                                                                  \
  template void matmul_forward<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t);                 \
  template void matmul_backward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t);        \
  template void matmul_forward_strided<T>(T*, int64_t, const T*, int64_t, const T*, const T*, int64_t, int64_t, \
                                          int64_t);                                                             \
  template void matmul_backward_strided<T>(T*, int64_t, T*, T*, const T*, int64_t, const T*, int64_t, const T*, \
                                           int64_t, int64_t, int64_t);
SAMBALM_INSTANTIATE(float)
SAMBALM_INSTANTIATE(double)
#undef SAMBALM_INSTANTIATE

}  // namespace sambalm::ops::cpu
