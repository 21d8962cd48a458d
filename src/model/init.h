// Weight initialisation of the original training code (microsoft/Samba pretrain.py applies
// GPT._init_weights once after construction; mamba_ssm MambaLMHeadModel its _init_weights).
//
// mamba_init (ModelConfig::mamba_init or mamba):
//   embedding N(0, 0.02); Linear weights PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)), Linear
//   biases 0; residual output projections (Mamba out_proj, attention proj, MLP w3) then divided by
//   sqrt(n_res * n_layer), n_res = 1 for pure Mamba or mlp=false, 3 for mamba_swa_mlp, else 2;
//   Mamba: A_log[c, n] = log(n + 1), D = 1, dt_proj weight U(-dt_rank^-0.5, dt_rank^-0.5), dt_proj bias
//   = softplus^-1(dt) with dt = exp(U(log 1e-3, log 0.1)) floored at 1e-4, conv weight and bias
//   U(-1/sqrt(d_conv), 1/sqrt(d_conv)) (depthwise: fan_in = d_conv); norm weights 1, norm biases 0.
// gpt_neox (otherwise): embedding and every Linear weight (untied LM head included) N(0, sqrt(2/(5 d))),
//   every Linear bias 0 (dt_proj's too, as the original zeroes all Linear biases on this path), then the
//   residual output projections re-drawn N(0, 1/(sqrt(d) * n_layer)); conv, A_log, D, norms as above.
//
// Deterministic in `seed`: each parameter draws from its own stream, seeded from `seed` and its
// name, so the values do not depend on the order of the parameters or on threading.
#pragma once

#include <cstdint>

#include "core/packed_matrix.h"
#include "model/config.h"
#include "model/params.h"

namespace sambalm {

void init_params(const ModelConfig& cfg, ParamStore& params, uint64_t seed);

// The same random parameters with the GEMM matrices in `format`, bit for bit what init_params followed
// by pack_params(params, format) gives, without the float32 copy of every matrix: each matrix is drawn
// in float32 alone and packed before the next one is drawn, so the peak is the packed size plus one
// float32 matrix (a random bf16 model of 3.85 B parameters needs 7.7 GB, not 15.4 + 7.7).
ParamStore init_params_packed(const ModelConfig& cfg, uint64_t seed, MatrixFormat format);

// n_res of the output-projection scaling above.
int64_t init_residuals_per_layer(const ModelConfig& cfg);

}  // namespace sambalm
