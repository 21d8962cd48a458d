// A layer's linear map by one of its weight matrices, whatever format the weight is kept in:
//   out[M, N] (rows ld_out apart) = in[M, K] (rows ld_in apart) @ W^T + bias
// A float32 weight (in the parameter buffer) goes to ops::matmul_forward_strided, a packed one (bf16,
// f16, q8; model/packed_weights.h) to ops::matmul_forward_packed. Only inference packs weights, so the
// backward passes keep calling the float ops directly.
#pragma once

#include <type_traits>

#include "core/error.h"
#include "model/params.h"
#include "ops/ops.h"

namespace sambalm {

// O (the output) and Bias may differ from T where precision differs (bf16 mixed precision: Mamba's dt
// projection writes fp32 with the fp32 dt bias); packed weights compute in float32 only.
template <typename O, typename T, typename Bias>
void linear_forward(const Context& ctx, O* out, int64_t ld_out, const T* in, int64_t ld_in, const T* params,
                    const ParamRef& w, const Bias* bias, int64_t M, int64_t K, int64_t N) {
  if (w.packed) {
    if constexpr (std::is_same_v<T, float> && std::is_same_v<O, float> && std::is_same_v<Bias, float>)
      ops::matmul_forward_packed(ctx, out, ld_out, in, ld_in, *w.packed, bias, M, K, N);
    else
      fail("packed ({}) weights compute in float32 only", matrix_format_name(w.packed->format));
    return;
  }
  ops::matmul_forward_strided(ctx, out, ld_out, in, ld_in, w.at(params), bias, M, K, N);
}

// Contiguous rows: ld_in = K, ld_out = N.
template <typename O, typename T, typename Bias>
void linear_forward(const Context& ctx, O* out, const T* in, const T* params, const ParamRef& w, const Bias* bias,
                    int64_t M, int64_t K, int64_t N) {
  linear_forward(ctx, out, N, in, K, params, w, bias, M, K, N);
}

}  // namespace sambalm
