// Linear layers and the embedding over packed weights (core/packed_matrix.h).
//   out[M, N] = inp[M, K] @ dequant(W)^T (+ bias)
// Up to kGemvMaxRows rows (decoding): the packed GEMV, which reads each weight once in its own size and
// widens it in registers (gemv_packed.h). More rows (prefill, batched decoding):
//  - on a CPU with AVX512-BF16: the bf16 GEMM (matmul_bf16.h; the activations rounded to bf16, float32
//    accumulation), reading bf16 weights as they are and f16 / q8 ones converted to bf16 a panel at a
//    time (about twice as fast as the float32 path below, measured; f16 then multiplies with bf16's
//    3 significant digits instead of its own 4, as bf16 does);
//  - otherwise (the fallback): the weights are dequantized a panel of rows at a
//    time into float32 scratch and multiplied with BLAS's sgemm, so the conversion is paid once per
//    panel for all M rows: as fast as the float32 prefill plus the conversion.
#include <algorithm>
#include <vector>

#include "core/error.h"
#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/gemv.h"
#include "ops/cpu/gemv_packed.h"
#include "ops/cpu/matmul_bf16.h"

namespace sambalm::ops::cpu {

namespace {
// Scratch of the prefill path: grown to the largest panel once, then reused (a thread_local so that
// concurrent callers, e.g. tests, never share it).
std::vector<float>& panel_scratch(size_t n) {
  static thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf;
}
constexpr int64_t kPanelFloats = int64_t{1} << 20;  // 4 MiB of dequantized weights per sgemm
}  // namespace

void matmul_forward_packed(float* out, int64_t ld_out, const float* inp, int64_t ld_inp, const PackedMatrix& W,
                           const float* bias, int64_t M, int64_t K, int64_t N) {
  SAMBALM_CHECK(W.rows == N && W.cols == K, "matmul_forward_packed: weight [{}, {}] for a [{}, {}] product", W.rows,
                W.cols, N, K);
  if (M == 0 || N == 0) return;
  if (W.format == MatrixFormat::F32)
    return matmul_forward_strided(out, ld_out, inp, ld_inp, static_cast<const float*>(W.data), bias, M, K, N);
  if (M <= kGemvMaxRows || K == 0) return gemv_packed_auto(out, ld_out, inp, ld_inp, W, bias, M);
  if (bf16_gemm_enabled()) return matmul_bf16(out, ld_out, inp, ld_inp, W, bias, M);
  const int64_t panel = std::clamp<int64_t>(kPanelFloats / K, 16, N);
  std::vector<float>& w = panel_scratch(static_cast<size_t>(panel * K));
  for (int64_t n0 = 0; n0 < N; n0 += panel) {
    const int64_t nn = std::min(panel, N - n0);
    dequantize_rows(packed_isa(), w.data(), W, nullptr, n0, nn);
    matmul_forward_strided(out + n0, ld_out, inp, ld_inp, w.data(), bias ? bias + n0 : nullptr, M, K, nn);
  }
}

void embedding_forward_packed(float* out, const int32_t* ids, const PackedMatrix& table, int64_t n, int64_t C) {
  SAMBALM_CHECK(table.cols == C, "embedding_forward_packed: table rows of {} for {} columns", table.cols, C);
  dequantize_rows(packed_isa(), out, table, ids, 0, n);
}

}  // namespace sambalm::ops::cpu
