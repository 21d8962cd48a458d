// --weights-dtype: the format the GEMM weights are kept in while a command runs (model/packed_weights.h).
// Shared by the commands that run a model for inference (generate, bench, forward, eval, serve).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace sambalm::cli {

inline CLI::Option* add_weights_dtype_option(CLI::App* sub, std::string& value) {
  return sub
      ->add_option("--weights-dtype", value,
                   "Format of the GEMM weights in memory: f32, bf16, f16 or q8 (blocks of 32 with a scale each).\n"
                   "Default: as stored (a directory from `sambalm convert --dtype bf16|f16|q8` stays in that format;\n"
                   "norms, A_log, D, biases and conv weights are always f32). Decoding reads 2 (bf16, f16) or about\n"
                   "1 (q8) byte per weight instead of 4 (docs/FORMATS.md, \"Weight formats for inference\")")
      ->check(CLI::IsMember({"f32", "bf16", "f16", "q8"}));
}

}  // namespace sambalm::cli
