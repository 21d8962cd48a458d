// ModelConfig: presets against the original parameter counts and layouts, config.json import in
// every format, and the consistency checks.
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/file.h"
#include "model/config.h"
#include "model/memory_estimate.h"
#include "model/params.h"
#include "model/presets.h"
#include "testing.h"

using namespace sambalm;
using nlohmann::json;

namespace {

std::string shared_dir() { return std::filesystem::path(test::fixtures_dir()).parent_path().string(); }

json load_json(const std::string& path) { return json::parse(read_text_file(path)); }

// Expects `fn` to throw a sambalm::Error whose message contains every string in `parts`.
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

bool is_refused_by_readme(const json& e) {
  return !e["derived"]["non_core_mixers"].empty() || e["name"] == "LLaMA_438M_SWA_paral";
}

}  // namespace

TEST(Config, KnownParamCountsWithoutReferenceData) {
  EXPECT_EQ(ModelConfig::from_preset("Samba_421M").num_params(), 421793280);
  EXPECT_EQ(ModelConfig::from_preset("Samba_1.3B").num_params(), 1330207488);
  EXPECT_EQ(ModelConfig::from_preset("mamba-130m").num_params(), 129135360);
  EXPECT_EQ(ModelConfig::from_preset("mamba-370m").num_params(), 371516416);
}

TEST(Config, PresetTableHasEveryName) {
  auto names = ModelConfig::preset_names();
  EXPECT_EQ(names.size(), 53u);  // 46 lit_gpt, 6 mamba_ssm, ArchScale's phi4miniflash_d32
  EXPECT_NE(find_preset("LLaMA_443M_full_mamba_1,5"), nullptr);
  EXPECT_NE(find_preset("mamba-2.8b-slimpj"), nullptr);
  EXPECT_NE(find_preset("phi4miniflash_d32"), nullptr);
}

TEST(Config, LitGptPresetsMatchOriginal) {
  REQUIRE_FIXTURES();
  json all = load_json(shared_dir() + "/presets/lit_gpt_configs.json");
  ASSERT_EQ(all.size(), 46u);
  int supported = 0;
  for (const auto& [name, e] : all.items()) {
    SCOPED_TRACE(name);
    ASSERT_NE(find_preset(name), nullptr);
    if (is_refused_by_readme(e)) {
      EXPECT_FALSE(preset_refusal(*find_preset(name)).empty());
      expect_error([&] { ModelConfig::from_preset(name); }, {name, "not supported"});
      continue;
    }
    ++supported;
    ModelConfig c = ModelConfig::from_preset(name);
    EXPECT_EQ(c.num_params(), e["param_count"].get<int64_t>());
    EXPECT_EQ(c.block_strings(), e["derived"]["layers"].get<std::vector<std::string>>());
    EXPECT_EQ(c.layer_pattern(), e["derived"]["layer_pattern"].get<std::string>());
    EXPECT_EQ(c.tied_embeddings, e["derived"]["tied_embeddings"].get<bool>());
    EXPECT_EQ(c.mamba_init, e["derived"]["init"] == "mamba_init");
    const json& rope = e["derived"]["rope_n_elem"];
    if (c.has_attention() && !rope.is_null()) {
      EXPECT_EQ(c.rope_n_elem(), rope.get<int64_t>());
    }
    if (rope.is_null()) {
      for (const auto& b : c.layout())
        for (const auto& s : b.sublayers) EXPECT_FALSE(s.kind == SublayerKind::Attention && s.rope);
    }
    if (!e["derived"]["mamba_mixer"].is_null()) {
      EXPECT_EQ(c.mamba_dt_rank(), e["derived"]["mamba_mixer"]["dt_rank"].get<int64_t>());
      EXPECT_EQ(c.d_inner(), e["derived"]["mamba_mixer"]["d_inner"].get<int64_t>());
    }
    int64_t embedding = c.padded_vocab_size * c.n_embd;
    EXPECT_EQ(embedding, e["derived"]["param_count_embedding"].get<int64_t>());
  }
  EXPECT_EQ(supported, 39);
}

TEST(Config, MambaSsmPresetsMatchOriginal) {
  REQUIRE_FIXTURES();
  json all = load_json(shared_dir() + "/presets/mamba_ssm_presets.json");
  ASSERT_EQ(all.size(), 6u);
  for (const auto& [name, e] : all.items()) {
    SCOPED_TRACE(name);
    ModelConfig c = ModelConfig::from_preset(name);
    EXPECT_TRUE(c.mamba);
    EXPECT_EQ(c.num_params(), e["param_count"].get<int64_t>());
    EXPECT_EQ(c.padded_vocab_size, e["padded_vocab_size"].get<int64_t>());
    EXPECT_EQ(c.mamba_dt_rank(), e["derived"]["dt_rank"].get<int64_t>());
    EXPECT_EQ(c.d_inner(), e["derived"]["d_inner"].get<int64_t>());
    EXPECT_EQ(c.block_strings(), std::vector<std::string>(size_t(c.n_layer), "mamba"));
  }
}

TEST(Config, TablePresetCountsAgreeWithParamSpecs) {
  // Without the reference data: the param_count carried in the generated table must equal ours.
  for (const auto& p : preset_table()) {
    if (!preset_refusal(p).empty()) continue;
    SCOPED_TRACE(p.name);
    EXPECT_EQ(ModelConfig::from_preset(p.name).num_params(), p.param_count);
  }
}

TEST(Config, LayoutLitNames) {
  ModelConfig s = ModelConfig::from_preset("Samba_421M");
  auto l = s.layout();
  ASSERT_EQ(l.size(), 12u);
  EXPECT_EQ(l[0].sublayers[0].kind, SublayerKind::Mamba);
  EXPECT_EQ(l[0].sublayers[0].lit_norm, "norm_1");
  EXPECT_EQ(l[0].sublayers[0].lit_module, "attn");
  EXPECT_EQ(l[1].sublayers[0].kind, SublayerKind::Attention);
  EXPECT_EQ(l[1].sublayers[0].window, 2048);
  EXPECT_EQ(l[1].sublayers[1].lit_norm, "norm_2");
  EXPECT_EQ(l[1].sublayers[1].lit_module, "mlp");

  auto m = ModelConfig::from_preset("Mamba_SWA_MLP_400M").layout();
  ASSERT_EQ(m[0].sublayers.size(), 3u);
  EXPECT_EQ(m[0].sublayers[0].lit_norm, "norm_m");
  EXPECT_EQ(m[0].sublayers[0].lit_module, "mb");
  EXPECT_EQ(m[0].sublayers[1].lit_norm, "norm_attn");
  EXPECT_EQ(m[0].sublayers[1].lit_module, "attn");

  auto a = ModelConfig::from_preset("Samba_421M_abl_mamba").layout();
  EXPECT_EQ(a[0].sublayers[0].kind, SublayerKind::MLP);
  EXPECT_EQ(a[0].sublayers[0].mlp_hidden, 2 * 1536);
  EXPECT_EQ(a[0].sublayers[0].lit_module, "attn");

  auto f = ModelConfig::from_preset("LLaMA_438M_SWA_full").layout();
  EXPECT_EQ(f[0].sublayers[0].window, 2048);
  EXPECT_LE(f[1].sublayers[0].window, 0);

  auto nope = ModelConfig::from_preset("Samba_421M_nope").layout();
  EXPECT_FALSE(nope[1].sublayers[0].rope);

  auto pm = ModelConfig::from_preset("mamba-130m").layout();
  ASSERT_EQ(pm[0].sublayers.size(), 1u);
  EXPECT_EQ(pm[0].sublayers[0].lit_norm, "norm");
  EXPECT_EQ(pm[0].sublayers[0].lit_module, "mixer");
}

TEST(Config, MlpFalseDropsTheMlpSublayer) {
  ModelConfig c = ModelConfig::from_preset("Samba_421M");
  c.mlp = false;
  for (const auto& b : c.layout()) EXPECT_EQ(b.sublayers.size(), 1u);
  EXPECT_EQ(c.block_strings()[0], "mamba");
}

TEST(Config, EmptyAttnLayerPosMeansAllMamba) {
  json j = json::parse(find_preset("LLaMA_449M_full_mamba_0")->config_json);
  j["attn_layer_pos"] = "[]";
  ModelConfig c = ModelConfig::from_json(j, "x.json");
  for (const auto& s : c.block_strings()) EXPECT_EQ(s, "mamba+mlp4096");
  j["attn_layer_pos"] = "[1, 5,]";
  EXPECT_EQ(ModelConfig::from_json(j, "x.json").attn_layer_pos, (std::vector<int64_t>{1, 5}));
  j["attn_layer_pos"] = "[1,x]";
  expect_error([&] { ModelConfig::from_json(j, "x.json"); }, {"x.json", "attn_layer_pos"});
  j["attn_layer_pos"] = "[12]";
  expect_error([&] { ModelConfig::from_json(j, "x.json"); }, {"x.json", "attn_layer_pos", "12"});
}

TEST(Config, ImportLitGptFixture) {
  REQUIRE_FIXTURES();
  ModelConfig c = ModelConfig::from_json_file(test::fixtures_dir() + "/samba_tiny/config.json");
  EXPECT_FALSE(c.mamba);
  EXPECT_EQ(c.n_layer, 4);
  EXPECT_EQ(c.n_embd, 64);
  EXPECT_EQ(c.head_size, 16);
  EXPECT_EQ(c.padded_vocab_size, 128);
  EXPECT_EQ(c.intermediate_size, 160);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_EQ(c.block_strings(),
            (std::vector<std::string>{"mamba+mlp160", "swa8+mlp160", "mamba+mlp160", "swa8+mlp160"}));
  ModelConfig g = ModelConfig::from_json_file(test::fixtures_dir() + "/samba_tiny_gqa/config.json");
  EXPECT_EQ(g.n_query_groups, 2);
}

TEST(Config, ImportLitGptWithoutPaddedVocab) {
  REQUIRE_FIXTURES();
  json ref = load_json(shared_dir() + "/training/samba_char_ref.json");
  ModelConfig c = ModelConfig::from_json(ref["config"], "samba_char_ref.json");
  EXPECT_EQ(c.vocab_size, 256);
  EXPECT_EQ(c.padded_vocab_size, 256);  // 256 rounded up to padding_multiple 64
  EXPECT_EQ(c.n_query_groups, c.n_head);
  EXPECT_EQ(c.num_params(), ref["n_params"].get<int64_t>());
  json j = ref["config"];
  j["vocab_size"] = 200;
  EXPECT_EQ(ModelConfig::from_json(j, "x").padded_vocab_size, 256);
}

TEST(Config, ImportMambaSsmFixture) {
  REQUIRE_FIXTURES();
  ModelConfig c = ModelConfig::from_json_file(test::fixtures_dir() + "/mamba_tiny/config.json");
  EXPECT_TRUE(c.mamba);
  EXPECT_EQ(c.n_layer, 3);
  EXPECT_EQ(c.vocab_size, 100);
  EXPECT_EQ(c.padded_vocab_size, 104);
  EXPECT_EQ(c.mamba_dt_rank(), 4);
  EXPECT_TRUE(c.tied_embeddings);
}

TEST(Config, ImportHfFixture) {
  REQUIRE_FIXTURES();
  ModelConfig c = ModelConfig::from_json_file(test::fixtures_dir() + "/hf_mamba_tiny/config.json");
  EXPECT_TRUE(c.mamba);
  EXPECT_EQ(c.n_layer, 2);
  EXPECT_EQ(c.n_embd, 64);
  EXPECT_EQ(c.padded_vocab_size, 100);  // HF does not pad the embedding
  EXPECT_EQ(c.mamba_dt_rank(), 4);
  EXPECT_EQ(c.d_state, 16);
  EXPECT_EQ(c.d_conv, 4);
  EXPECT_EQ(c.norm, NormKind::RMSNorm);
}

TEST(Config, SambalmFormatRoundTrip) {
  for (const char* name : {"Samba_421M", "LLaMA_443M_full_mamba_1,5", "mamba-130m", "LLaMA_438M_SWA_full",
                           "Samba_421M_abl_mamba", "Mamba_SWA_MLP_400M", "Mamba_370M", "Samba_421M_nope"}) {
    SCOPED_TRACE(name);
    ModelConfig a = ModelConfig::from_preset(name);
    json j = a.to_json();
    EXPECT_EQ(j["format"], "sambalm");
    ModelConfig b = ModelConfig::from_json(json::parse(j.dump()), "config.json");
    EXPECT_EQ(b.to_json(), j);
    EXPECT_EQ(b.block_strings(), a.block_strings());
    EXPECT_EQ(b.num_params(), a.num_params());
  }
}

// The Hugging Face MambaConfig that `convert --to hf` writes reads back as the same model; only the
// vocabulary changes (HF has no padding: vocab_size is the embedding's padded row count).
TEST(Config, HfMambaConfigRoundTrip) {
  for (const char* name : {"mamba-130m", "mamba-370m", "mamba-2.8b"}) {
    SCOPED_TRACE(name);
    ModelConfig a = ModelConfig::from_preset(name);
    json j = a.to_hf_json();
    EXPECT_EQ(j["model_type"], "mamba");
    EXPECT_EQ(j["architectures"], json::array({"MambaForCausalLM"}));
    EXPECT_EQ(j["vocab_size"], a.padded_vocab_size);
    EXPECT_EQ(j["intermediate_size"], a.d_inner());
    ModelConfig b = ModelConfig::from_json(json::parse(j.dump()), "config.json");
    ModelConfig want = a;
    want.vocab_size = a.padded_vocab_size;
    want.padding_multiple = 1;
    EXPECT_EQ(b.to_json(), want.to_json());
    EXPECT_EQ(b.num_params(), a.num_params());
  }
  expect_error([] { ModelConfig::from_preset("Samba_421M").to_hf_json(); }, {"Samba_421M", "pure Mamba"});
  ModelConfig ln = ModelConfig::from_preset("mamba-130m");
  ln.norm = NormKind::LayerNorm;
  expect_error([&] { ln.to_hf_json(); }, {"LayerNorm"});
}

TEST(Config, UnknownFormatAndWrongTypes) {
  expect_error([] { ModelConfig::from_json(json{{"foo", 1}}, "cfg.json"); }, {"cfg.json", "unknown model config"});
  expect_error([] { ModelConfig::from_json(json::array(), "cfg.json"); }, {"cfg.json", "object"});
  json j = ModelConfig::from_preset("Samba_421M").to_json();
  j["n_embd"] = "big";
  expect_error([&] { ModelConfig::from_json(j, "cfg.json"); }, {"cfg.json", "n_embd", "integer"});
  j = ModelConfig::from_preset("Samba_421M").to_json();
  j["nope"] = 1;
  expect_error([&] { ModelConfig::from_json(j, "cfg.json"); }, {"cfg.json", "nope"});
  j = ModelConfig::from_preset("Samba_421M").to_json();
  j["n_embdd"] = 3;
  expect_error([&] { ModelConfig::from_json(j, "cfg.json"); }, {"cfg.json", "n_embdd"});
  json hf = {{"model_type", "mamba2"}, {"hidden_size", 64}};
  expect_error([&] { ModelConfig::from_json(hf, "hf.json"); }, {"hf.json", "mamba2"});
  json ms = {{"d_model", 64}, {"n_layer", 2}, {"d_intermediate", 128}};
  expect_error([&] { ModelConfig::from_json(ms, "m.json"); }, {"m.json", "d_intermediate"});
  ms = {{"d_model", 64}, {"n_layer", 2}, {"ssm_cfg", {{"layer", "Mamba2"}}}};
  expect_error([&] { ModelConfig::from_json(ms, "m.json"); }, {"m.json", "Mamba2"});
  auto dir = test::temp_dir("cfg");
  write_file_atomic(dir + "/bad.json", "{not json");
  expect_error([&] { ModelConfig::from_json_file(dir + "/bad.json"); }, {"bad.json", "JSON"});
}

// Sizes in a config.json are bounded where they are read: an absurd one is refused, naming the key,
// instead of overflowing 64-bit counts (2 * 2^62) or building per-layer tables for 10^5 layers.
TEST(Config, AbsurdSizesAreRefused) {
  REQUIRE_FIXTURES();
  json own = ModelConfig::from_preset("Samba_421M").to_json();
  json hf = json::parse(read_text_file(test::fixtures_dir() + "/hf_mamba_tiny/config.json"));
  json ms = json::parse(read_text_file(test::fixtures_dir() + "/mamba_tiny/config.json"));
  auto refuse = [](json j, const char* key, json value, std::initializer_list<std::string> parts) {
    j[key] = value;
    expect_error([&] { ModelConfig::from_json(j, "my/config.json"); }, parts);
  };
  refuse(own, "n_layer", 100000, {"my/config.json", "n_layer", "100000", "at most 4096"});
  refuse(own, "n_embd", int64_t(1) << 40, {"my/config.json", "n_embd", "2^31"});
  refuse(own, "n_layer", 1e300, {"my/config.json", "n_layer", "2^31"});
  refuse(own, "intermediate_size", int64_t(1) << 30, {"intermediate_size", "at most"});
  refuse(own, "rope_base", std::numeric_limits<double>::infinity(), {"rope_base", "finite"});
  refuse(hf, "hidden_size", int64_t(1) << 62, {"my/config.json", "hidden_size", "2^31"});
  refuse(hf, "time_step_rank", int64_t(1) << 40, {"time_step_rank", "2^31"});
  refuse(ms, "vocab_size", std::numeric_limits<int64_t>::max(), {"vocab_size", "2^31"});
  refuse(ms, "vocab_size", std::numeric_limits<uint64_t>::max(), {"vocab_size", "2^31"});
  refuse(ms, "n_layer", 5000, {"n_layer", "5000", "at most 4096"});
  // A value nested 200,000 deep where a number belongs: summarised in the message (dumping it
  // recursed once per level, overflowing the stack).
  // (Read from a file: copying such a value recurses too.)
  const std::string deep = test::temp_dir("cfg_deep") + "/config.json";
  write_file_atomic(
      deep, "{\"format\": \"sambalm\", \"n_layer\": " + std::string(200000, '[') + std::string(200000, ']') + "}");
  expect_error([&] { ModelConfig::from_json_file(deep); }, {deep, "n_layer", "[... 1 items]", "array"});
  // The largest real models stay well inside the limits.
  EXPECT_NO_THROW(ModelConfig::from_json(ModelConfig::from_preset("mamba-2.8b").to_json(), "m.json"));
}

TEST(Config, InconsistentConfigsAreRejected) {
  auto base = [] { return ModelConfig::from_preset("Samba_421M"); };
  auto check = [](ModelConfig c, std::initializer_list<std::string> parts) {
    expect_error([&] { c.validate(); }, parts);
  };
  ModelConfig c = base();
  c.n_embd = 1537;
  check(c, {"n_embd", "1537", "n_head", "12"});
  c = base();
  c.n_query_groups = 5;
  check(c, {"n_query_groups", "5"});
  c = base();
  c.local_window = 0;
  check(c, {"local_window", "0"});
  c = base();
  c.local_window = -2;
  check(c, {"local_window", "-2"});
  c = base();
  c.padded_vocab_size = 100;
  check(c, {"padded_vocab_size", "100"});
  c = base();
  c.rotary_percentage = 0.5;
  c.head_size = 6;
  c.n_head = 256;
  c.n_query_groups = 256;
  check(c, {"RoPE", "rotary_percentage"});
  c = base();
  c.n_layer = 0;
  check(c, {"n_layer"});
  c = base();
  c.intermediate_size = 0;
  check(c, {"intermediate_size"});
  c = base();
  c.d_state = -1;
  check(c, {"d_state"});
  // Through from_json the message also names the file.
  json j = json::parse(find_preset("Samba_421M")->config_json);
  j["n_head"] = 7;
  expect_error([&] { ModelConfig::from_json(j, "my/config.json"); }, {"my/config.json", "n_head", "7"});
  // A pure Mamba model has no attention fields to check.
  ModelConfig m = ModelConfig::from_preset("mamba-130m");
  m.local_window = 0;
  EXPECT_NO_THROW(m.validate());
}

TEST(Config, UnknownAndRefusedPresets) {
  expect_error([] { ModelConfig::from_preset("Samba_421"); }, {"unknown preset", "Samba_421M"});
  expect_error([] { ModelConfig::from_preset("samba_1.3b"); }, {"unknown preset", "Samba_1.3B"});
  expect_error([] { ModelConfig::from_preset("S6Mega_438M"); }, {"S6Mega_438M", "Mega"});
  expect_error([] { ModelConfig::from_preset("LLaMA_438M_SWA_gla"); }, {"GLA"});
  expect_error([] { ModelConfig::from_preset("LLaMA_1.4B_SWA_ret"); }, {"RetNet"});
  expect_error([] { ModelConfig::from_preset("LLaMA_438M_SWA_paral"); }, {"parallel_residual"});
}

TEST(Memory, BreakdownMatchesClosedForm) {
  // presets README "Parameter count in closed form", Samba_421M: d 1536, L 12, V 32000, I 4096.
  ModelConfig c = ModelConfig::from_preset("Samba_421M");
  ParamBreakdown b = param_breakdown(c);
  const int64_t d = 1536, di = 2 * d, r = 96, V = 32000, I = 4096;
  const int64_t mamba = d * 2 * di + 4 * di + di + di * (r + 32) + r * di + di + 16 * di + di + di * d;
  EXPECT_EQ(b.embedding, V * d);
  EXPECT_EQ(b.head, 0);
  EXPECT_EQ(b.mamba, 6 * mamba);
  EXPECT_EQ(b.attention, 6 * (d * 3 * d + d * d));
  EXPECT_EQ(b.mlp, 12 * 3 * d * I);
  EXPECT_EQ(b.norms, (12 * 2 + 1) * d);
  EXPECT_EQ(b.total, 421793280);
  ModelConfig untied = ModelConfig::from_preset("LLaMA_438M");
  EXPECT_EQ(param_breakdown(untied).head, V * d);
}

TEST(Memory, DecodeStateAndTraining) {
  ModelConfig c = ModelConfig::from_preset("Samba_421M");
  MemoryEstimate m = estimate_memory(c, 2, 1024);
  const int64_t di = 3072;
  EXPECT_EQ(m.decode_mamba_per_seq, 6 * 4 * (3 * di + 16 * di));
  EXPECT_EQ(m.decode_attention_per_seq, 6 * 4 * 2 * 12 * 128 * 2048);  // ring of `window` entries
  EXPECT_EQ(m.weights_fp32, 4 * 421793280LL);
  EXPECT_EQ(m.weights_bf16, 2 * 421793280LL);
  EXPECT_EQ(m.train_weights + m.train_grads + m.train_adam, 16 * 421793280LL);
  EXPECT_EQ(m.train_total, 16 * 421793280LL + m.train_activations);
  // Activations scale with batch x seq-len; full-attention caches with the context.
  EXPECT_EQ(estimate_memory(c, 4, 1024).train_activations, 2 * m.train_activations);
  ModelConfig full = ModelConfig::from_preset("LLaMA_438M");
  EXPECT_EQ(estimate_memory(full, 1, 0, 8192).decode_attention_per_seq,
            2 * estimate_memory(full, 1, 0, 4096).decode_attention_per_seq);
  EXPECT_EQ(estimate_memory(ModelConfig::from_preset("mamba-130m")).decode_attention_per_seq, 0);
}

TEST(InfoCommand, PresetAndErrors) {
  std::string out;
  EXPECT_EQ(test::run_cli("info Samba_421M", &out), 0) << out;
  EXPECT_NE(out.find("421,793,280"), std::string::npos) << out;
  EXPECT_NE(out.find("(M S)x6"), std::string::npos) << out;
  EXPECT_NE(test::run_cli("info NoSuchModel", &out), 0);
  EXPECT_NE(out.find("NoSuchModel"), std::string::npos) << out;
  EXPECT_NE(out.find("error"), std::string::npos) << out;
  EXPECT_NE(test::run_cli("info S6Mega_438M", &out), 0);
  EXPECT_NE(out.find("Mega"), std::string::npos) << out;
}

TEST(InfoCommand, ListAndJson) {
  std::string out;
  ASSERT_EQ(test::run_cli("info --list --json", &out), 0) << out;
  json list = json::parse(out);
  ASSERT_EQ(list.size(), 53u);
  int refused = 0;
  for (const auto& p : list) refused += p["supported"] ? 0 : 1;
  EXPECT_EQ(refused, 7);
  ASSERT_EQ(test::run_cli("info --list", &out), 0);
  EXPECT_NE(out.find("LLaMA_443M_full_mamba_1,5"), std::string::npos);
  ASSERT_EQ(test::run_cli("info mamba-370m --json --batch 2 --seq-len 512", &out), 0) << out;
  json j = json::parse(out);
  EXPECT_EQ(j["params"]["total"], 371516416);
  EXPECT_EQ(j["training"]["batch"], 2);
  EXPECT_EQ(j["training"]["seq_len"], 512);
}

TEST(InfoCommand, ModelDirectoryAndConfigFile) {
  REQUIRE_FIXTURES();
  std::string out;
  ASSERT_EQ(test::run_cli("info " + test::fixtures_dir() + "/samba_tiny", &out), 0) << out;
  EXPECT_NE(out.find("swa8+mlp160"), std::string::npos) << out;
  ASSERT_EQ(test::run_cli("info " + test::fixtures_dir() + "/hf_mamba_tiny/config.json", &out), 0) << out;
  EXPECT_NE(out.find("(M)x2"), std::string::npos) << out;
}
