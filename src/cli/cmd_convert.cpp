// `sambalm convert`: turn a checkpoint (torch.save .pth / pytorch_model.bin, or safetensors, under
// any of the known naming schemes) into a sambalm model directory, or export a model's weights
// under the original code's names.
//
// Memory: the source is memory-mapped and each tensor's pages are dropped as soon as it has been
// copied into the float32 parameter buffer, and the output is written tensor by tensor straight from
// that buffer, so peak memory is about one float32 copy of the model, not two or three.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/error.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "io/torch_checkpoint.h"
#include "model/weights.h"

namespace sambalm::cli {
namespace {

namespace fs = std::filesystem;

struct ConvertOpts {
  std::string src, out, config, dtype = "f32", to = "sambalm";
};

DType parse_dtype(const std::string& s) {
  std::string l = s;
  std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return std::tolower(c); });
  if (l == "f32" || l == "fp32" || l == "float32") return DType::F32;
  if (l == "bf16" || l == "bfloat16") return DType::BF16;
  if (l == "f16" || l == "fp16" || l == "float16") return DType::F16;
  fail("--dtype '{}': expected f32, bf16 or f16", s);
}

// The weights file of SRC: the file itself, or the one a model directory holds.
std::string weights_file(const std::string& src) {
  std::error_code ec;
  if (fs::is_regular_file(src, ec)) return src;
  SAMBALM_CHECK(fs::is_directory(src, ec), "{}: no such file or directory", src);
  for (const char* name : {"model.safetensors", "pytorch_model.bin"})
    if (fs::is_regular_file(fs::path(src) / name)) return (fs::path(src) / name).string();
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator(src))
    if (e.is_regular_file() && (e.path().extension() == ".pth" || e.path().extension() == ".pt"))
      found.push_back(e.path().string());
  SAMBALM_CHECK(found.size() == 1, "{}: expected model.safetensors, pytorch_model.bin or a single .pth file, found {}",
                src, found.empty() ? std::string("none") : fmt::format("{} .pth files", found.size()));
  return found[0];
}

// safetensors written one tensor at a time from float32 memory (converted on the way when `dtype`
// is not F32), with the same layout as write_safetensors: sorted JSON header padded to 8 bytes.
struct OutTensor {
  std::string name;
  Shape shape;
  const float* data;
};

void write_streaming(const std::string& path, const std::vector<OutTensor>& tensors, DType dtype) {
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}, {"producer", "sambalm"}};
  const size_t es = dtype_size(dtype);
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    SAMBALM_CHECK(!header.contains(t.name), "{}: duplicate tensor name '{}'", path, t.name);
    uint64_t n = static_cast<uint64_t>(shape_numel(t.shape)) * es;
    header[t.name] = {{"dtype", dtype_name(dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + n}}};
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
    const size_t n = static_cast<size_t>(shape_numel(t.shape));
    if (dtype == DType::F32) {
      w.write(t.data, n * sizeof(float));
      continue;
    }
    for (size_t i = 0; i < n; i += kChunk) {
      size_t k = std::min(kChunk, n - i);
      buf.resize(k * es);
      convert_from_f32(t.data + i, dtype, buf.data(), k);
      w.write(buf.data(), buf.size());
    }
  }
  w.commit();
}

int run(const ConvertOpts& o) {
  const DType dtype = parse_dtype(o.dtype);
  const WeightFormat to = parse_weight_format(o.to);
  const std::string src = weights_file(o.src);
  ModelConfig cfg = resolve_config(o.src, o.config);

  // Read the source through one map so that each tensor's pages can be released after its copy.
  auto file = MappedFile::open(src);
  std::map<std::string, Tensor> sd;
  std::string kind;
  if (looks_like_torch_checkpoint(file->data(), file->size())) {
    TorchCheckpoint ck = parse_torch_checkpoint(file->data(), file->size(), src, file);
    kind = fmt::format("torch.save {}{}", ck.format, ck.entry.empty() ? "" : ", '" + ck.entry + "' entry");
    for (auto& [name, t] : ck.tensors)
      SAMBALM_CHECK(sd.emplace(name, std::move(t)).second, "{}: weight '{}' appears twice", src, name);
  } else {
    sd = parse_safetensors(file->data(), file->size(), src, file).tensors;
    kind = "safetensors";
  }
  const size_t n_in = sd.size();
  // A tied head saved as a second tensor on the embedding's storage is the embedding itself: leave it
  // out rather than read (and compare) the same pages again.
  if (cfg.tied_embeddings) {
    auto head = sd.find("lm_head.weight");
    if (head != sd.end())
      for (const auto& [name, t] : sd)
        if (name != head->first && t.raw() == head->second.raw() && t.shape() == head->second.shape() &&
            t.dtype() == head->second.dtype()) {
          sd.erase(head);
          break;
        }
  }
  ParamStore params = load_params(
      cfg, sd, src, [&](const void* p, size_t bytes) { release_mapped_pages(file->data(), file->size(), p, bytes); });
  sd.clear();
  file.reset();

  std::error_code ec;
  fs::create_directories(o.out, ec);
  SAMBALM_CHECK(!ec && fs::is_directory(o.out), "{}: cannot create the output directory: {}", o.out, ec.message());
  std::vector<OutTensor> out;
  for (const auto& w : weight_names(cfg, to)) {
    const ParamEntry& e = params.entry(w.native);
    SAMBALM_CHECK(e.numel() == shape_numel(w.external_shape), "parameter '{}' has {} values, expected {}", w.native,
                  e.numel(), shape_numel(w.external_shape));
    out.push_back({w.external, w.external_shape, params.get(w.native)});
  }
  const std::string weights_out = (fs::path(o.out) / "model.safetensors").string();
  write_streaming(weights_out, out, dtype);
  // The config travels in sambalm's format whatever the names, so the directory loads as a model.
  write_file_atomic((fs::path(o.out) / "config.json").string(), cfg.to_json().dump(2) + "\n");
  std::printf("read %s (%s, %zu tensors)\nwrote %s (%zu tensors, %s names, %s) and config.json\n", src.c_str(),
              kind.c_str(), n_in, weights_out.c_str(), out.size(), weight_format_name(to), dtype_name(dtype));
  return 0;
}

Action add(CLI::App& app) {
  auto o = std::make_shared<ConvertOpts>();
  auto* sub =
      app.add_subcommand("convert", "Convert a checkpoint (.pth, pytorch_model.bin, safetensors) to a model directory");
  sub->footer(
      "SRC is a weights file or a model directory (config.json + model.safetensors | pytorch_model.bin |\n"
      "one .pth). PyTorch checkpoints are read without running any of their code: only tensors, plain\n"
      "containers and numbers are accepted, any other object is refused (docs/FORMATS.md). A Lightning\n"
      "Fabric checkpoint contributes its `model` entry; optimizer state and hyper-parameters are ignored.\n"
      "Weight names are recognised in any scheme (lit_gpt, mamba_ssm, hf, sambalm).\n\n"
      "Writes OUT/model.safetensors and OUT/config.json (sambalm's config format). With --to, the\n"
      "weights are written under that scheme's names instead (lit_gpt: microsoft/Samba; mamba_ssm:\n"
      "state-spaces MambaLMHeadModel; hf: transformers MambaForCausalLM); lit_gpt and mamba_ssm repeat\n"
      "the tied embedding as lm_head.weight, like the originals' state_dicts.\n\n"
      "Examples:\n"
      "  sambalm convert iter-040000-ckpt.pth --config Samba_421M --out samba-421m\n"
      "  sambalm convert state-spaces/mamba-130m --out mamba-130m --dtype bf16\n"
      "  sambalm convert samba-421m --to lit_gpt --out samba-421m-lit");
  sub->add_option("src", o->src, "Weights file or model directory")->required();
  sub->add_option("--out,-o", o->out, "Output directory (created if needed)")->required();
  sub->add_option("--config", o->config,
                  "config.json or preset name; needed when no config.json lies beside the weights");
  sub->add_option("--dtype", o->dtype, "Output dtype: f32 (default), bf16 or f16");
  sub->add_option("--to", o->to, "Output names: sambalm (default), lit_gpt, mamba_ssm or hf");
  return [o] { return run(*o); };
}

}  // namespace
SAMBALM_REGISTER_COMMAND(40, add);
}  // namespace sambalm::cli
