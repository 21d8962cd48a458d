// SambaY model directories as users download them (Phi-4-mini-flash's form): a Phi4Flash config.json,
// BF16 weights in safetensors shards listed by model.safetensors.index.json, every shard memory-mapped,
// the tied head absent. Built here from fixtures/sambay_tiny; the index's own failure modes (missing or
// escaping shards, a tensor in two shards) are tested in test_weights.cpp, the config's (odd head
// counts, layer counts) in test_sambay.cpp; here the directory-level ones name the directory's files.
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/file.h"
#include "io/model_dir.h"
#include "io/safetensors.h"
#include "io/state_dict.h"
#include "model/model.h"
#include "testing.h"

using namespace sambalm;
namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& file) { return test::fixtures_dir() + "/sambay_tiny/" + file; }

// dir/config.json (the fixture's Phi4Flash config, edited by `edit`) and the fixture's weights
// converted to `dtype`, in `n_shards` shards with an index (n_shards 0: one model.safetensors).
void write_model_dir(const std::string& dir, DType dtype, int n_shards,
                     const std::function<void(nlohmann::json&)>& edit = {}) {
  auto cfg = nlohmann::json::parse(read_text_file(fixture("config.json")));
  if (edit) edit(cfg);
  write_file_atomic(dir + "/config.json", cfg.dump(2));
  auto st = read_safetensors(fixture("model.safetensors"));
  std::vector<std::pair<std::string, Tensor>> all;
  for (const auto& name : st.order) all.emplace_back(name, st.get(name).to_dtype(dtype));
  if (n_shards == 0) {
    write_safetensors(dir + "/model.safetensors", all);
    return;
  }
  nlohmann::json weight_map = nlohmann::json::object();
  const size_t n = all.size();
  for (int s = 0; s < n_shards; ++s) {
    const std::string shard =
        "model-0000" + std::to_string(s + 1) + "-of-0000" + std::to_string(n_shards) + ".safetensors";
    std::vector<std::pair<std::string, Tensor>> part(all.begin() + long(n * s / n_shards),
                                                     all.begin() + long(n * (s + 1) / n_shards));
    for (const auto& [name, t] : part) weight_map[name] = shard;
    write_safetensors(dir + "/" + shard, part, {{"format", "pt"}});
  }
  write_file_atomic(dir + "/model.safetensors.index.json", nlohmann::json{{"weight_map", weight_map}}.dump(2));
}

template <typename F>
void expect_error(F fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << p << " in: " << e.what();
  }
}

}  // namespace

TEST(SambaYModelDir, ShardedBf16DirectoryLoadsLikeTheUnshardedModel) {
  REQUIRE_FIXTURES();
  const std::string sharded = test::temp_dir("sambay_bf16_shards"), single = test::temp_dir("sambay_bf16_rounded");
  write_model_dir(sharded, DType::BF16, 3);
  // The reference: one float32 file holding the same (BF16-rounded) values.
  {
    write_model_dir(single, DType::BF16, 0);
    auto st = read_safetensors(single + "/model.safetensors");
    std::vector<std::pair<std::string, Tensor>> f32;
    for (const auto& name : st.order) f32.emplace_back(name, st.get(name).to_f32());
    write_safetensors(single + "/model.safetensors.f32", f32);
    fs::rename(single + "/model.safetensors.f32", single + "/model.safetensors");
  }
  const std::string index = sharded + "/model.safetensors.index.json";
  // Every shard is mapped and every tensor is a BF16 view into its shard's map, not a copy.
  StateDict sd = open_state_dict(index);
  ASSERT_EQ(sd.files.size(), 3u);
  EXPECT_FALSE(sd.tensors.count("lm_head.weight"));  // tied: the head is the embedding
  for (const auto& [name, t] : sd.tensors) {
    EXPECT_EQ(t.dtype(), DType::BF16) << name;
    const auto* p = static_cast<const uint8_t*>(t.raw());
    bool inside = false;
    for (const auto& f : sd.files) inside |= p >= f->data() && p + t.nbytes() <= f->data() + f->size();
    EXPECT_TRUE(inside) << name << " is not a view into a shard's map";
  }

  LoadedModel a = load_model(sharded), b = load_model(single);
  EXPECT_EQ(a.weights_path, index);
  ASSERT_TRUE(a.config.sambay);
  EXPECT_TRUE(a.config.tied_embeddings);
  EXPECT_EQ(a.config.to_json(), b.config.to_json());
  ASSERT_EQ(a.params.size(), b.params.size());
  EXPECT_EQ(std::memcmp(a.params.data(), b.params.data(), a.params.size() * sizeof(float)), 0);

  // And the forward pass: the same logits as the float32 file's, close to the original float32
  // weights' (BF16 keeps 8 bits of mantissa).
  auto expected = read_safetensors(fixture("expected.safetensors"));
  const Tensor& in = expected.get("input_ids");
  std::vector<int32_t> ids(static_cast<size_t>(in.numel()));
  for (int64_t i = 0; i < in.numel(); ++i) ids[i] = static_cast<int32_t>(in.data<int64_t>()[i]);
  Model<float> ma(a.config, a.params.entries()), mb(b.config, b.params.entries());
  ma.forward(a.params.data(), ids.data(), nullptr, in.dim(0), in.dim(1));
  mb.forward(b.params.data(), ids.data(), nullptr, in.dim(0), in.dim(1));
  const int64_t n = in.numel() * a.config.padded_vocab_size;
  EXPECT_EQ(std::memcmp(ma.logits(), mb.logits(), n * sizeof(float)), 0);
  EXPECT_LT(test::rel_error(ma.logits(), expected.get("logits").data<float>(), n), 5e-2);
}

TEST(SambaYModelDir, UntiedConfigWithoutAHeadIsAnError) {
  REQUIRE_FIXTURES();
  const std::string dir = test::temp_dir("sambay_untied");
  write_model_dir(dir, DType::BF16, 2, [](nlohmann::json& c) { c["tie_word_embeddings"] = false; });
  expect_error([&] { load_model(dir); }, {"model.safetensors.index.json", "lm_head.weight"});
}

TEST(SambaYModelDir, BadConfigNamesTheDirectorysFileAndField) {
  REQUIRE_FIXTURES();
  const std::string dir = test::temp_dir("sambay_badcfg");
  const std::string config = dir + "/config.json";
  write_model_dir(dir, DType::BF16, 2, [](nlohmann::json& c) { c["num_attention_heads"] = 1; });
  expect_error([&] { load_model(dir); }, {config, "num_attention_heads"});
  write_model_dir(dir, DType::BF16, 2, [](nlohmann::json& c) { c["num_key_value_heads"] = 1; });
  expect_error([&] { load_model(dir); }, {config, "num_key_value_heads"});
  write_model_dir(dir, DType::BF16, 2, [](nlohmann::json& c) { c["num_hidden_layers"] = 6; });
  expect_error([&] { load_model(dir); }, {config, "num_hidden_layers"});
}
