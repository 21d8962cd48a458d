// Every numeric option of `generate` and `bench`, given a bad value: below its range, zero where zero
// is invalid, negative, absurdly large, not a number. Each must be refused with an error line naming
// the option and its valid range, an exit code in 1..125 (no crash, no core dump), and no work
// started: the output file the command was asked to write does not exist afterwards.
#include <fmt/format.h>

#include <filesystem>
#include <string>
#include <vector>

#include "io/model_dir.h"
#include "model/weights.h"
#include "testing.h"

using namespace sambalm;

namespace {

struct NumericOption {
  std::string name;   // as typed
  std::string range;  // as the error and --help state it
  std::vector<std::string> bad;
  std::string named = name;  // as the error names it (the long name of a short option)
};

// Bad values for an option with range [lo, hi]: each class of the table that applies.
std::vector<std::string> bad_values(const std::string& lo, const std::string& hi, bool integer) {
  std::vector<std::string> v = {"-1", "99999999999999999999", "abc", "", "1x"};
  if (lo != "0") v.push_back("0");
  if (integer && lo != "0" && lo != "1") v.push_back(std::to_string(std::stoll(lo) - 1));
  if (!hi.empty()) v.push_back(integer ? std::to_string(std::stoll(hi) + 1) : hi + ".5");
  if (integer) v.push_back("1.5");
  return v;
}

NumericOption integer(const std::string& name, const std::string& lo, const std::string& hi) {
  return {name, hi.empty() ? ">= " + lo : fmt::format("in [{}, {}]", lo, hi), bad_values(lo, hi, true)};
}
NumericOption real(const std::string& name, const std::string& lo, const std::string& hi) {
  return {name, fmt::format("in [{}, {}]", lo, hi), bad_values(lo, hi, false)};
}
NumericOption list(const std::string& name, const std::string& hi) {
  return {name, fmt::format("in [1, {}]", hi), {"0", "-1", "99999999999999999999", "abc", "", "1,,2", "2,0", hi + "1"}};
}

NumericOption short_name(NumericOption o, const std::string& name) {
  o.name = name;
  return o;
}

void check_refused(const std::string& cmd, const NumericOption& opt, const std::string& value,
                   const std::string& output_file) {
  std::string out;
  const int rc = test::run_cli(cmd + " " + opt.name + " '" + value + "'", &out);
  const std::string what = opt.name + " '" + value + "'";
  EXPECT_GE(rc, 1) << what << "\n" << out;
  EXPECT_LE(rc, 125) << what << "\n" << out;
  const std::string first = out.substr(0, out.find('\n'));
  EXPECT_NE(first.find(opt.named), std::string::npos) << what << "\n" << out;
  EXPECT_NE(first.find(opt.range), std::string::npos) << what << ": the range '" << opt.range << "'\n" << out;
  EXPECT_EQ(out.find("core dumped"), std::string::npos) << what << "\n" << out;
  EXPECT_EQ(out.find("terminate"), std::string::npos) << what << "\n" << out;
  EXPECT_FALSE(std::filesystem::exists(output_file)) << what << ": work started\n" << out;
}

std::string tiny_model(const std::string& dir) {
  test::SambaShape sh;
  sh.n_layer = 2;
  sh.vocab = 256;
  sh.padded = 256;
  sh.window = 4;
  ModelConfig cfg = test::small_samba("ranges", sh);
  ParamStore store(param_specs(cfg));
  test::fill_random_params(store, 1);
  save_model_dir(dir, cfg, store);
  return dir;
}

}  // namespace

TEST(CliRanges, GenerateRefusesEveryBadNumber) {
  const std::string dir = test::temp_dir("ranges_gen");
  const std::string model = tiny_model(dir + "/m"), state = dir + "/s.st";
  const std::string cmd = "generate -m " + model + " --tokenizer bytes --prompt-ids 1,2 -n 2 -q --save-state " + state;
  std::string out;
  ASSERT_EQ(test::run_cli(cmd, &out), 0) << out;  // the command itself works and writes the state
  ASSERT_TRUE(std::filesystem::remove(state));
  const std::vector<NumericOption> options = {
      integer("--batch", "1", "65536"),
      integer("--max-tokens", "0", "1073741824"),
      short_name(integer("--max-tokens", "0", "1073741824"), "-n"),
      real("--temperature", "0", "100"),
      integer("--top-k", "0", "1073741824"),
      real("--top-p", "0", "1"),
      real("--min-p", "0", "1"),
      real("--repetition-penalty", "0.01", "100"),
      integer("--seed", "0", ""),
      integer("--max-prompt", "1", "1073741824"),
      integer("--chunk", "1", "65536"),
      integer("--max-context", "0", "1073741824"),
      integer("--threads", "1", "1024"),
  };
  for (const auto& o : options)
    for (const auto& v : o.bad) check_refused(cmd, o, v, state);
  // The cases the first users hit, by name.
  for (const char* c : {"--top-k -1", "--seed -1", "--max-context -1", "--batch 100000", "--threads -1"}) {
    EXPECT_NE(test::run_cli(cmd + " " + c, &out), 0) << c;
    EXPECT_NE(out.find("must be"), std::string::npos) << c << "\n" << out;
  }
}

TEST(CliRanges, BenchRefusesEveryBadNumber) {
  const std::string dir = test::temp_dir("ranges_bench");
  const std::string model = tiny_model(dir + "/m"), json = dir + "/b.json";
  const std::string cmd = "bench -m " + model + " --context 8 --decode-tokens 2 --warmup 0 --json " + json;
  std::string out;
  ASSERT_EQ(test::run_cli(cmd, &out), 0) << out;
  ASSERT_TRUE(std::filesystem::remove(json));
  const std::vector<NumericOption> options = {
      list("--batch", "65536"),
      list("--context", "1099511627776"),
      integer("--prefill-tokens", "0", "1073741824"),
      integer("--decode-tokens", "1", "1048576"),
      integer("--warmup", "0", "1048576"),
      integer("--chunk", "1", "65536"),
      integer("--max-context", "0", "1073741824"),
      integer("--threads", "1", "1024"),
  };
  for (const auto& o : options)
    for (const auto& v : o.bad) check_refused(cmd, o, v, json);
}
