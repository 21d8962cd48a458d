// torch.save checkpoints read natively: every file of fixtures/pth against its case's
// model.safetensors (the same weights), bit for bit; tied weights as one tensor; the legacy format.
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "io/state_dict.h"
#include "io/torch_checkpoint.h"
#include "testing.h"

using namespace sambalm;

namespace {

struct PthCase {
  std::string file, case_name, format, kind, dtype;
};

std::vector<PthCase> manifest() {
  auto j = nlohmann::json::parse(read_text_file(test::fixtures_dir() + "/pth/manifest.json"));
  std::vector<PthCase> out;
  for (auto& e : j) out.push_back({e.at("file"), e.at("case"), e.at("format"), e.at("kind"), e.at("dtype")});
  return out;
}

// Same names, shapes and values; F32 files hold the same bits, BF16 ones the bf16 rounding of them.
void expect_same_weights(const std::string& label, const std::map<std::string, Tensor>& got,
                         const std::map<std::string, Tensor>& want) {
  ASSERT_EQ(got.size(), want.size()) << label;
  for (const auto& [name, w] : want) {
    auto it = got.find(name);
    ASSERT_NE(it, got.end()) << label << ": missing " << name;
    const Tensor& g = it->second;
    ASSERT_EQ(g.shape(), w.shape()) << label << ": " << name;
    ASSERT_EQ(w.dtype(), DType::F32);
    const float* wv = w.data<float>();
    if (g.dtype() == DType::F32) {
      EXPECT_EQ(std::memcmp(g.raw(), wv, w.nbytes()), 0) << label << ": " << name << " differs";
    } else {
      ASSERT_EQ(g.dtype(), DType::BF16) << label << ": " << name;
      const uint16_t* gv = g.data<uint16_t>();
      int64_t bad = 0;
      for (int64_t i = 0; i < w.numel(); ++i) bad += gv[i] != f32_to_bf16(wv[i]);
      EXPECT_EQ(bad, 0) << label << ": " << name << " differs from the bf16 rounding";
    }
  }
}

}  // namespace

TEST(TorchCheckpoint, EveryFixtureFileMatchesItsSafetensors) {
  REQUIRE_FIXTURES();
  auto cases = manifest();
  ASSERT_GE(cases.size(), 7u);
  for (const auto& c : cases) {
    std::string path = test::fixtures_dir() + "/pth/" + c.file;
    auto want = read_safetensors(test::fixtures_dir() + "/" + c.case_name + "/model.safetensors");
    auto got = read_state_dict(path);
    expect_same_weights(c.file, got, want.tensors);
    for (auto& [name, t] : got) EXPECT_EQ(t.dtype(), *dtype_from_name(c.dtype)) << c.file << " " << name;

    TorchCheckpoint ck = read_torch_checkpoint(path);
    EXPECT_EQ(ck.format, c.format) << c.file;
    EXPECT_EQ(ck.entry, c.kind == "fabric" ? "model" : "") << c.file;
  }
}

TEST(TorchCheckpoint, TiedHeadIsOneTensor) {
  REQUIRE_FIXTURES();
  for (const auto& c : manifest()) {
    auto sd = read_state_dict(test::fixtures_dir() + "/pth/" + c.file);
    const char* emb = c.case_name == "samba_tiny" ? "transformer.wte.weight" : "backbone.embedding.weight";
    ASSERT_TRUE(sd.count(emb) && sd.count("lm_head.weight")) << c.file;
    EXPECT_EQ(sd.at(emb).raw(), sd.at("lm_head.weight").raw()) << c.file << ": tied head not shared";
  }
}

TEST(TorchCheckpoint, ContiguousStoragesAreViewsIntoTheFile) {
  REQUIRE_FIXTURES();
  std::string path = test::fixtures_dir() + "/pth/mamba_tiny_t211/pytorch_model.bin";
  auto file = MappedFile::open(path);
  TorchCheckpoint ck = parse_torch_checkpoint(file->data(), file->size(), path, file);
  for (auto& [name, t] : ck.tensors) {
    auto p = static_cast<const uint8_t*>(t.raw());
    EXPECT_TRUE(p >= file->data() && p + t.nbytes() <= file->data() + file->size()) << name << " was copied";
  }
}

TEST(TorchCheckpoint, ViewsWithOffsetsAndStridesKeepTheirValues) {
  REQUIRE_FIXTURES();
  std::string path = test::fixtures_dir() + "/pth/samba_tiny_views_t113.pth";
  auto file = MappedFile::open(path);
  TorchCheckpoint ck = parse_torch_checkpoint(file->data(), file->size(), path, file);
  auto want = read_safetensors(test::fixtures_dir() + "/samba_tiny/model.safetensors");
  std::map<std::string, Tensor> got(ck.tensors.begin(), ck.tensors.end());
  // The transposed matrix had to be copied; the norm weights are views at different offsets of one storage.
  auto p = static_cast<const uint8_t*>(got.at("transformer.h.0.attn.in_proj.weight").raw());
  EXPECT_FALSE(p >= file->data() && p < file->data() + file->size());
  EXPECT_NE(got.at("transformer.h.0.norm_1.weight").raw(), got.at("transformer.h.0.norm_2.weight").raw());
  expect_same_weights("views", got, want.tensors);
}

TEST(TorchCheckpoint, StateDictDispatchStillReadsSafetensors) {
  REQUIRE_FIXTURES();
  auto sd = read_state_dict(test::fixtures_dir() + "/samba_tiny/model.safetensors");
  EXPECT_TRUE(sd.count("lm_head.weight"));
  auto dir = test::temp_dir("sd");
  write_file_atomic(dir + "/junk.bin", "this is not a checkpoint at all");
  try {
    read_state_dict(dir + "/junk.bin");
    ADD_FAILURE() << "junk accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("junk.bin"), std::string::npos) << e.what();
  }
}

TEST(TorchCheckpoint, ReleasingPagesKeepsValuesReadable) {
  REQUIRE_FIXTURES();
  std::string path = test::fixtures_dir() + "/pth/mamba_tiny_t113/pytorch_model.bin";
  auto file = MappedFile::open(path);
  TorchCheckpoint ck = parse_torch_checkpoint(file->data(), file->size(), path, file);
  auto want = read_safetensors(test::fixtures_dir() + "/mamba_tiny/model.safetensors");
  for (auto& [name, t] : ck.tensors) release_mapped_pages(file->data(), file->size(), t.raw(), t.nbytes());
  // Memory outside the map is left alone.
  Tensor owned = Tensor::from_f32({4}, {1, 2, 3, 4});
  release_mapped_pages(file->data(), file->size(), owned.raw(), owned.nbytes());
  EXPECT_EQ(owned.data<float>()[3], 4.0f);
  expect_same_weights("released", std::map<std::string, Tensor>(ck.tensors.begin(), ck.tensors.end()), want.tensors);
}
