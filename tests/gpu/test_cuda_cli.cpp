// generate, bench and forward with --device cuda, run as the built program on the model fixtures:
//   greedy `generate --device cuda --dtype fp32` prints the CPU's token ids (bf16 runs and prints as many);
//   a state saved on the GPU continues on the CPU as the CPU's own run does;
//   `bench --device cuda` prints its table with the device named;
//   `forward --device cuda --dtype fp32` writes logits within 1e-4 (max |gpu - cpu| / max |cpu|) of the CPU's.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "gpu_testing.h"
#include "io/safetensors.h"
#include "testing.h"

namespace sambalm {
namespace {

constexpr double kFp32Tol = 1e-4;

const char* const kFixtures[] = {"samba_tiny", "samba_tiny_gqa", "mamba_tiny", "hf_mamba_tiny"};

std::string fixture(const std::string& name) { return test::fixtures_dir() + "/" + name; }

// The ids that `generate` prints (the fixtures have no tokenizer: ids in, ids out), after a clean exit.
std::vector<int> generated_ids(const std::string& args) {
  std::string out;
  const int rc = test::run_cli("generate " + args, &out);
  EXPECT_EQ(rc, 0) << args << "\n" << out;
  std::istringstream in(out);
  std::vector<int> ids;
  int v = 0;
  while (in >> v) ids.push_back(v);
  EXPECT_TRUE(in.eof()) << "not only ids in the output of generate " << args << ":\n" << out;
  return ids;
}

TEST(CudaCli, GreedyGenerateMatchesCpu) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  // 40 tokens: past the fixtures' attention windows, so the GPU's KV rings wrap.
  const std::string common = " --prompt-ids 3,1,4,1,5,9,2,6 -n 40 -q --chunk 3";
  for (const char* name : kFixtures) {
    const std::string m = "-m " + fixture(name) + common;
    const auto cpu = generated_ids(m + " --device cpu");
    const auto gpu = generated_ids(m + " --device cuda --dtype fp32");
    ASSERT_EQ(cpu.size(), 40u) << name;
    EXPECT_EQ(gpu, cpu) << name;
    // bf16 decodes (its tokens may differ from fp32's after a near tie): as many ids, all in the vocabulary.
    const auto b16 = generated_ids(m + " --device cuda:0 --dtype bf16");
    EXPECT_EQ(b16.size(), cpu.size()) << name;
    // A batch of two prompts on the GPU gives each the CPU's ids too.
    std::string out;
    ASSERT_EQ(test::run_cli("generate " + m + " --batch 2 --device cuda --dtype fp32", &out), 0) << out;
    std::string want;
    for (int id : cpu) want += (want.empty() ? "" : " ") + std::to_string(id);
    EXPECT_NE(out.find("[0] " + want), std::string::npos) << name << "\n" << out;
    EXPECT_NE(out.find("[1] " + want), std::string::npos) << name << "\n" << out;
  }
}

TEST(CudaCli, StateSavedOnGpuContinuesOnCpu) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  const std::string dir = test::temp_dir("cuda_cli_state"), state = dir + "/s.state";
  const std::string m = "-m " + fixture("samba_tiny") + " -q";
  const auto whole = generated_ids(m + " --prompt-ids 7,8,9 -n 24 --device cpu");
  auto first = generated_ids(m + " --prompt-ids 7,8,9 -n 12 --device cuda --dtype fp32 --save-state " + state);
  const auto rest = generated_ids(m + " -n 12 --device cpu --load-state " + state);
  first.insert(first.end(), rest.begin(), rest.end());
  EXPECT_EQ(first, whole);
  // And a CPU state continues on the GPU.
  auto cpu_first = generated_ids(m + " --prompt-ids 7,8,9 -n 12 --device cpu --save-state " + state);
  const auto gpu_rest = generated_ids(m + " -n 12 --device cuda --dtype fp32 --load-state " + state);
  cpu_first.insert(cpu_first.end(), gpu_rest.begin(), gpu_rest.end());
  EXPECT_EQ(cpu_first, whole);
}

TEST(CudaCli, BenchPrintsATable) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  for (const char* dtype : {"bf16", "fp32"}) {
    std::string out;
    const std::string json = test::temp_dir("cuda_cli_bench") + "/b.json";
    ASSERT_EQ(test::run_cli("bench -m " + fixture("samba_tiny") + " --batch 1,3 --context 16,40 --decode-tokens 4 " +
                                "--device cuda --dtype " + dtype + " --json " + json,
                            &out),
              0)
        << out;
    EXPECT_NE(out.find("device cuda:0"), std::string::npos) << out;
    EXPECT_NE(out.find(std::string(", ") + dtype), std::string::npos) << out;
    EXPECT_NE(out.find("decode t/s"), std::string::npos) << out;
    // One row per (batch, context): batch, context and fill lead the row.
    for (const char* row :
         {"     1        16  real", "     1        40  real", "     3        16  real", "     3        40  real"})
      EXPECT_NE(out.find(row), std::string::npos) << row << "\n" << out;
    std::string j;
    ASSERT_EQ(test::sh("cat " + json, &j), 0);
    EXPECT_NE(j.find("\"device\": \"cuda:0"), std::string::npos) << j;
  }
}

TEST(CudaCli, ForwardLogitsMatchCpu) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  for (const char* name : kFixtures) {
    const std::string dir = test::temp_dir(std::string("cuda_cli_fwd_") + name);
    const std::string args = "forward -m " + fixture(name) + " -i " + fixture(name) + "/expected.safetensors -o ";
    std::string out;
    ASSERT_EQ(test::run_cli(args + dir + "/cpu.safetensors --device cpu", &out), 0) << out;
    ASSERT_EQ(test::run_cli(args + dir + "/gpu.safetensors --device cuda --dtype fp32", &out), 0) << out;
    const auto cpu = read_safetensors(dir + "/cpu.safetensors");
    const auto gpu = read_safetensors(dir + "/gpu.safetensors");
    const double err = test::rel_error(gpu.get("logits"), cpu.get("logits"));
    std::printf("%s forward logits, GPU fp32 vs CPU: max rel error %.3e\n", name, err);
    EXPECT_LT(err, kFp32Tol) << name;
    // bf16 runs too (its logits are checked against the CPU's in test_cuda_model_bf16).
    ASSERT_EQ(test::run_cli(args + dir + "/gpu16.safetensors --device cuda --dtype bf16", &out), 0) << out;
  }
}

}  // namespace
}  // namespace sambalm
