// Models with their GEMM weights packed for inference (bf16, f16, q8, q4; model/packed_weights.h): logits
// on every model fixture against float32 (bf16/f16 within 2e-2, q8 within 5e-2, q4 within TOLQ4, the fixtures' measure
// max|a-b| / max|b|), prefill + decode steps against the one-pass forward of the same packed model,
// `sambalm convert --dtype` round trips that keep the matrices packed in memory (no float32 copy),
// greedy generation unchanged in bf16, and the loader's refusals of malformed q8 and q4 files.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <vector>

#include "infer/decode_model.h"
#include "io/model_dir.h"
#include "io/safetensors.h"
#include "io/state_dict.h"
#include "model/model.h"
#include "model/packed_weights.h"
#include "model/weights.h"
#include "ops/cpu/gemv.h"
#include "ops/cpu/gemv_packed.h"
#include "ops/cpu/matmul_bf16.h"
#include "testing.h"

using namespace sambalm;
namespace fs = std::filesystem;

namespace {

const char* kModels[] = {"samba_tiny", "samba_tiny_gqa", "mamba_tiny", "hf_mamba_tiny", "sambay_tiny"};
const MatrixFormat kPacked[] = {MatrixFormat::BF16, MatrixFormat::F16, MatrixFormat::Q8, MatrixFormat::Q4};

const LoadOptions kKeepPacked = {.keep_packed = true, .weights_dtype = ""};

// The first line of a command's output that is not a warning (run_cli merges stderr into the output,
// and a CPU without AVX512-BF16 warns that bf16 prefill falls back).
std::string first_output_line(const std::string& out) {
  size_t at = 0;
  while (out.compare(at, 9, "warning: ") == 0 && out.find('\n', at) != std::string::npos) at = out.find('\n', at) + 1;
  return out.substr(at, out.find('\n', at) - at);
}

// q4 is lossy (16 levels a block): its logits measured 1.2e-1 (hf_mamba_tiny) to 3.9e-1 (samba_tiny_gqa)
// of f32 over the fixtures' small random models, about 13 times q8's error (its step is 17 times q8's).
double tolerance(MatrixFormat f) { return f == MatrixFormat::Q4 ? 5e-1 : f == MatrixFormat::Q8 ? 5e-2 : 2e-2; }

struct Case {
  ModelConfig cfg;
  ParamStore params;
  std::vector<int32_t> tokens;
  int64_t B, T;
};

Case load_case(const std::string& name) {
  test::ModelFixture fx = test::load_model_fixture(name);
  return Case{fx.cfg, std::move(fx.params), std::move(fx.tokens), fx.B, fx.T};
}

std::vector<float> forward_logits(const ModelConfig& cfg, const ParamStore& p, const std::vector<int32_t>& tokens,
                                  int64_t B, int64_t T) {
  Model<float> model(cfg, p.entries());
  model.forward(p.data(), tokens.data(), nullptr, B, T);
  return std::vector<float>(model.logits(), model.logits() + B * T * cfg.padded_vocab_size);
}

// A copy of `good_dir` with its weights edited by each case, under tmp/<tag>: loading it (packed, and as
// float32) fails with one error that holds `expect` and names the file.
struct BadFile {
  std::string tag, expect;
  std::function<void(std::map<std::string, Tensor>&)> edit;
  bool names_file = true;  // (a shape that only the model's config refutes is reported by parameter name)
};
void expect_refused(const std::string& good_dir, const std::string& tmp, const std::vector<BadFile>& cases) {
  const auto good = read_safetensors(good_dir + "/model.safetensors");
  for (const auto& c : cases) {
    std::map<std::string, Tensor> m(good.tensors.begin(), good.tensors.end());
    c.edit(m);
    std::vector<std::pair<std::string, Tensor>> list(m.begin(), m.end());
    const std::string dir = tmp + "/" + c.tag;
    fs::create_directories(dir);
    write_safetensors(dir + "/model.safetensors", list);
    fs::copy_file(good_dir + "/config.json", dir + "/config.json", fs::copy_options::overwrite_existing);
    try {
      load_model(dir, "", kKeepPacked);
      ADD_FAILURE() << c.tag << ": loaded";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(c.expect), std::string::npos) << c.tag << ": " << msg;
      if (c.names_file) {
        EXPECT_NE(msg.find(dir + "/model.safetensors"), std::string::npos) << c.tag << ": " << msg;
      }
    }
    EXPECT_THROW(load_model(dir), Error) << c.tag << " (loading as float32 checks it too)";
  }
}

}  // namespace

TEST(PackedModel, FixtureLogitsWithinToleranceOfFloat32) {
  REQUIRE_FIXTURES();
  for (const char* name : kModels) {
    Case c = load_case(name);
    const auto ref = forward_logits(c.cfg, c.params, c.tokens, c.B, c.T);
    for (MatrixFormat f : kPacked) {
      const ParamStore packed = pack_params(c.params, f);
      // The matrices are packed, and the float buffer holds none of them.
      int64_t packed_count = 0;
      for (const auto& e : packed.entries()) {
        if (!e.packed) continue;
        ++packed_count;
        EXPECT_EQ(e.packed->format, f) << name << " " << e.name;
      }
      EXPECT_TRUE(packed.entry("embedding.weight").packed) << name;
      EXPECT_GT(packed_count, 2 * c.cfg.n_layer) << name;
      EXPECT_LT(packed.size() * 2, c.params.size()) << name << ": the float buffer still holds the matrices";
      const auto got = forward_logits(c.cfg, packed, c.tokens, c.B, c.T);
      const double err = test::rel_error(got.data(), ref.data(), int64_t(ref.size()));
      EXPECT_LT(err, tolerance(f)) << name << " " << matrix_format_name(f);
      EXPECT_GT(err, 0.0) << name << " " << matrix_format_name(f) << ": identical to f32, so not packed";
      std::printf("%s %s: %.2e of f32\n", name, matrix_format_name(f), err);
    }
  }
}

// The same over more rows than the GEMV takes (the fixtures' batches twice): the prefill GEMM, which on
// a CPU with AVX512-BF16 is the bf16 GEMM (activations rounded to bf16 too, f16 / q8 weights converted
// to bf16).
TEST(PackedModel, FixtureLogitsOnThePrefillPathWithinToleranceOfFloat32) {
  REQUIRE_FIXTURES();
  for (const char* name : kModels) {
    Case c = load_case(name);
    std::vector<int32_t> twice = c.tokens;
    twice.insert(twice.end(), c.tokens.begin(), c.tokens.end());
    ASSERT_GT(2 * c.B * c.T, ops::cpu::kGemvMaxRows) << name;
    const auto ref = forward_logits(c.cfg, c.params, twice, 2 * c.B, c.T);
    for (MatrixFormat f : kPacked) {
      const auto got = forward_logits(c.cfg, pack_params(c.params, f), twice, 2 * c.B, c.T);
      const double err = test::rel_error(got.data(), ref.data(), int64_t(ref.size()));
      EXPECT_LT(err, tolerance(f)) << name << " " << matrix_format_name(f);
      std::printf("%s %s on the prefill path (%s): %.2e of f32\n", name, matrix_format_name(f),
                  ops::cpu::bf16_gemm_enabled() ? "bf16 GEMM" : "float32 fallback", err);
    }
  }
}

// Prefill in chunks (the GEMV below 64 rows, the prefill GEMM above) and single decode steps give
// the one-pass forward's logits of the same packed weights (with the bf16 GEMM: within its rounding
// of the activations and of f16 / q8 weights, which the GEMV does not round).
TEST(PackedModel, PrefillAndDecodeMatchTheForwardOfThePackedModel) {
  REQUIRE_FIXTURES();
  for (const char* name : {"samba_tiny", "sambay_tiny"}) {
    Case c = load_case(name);
    const int64_t V = c.cfg.padded_vocab_size, T = c.T;
    std::vector<int32_t> seq(c.tokens.begin(), c.tokens.begin() + T);
    for (MatrixFormat f : kPacked) {
      const ParamStore packed = pack_params(c.params, f);
      // 4 copies of the sequence: 4*T > 64 rows takes the GEMM path of the packed matmul.
      std::vector<int32_t> four;
      for (int i = 0; i < 4; ++i) four.insert(four.end(), seq.begin(), seq.end());
      const auto ref = forward_logits(c.cfg, packed, four, 4, T);
      DecodeOptions opt;
      opt.chunk = 7;
      DecodeModel dm(c.cfg, packed.entries(), packed.data(), opt);
      DecodeState st = dm.new_state();
      const int64_t n_prefill = T - 5;
      std::vector<float> all(static_cast<size_t>(T * V));
      dm.prefill(st, seq.data(), n_prefill, all.data(), nullptr);
      for (int64_t t = n_prefill; t < T; ++t) {
        DecodeState* s = &st;
        dm.step(&s, 1, &seq[t], all.data() + t * V);
      }
      // The bf16 prefill GEMM rounds the activations to bf16, and q8's decoding GEMV rounds them to
      // int8 where the CPU has integer dot products (ops::cpu::q8dot); the 4T-row forward does neither
      // the same way: the looser tolerances then.
      const bool int8_dot = is_block_format(f) && ops::cpu::q8dot() != ops::cpu::Q8Dot::Float;
      const double tol = int8_dot ? 5e-2 : ops::cpu::bf16_gemm_enabled() ? 2e-2 : 1e-4;
      const double err = test::rel_error(all.data(), ref.data(), T * V);
      EXPECT_LT(err, tol) << name << " " << matrix_format_name(f);
      std::printf("%s %s prefill + decode vs forward: %.2e\n", name, matrix_format_name(f), err);
    }
  }
}

// convert --dtype writes the matrices in that format; loading keeps them so (views of the file, no
// float32 copy), with the logits of packing in memory; generate's greedy ids are those of f32.
TEST(PackedModel, ConvertedDirectoriesLoadPackedAndGenerateAsFloat32) {
  REQUIRE_FIXTURES();
  const std::string src = test::fixtures_dir() + "/samba_tiny";
  const std::string tmp = test::temp_dir("packed_convert");
  Case c = load_case("samba_tiny");
  std::string f32_ids;
  ASSERT_EQ(test::run_cli("generate -m " + src + " --prompt-ids 1,2,3,4 -n 20 --threads 1 2>/dev/null", &f32_ids), 0)
      << f32_ids;
  f32_ids = first_output_line(f32_ids);
  for (const char* dtype : {"bf16", "f16", "q8", "q4"}) {
    const std::string dir = tmp + "/" + dtype, d = dtype;
    std::string log;
    ASSERT_EQ(test::run_cli("convert " + src + " --out " + dir + " --dtype " + dtype, &log), 0) << log;
    auto file = read_safetensors(dir + "/model.safetensors");
    const DType want = d == "q8" ? DType::I8 : d == "q4" ? DType::U8 : d == "bf16" ? DType::BF16 : DType::F16;
    EXPECT_EQ(file.get("blocks.0.0.in_proj.weight").dtype(), want) << dtype;
    EXPECT_EQ(file.get("blocks.0.0.norm.weight").dtype(), DType::F32) << dtype;
    EXPECT_EQ(file.get("blocks.0.0.A_log").dtype(), DType::F32) << dtype;
    EXPECT_EQ(file.has("blocks.0.0.in_proj.weight.scales"), d == "q8" || d == "q4");
    if (d == "q4") {  // two codes a byte, a float16 scale per block of 32
      EXPECT_EQ(file.get("blocks.0.0.in_proj.weight").shape(), (Shape{256, 32}));
      EXPECT_EQ(file.get("blocks.0.0.in_proj.weight.scales").shape(), (Shape{256, 2}));
      EXPECT_EQ(file.get("blocks.0.0.in_proj.weight.scales").dtype(), DType::F16);
    }

    LoadedModel lm = load_model(dir, "", kKeepPacked);
    const MatrixFormat f = parse_matrix_format(dtype);
    ASSERT_TRUE(lm.params.entry("blocks.0.0.in_proj.weight").packed) << dtype;
    EXPECT_EQ(lm.params.entry("blocks.0.0.in_proj.weight").packed->format, f);
    EXPECT_THROW(lm.params.get("blocks.0.0.in_proj.weight"), Error);
    const auto got = forward_logits(lm.config, lm.params, c.tokens, c.B, c.T);
    const auto mem = forward_logits(c.cfg, pack_params(c.params, f), c.tokens, c.B, c.T);
    EXPECT_EQ(test::rel_error(got.data(), mem.data(), int64_t(mem.size())), 0.0) << dtype;
    // Training and conversion get float32 back.
    LoadedModel f32 = load_model(dir);
    EXPECT_FALSE(f32.params.entry("blocks.0.0.in_proj.weight").packed);

    if (std::string(dtype) == "bf16") {
      std::string ids;
      ASSERT_EQ(test::run_cli("generate -m " + dir + " --prompt-ids 1,2,3,4 -n 20 --threads 1 2>/dev/null", &ids), 0)
          << ids;
      EXPECT_EQ(first_output_line(ids), f32_ids) << "greedy ids changed in bf16";
    }
    if (d == "q4") {  // lossy: the ids may differ, but generation runs from the file
      std::string ids;
      ASSERT_EQ(test::run_cli("generate -m " + dir + " --prompt-ids 1,2,3,4 -n 20 --threads 1 2>/dev/null", &ids), 0)
          << ids;
      const std::string line = first_output_line(ids);
      EXPECT_EQ(std::count(line.begin(), line.end(), ' '), std::count(f32_ids.begin(), f32_ids.end(), ' '))
          << line << " vs " << f32_ids;
    }
    // The other commands take the directory too.
    std::string out;
    EXPECT_EQ(test::run_cli("forward --model " + dir + " --inputs " + src + "/expected.safetensors --out " + tmp +
                                "/fwd_" + dtype + ".safetensors",
                            &out),
              0)
        << out;
    EXPECT_EQ(test::run_cli("convert " + dir + " --out " + tmp + "/back_" + dtype, &out), 0) << out;
    EXPECT_EQ(read_safetensors(tmp + "/back_" + std::string(dtype) + "/model.safetensors")
                  .get("blocks.0.0.in_proj.weight")
                  .dtype(),
              DType::F32);
  }
  std::string log;
  // --weights-dtype q4 packs a float32 directory at load time.
  ASSERT_EQ(test::run_cli("generate -m " + src + " --prompt-ids 1,2,3,4 -n 20 --threads 1 --weights-dtype q4", &log), 0)
      << log;
  EXPECT_NE(log.find("generated tokens 20"), std::string::npos) << log;
  // A preset name writes its random weights (here under the fixture's small config), for benchmarks.
  ASSERT_EQ(
      test::run_cli("convert mamba-130m --config " + src + "/config.json --out " + tmp + "/random --dtype q8", &log), 0)
      << log;
  EXPECT_NE(log.find("random weights"), std::string::npos) << log;
  EXPECT_EQ(read_safetensors(tmp + "/random/model.safetensors").get("blocks.0.0.in_proj.weight").dtype(), DType::I8);
  EXPECT_NE(test::run_cli("convert " + src + " --out " + tmp + "/x --dtype q8 --to hf", &log), 0);
  EXPECT_NE(log.find("q8"), std::string::npos) << log;
  EXPECT_NE(test::run_cli("convert " + src + " --out " + tmp + "/x --dtype q4 --to hf", &log), 0);
  EXPECT_NE(log.find("q4"), std::string::npos) << log;
  EXPECT_NE(test::run_cli("convert " + src + " --out " + tmp + "/x --dtype q3", &log), 0);
}

// A q8 file whose scales are missing, of another block size or shape, scales for a float weight, or
// int8 where only floats belong: one clear error naming the file and the tensor.
TEST(PackedModel, MalformedQ8FilesAreRefused) {
  REQUIRE_FIXTURES();
  const std::string src = test::fixtures_dir() + "/samba_tiny";
  const std::string tmp = test::temp_dir("packed_bad");
  std::string log;
  ASSERT_EQ(test::run_cli("convert " + src + " --out " + tmp + "/q8 --dtype q8", &log), 0) << log;
  const std::string w = "blocks.0.0.in_proj.weight", s = w + ".scales";  // [256, 64], scales [256, 2]
  const std::vector<BadFile> cases = {
      {"no_scales", "block scales '" + s + "' are missing", [&](auto& m) { m.erase(s); }},
      {"block16", "blocks of 16 weights; q8 allows blocks of 32 only",
       [&](auto& m) {
         m[s] = Tensor::zeros(DType::F16, {256, 4});
       }},
      {"rows", "expected [256, 2]",
       [&](auto& m) {
         m[s] = Tensor::zeros(DType::F16, {255, 2});
       }},
      {"scales_dtype", "expected F16 or F32",
       [&](auto& m) {
         m[s] = Tensor::zeros(DType::I32, {256, 2});
       }},
      {"stray_scales", "scales belong to int8 q8 and uint8 q4 weights only",
       [&](auto& m) {
         m["blocks.0.0.dt_proj.weight.scales"] = Tensor::zeros(DType::F16, {128, 1});
       }},
      {"int8_norm", "only the 2-D GEMM weights may be q8",
       [&](auto& m) { m["blocks.0.0.norm.weight"] = Tensor::zeros(DType::I8, {64}); }},
  };
  expect_refused(tmp + "/q8", tmp, cases);
  // Through the command line: `error: ...` and exit 1.
  EXPECT_EQ(test::run_cli("generate -m " + tmp + "/no_scales --prompt-ids 1,2 -n 2", &log), 1);
  EXPECT_NE(log.find("error: "), std::string::npos) << log;
  EXPECT_NE(log.find("are missing"), std::string::npos) << log;
}

// The same for q4 (uint8 [rows, cols / 2] with float16 scales [rows, cols / 32]): scales missing, of
// another block size or row count, uint8 where only floats belong, a weight of the wrong width.
TEST(PackedModel, MalformedQ4FilesAreRefused) {
  REQUIRE_FIXTURES();
  const std::string src = test::fixtures_dir() + "/samba_tiny";
  const std::string tmp = test::temp_dir("packed_bad_q4");
  std::string log;
  ASSERT_EQ(test::run_cli("convert " + src + " --out " + tmp + "/q4 --dtype q4", &log), 0) << log;
  const std::string w = "blocks.0.0.in_proj.weight", s = w + ".scales";  // [256, 32] bytes, scales [256, 2]
  const std::vector<BadFile> cases = {
      {"no_scales", "is U8 (q4) but its block scales '" + s + "' are missing", [&](auto& m) { m.erase(s); }},
      {"block16", "blocks of 16 weights; q4 allows blocks of 32 only",
       [&](auto& m) {
         m[s] = Tensor::zeros(DType::F16, {256, 4});
       }},
      {"rows", "expected [256, 2]",
       [&](auto& m) {
         m[s] = Tensor::zeros(DType::F16, {255, 2});
       }},
      {"uint8_norm", "only the 2-D GEMM weights may be q8 or q4",
       [&](auto& m) { m["blocks.0.0.norm.weight"] = Tensor::zeros(DType::U8, {64}); }},
      {"width", "packed matrix [256, 128]",
       [&](auto& m) {
         m[w] = Tensor::zeros(DType::U8, {256, 64});
         m[s] = Tensor::zeros(DType::F16, {256, 4});
       },
       false},
  };
  expect_refused(tmp + "/q4", tmp, cases);
  EXPECT_EQ(test::run_cli("generate -m " + tmp + "/no_scales --prompt-ids 1,2 -n 2", &log), 1);
  EXPECT_NE(log.find("error: "), std::string::npos) << log;
}

// On a CPU without the vector paths (forced with SAMBALM_CPU_ISA=baseline) packed weights still run,
// with a warning that says so.
TEST(PackedModel, PortablePathWarns) {
  REQUIRE_FIXTURES();
  const std::string src = test::fixtures_dir() + "/samba_tiny";
  std::string fast, slow;
  ASSERT_EQ(test::run_cli("generate -m " + src + " --prompt-ids 1,2,3 -n 5 --weights-dtype f16 --threads 1", &fast), 0)
      << fast;
  EXPECT_EQ(fast.find("portable"), std::string::npos) << fast;
  setenv("SAMBALM_CPU_ISA", "baseline", 1);  // inherited by the program run below
  const int rc =
      test::run_cli("generate -m " + src + " --prompt-ids 1,2,3 -n 5 --weights-dtype f16 --threads 1", &slow);
  unsetenv("SAMBALM_CPU_ISA");
  ASSERT_EQ(rc, 0) << slow;
  EXPECT_NE(slow.find("warning: "), std::string::npos) << slow;
  EXPECT_NE(slow.find("portable"), std::string::npos) << slow;
}

// bf16 weights without AVX512-BF16 (forced with SAMBALM_CPU_ISA=avx512) prefill on the float32
// fallback, with a one-line warning that says why; with it, no warning.
TEST(PackedModel, Bf16PrefillFallbackWarns) {
  REQUIRE_FIXTURES();
  const std::string cmd =
      "generate -m " + test::fixtures_dir() + "/samba_tiny --prompt-ids 1,2,3 -n 3 --weights-dtype bf16 --threads 1";
  std::string fast, slow;
  ASSERT_EQ(test::run_cli(cmd, &fast), 0) << fast;
  if (ops::cpu::bf16_gemm_supported()) {
    EXPECT_EQ(fast.find("fallback"), std::string::npos) << fast;
  } else {
    EXPECT_NE(fast.find("no AVX512-BF16"), std::string::npos) << fast;
  }
  setenv("SAMBALM_CPU_ISA", "avx512", 1);  // inherited by the program run below
  const int rc = test::run_cli(cmd, &slow);
  unsetenv("SAMBALM_CPU_ISA");
  ASSERT_EQ(rc, 0) << slow;
  EXPECT_NE(slow.find("warning: bf16 prompts (prefill) run on the float32 fallback"), std::string::npos) << slow;
  EXPECT_NE(slow.find("AMX: "), std::string::npos) << slow;
  EXPECT_EQ(slow.find("portable"), std::string::npos) << slow;
}

// A model trained for a few seconds (2 blocks, d = 32, on a text of shuffled repeats of one sentence,
// so that its greedy continuation is confident rather than random) converted to bf16: greedy
// generation of 24 tokens after a 92-byte prompt is that of f32. The prompt is longer than the GEMV's
// 64 rows, so on AVX512-BF16 the prefill runs the bf16 GEMM.
TEST(PackedModel, TrainedModelGreedyGenerationUnchangedInBf16) {
  const std::string dir = test::temp_dir("packed_trained");
  {
    const std::string words[] = {"the", "quick", "brown", "fox",  "jumps", "over", "the", "lazy",
                                 "dog", "and",   "then",  "runs", "back",  "home", "to",  "sleep"};
    std::ofstream text(dir + "/data.txt");
    for (int i = 0; i < 400; ++i)
      for (int j = 0; j < 16; ++j) text << words[(i * 7 + j) % 16] << (j == 15 ? "\n" : " ");
  }
  std::string log;
  ASSERT_EQ(test::run_cli("train --model Samba_421M --n-layer 2 --n-embd 32 --n-head 2 --intermediate-size 64 "
                          "--local-window 8 --vocab-size 256 --tokenizer bytes --seq-len 64 --batch 4 --eval-batches 1 "
                          "--steps 80 --lr 1e-2 --threads 1 --data " +
                              dir + "/data.txt --out " + dir + "/run",
                          &log),
            0)
      << log;
  ASSERT_EQ(test::run_cli("convert " + dir + "/run/model --out " + dir + "/bf16 --dtype bf16", &log), 0) << log;
  const std::string gen =
      " -p 'the quick brown fox jumps over the lazy dog and then runs back home to sleep the quick "
      "brown' -n 24 --temperature 0 --threads 1";
  std::string f32, b16;
  ASSERT_EQ(test::run_cli("generate -m " + dir + "/run/model" + gen, &f32), 0) << f32;
  ASSERT_EQ(test::run_cli("generate -m " + dir + "/bf16" + gen, &b16), 0) << b16;
  const std::string want = first_output_line(f32), got = first_output_line(b16);
  EXPECT_GE(want.size(), 20u) << f32;  // 24 tokens of one byte each (a newline would end the line early)
  EXPECT_EQ(got, want) << "greedy continuation changed in bf16";
  std::printf("greedy continuation (f32 and bf16): '%s'\n", want.c_str());
}
