// Weights in and out: name-mapping tables between sambalm's parameter names (params.h) and the
// state_dict names of the original code. Model directories (config.json + weights) are read and
// written by io/model_dir.h.
//
// Naming schemes (docs/FORMATS.md "Weight names"):
//   sambalm    embedding.weight, blocks.{i}.{s}.<param>, final_norm.weight, lm_head.weight
//   lit_gpt    microsoft/Samba GPT: transformer.wte.weight, transformer.h.{i}.<norm>.weight,
//              transformer.h.{i}.<module>.<param>, transformer.ln_f.weight, lm_head.weight
//   mamba_ssm  state-spaces MambaLMHeadModel: backbone.embedding.weight, backbone.layers.{i}.norm.weight,
//              backbone.layers.{i}.mixer.<param>, backbone.norm_f.weight, lm_head.weight
//   hf         transformers MambaForCausalLM: backbone.embeddings.weight, backbone.layers.{i}.{norm,mixer}...,
//              backbone.norm_f.weight, lm_head.weight only when untied; for SambaY the Phi4Flash names
//              model.embed_tokens.weight, model.layers.{i}.{input_layernorm,attn,...}, model.final_layernorm
//              (fixtures README "sambay_tiny")
// The Mamba depthwise conv weight is [d_inner, 1, d_conv] in the originals and [d_inner, d_conv] here.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"
#include "model/params.h"

namespace sambalm {

enum class WeightFormat { Sambalm, LitGpt, MambaSsm, HF };

// "sambalm", "lit_gpt" (also "lit-gpt", "litgpt"), "mamba_ssm" (also "mamba-ssm"), "hf" (also
// "huggingface", "transformers"); throws Error listing the valid names otherwise.
WeightFormat parse_weight_format(const std::string& name);
const char* weight_format_name(WeightFormat fmt);

// One parameter's name in an external scheme.
struct WeightName {
  std::string native;       // sambalm name
  std::string external;     // name in the state_dict of `fmt`
  Shape external_shape;     // shape there (differs from the native one only for the conv weight)
  bool tied_alias = false;  // lm_head.weight that is the embedding (tied models, lit_gpt/mamba_ssm)
  // An external tensor that packs several native parameters along its first dimension (SambaY's MLP
  // `w1` = [gate | up] = native w1, w2; Phi4Flash's `Wqkv` = [q | k | v]): the pieces in order, each
  // a native name and its element count. A piece with an empty name is rows sambalm does not keep
  // (Wqkv's key bias: zero in the original, and a key bias cancels in the softmax): ignored when
  // loading, written as zeros. Empty: the tensor is `native` alone.
  struct Piece {
    std::string native;
    int64_t numel;
  };
  std::vector<Piece> packed = {};
};

// The full table for a model in a scheme, in the original state_dict's order. Throws Error when
// the scheme cannot hold this model (mamba_ssm/hf need a pure-Mamba config; hf needs RMSNorm).
std::vector<WeightName> weight_names(const ModelConfig& cfg, WeightFormat fmt);

// Which scheme a state_dict uses, from its embedding key; throws Error naming `source` otherwise.
WeightFormat detect_weight_format(const std::map<std::string, Tensor>& state_dict, const std::string& source);

// Builds the parameters of `cfg` from a state_dict in any scheme (auto-detected; a common
// "_forward_module." / "_orig_mod." / "module." prefix is removed). Floating dtypes (F32, BF16,
// F16, F64) are converted to float32. Errors, naming `source`: missing weights, unexpected weights
// (listed), shape differing from the config (name, expected, found), non-float dtypes. For a tied
// model, a state_dict holding both the embedding and lm_head.weight must hold equal values (the
// originals save one storage under both names); the embedding is used.
// `on_converted`, when given, is called with each span of source bytes right after its values were
// copied (tensors are copied in spans of at most 64 MiB); a converter uses it to drop the mapped
// file pages it has finished with, so that the source and the float32 copy are never both resident.
// `packed` (take_packed, model/packed_weights.h): matrices already taken out of the state_dict, which
// the store keeps packed (no float32 copy) instead of expecting them in `state_dict`.
ParamStore load_params(const ModelConfig& cfg, const std::map<std::string, Tensor>& state_dict,
                       const std::string& source,
                       const std::function<void(const void* src, size_t bytes)>& on_converted = nullptr,
                       std::shared_ptr<const PackedWeights> packed = nullptr);

// The parameters under the names of `fmt`, converted to `dtype` (F32, BF16, F16, F64). lit_gpt and
// mamba_ssm include lm_head.weight for tied models (as the originals' state_dicts do); hf omits it.
// The values of an external tensor, gathered from the parameter buffer (packed pieces concatenated,
// unkept pieces zero): `out` must hold shape_numel(w.external_shape) floats.
void gather_external(const WeightName& w, const ParamStore& params, float* out);

std::vector<std::pair<std::string, Tensor>> export_params(const ModelConfig& cfg, const ParamStore& params,
                                                          WeightFormat fmt, DType dtype = DType::F32);

}  // namespace sambalm
