// `sambalm convert`: turn a checkpoint (torch.save .pth / pytorch_model.bin, or safetensors, single
// or sharded, under any of the known naming schemes) into a sambalm model directory, or export a
// model's weights under the original code's names (with a transformers config.json for hf).
//
// Memory: the source is memory-mapped and each tensor's pages are dropped as soon as it has been
// copied into the float32 parameter buffer, and the output is written tensor by tensor straight from
// that buffer, so peak memory is about one float32 copy of the model, not two or three.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/config_option.h"
#include "core/error.h"
#include "io/file.h"
#include "io/model_dir.h"
#include "io/state_dict.h"
#include "model/packed_weights.h"
#include "model/presets.h"
#include "model/weights.h"

namespace sambalm::cli {
namespace {

namespace fs = std::filesystem;

struct ConvertOpts {
  std::string src, out, config, dtype = "f32", to = "sambalm";
};

// --dtype: f32, bf16, f16, q8 or q4 (q8, q4: sambalm names only).
MatrixFormat parse_dtype(const std::string& s) {
  try {
    return parse_matrix_format(s);
  } catch (const Error&) {
    fail("--dtype '{}': expected f32, bf16, f16, q8 or q4", s);
  }
}

DType dtype_of(MatrixFormat f) {
  switch (f) {
    case MatrixFormat::BF16:
      return DType::BF16;
    case MatrixFormat::F16:
      return DType::F16;
    case MatrixFormat::Q8:
      return DType::I8;
    case MatrixFormat::Q4:
      return DType::U8;  // two 4-bit codes per byte
    default:
      return DType::F32;
  }
}

// safetensors written one tensor at a time from float32 memory (converted on the way when `dtype`
// is not F32), with the same layout as write_safetensors: sorted JSON header padded to 8 bytes.
// `data` holds the values as `src` (float32, or already in the output dtype: packed matrices and their
// scales), written as `dtype`.
struct OutTensor {
  std::string name;
  Shape shape;
  const void* data;
  DType src = DType::F32, dtype = DType::F32;
};

void write_streaming(const std::string& path, const std::vector<OutTensor>& tensors,
                     const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    SAMBALM_CHECK(!header.contains(t.name), "{}: duplicate tensor name '{}'", path, t.name);
    uint64_t n = static_cast<uint64_t>(shape_numel(t.shape)) * dtype_size(t.dtype);
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8) h.push_back(' ');
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(h.size()) >> (8 * i));
  AtomicWriter w(path);
  w.write(len, 8);
  w.write(h.data(), h.size());
  std::vector<uint8_t> buf;
  constexpr size_t kChunk = size_t{1} << 20;  // elements converted per write
  for (const auto& t : tensors) {
    const size_t n = static_cast<size_t>(shape_numel(t.shape)), es = dtype_size(t.dtype);
    if (t.src == t.dtype) {
      w.write(t.data, n * es);
      continue;
    }
    SAMBALM_CHECK(t.src == DType::F32, "{}: tensor '{}' cannot be written as {}", path, t.name, dtype_name(t.dtype));
    for (size_t i = 0; i < n; i += kChunk) {
      size_t k = std::min(kChunk, n - i);
      buf.resize(k * es);
      convert_from_f32(static_cast<const float*>(t.data) + i, t.dtype, buf.data(), k);
      w.write(buf.data(), buf.size());
    }
  }
  w.commit();
}

// transformers' names for the --dtype choices (config.json "dtype").
const char* torch_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::BF16:
      return "bfloat16";
    case DType::F16:
      return "float16";
    default:
      return "float32";
  }
}

// The tokenizer travels with the weights, so the converted directory generates text as the source
// did. Copied byte for byte (each file is parsed only when a tokenizer is loaded from it).
void copy_tokenizer_files(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  if (fs::equivalent(from.empty() ? "." : from, to, ec)) return;
  for (const char* name : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"}) {
    const fs::path f = from / name;
    if (!fs::is_regular_file(f, ec)) continue;
    write_file_atomic((to / name).string(), read_text_file(f.string()));
    std::printf("copied %s\n", name);
  }
}

// A CLI11 check that runs `parse` on the option's value while the command line is parsed, so a bad
// value is refused before any work with the option's name and the valid choices.
template <typename Parse>
CLI::Validator choice(Parse parse, const std::string& choices) {
  return CLI::Validator(
      [parse, choices](std::string& s) -> std::string {
        try {
          parse(s);
        } catch (const Error&) {
          return fmt::format("must be one of {}, got '{}'", choices, s);
        }
        return std::string();
      },
      choices, "CHOICE");
}

int write_out(const ConvertOpts& o, const ModelConfig& cfg, ParamStore params, MatrixFormat format, WeightFormat to,
              const std::string& kind, size_t n_in, const std::string& src);

int run(const ConvertOpts& o) {
  const MatrixFormat format = parse_dtype(o.dtype);
  const WeightFormat to = parse_weight_format(o.to);
  SAMBALM_CHECK(!is_block_format(format) || to == WeightFormat::Sambalm,
                "--dtype {} is sambalm's own layout (weights with block scales); --to {} takes f32, bf16 or f16",
                matrix_format_name(format), weight_format_name(to));
  std::error_code ec;
  // A preset name gives its random weights (seed 0, as generate and bench do): model directories of any
  // shape and format for benchmarks, without a checkpoint.
  const bool random = !fs::exists(o.src, ec) && find_preset(o.src);
  SAMBALM_CHECK(random || fs::exists(o.src, ec), "{}: no such file or directory (and not a preset name)", o.src);
  if (random) {
    ModelConfig cfg = resolve_config(o.src, o.config);
    weight_names(cfg, to);
    std::fprintf(stderr, "warning: '%s' is a preset: writing its random weights (seed 0), not a trained model\n",
                 o.src.c_str());
    return write_out(o, cfg, load_model(o.src, o.config).params, format, to, "random weights of the preset, seed 0", 0,
                     "");
  }
  check_config_option(o.src, o.config, "SRC");
  // The same resolution as every --model: a directory's model.safetensors, shard index,
  // pytorch_model.bin or single .pth, or the file itself.
  const std::string src = resolve_weights(o.src);
  SAMBALM_CHECK(!src.empty(), "{}: a config file holds no weights; give a weights file or a model directory", o.src);
  ModelConfig cfg = resolve_config(o.src, o.config);
  // Refuse a model that the target names cannot hold before reading any weights.
  weight_names(cfg, to);

  // Each file (each shard) is mapped once, so that each tensor's pages can be released after its copy.
  StateDict sd = open_state_dict(src);
  const size_t n_in = sd.tensors.size();
  // A tied head saved as a second tensor on the embedding's storage is the embedding itself: leave it
  // out rather than read (and compare) the same pages again.
  if (cfg.tied_embeddings) {
    auto head = sd.tensors.find("lm_head.weight");
    if (head != sd.tensors.end())
      for (const auto& [name, t] : sd.tensors)
        if (name != head->first && t.raw() == head->second.raw() && t.shape() == head->second.shape() &&
            t.dtype() == head->second.dtype()) {
          sd.tensors.erase(head);
          break;
        }
  }
  // A directory written with --dtype bf16|f16|q8|q4: its packed matrices are read through float32.
  std::shared_ptr<PackedWeights> packed;
  if (sd.tensors.count("embedding.weight")) packed = take_packed(sd.tensors, src);
  ParamStore params = load_params(
      cfg, sd.tensors, src, [&](const void* p, size_t bytes) { sd.release_pages(p, bytes); }, packed);
  if (packed) params = unpack_params(params);
  packed.reset();
  const std::string kind = sd.kind;
  sd = StateDict();
  return write_out(o, cfg, std::move(params), format, to, kind, n_in, src);
}

// Writes OUT/model.safetensors, OUT/config.json and the tokenizer files beside `src` ("" for none).
int write_out(const ConvertOpts& o, const ModelConfig& cfg, ParamStore params, MatrixFormat format, WeightFormat to,
              const std::string& kind, size_t n_in, const std::string& src) {
  const DType dtype = dtype_of(format);
  std::error_code ec;
  fs::create_directories(o.out, ec);
  SAMBALM_CHECK(!ec && fs::is_directory(o.out), "{}: cannot create the output directory: {}", o.out, ec.message());
  // sambalm names: the GEMM matrices in --dtype (model/packed_weights.h), everything else float32, which
  // is what inference keeps in memory. Other names: every tensor in --dtype, as their own code saves them.
  if (to == WeightFormat::Sambalm && format != MatrixFormat::F32) params = pack_params(params, format);
  std::map<std::string, std::string> metadata = {{"format", "pt"}, {"producer", "sambalm"}};
  if (to == WeightFormat::Sambalm && format != MatrixFormat::F32) metadata["sambalm_matrix_format"] = o.dtype;
  if (format == MatrixFormat::Q8) metadata["q8_block_size"] = std::to_string(kQ8Block);
  if (format == MatrixFormat::Q4) metadata["q4_block_size"] = std::to_string(kQ4Block);
  std::vector<OutTensor> out;
  std::deque<std::vector<uint16_t>> scales;  // q8 / q4 block scales, as float16
  std::deque<std::vector<float>> gathered;   // packed tensors (SambaY's Wqkv, fused MLP w1), assembled here
  for (const auto& w : weight_names(cfg, to)) {
    if (!w.packed.empty()) {
      gathered.emplace_back(static_cast<size_t>(shape_numel(w.external_shape)));
      gather_external(w, params, gathered.back().data());
      out.push_back({w.external, w.external_shape, gathered.back().data(), DType::F32, dtype});
      continue;
    }
    const ParamEntry& e = params.entry(w.native);
    SAMBALM_CHECK(e.numel() == shape_numel(w.external_shape), "parameter '{}' has {} values, expected {}", w.native,
                  e.numel(), shape_numel(w.external_shape));
    if (to != WeightFormat::Sambalm) {
      out.push_back({w.external, w.external_shape, params.get(w.native), DType::F32, dtype});
    } else if (!e.packed) {
      out.push_back({w.external, w.external_shape, params.get(w.native), DType::F32, DType::F32});
    } else {
      const PackedMatrix& m = *e.packed;
      // q4: uint8 [rows, cols / 2], the nibble pairs as they are in memory (docs/FORMATS.md).
      const Shape shape = m.format == MatrixFormat::Q4 ? Shape{m.rows, m.cols / 2} : w.external_shape;
      out.push_back({w.external, shape, m.data, dtype_of(m.format), dtype_of(m.format)});
      if (is_block_format(m.format)) {
        const size_t nb = static_cast<size_t>(m.rows * m.blocks_per_row());
        auto& sc = scales.emplace_back(nb);
        convert_from_f32(m.scales, DType::F16, sc.data(), nb);  // exact: pack_matrix rounds them to float16
        out.push_back({scales_name(w.external), {m.rows, m.blocks_per_row()}, sc.data(), DType::F16, DType::F16});
      }
    }
  }
  const std::string weights_out = (fs::path(o.out) / "model.safetensors").string();
  write_streaming(weights_out, out, metadata);
  // With hf names the directory is a transformers model: a MambaConfig (for SambaY a Phi4FlashConfig) beside the
  // weights; with mamba_ssm names, the MambaConfig that MambaLMHeadModel.from_pretrained reads. Otherwise the config
  // travels in sambalm's format, so the directory loads as a model. sambalm reads all three.
  nlohmann::json config_json = cfg.to_json();
  if (to == WeightFormat::HF) {
    config_json = cfg.to_hf_json();
    config_json["dtype"] = torch_dtype_name(dtype);
  } else if (to == WeightFormat::MambaSsm) {
    config_json = cfg.to_mamba_ssm_json();
  }
  write_file_atomic((fs::path(o.out) / "config.json").string(), config_json.dump(2) + "\n");
  std::printf("read %s (%s, %zu tensors)\nwrote %s (%zu tensors, %s names, %s) and config.json (%s)\n",
              src.empty() ? o.src.c_str() : src.c_str(), kind.c_str(), n_in, weights_out.c_str(), out.size(),
              weight_format_name(to),
              to == WeightFormat::Sambalm && format != MatrixFormat::F32
                  ? fmt::format("{} matrices, f32 others", matrix_format_name(format)).c_str()
                  : dtype_name(dtype),
              to == WeightFormat::HF ? (cfg.sambay ? "Hugging Face Phi4FlashConfig" : "Hugging Face MambaConfig")
              : to == WeightFormat::MambaSsm ? "mamba_ssm MambaConfig"
                                             : "sambalm format");
  if (!src.empty()) copy_tokenizer_files(fs::path(src).parent_path(), o.out);
  return 0;
}

Action add(CLI::App& app) {
  auto o = std::make_shared<ConvertOpts>();
  auto* sub =
      app.add_subcommand("convert", "Convert a checkpoint (.pth, pytorch_model.bin, safetensors) to a model directory");
  sub->footer(
      "SRC is a weights file or a model directory (config.json + model.safetensors |\n"
      "model.safetensors.index.json + its shards | pytorch_model.bin | pytorch_model.bin.index.json + its\n"
      "shards | one .pth). PyTorch checkpoints are read without running any of their code: only tensors,\n"
      "plain containers and numbers are accepted, any other object is refused (docs/FORMATS.md). A\n"
      "Lightning Fabric checkpoint contributes its `model` entry; optimizer state and hyper-parameters are\n"
      "ignored. Weight names are recognised in any scheme (lit_gpt, mamba_ssm, hf, sambalm).\n\n"
      "Writes OUT/model.safetensors (one file, also from shards) and OUT/config.json, and copies the\n"
      "tokenizer files found beside the weights (tokenizer.json, tokenizer.model, tokenizer_config.json,\n"
      "special_tokens_map.json). With --to, the weights are written under that scheme's names instead\n"
      "(lit_gpt: microsoft/Samba; mamba_ssm: state-spaces MambaLMHeadModel; hf: transformers\n"
      "MambaForCausalLM); lit_gpt and mamba_ssm repeat the tied embedding as lm_head.weight, like the\n"
      "originals' state_dicts. The config is in sambalm's format, except with --to hf: then it is the\n"
      "MambaConfig transformers reads (model_type \"mamba\", architectures [\"MambaForCausalLM\"];\n"
      "vocab_size = the padded vocabulary, since HF does not pad), so OUT loads with\n"
      "MambaForCausalLM.from_pretrained(OUT); and with --to mamba_ssm: the MambaConfig that mamba_ssm\n"
      "reads (d_model, n_layer, vocab_size, ssm_cfg, rms_norm, residual_in_fp32, fused_add_norm,\n"
      "pad_vocab_size_multiple, tie_embeddings), so OUT loads with MambaLMHeadModel.from_pretrained(OUT).\n"
      "sambalm loads every one of them. Only pure Mamba models have mamba_ssm and hf names (hf: RMSNorm\n"
      "only; mamba_ssm: norm_eps 1e-5). Nothing is downloaded: SRC is a local path, or a preset name for\n"
      "its random weights (seed 0; a directory to benchmark, e.g. `convert mamba-130m --out m --dtype q8`).\n\n"
      "Examples:\n"
      "  sambalm convert iter-040000-ckpt.pth --config Samba_421M --out samba-421m\n"
      "  sambalm convert ~/downloads/mamba-130m --out mamba-130m --dtype bf16   (a local copy of the hub's\n"
      "                                                      state-spaces/mamba-130m: config.json + "
      "pytorch_model.bin)\n"
      "  sambalm convert samba-421m --to lit_gpt --out samba-421m-lit\n"
      "  sambalm convert mamba-130m --to hf --out mamba-130m-hf");
  sub->add_option("src", o->src, "Weights file, model directory, or preset name (random weights)")->required();
  sub->add_option("--out,-o", o->out, "Output directory (created if needed)")->required();
  sub->add_option("--config", o->config,
                  "config.json or preset name: the config of a bare weights file (needed when no config.json lies\n"
                  "beside it), or one that replaces a directory's config.json");
  sub->add_option("--dtype", o->dtype,
                  "Output dtype: f32 (default), bf16, f16, q8 or q4. With sambalm names, only the GEMM matrices\n"
                  "(projections, MLP, embedding/head) take it and the rest stays f32; q8 is int8 in blocks of 32\n"
                  "along each row with a float16 scale per block (`<name>.scales`; a matrix whose rows are not\n"
                  "whole blocks stays f32); q4 is the same blocks in 4 bits (two codes per byte, lossy: about\n"
                  "twice q8's error). generate, bench, forward, eval and serve keep those matrices in that\n"
                  "format in memory (docs/FORMATS.md, \"Weight formats for inference\")")
      ->check(choice(parse_dtype, "f32, bf16, f16, q8 or q4"));
  sub->add_option("--to", o->to, "Output names: sambalm (default), lit_gpt, mamba_ssm or hf")
      ->check(choice(parse_weight_format, "sambalm, lit_gpt, mamba_ssm or hf"));
  return [o] { return run(*o); };
}

}  // namespace
SAMBALM_REGISTER_COMMAND(40, add);
}  // namespace sambalm::cli
