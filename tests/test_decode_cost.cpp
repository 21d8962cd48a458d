// Decoding cost does not grow with the context: the CI-sized version of the constant-memory/time
// benchmark (bench/bench_decode.sh). Time itself is never asserted (machines are noisy); instead
//   - the instructions a decode step executes, counted by callgrind (deterministic whatever else the
//     machine does), are the same at 1K, 16K, 128K and 1M tokens of context, and are fewer while the
//     attention window is not yet full (so the count does see attention work);
//   - the peak RSS of a process that really prefills 1K, 16K or 128K tokens is the same within 5%,
//     and the decode state has the same size.
// Both run `sambalm bench` in a child process, each context in its own process.
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "testing.h"

namespace {

using namespace sambalm;

// A small Samba: (Mamba, MLP, SWA window 64, MLP) x 2, byte vocabulary.
std::string small_samba_config(const std::string& dir) {
  const std::string path = dir + "/samba_small.json";
  std::ofstream(path) << R"({"name": "samba_small", "n_layer": 4, "n_embd": 32, "n_head": 4, "n_query_groups": 2,
    "head_size": 8, "intermediate_size": 64, "local_window": 64, "mb_per_layer": 2, "vocab_size": 256,
    "padded_vocab_size": 256, "block_size": 4096, "rotary_percentage": 1.0, "bias": false, "mamba_init": true,
    "_norm_class": "RMSNorm", "_mlp_class": "LLaMAMLP", "norm_eps": 1e-05, "mlp": true, "mamba": false,
    "full_per_layer": 1000000, "parallel_residual": false})";
  return path;
}

bool sanitized() {
#if defined(__SANITIZE_ADDRESS__)
  return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return true;
#endif
#endif
  return false;
}

bool have_valgrind() { return std::system("valgrind --version >/dev/null 2>&1") == 0; }

std::string read_file(const std::string& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The full signature: a wildcard would also match the step's OpenMP bodies ("step(...) [clone
// ._omp_fn.N]"), and entering one would toggle the collection off instead of on.
const std::string kStepFunction = "sambalm::DecodeModel::step(sambalm::DecodeState* const*, long, int const*, float*)";

// Instructions executed inside DecodeModel::step per step, at batch 1 and the given context (the
// position jumps there after a 100-token prefill; prefill and setup are not counted).
double instructions_per_step(const std::string& cfg, const std::string& dir, const std::string& ctx, int steps) {
  const std::string out = dir + "/cg." + ctx;
  const std::string cmd = "OMP_NUM_THREADS=1 valgrind --tool=callgrind --callgrind-out-file=" + out +
                          " --toggle-collect='" + kStepFunction + "' " + SAMBALM_CLI_PATH + " bench -m " + cfg +
                          " --batch 1 --context " + ctx +
                          " --fill jump --prefill-tokens 100 --warmup 0 --decode-tokens " + std::to_string(steps) +
                          " > " + out + ".log 2>&1";
  const int rc = std::system(cmd.c_str());
  EXPECT_EQ(rc, 0) << cmd << "\n" << read_file(out + ".log");
  std::smatch m;
  const std::string text = read_file(out);
  if (!std::regex_search(text, m, std::regex("\ntotals: ([0-9]+)"))) {
    ADD_FAILURE() << "no totals line in " << out;
    return 0;
  }
  return std::stod(m[1]) / steps;
}

}  // namespace

TEST(DecodeCost, InstructionsPerStepDoNotDependOnTheContext) {
  if (sanitized()) GTEST_SKIP() << "valgrind does not run sanitizer builds";
  if (!have_valgrind()) {
    if (std::getenv("CI") && std::string(std::getenv("CI")) == "true") FAIL() << "valgrind missing (scripts/setup.sh)";
    GTEST_SKIP() << "valgrind not installed";
  }
  const std::string dir = test::temp_dir("decode_cost");
  const std::string cfg = small_samba_config(dir);
  const int steps = 4;
  const double base = instructions_per_step(cfg, dir, "1K", steps);
  ASSERT_GT(base, 1e4);
  for (const char* ctx : {"16K", "128K", "1M"}) {
    const double n = instructions_per_step(cfg, dir, ctx, steps);
    EXPECT_NEAR(n / base, 1.0, 0.005) << "context " << ctx << ": " << n << " instructions per step, 1K: " << base;
  }
  // Control: at context 8 the window-64 rings hold 8 keys, so a step does measurably less work.
  const double early = instructions_per_step(cfg, dir, "8", steps);
  EXPECT_LT(early, base * 0.99) << "context 8: " << early << ", 1K: " << base;
}

TEST(DecodeCost, PeakMemoryDoesNotDependOnTheContext) {
  // Under AddressSanitizer freed blocks stay resident in its quarantine (libgomp allocates and frees
  // a team for every parallel region that runs on one thread), so RSS there grows with the number of
  // regions run, not with anything the program keeps. DecodeState.PrefillDoesNotAllocate and
  // DecodeState.StepsDoNotAllocate check the program's own allocations in every build.
  if (sanitized()) GTEST_SKIP() << "RSS under AddressSanitizer counts its quarantine";
  const std::string dir = test::temp_dir("decode_mem");
  const std::string cfg = small_samba_config(dir);
  // Every token really prefilled (chunks of 1024), then 16 steps decoded.
  std::vector<std::string> contexts = {"1K", "16K", "128K"};
  if (std::getenv("SAMBALM_TEST_SCALE")) contexts = {"1K", "16K"};
  std::vector<nlohmann::json> rows;
  for (const auto& ctx : contexts) {
    std::string out;
    const std::string json = dir + "/mem_" + ctx + ".json";
    ASSERT_EQ(test::run_cli("bench -m " + cfg + " --batch 1 --context " + ctx +
                                " --fill real --chunk 1024 --decode-tokens 16 --json " + json,
                            &out),
              0)
        << out;
    rows.push_back(nlohmann::json::parse(read_file(json))["rows"][0]);
    EXPECT_EQ(rows.back()["prefilled_tokens"].get<int64_t>(), rows.back()["context"].get<int64_t>());
  }
  for (const auto& r : rows) {
    EXPECT_EQ(r["state_bytes_per_seq"], rows[0]["state_bytes_per_seq"]);
    const double ratio = r["peak_rss_bytes"].get<double>() / rows[0]["peak_rss_bytes"].get<double>();
    EXPECT_NEAR(ratio, 1.0, 0.05) << "context " << r["context"] << ": peak RSS " << r["peak_rss_bytes"]
                                  << " bytes, 1K: " << rows[0]["peak_rss_bytes"];
  }
}
