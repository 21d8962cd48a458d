// Every numeric option of `info`, `forward` and `convert` refuses bad values while the command line
// is parsed: below the range, zero, negative, absurdly large and non-numeric values each give one line
// naming the option and its range, a plain exit status, and no work. Also the command-line mistakes
// CLI11 used to report in its own words, and `info` sizes that used to overflow.
#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "testing.h"

namespace sambalm {
namespace {

struct NumericOption {
  std::string command;  // the command line before the option
  std::string option;   // as written in messages
  std::string range;    // as printed in --help and in errors
  std::vector<std::string> bad;
  std::string after;  // arguments after the option
};

size_t lines(const std::string& s) { return size_t(std::count(s.begin(), s.end(), '\n')); }

TEST(CliRangesOther, EveryNumericOptionRefusesBadValuesAtParseTime) {
  const std::string dir = test::temp_dir("ranges_other");
  const std::string out = dir + "/out.safetensors";
  const std::vector<std::string> common = {"-1", "-99999999999999999999", "99999999999999999999", "abc", "1.5", "1e3x",
                                           "''"};
  auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.end(), common.begin(), common.end());
    return extra;
  };
  // forward: the model and inputs do not exist, so any work started would fail differently.
  const std::vector<NumericOption> table = {
      {"info Samba_421M", "--batch", "in [1, 16777216]", with({"0", "16777217"}), ""},
      {"info Samba_421M", "-b", "in [1, 16777216]", with({"0"}), ""},
      {"info Samba_421M", "--seq-len", "in [1, 1099511627776]", with({"0", "1099511627777"}), ""},
      {"info Samba_421M", "--context", "in [1, 1099511627776]", with({"0", "9999999999999999"}), ""},
      {"info Samba_421M", "--world-size", "in [1, 1048576]", with({"0", "1048577"}), ""},
      {"info Samba_421M", "--zero", "in [0, 1]", with({"2"}), ""},
      {"forward -m " + dir + "/m -i " + dir + "/in.safetensors -o " + out, "--batch-size", "in [1, 1048576]",
       with({"0", "1048577"}), ""},
  };
  for (const auto& row : table) {
    for (const auto& v : row.bad) {
      const std::string args = row.command + " " + row.option + " " + v + " " + row.after;
      std::string log;
      const int rc = test::run_cli(args, &log);
      EXPECT_GE(rc, 1) << args;
      EXPECT_LE(rc, 125) << args << "\n" << log;
      EXPECT_EQ(lines(log), 1u) << args << "\n" << log;
      const std::string name = row.option == "-b" ? "--batch" : row.option;
      EXPECT_NE(log.find("error: " + name + ":"), std::string::npos) << args << "\n" << log;
      EXPECT_NE(log.find(row.range), std::string::npos) << args << "\n" << log;
      EXPECT_FALSE(std::filesystem::exists(out)) << args;
    }
  }
  // The ranges are documented in --help.
  std::string help;
  ASSERT_EQ(test::run_cli("info --help", &help), 0);
  EXPECT_NE(help.find("--batch INT:in [1, 16777216]"), std::string::npos) << help;
  EXPECT_NE(help.find("--context INT:in [1, 1099511627776]"), std::string::npos) << help;
  ASSERT_EQ(test::run_cli("forward --help", &help), 0);
  EXPECT_NE(help.find("--batch-size INT:in [1, 1048576]"), std::string::npos) << help;
}

// convert has no numeric option; its two choices are checked at parse time the same way.
TEST(CliRangesOther, ConvertChoicesAreCheckedAtParseTime) {
  const std::string dir = test::temp_dir("ranges_convert");
  for (const std::string bad : {"--to gguf", "--dtype q3", "--to ''"}) {
    std::string log;
    const int rc = test::run_cli("convert " + dir + "/none.pth --out " + dir + "/o " + bad, &log);
    EXPECT_GE(rc, 1);
    EXPECT_LE(rc, 125);
    EXPECT_EQ(lines(log), 1u) << log;
    EXPECT_NE(log.find(bad.substr(0, bad.find(' ')) + ": must be one of"), std::string::npos) << log;
    EXPECT_FALSE(std::filesystem::exists(dir + "/o"));
  }
}

// Sizes from the command line never wrap around: a figure over 2^63 bytes is refused with the inputs.
TEST(CliRangesOther, InfoSizesNeverOverflow) {
  std::string log;
  EXPECT_EQ(test::run_cli("info Samba_421M -b 1000000 -t 100000000", &log), 1);
  EXPECT_NE(log.find("too large"), std::string::npos) << log;
  EXPECT_NE(log.find("batch 1000000 x seq-len 100000000"), std::string::npos) << log;
  // In range and representable: every figure is non-negative and grows with the inputs.
  auto total = [](const std::string& args) {
    std::string out;
    EXPECT_EQ(test::run_cli("info " + args + " --json", &out), 0) << out;
    auto j = nlohmann::json::parse(out);
    EXPECT_GE(j["inference"]["decode_state_bytes_per_seq"].get<int64_t>(), 0);
    return j["training"]["total_bytes"].get<int64_t>();
  };
  const int64_t small = total("Samba_421M -b 30 -t 30"), big = total("Samba_421M -b 3000 -t 3000000");
  EXPECT_GT(big, small);
  std::string out;
  ASSERT_EQ(test::run_cli("info LLaMA_438M --context 1099511627776 --json", &out), 0) << out;
  EXPECT_GT(nlohmann::json::parse(out)["inference"]["decode_state_bytes_per_seq"].get<int64_t>(), 0) << out;
}

// CLI11's own messages, in plain words.
TEST(CliRangesOther, UsageMistakesInPlainWords) {
  std::string log;
  EXPECT_EQ(test::run_cli("info Samba_421M --batch 0", &log), 2);
  EXPECT_EQ(log.find("000000"), std::string::npos) << log;
  EXPECT_EQ(lines(log), 1u) << log;
  EXPECT_EQ(test::run_cli("info Samba_421M -b 1 --batch 2", &log), 2);
  EXPECT_NE(log.find("--batch was given 2 times"), std::string::npos) << log;
  EXPECT_EQ(test::run_cli("bogus", &log), 2);
  EXPECT_NE(log.find("unknown command 'bogus'"), std::string::npos) << log;
  EXPECT_NE(log.find("train"), std::string::npos) << log;
  EXPECT_EQ(lines(log), 1u) << log;
  EXPECT_EQ(test::run_cli("", &log), 2);
  EXPECT_NE(log.find("no command given"), std::string::npos) << log;
  EXPECT_EQ(test::run_cli("info --bogus", &log), 2);
  EXPECT_NE(log.find("unknown option '--bogus'"), std::string::npos) << log;
  EXPECT_EQ(test::run_cli("info Samba_421M --batch", &log), 2);
  EXPECT_NE(log.find("--batch needs a value"), std::string::npos) << log;
  EXPECT_EQ(test::run_cli("forward -m x", &log), 2);
  EXPECT_NE(log.find("--inputs is required"), std::string::npos) << log;
  EXPECT_EQ(log.find("Run with --help"), std::string::npos) << log;
  EXPECT_EQ(test::run_cli("--help", &log), 0);
  EXPECT_EQ(test::run_cli("--version", &log), 0);
  EXPECT_EQ(test::run_cli("info --help", &log), 0);
}

}  // namespace
}  // namespace sambalm
