// Weights kept for inference in the format they were stored in (docs/FORMATS.md, "Weight formats for
// inference"): the GEMM matrices (Mamba's in_proj, x_proj, dt_proj, out_proj; attention's qkv and
// proj; the MLP's w1, w2, w3; SambaY's projections; the embedding and an untied head) in bf16, f16 or
// q8, everything else (norms, A_log, D, biases, conv weights) in float32 in the ParamStore's buffer.
// A ParamStore made with packed weights has no float32 copy of those matrices; the layers multiply by
// them through linear_forward (model/linear.h), the embedding gathers rows from them.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/packed_matrix.h"
#include "core/tensor.h"
#include "model/config.h"
#include "model/params.h"

namespace sambalm {

class PackedWeights {
 public:
  // A matrix with its own storage.
  void add(const std::string& name, OwnedPackedMatrix m);
  // A view into bytes that `keep` holds alive (a tensor of a memory-mapped file).
  void add_view(const std::string& name, const PackedMatrix& m, const Tensor& keep);
  const PackedMatrix* find(const std::string& name) const;
  const std::map<std::string, PackedMatrix>& matrices() const { return mats_; }

 private:
  std::map<std::string, PackedMatrix> mats_;  // node-based: the pointers that entries hold stay valid
  std::vector<std::unique_ptr<OwnedPackedMatrix>> owned_;
  std::vector<Tensor> kept_;
};

// Whether a parameter is one of the GEMM matrices that may be packed: a 2-D "*.weight" other than the
// Mamba conv weight (norm weights are 1-D).
bool is_packable(const std::string& name, const Shape& shape);

// Whether pack_params(…, format) packs this parameter: a packable matrix, a format other than F32, and
// for q8 an input dimension that is a multiple of kQ8Block.
bool packs_into(const std::string& name, const Shape& shape, MatrixFormat format);

// "f32", "bf16", "f16", "q8" (also "q8_0"); throws Error listing them otherwise.
MatrixFormat parse_matrix_format(const std::string& name);

// The same parameters with every packable matrix in `format` (from a float32 store). q8 needs rows of
// whole blocks of 32: a matrix whose input dimension is not a multiple of 32 (Mamba's dt_proj when
// dt_rank is not) stays float32. F32 gives a plain float32 copy.
ParamStore pack_params(const ParamStore& params, MatrixFormat format);
// Every parameter in float32 again (the packed ones dequantized): for training or conversion.
ParamStore unpack_params(const ParamStore& params);

// Takes the packed matrices out of a state_dict under sambalm's names: every packable weight stored
// as BF16, F16 or I8 (q8, with its block scales "<name>.scales" [rows, cols / 32], F16 or F32) becomes
// a view into the state_dict's memory, and it (and its scales) is removed from `state_dict`, which then
// holds only what load_params converts to float32. Returns nullptr when nothing is packed. Errors,
// naming `source` and the tensor: scales missing, of a wrong shape or dtype, or for a weight that is
// not int8; a block size other than 32; int8 for a parameter that cannot be packed; non-finite values.
std::shared_ptr<PackedWeights> take_packed(std::map<std::string, Tensor>& state_dict, const std::string& source);

// The name under which a file stores a q8 matrix's block scales: `<name>.scales`.
inline std::string scales_name(const std::string& weight) { return weight + ".scales"; }

}  // namespace sambalm
