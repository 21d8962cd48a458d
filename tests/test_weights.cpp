// Weight names and model directories: the fixtures' original state_dicts load and export back
// bit-exactly under their original names, also split into shards; every error path gives a clear
// message.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/file.h"
#include "io/model_dir.h"
#include "io/safetensors.h"
#include "io/state_dict.h"
#include "model/init.h"
#include "model/model.h"
#include "model/weights.h"
#include "testing.h"

using namespace sambalm;
namespace fs = std::filesystem;

namespace {

template <typename F>
void expect_error(F fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an error mentioning " << *parts.begin();
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

std::string fixture(const std::string& c, const std::string& f) { return test::fixtures_dir() + "/" + c + "/" + f; }

std::map<std::string, Tensor> original(const std::string& c) {
  return read_safetensors(fixture(c, "model.safetensors")).tensors;
}

ModelConfig fixture_config(const std::string& c) { return ModelConfig::from_json_file(fixture(c, "config.json")); }

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// A tiny pure-Mamba config (no fixtures needed).
ModelConfig tiny_mamba() {
  ModelConfig c;
  c.name = "tiny";
  c.mamba = true;
  c.mamba_init = true;
  c.mlp = false;
  c.n_layer = 2;
  c.n_embd = 16;
  c.vocab_size = 30;
  c.padded_vocab_size = 32;
  return c;
}

}  // namespace

class FixtureRoundTrip : public ::testing::TestWithParam<std::pair<const char*, WeightFormat>> {};

TEST_P(FixtureRoundTrip, LoadsAndExportsBitExactly) {
  REQUIRE_FIXTURES();
  auto [name, fmt] = GetParam();
  ModelConfig cfg = fixture_config(name);
  auto sd = original(name);
  EXPECT_EQ(detect_weight_format(sd, name), fmt);
  ParamStore p = load_params(cfg, sd, name);
  EXPECT_EQ(int64_t(p.size()), cfg.num_params());
  auto out = export_params(cfg, p, fmt, DType::F32);
  ASSERT_EQ(out.size(), sd.size());
  for (const auto& [k, t] : out) {
    ASSERT_TRUE(sd.count(k)) << k;
    EXPECT_TRUE(same_bits(t, sd.at(k))) << k;
  }
  // The conv weight is stored [di, d_conv] natively.
  EXPECT_EQ(p.entry("blocks.0.0.conv.weight").shape, (Shape{cfg.d_inner(), cfg.d_conv}));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureRoundTrip,
                         ::testing::Values(std::make_pair("samba_tiny", WeightFormat::LitGpt),
                                           std::make_pair("samba_tiny_gqa", WeightFormat::LitGpt),
                                           std::make_pair("mamba_tiny", WeightFormat::MambaSsm),
                                           std::make_pair("hf_mamba_tiny", WeightFormat::HF)));

TEST(Weights, NamesOfTheOriginals) {
  REQUIRE_FIXTURES();
  auto sd = original("samba_tiny");
  ParamStore p = load_params(fixture_config("samba_tiny"), sd, "samba_tiny");
  // Spot checks of the mapping against the original tensors.
  auto check = [&](const std::string& native, const std::string& ext) {
    const Tensor& t = sd.at(ext);
    EXPECT_EQ(std::memcmp(p.get(native), t.raw(), t.nbytes()), 0) << native << " vs " << ext;
  };
  check("embedding.weight", "transformer.wte.weight");
  check("blocks.0.0.in_proj.weight", "transformer.h.0.attn.in_proj.weight");
  check("blocks.0.0.conv.weight", "transformer.h.0.attn.conv1d.weight");
  check("blocks.1.0.qkv.weight", "transformer.h.1.attn.attn.weight");
  check("blocks.1.0.proj.weight", "transformer.h.1.attn.proj.weight");
  check("blocks.1.1.w3.weight", "transformer.h.1.mlp.swiglu.w3.weight");
  check("blocks.3.1.norm.weight", "transformer.h.3.norm_2.weight");
  check("final_norm.weight", "transformer.ln_f.weight");
}

TEST(Weights, CrossFormatExport) {
  REQUIRE_FIXTURES();
  ModelConfig cfg = fixture_config("mamba_tiny");
  ParamStore p = load_params(cfg, original("mamba_tiny"), "mamba_tiny");
  for (WeightFormat fmt : {WeightFormat::Sambalm, WeightFormat::LitGpt, WeightFormat::HF}) {
    SCOPED_TRACE(weight_format_name(fmt));
    auto out = export_params(cfg, p, fmt, DType::F32);
    std::map<std::string, Tensor> sd(out.begin(), out.end());
    EXPECT_EQ(sd.count("lm_head.weight"), fmt == WeightFormat::HF ? 0u : (fmt == WeightFormat::LitGpt ? 1u : 0u));
    ParamStore q = load_params(cfg, sd, "exported");
    EXPECT_EQ(std::memcmp(p.data(), q.data(), p.size() * sizeof(float)), 0);
  }
  auto lit = export_params(cfg, p, WeightFormat::LitGpt, DType::F32);
  std::map<std::string, Tensor> sd(lit.begin(), lit.end());
  EXPECT_TRUE(sd.count("transformer.h.2.mixer.A_log"));
  EXPECT_TRUE(sd.count("transformer.h.0.norm.weight"));
  // A Samba model has no mamba_ssm / hf names.
  ModelConfig samba = fixture_config("samba_tiny");
  ParamStore s(param_specs(samba));
  expect_error([&] { export_params(samba, s, WeightFormat::MambaSsm, DType::F32); }, {"mamba_ssm", "pure Mamba"});
  expect_error([&] { export_params(samba, s, WeightFormat::HF, DType::F32); }, {"hf", "pure Mamba"});
}

TEST(Weights, ReducedPrecisionInput) {
  REQUIRE_FIXTURES();
  ModelConfig cfg = fixture_config("samba_tiny");
  auto sd = original("samba_tiny");
  std::map<std::string, Tensor> bf16, f64;
  for (const auto& [k, t] : sd) {
    bf16[k] = t.to_dtype(DType::BF16);
    f64[k] = t.to_dtype(DType::F64);
  }
  ParamStore a = load_params(cfg, bf16, "bf16");
  ParamStore b = load_params(cfg, f64, "f64");
  ParamStore ref = load_params(cfg, sd, "f32");
  EXPECT_EQ(std::memcmp(b.data(), ref.data(), ref.size() * sizeof(float)), 0);
  const float* x = a.get("blocks.0.0.in_proj.weight");
  const float* y = ref.get("blocks.0.0.in_proj.weight");
  for (int i = 0; i < 100; ++i) EXPECT_EQ(x[i], bf16_to_f32(f32_to_bf16(y[i])));
}

TEST(Weights, ErrorsNameTheWeight) {
  REQUIRE_FIXTURES();
  ModelConfig cfg = fixture_config("samba_tiny");
  auto sd = original("samba_tiny");

  auto missing = sd;
  missing.erase("transformer.h.2.attn.x_proj.weight");
  expect_error([&] { load_params(cfg, missing, "ck.safetensors"); },
               {"ck.safetensors", "missing", "transformer.h.2.attn.x_proj.weight"});

  auto extra = sd;
  extra["transformer.h.9.attn.D"] = sd.at("transformer.h.0.attn.D");
  extra["foo.bar"] = sd.at("transformer.h.0.attn.D");
  expect_error([&] { load_params(cfg, extra, "ck.safetensors"); },
               {"ck.safetensors", "unexpected", "transformer.h.9.attn.D", "foo.bar"});

  ModelConfig wider = cfg;
  wider.intermediate_size = 192;
  expect_error([&] { load_params(wider, sd, "ck.safetensors"); },
               {"ck.safetensors", "transformer.h.0.mlp.swiglu.w1.weight", "[192, 64]", "[160, 64]"});

  auto untied = sd;
  Tensor head = sd.at("lm_head.weight").clone();
  head.data<float>()[5] += 1.0f;
  untied["lm_head.weight"] = head;
  expect_error([&] { load_params(cfg, untied, "ck.safetensors"); }, {"ck.safetensors", "lm_head.weight", "tied"});

  auto ints = sd;
  ints["transformer.h.0.attn.D"] = Tensor::zeros(DType::I64, {128});
  expect_error([&] { load_params(cfg, ints, "ck.safetensors"); }, {"transformer.h.0.attn.D", "I64"});

  std::map<std::string, Tensor> strange = {{"wte", sd.at("lm_head.weight")}};
  expect_error([&] { load_params(cfg, strange, "ck.safetensors"); }, {"ck.safetensors", "naming scheme"});

  // Samba weights with a Mamba config: the names themselves do not fit.
  expect_error([&] { load_params(fixture_config("mamba_tiny"), sd, "ck.safetensors"); }, {"ck.safetensors"});
  expect_error([] { parse_weight_format("onnx"); }, {"onnx", "lit_gpt"});
}

TEST(Weights, TiedHeadOnlyInEmbeddingIsFine) {
  REQUIRE_FIXTURES();
  ModelConfig cfg = fixture_config("samba_tiny");
  auto sd = original("samba_tiny");
  sd.erase("lm_head.weight");
  EXPECT_NO_THROW(load_params(cfg, sd, "x"));
}

TEST(Weights, WrapperPrefixIsRemoved) {
  REQUIRE_FIXTURES();
  ModelConfig cfg = fixture_config("mamba_tiny");
  std::map<std::string, Tensor> sd;
  for (const auto& [k, t] : original("mamba_tiny")) sd["_forward_module." + k] = t;
  EXPECT_NO_THROW(load_params(cfg, sd, "x"));
}

TEST(ModelDir, LoadFixtureDirectories) {
  REQUIRE_FIXTURES();
  for (const char* name : {"samba_tiny", "mamba_tiny", "hf_mamba_tiny"}) {
    SCOPED_TRACE(name);
    LoadedModel m = load_model(test::fixtures_dir() + "/" + name);
    EXPECT_EQ(int64_t(m.params.size()), m.config.num_params());
    EXPECT_NE(m.weights_path.find("model.safetensors"), std::string::npos);
  }
  // A weights file with the config beside it, and with an explicit config.
  LoadedModel f = load_model(fixture("samba_tiny", "model.safetensors"));
  EXPECT_EQ(f.config.n_layer, 4);
  LoadedModel g = load_model(fixture("samba_tiny", "model.safetensors"), fixture("samba_tiny", "config.json"));
  EXPECT_EQ(std::memcmp(f.params.data(), g.params.data(), f.params.size() * sizeof(float)), 0);
}

TEST(ModelDir, SaveAndReload) {
  ModelConfig cfg = tiny_mamba();
  ParamStore p(param_specs(cfg));
  init_params(cfg, p, 7);
  std::string dir = test::temp_dir("modeldir") + "/nested/model";
  save_model_dir(dir, cfg, p);
  EXPECT_TRUE(fs::exists(dir + "/config.json"));
  EXPECT_FALSE(fs::exists(dir + "/config.json.tmp"));
  auto j = nlohmann::json::parse(read_text_file(dir + "/config.json"));
  EXPECT_EQ(j["format"], "sambalm");
  std::ofstream(dir + "/tokenizer.json") << "{}";
  LoadedModel m = load_model(dir);
  EXPECT_EQ(m.config.to_json(), cfg.to_json());
  EXPECT_EQ(m.tokenizer_path, dir + "/tokenizer.json");
  ASSERT_EQ(m.params.size(), p.size());
  EXPECT_EQ(std::memcmp(m.params.data(), p.data(), p.size() * sizeof(float)), 0);

  save_model_dir(dir, cfg, p, DType::BF16);
  auto st = read_safetensors(dir + "/model.safetensors");
  EXPECT_EQ(st.get("embedding.weight").dtype(), DType::BF16);
  LoadedModel b = load_model(dir);
  for (size_t i = 0; i < p.size(); ++i) ASSERT_EQ(b.params.data()[i], bf16_to_f32(f32_to_bf16(p.data()[i])));
}

TEST(ModelDir, ConfigFileAndPresetSpecs) {
  ModelConfig cfg = tiny_mamba();
  std::string dir = test::temp_dir("cfgonly");
  write_file_atomic(dir + "/config.json", cfg.to_json().dump());
  LoadedModel a = load_model(dir + "/config.json");
  LoadedModel b = load_model(dir + "/config.json");
  EXPECT_EQ(int64_t(a.params.size()), cfg.num_params());
  EXPECT_EQ(std::memcmp(a.params.data(), b.params.data(), a.params.size() * sizeof(float)), 0);
  EXPECT_TRUE(a.weights_path.empty());
  EXPECT_EQ(resolve_config("Samba_421M").num_params(), 421793280);
  expect_error([] { load_model("NoSuchModel"); }, {"NoSuchModel", "unknown preset"});
  expect_error([] { load_model("/no/such/dir"); }, {"/no/such/dir", "no such file"});
  expect_error([&] { load_model(dir); }, {dir, "no weights"});
}

TEST(ModelDir, CorruptWeightsFile) {
  ModelConfig cfg = tiny_mamba();
  std::string dir = test::temp_dir("corrupt");
  write_file_atomic(dir + "/config.json", cfg.to_json().dump());
  write_file_atomic(dir + "/model.safetensors", std::string("\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":", 13));
  expect_error([&] { load_model(dir); }, {"model.safetensors"});
  // A valid file truncated in its data block.
  ParamStore p(param_specs(cfg));
  save_model_dir(dir, cfg, p);
  std::string bytes = read_text_file(dir + "/model.safetensors");
  write_file_atomic(dir + "/model.safetensors", bytes.substr(0, bytes.size() - 100));
  expect_error([&] { load_model(dir); }, {"model.safetensors"});
  // No config beside a weights file.
  std::string lone = test::temp_dir("lone");
  save_model_dir(lone, cfg, p);
  fs::remove(lone + "/config.json");
  expect_error([&] { load_model(lone + "/model.safetensors"); }, {"config.json"});
}

TEST(ModelDir, TorchCheckpoints) {
  REQUIRE_FIXTURES();
  // pytorch_model.bin directories and Fabric .pth files hold the same weights as the safetensors cases.
  LoadedModel ref = load_model(test::fixtures_dir() + "/mamba_tiny");
  for (const char* dir : {"mamba_tiny_t113", "mamba_tiny_t211", "mamba_tiny_legacy_t113"}) {
    SCOPED_TRACE(dir);
    LoadedModel m = load_model(test::fixtures_dir() + "/pth/" + dir);
    EXPECT_NE(m.weights_path.find("pytorch_model.bin"), std::string::npos);
    ASSERT_EQ(m.params.size(), ref.params.size());
    EXPECT_EQ(std::memcmp(m.params.data(), ref.params.data(), ref.params.size() * sizeof(float)), 0);
  }
  LoadedModel samba = load_model(test::fixtures_dir() + "/samba_tiny");
  LoadedModel fabric = load_model(test::fixtures_dir() + "/pth/samba_tiny_fabric_t211.pth",
                                  test::fixtures_dir() + "/samba_tiny/config.json");
  ASSERT_EQ(fabric.params.size(), samba.params.size());
  EXPECT_EQ(std::memcmp(fabric.params.data(), samba.params.data(), samba.params.size() * sizeof(float)), 0);
}

// Sharded checkpoints: a fixture's model.safetensors split into shards with an index loads to the
// very same parameters, and so to the fixture's logits.
TEST(ShardedCheckpoint, LoadsBitIdenticalToTheSingleFile) {
  REQUIRE_FIXTURES();
  for (auto [name, n_shards] :
       {std::pair{"samba_tiny", 3}, std::pair{"hf_mamba_tiny", 2}, std::pair{"mamba_tiny", 3}}) {
    SCOPED_TRACE(name);
    const std::string dir = test::temp_dir("sharded");
    fs::copy_file(fixture(name, "config.json"), dir + "/config.json");
    auto weight_map = test::write_shards(fixture(name, "model.safetensors"), dir, n_shards);
    const std::string index = dir + "/model.safetensors.index.json";

    // The state_dict: every tensor, bit for bit, none added.
    auto single = original(name);
    auto sharded = read_state_dict(index);
    ASSERT_EQ(sharded.size(), single.size());
    for (const auto& [k, t] : single) {
      ASSERT_TRUE(sharded.count(k)) << k;
      EXPECT_TRUE(same_bits(sharded.at(k), t)) << k;
    }
    StateDict sd = open_state_dict(index);
    EXPECT_EQ(sd.files.size(), size_t(n_shards));
    EXPECT_EQ(sd.kind, fmt::format("{} shards (safetensors)", n_shards));

    // The directory and the index itself are model specs.
    LoadedModel ref = load_model(test::fixtures_dir() + "/" + name);
    for (const std::string& spec : {dir, index}) {
      LoadedModel m = load_model(spec);
      EXPECT_EQ(m.weights_path, index);
      EXPECT_EQ(m.config.to_json(), ref.config.to_json());
      ASSERT_EQ(m.params.size(), ref.params.size());
      EXPECT_EQ(std::memcmp(m.params.data(), ref.params.data(), ref.params.size() * sizeof(float)), 0);
    }
    EXPECT_EQ(resolve_weights(dir), index);

    LoadedModel m = load_model(dir);
    auto expected = read_safetensors(fixture(name, "expected.safetensors"));
    const Tensor& in = expected.get("input_ids");
    std::vector<int32_t> ids(static_cast<size_t>(in.numel()));
    for (int64_t i = 0; i < in.numel(); ++i) ids[i] = static_cast<int32_t>(in.data<int64_t>()[i]);
    Model<float> model(m.config, m.params.entries());
    model.forward(m.params.data(), ids.data(), nullptr, in.dim(0), in.dim(1));
    const Tensor& logits = expected.get("logits");
    ASSERT_EQ(logits.numel(), in.numel() * m.config.padded_vocab_size);
    EXPECT_LT(test::rel_error(model.logits(), logits.data<float>(), logits.numel()), 1e-4);
  }
}

// pytorch_model.bin.index.json: the same index over torch.save shards, each read by the torch reader.
TEST(ShardedCheckpoint, TorchShards) {
  REQUIRE_FIXTURES();
  const std::string dir = test::temp_dir("torchshards");
  const std::string bin = test::fixtures_dir() + "/pth/mamba_tiny_t211/pytorch_model.bin";
  fs::copy_file(fixture("mamba_tiny", "config.json"), dir + "/config.json");
  fs::copy_file(bin, dir + "/pytorch_model-00001-of-00001.bin");
  nlohmann::json weight_map = nlohmann::json::object();
  for (const auto& [k, t] : read_state_dict(bin)) weight_map[k] = "pytorch_model-00001-of-00001.bin";
  write_file_atomic(dir + "/pytorch_model.bin.index.json", nlohmann::json{{"weight_map", weight_map}}.dump());
  LoadedModel m = load_model(dir), ref = load_model(test::fixtures_dir() + "/mamba_tiny");
  EXPECT_EQ(m.weights_path, dir + "/pytorch_model.bin.index.json");
  ASSERT_EQ(m.params.size(), ref.params.size());
  EXPECT_EQ(std::memcmp(m.params.data(), ref.params.data(), ref.params.size() * sizeof(float)), 0);
  EXPECT_EQ(open_state_dict(dir + "/pytorch_model.bin.index.json").kind, "1 shard (torch.save zip)");
}

// A shard index is untrusted input: each way it can be wrong is an error that names the index and
// the problem, before any tensor is used.
TEST(ShardedCheckpoint, BadIndexesAreClearErrors) {
  REQUIRE_FIXTURES();
  const std::string dir = test::temp_dir("badindex");
  fs::copy_file(fixture("samba_tiny", "config.json"), dir + "/config.json");
  const auto good = test::write_shards(fixture("samba_tiny", "model.safetensors"), dir, 3);
  const std::string index = dir + "/model.safetensors.index.json";
  const std::string shard1 = "model-00001-of-00003.safetensors", shard2 = "model-00002-of-00003.safetensors";
  auto with_map = [&](const std::map<std::string, std::string>& m) {
    write_file_atomic(index, nlohmann::json{{"metadata", {{"total_size", 1}}}, {"weight_map", m}}.dump());
  };
  auto with_text = [&](const std::string& text) { write_file_atomic(index, text); };
  auto fails = [&](std::initializer_list<std::string> parts) {
    SCOPED_TRACE(read_text_file(index).substr(0, 200));
    expect_error([&] { load_model(dir); }, parts);
  };
  const std::string first = good.begin()->first;  // a tensor of shard 1
  ASSERT_EQ(good.at(first), shard1);

  // Not JSON, or not the shape of an index.
  with_text("{\"weight_map\": {\"a\": ");
  fails({index, "not valid JSON"});
  with_text("[1, 2]");
  fails({index, "must be a JSON object", "array"});
  with_text("{\"metadata\": {}}");
  fails({index, "no 'weight_map'"});
  with_text("{\"weight_map\": [\"" + shard1 + "\"]}");
  fails({index, "'weight_map' must be an object", "array"});
  with_text("{\"weight_map\": {}}");
  fails({index, "empty"});
  // Nested 200,000 deep: the message summarises it (dumping it recursed once per level, overflowing
  // the stack).
  with_text("{\"weight_map\": " + std::string(200000, '[') + std::string(200000, ']') + "}");
  fails({index, "'weight_map' must be an object", "[... 1 items]", "array"});
  with_text("{\"weight_map\": {\"" + first + "\": 1}}");
  fails({index, first, "must be a shard file name", "number"});
  with_text("{\"metadata\": 3, \"weight_map\": {\"" + first + "\": \"" + shard1 + "\"}}");
  fails({index, "'metadata' must be an object"});
  // A tensor listed twice (JSON keeps only one of two equal keys, so the text is checked).
  with_text("{\"weight_map\": {\"" + first + "\": \"" + shard1 + "\", \"" + first + "\": \"" + shard2 + "\"}}");
  fails({index, first, "twice"});

  // Shard names that leave the directory, or name no file.
  for (const std::string& bad :
       std::vector<std::string>{"../" + shard1, "/etc/passwd", "sub/" + shard1, "..", "a\\b"}) {
    auto m = good;
    m[first] = bad;
    with_map(m);
    fails({index, first, bad, "plain file name"});
  }
  auto missing = good;
  missing[first] = "model-00009-of-00009.safetensors";
  with_map(missing);
  fails({index, "model-00009-of-00009.safetensors", "not found"});
  with_map(good);
  fs::rename(dir + "/" + shard2, dir + "/moved");
  fails({index, shard2, "not found"});
  fs::rename(dir + "/moved", dir + "/" + shard2);

  // The index and the shards disagree.
  auto extra = good;
  extra["transformer.h.9.attn.D"] = shard2;
  with_map(extra);
  fails({index, "transformer.h.9.attn.D", shard2, "does not hold it"});
  auto unlisted = good;
  unlisted.erase(first);
  with_map(unlisted);
  fails({index, shard1, first, "does not list"});
  auto misplaced = good;
  misplaced[first] = shard2;
  with_map(misplaced);
  fails({index, shard1, first, "assigns to shard '" + shard2 + "'"});
  // The same tensor in two shards: shard 2 gets a copy of a tensor of shard 1.
  with_map(good);
  {
    auto st = read_safetensors(dir + "/" + shard2);
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& k : st.order) tensors.emplace_back(k, st.get(k).clone());
    tensors.emplace_back(first, original("samba_tiny").at(first));
    write_safetensors(dir + "/" + shard2, tensors);
  }
  fails({index, shard2, first, "assigns to shard '" + shard1 + "'", "two shards"});
  // A shard that is not a weights file, e.g. the index itself.
  test::write_shards(fixture("samba_tiny", "model.safetensors"), dir, 3);
  auto nested = good;
  for (auto& [k, shard] : nested)
    if (shard == shard1) shard = "model.safetensors.index.json";
  with_map(nested);
  fails({"model.safetensors.index.json", "unrecognised weights format"});
}
