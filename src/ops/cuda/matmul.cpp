// GEMMs through cuBLASLt. Our matrices are row-major; cuBLASLt's are column-major, and a row-major
// X[r, c] is the column-major X^T[c, r] with the same leading dimension. So
//   out[M,N] = inp[M,K] @ W[N,K]^T      is  out^T (N x M) = op_T(W^T stored K x N) * inp^T (K x M)
//   dinp[M,K] += dout[M,N] @ W[N,K]     is  dinp^T (K x M) = W^T (K x N) * dout^T (N x M)
//   dW[N,K] += dout[M,N]^T @ inp[M,K]   is  dW^T (K x N) = inp^T (K x M) * op_T(dout^T stored N x M)
// Compute type is fp32 whatever the operands (CUBLAS_COMPUTE_32F: no TF32 for fp32 operands, so
// --precision fp32 matches the CPU to rounding); the forward's bias is the BIAS epilogue. In bf16 the
// weight gradients may be fp32 (C/D fp32 beside bf16 A/B, accumulated with beta = 1).
#include <cublasLt.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "core/error.h"
#include "ops/cuda/check.cuh"
#include "ops/cuda/cuda_ops.h"

namespace sambalm::ops::cuda {

namespace {

struct Gemm {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  const void* a = nullptr;
  int64_t lda = 0;
  const void* b = nullptr;
  int64_t ldb = 0;
  void* c = nullptr;
  int64_t ldc = 0;
  float beta = 0.f;
  const void* bias = nullptr;  // length m, added to every column of C
};

// The largest power of two (up to 256) dividing the address: what cuBLASLt may assume of it.
uint32_t alignment_of(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 256;
  while (al > 1 && (a % al) != 0) al /= 2;
  return al;
}

template <typename Desc, typename Attr, typename V>
void set_attr(cublasStatus_t (*setter)(Desc, Attr, const void*, size_t), Desc d, Attr attr, const V& v) {
  SAMBALM_CUBLAS_CHECK(setter(d, attr, &v, sizeof(v)));
}

// A and B of element type `type`; C (= D) of `ctype` (fp32 beside bf16 A/B for the bf16 mode's
// weight gradients: cuBLASLt's bf16-in, fp32-out GEMM with fp32 accumulation).
void lt_gemm(const Context& ctx, cudaDataType_t type, cudaDataType_t ctype, const Gemm& g) {
  if (g.m == 0 || g.n == 0) return;
  auto handle = static_cast<cublasLtHandle_t>(ctx.blas);
  SAMBALM_CHECK(handle != nullptr, "matmul on {}: the context has no cuBLASLt handle", ctx.name());
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  struct Cleanup {
    cublasLtMatmulDesc_t& op;
    cublasLtMatrixLayout_t &la, &lb, &lc;
    cublasLtMatmulPreference_t& pref;
    ~Cleanup() {
      if (pref) cublasLtMatmulPreferenceDestroy(pref);
      if (lc) cublasLtMatrixLayoutDestroy(lc);
      if (lb) cublasLtMatrixLayoutDestroy(lb);
      if (la) cublasLtMatrixLayoutDestroy(la);
      if (op) cublasLtMatmulDescDestroy(op);
    }
  } cleanup{op, la, lb, lc, pref};

  SAMBALM_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  set_attr(cublasLtMatmulDescSetAttribute, op, CUBLASLT_MATMUL_DESC_TRANSA, ta);
  set_attr(cublasLtMatmulDescSetAttribute, op, CUBLASLT_MATMUL_DESC_TRANSB, tb);
  if (g.bias) {
    set_attr(cublasLtMatmulDescSetAttribute, op, CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_BIAS);
    set_attr(cublasLtMatmulDescSetAttribute, op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, g.bias);
    set_attr(cublasLtMatmulDescSetAttribute, op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, ctype);
  }
  // Stored shapes (column-major rows x cols) before the op is applied.
  SAMBALM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la, type, g.trans_a ? g.k : g.m, g.trans_a ? g.m : g.k, g.lda));
  SAMBALM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, type, g.trans_b ? g.n : g.k, g.trans_b ? g.k : g.n, g.ldb));
  SAMBALM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lc, ctype, g.m, g.n, g.ldc));

  SAMBALM_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = ctx.blas_workspace_bytes;
  set_attr(cublasLtMatmulPreferenceSetAttribute, pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, ws);
  set_attr(cublasLtMatmulPreferenceSetAttribute, pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignment_of(g.a));
  set_attr(cublasLtMatmulPreferenceSetAttribute, pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignment_of(g.b));
  set_attr(cublasLtMatmulPreferenceSetAttribute, pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignment_of(g.c));
  set_attr(cublasLtMatmulPreferenceSetAttribute, pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignment_of(g.c));

  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  SAMBALM_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(handle, op, la, lb, lc, lc, pref, 1, &result, &found));
  SAMBALM_CHECK(found > 0, "matmul on {}: cuBLASLt has no algorithm for m={} n={} k={} (lda={} ldb={} ldc={})",
                ctx.name(), g.m, g.n, g.k, g.lda, g.ldb, g.ldc);
  const float alpha = 1.f;
  SAMBALM_CUBLAS_CHECK(cublasLtMatmul(handle, op, &alpha, g.a, la, g.b, lb, &g.beta, g.c, lc, g.c, lc, &result.algo,
                                      ctx.blas_workspace, ctx.blas_workspace_bytes, stream_of(ctx)));
}

template <typename T>
constexpr cudaDataType_t data_type() {
  if constexpr (std::is_same_v<T, float>)
    return CUDA_R_32F;
  else
    return CUDA_R_16BF;
}

template <typename T, typename O>
void forward_impl(const Context& ctx, O* out, int64_t ld_out, const T* inp, int64_t ld_inp, const T* weight,
                  const O* bias, int64_t M, int64_t K, int64_t N) {
  if (K == 0) {  // an empty sum: out = bias (or 0); cuBLASLt rejects k = 0
    SAMBALM_CHECK(bias == nullptr && ld_out == N, "matmul_forward on {}: K = 0 with a bias or strided output",
                  ctx.name());
    SAMBALM_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(O) * M * N, stream_of(ctx)));
    return;
  }
  Gemm g;
  g.trans_a = true;
  g.m = N, g.n = M, g.k = K;
  g.a = weight, g.lda = K;
  g.b = inp, g.ldb = ld_inp;
  g.c = out, g.ldc = ld_out;
  g.bias = bias;
  lt_gemm(ctx, data_type<T>(), data_type<O>(), g);
}

template <typename T, typename G>
void backward_impl(const Context& ctx, T* dinp, int64_t ld_dinp, G* dweight, G* dbias, const T* dout,
                   int64_t ld_dout, const T* inp, int64_t ld_inp, const T* weight, int64_t M, int64_t K, int64_t N) {
  if (M == 0 || N == 0) return;
  if (dinp && K > 0) {
    Gemm g;
    g.m = K, g.n = M, g.k = N;
    g.a = weight, g.lda = K;
    g.b = dout, g.ldb = ld_dout;
    g.c = dinp, g.ldc = ld_dinp;
    g.beta = 1.f;
    lt_gemm(ctx, data_type<T>(), data_type<T>(), g);
  }
  if (dweight && K > 0) {
    Gemm g;
    g.trans_b = true;
    g.m = K, g.n = N, g.k = M;
    g.a = inp, g.lda = ld_inp;
    g.b = dout, g.ldb = ld_dout;
    g.c = dweight, g.ldc = K;
    g.beta = 1.f;
    lt_gemm(ctx, data_type<T>(), data_type<G>(), g);
  }
  if (dbias) bias_grad_accumulate(ctx, dbias, dout, ld_dout, M, N);
}

}  // namespace

#define SAMBALM_CUDA_MATMUL_DEF(T)                                                                                    \
  void matmul_forward(const Context& ctx, T* out, const T* inp, const T* weight, const T* bias, int64_t M, int64_t K,  \
                      int64_t N) {                                                                                    \
    forward_impl(ctx, out, N, inp, K, weight, bias, M, K, N);                                                         \
  }                                                                                                                   \
  void matmul_backward(const Context& ctx, T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,                \
                       const T* weight, int64_t M, int64_t K, int64_t N) {                                            \
    backward_impl(ctx, dinp, K, dweight, dbias, dout, N, inp, K, weight, M, K, N);                                    \
  }                                                                                                                   \
  void matmul_forward_strided(const Context& ctx, T* out, int64_t ld_out, const T* inp, int64_t ld_inp,               \
                              const T* weight, const T* bias, int64_t M, int64_t K, int64_t N) {                      \
    forward_impl(ctx, out, ld_out, inp, ld_inp, weight, bias, M, K, N);                                               \
  }                                                                                                                   \
  void matmul_backward_strided(const Context& ctx, T* dinp, int64_t ld_dinp, T* dweight, T* dbias, const T* dout,     \
                               int64_t ld_dout, const T* inp, int64_t ld_inp, const T* weight, int64_t M, int64_t K,  \
                               int64_t N) {                                                                           \
    backward_impl(ctx, dinp, ld_dinp, dweight, dbias, dout, ld_dout, inp, ld_inp, weight, M, K, N);                   \
  }
SAMBALM_CUDA_MATMUL_DEF(float)
SAMBALM_CUDA_MATMUL_DEF(bf16)

void matmul_forward_strided(const Context& ctx, float* out, int64_t ld_out, const bf16* inp, int64_t ld_inp,
                            const bf16* weight, const float* bias, int64_t M, int64_t K, int64_t N) {
  forward_impl(ctx, out, ld_out, inp, ld_inp, weight, bias, M, K, N);
}
void matmul_backward(const Context& ctx, bf16* dinp, float* dweight, float* dbias, const bf16* dout, const bf16* inp,
                     const bf16* weight, int64_t M, int64_t K, int64_t N) {
  backward_impl(ctx, dinp, K, dweight, dbias, dout, N, inp, K, weight, M, K, N);
}
void matmul_backward_strided(const Context& ctx, bf16* dinp, int64_t ld_dinp, float* dweight, float* dbias,
                             const bf16* dout, int64_t ld_dout, const bf16* inp, int64_t ld_inp, const bf16* weight,
                             int64_t M, int64_t K, int64_t N) {
  backward_impl(ctx, dinp, ld_dinp, dweight, dbias, dout, ld_dout, inp, ld_inp, weight, M, K, N);
}

}  // namespace sambalm::ops::cuda
