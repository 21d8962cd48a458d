// --weights-dtype: the format the GEMM weights are kept in while a command runs (model/packed_weights.h).
// Shared by the commands that run a model for inference (generate, bench, forward, eval, serve).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "model/packed_weights.h"
#include "model/params.h"
#include "ops/cpu/gemv_packed.h"
#include "ops/cpu/matmul_bf16.h"

namespace sambalm::cli {

inline CLI::Option* add_weights_dtype_option(CLI::App* sub, std::string& value) {
  return sub
      ->add_option("--weights-dtype", value,
                   "Format of the GEMM weights in memory: f32, bf16, f16, q8 or q4 (q8, q4: blocks of 32 with a\n"
                   "scale each). Default: as stored (a directory from `sambalm convert --dtype bf16|f16|q8|q4` stays\n"
                   "in that format; norms, A_log, D, biases and conv weights are always f32). Decoding reads 2 (bf16,\n"
                   "f16), about 1 (q8) or about 0.6 (q4) byte per weight instead of 4 (docs/FORMATS.md, \"Weight\n"
                   "formats for inference\")")
      ->check(CLI::IsMember({"f32", "bf16", "f16", "q8", "q4"}));
}

// Packed weights on a CPU without AVX2 + F16C (or with SAMBALM_CPU_ISA=baseline) run on the portable
// kernels, which convert lane by lane: slower than float32. Say so once, with the way out. bf16 weights
// without AVX512-BF16 decode fast but prefill on the fallback (weights widened to float32 for sgemm):
// one line says so.
inline void warn_if_packed_weights_are_slow(const ParamStore& params) {
  if (!params.packed()) return;
  const MatrixFormat format = params.packed()->matrices().begin()->second.format;
  const char* fmt = matrix_format_name(format);
  if (ops::cpu::packed_isa() != ops::cpu::PackedIsa::Baseline) {
    if (format == MatrixFormat::BF16 && !ops::cpu::bf16_gemm_enabled())
      std::fprintf(stderr,
                   "warning: bf16 prompts (prefill) run on the float32 fallback here (%s; AMX: %s): the weights are "
                   "widened to f32 for each GEMM\n",
                   ops::cpu::bf16_gemm_fallback_reason().c_str(), ops::cpu::amx_status().reason.c_str());
    return;
  }
  std::fprintf(stderr,
               "warning: %s weights run on the portable kernels here (no AVX2 + FMA + F16C%s), which are slower than "
               "f32; pass --weights-dtype f32 for speed\n",
               fmt, std::getenv("SAMBALM_CPU_ISA") ? ", or SAMBALM_CPU_ISA caps the choice" : "");
}

}  // namespace sambalm::cli
