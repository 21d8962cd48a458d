// Every numeric option of `train`, `prepare`, `tokenize`, `detokenize` and `plot` has a stated range,
// and a value outside it is refused while the command line is parsed: below the range, zero where
// zero is invalid, negative, absurdly large, above the range, not a number. Each gives one error
// line naming the option and its range, an exit code in 1..125 (no crash, no core dump), and no
// work started (the output directory is never created).
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "testing.h"

namespace fs = std::filesystem;

namespace sambalm {
namespace {

struct NumericOption {
  std::string command;  // "train" or "prepare"
  std::string name;     // "--batch"
  double lo, hi;        // the valid range, inclusive (hi = inf: no upper bound)
  bool integer;
  std::string range;  // as the error and --help print it
};

constexpr double kInf = std::numeric_limits<double>::infinity();

const std::vector<NumericOption>& options() {
  static const std::vector<NumericOption> all = {
      {"train", "--n-layer", 1, 4096, true, "in [1, 4096]"},
      {"train", "--n-embd", 1, 1048576, true, "in [1, 1048576]"},
      {"train", "--n-head", 1, 4096, true, "in [1, 4096]"},
      {"train", "--n-query-groups", 1, 4096, true, "in [1, 4096]"},
      {"train", "--intermediate-size", 1, 4194304, true, "in [1, 4194304]"},
      {"train", "--local-window", 1, 16777216, true, "in [1, 16777216]"},
      {"train", "--vocab-size", 1, 16777216, true, "in [1, 16777216]"},
      {"train", "--val-fraction", 0, 0.99, false, "in [0, 0.99]"},
      {"train", "--seq-len", 1, 16777216, true, "in [1, 16777216]"},
      {"train", "--batch", 1, 65536, true, "in [1, 65536]"},
      {"train", "--grad-accum", 1, 65536, true, "in [1, 65536]"},
      {"train", "--global-batch", 1, 1073741824.0, true, "in [1, 1073741824]"},
      {"train", "--zero", 0, 1, true, "in [0, 1]"},
      {"train", "--bucket-mb", 0.001, 4096, false, "in [0.001, 4096]"},
      {"train", "--dist-timeout", 1, 604800, false, "in [1, 604800]"},
      {"train", "--steps", 1, 1e9, true, "in [1, 1000000000]"},
      {"train", "--lr", 0, 10, false, "in [0, 10]"},
      {"train", "--min-lr", 0, 10, false, "in [0, 10]"},
      {"train", "--warmup", 0, 1e9, true, "in [0, 1000000000]"},
      {"train", "--weight-decay", 0, 10, false, "in [0, 10]"},
      {"train", "--beta1", 0, 0.99999, false, "in [0, 0.99999]"},
      {"train", "--beta2", 0, 0.99999, false, "in [0, 0.99999]"},
      {"train", "--eps", 1e-30, 1, false, "in [1e-30, 1]"},
      {"train", "--grad-clip", 0, 1e9, false, "in [0, 1000000000]"},
      {"train", "--seed", 0, kInf, true, ">= 0"},
      {"train", "--eval-every", 0, 1e9, true, "in [0, 1000000000]"},
      {"train", "--eval-batches", 1, 1e6, true, "in [1, 1000000]"},
      {"train", "--eval-lengths", 1, 16777216, true, "in [1, 16777216]"},
      {"train", "--save-every", 0, 1e9, true, "in [0, 1000000000]"},
      {"train", "--keep-last", 0, 1e6, true, "in [0, 1000000]"},
      {"train", "--sample-every", 0, 1e9, true, "in [0, 1000000000]"},
      {"train", "--sample-tokens", 1, 1e6, true, "in [1, 1000000]"},
      {"train", "--temperature", 0, 100, false, "in [0, 100]"},
      {"train", "--stop-after", 1, 1e9, true, "in [1, 1000000000]"},
      {"train", "--max-bad-steps", 1, 1e9, true, "in [1, 1000000000]"},
      {"train", "--log-every", 1, 1e9, true, "in [1, 1000000000]"},
      {"train", "--threads", 0, 4096, true, "in [0, 4096]"},
      {"prepare", "--train-fraction", 0, 1, false, "in [0, 1]"},
      {"prepare", "--shard-tokens", 1, 2147483648.0, true, "in [1, 2147483648]"},
      {"prepare", "--threads", 0, 4096, true, "in [0, 4096]"},
      {"prepare", "--workers", 0, 4096, true, "in [0, 4096]"},
      {"prepare", "--checkpoint-seconds", 0, 86400, false, "in [0, 86400]"},
      {"prepare", "--percentage", 0, 1, false, "in [0, 1]"},
      {"prepare", "--chunk-size", 1, 2147483648.0, true, "in [1, 2147483648]"},
      {"prepare", "--sep-token", 0, 2147483647.0, true, "in [0, 2147483647]"},
  };
  return all;
}

std::string number(double v, bool integer) {
  if (integer) return std::to_string(static_cast<long long>(v));
  std::ostringstream s;
  s << v;
  return s.str();
}

// The values each option must refuse, with what they stand for.
std::vector<std::pair<std::string, std::string>> bad_values(const NumericOption& o) {
  std::vector<std::pair<std::string, std::string>> v;
  if (o.lo > 0) {
    v.push_back({"below the range", number(o.integer ? o.lo - 1 : o.lo / 10, o.integer)});
    v.push_back({"zero", "0"});
  } else {
    v.push_back({"below the range", o.integer ? "-1" : "-0.001"});
  }
  v.push_back({"negative", "-1"});
  v.push_back({"absurdly large", "99999999999999999999"});
  if (o.hi != kInf) v.push_back({"above the range", number(o.integer ? o.hi + 1 : o.hi * 1.5 + 1, o.integer)});
  if (!o.integer) v.push_back({"huge", "1e300"});
  v.push_back({"not a number", "abc"});
  v.push_back({"not a number", "12abc"});
  if (o.integer) v.push_back({"not an integer", "1.5"});
  return v;
}

// A command line that would start real work if the option were accepted.
std::string command_line(const NumericOption& o, const std::string& data, const std::string& out) {
  if (o.command == "train")
    return "train --model Samba_421M --n-layer 2 --n-embd 32 --tokenizer bytes --steps 1 --data " + data + " --out " +
           out;
  return "prepare -t bytes --out " + out + " " + data;
}

TEST(CliRangesTrain, EveryBadValueIsRefusedBeforeWork) {
  auto dir = test::temp_dir("cli_ranges_train");
  const std::string data = dir + "/data.txt";
  {
    std::ofstream f(data);
    for (int i = 0; i < 2000; ++i) f << "a few words of text\n";
  }
  int n = 0;
  for (const NumericOption& o : options()) {
    for (const auto& [what, value] : bad_values(o)) {
      const std::string out_dir = dir + "/out" + std::to_string(n++);
      std::string out;
      const int rc = test::run_cli(command_line(o, data, out_dir) + " " + o.name + " '" + value + "'", &out);
      const std::string where = o.command + " " + o.name + " " + value + " (" + what + ")";
      EXPECT_TRUE(rc >= 1 && rc <= 125) << where << ": exit " << rc << "\n" << out;
      const std::string first = out.substr(0, out.find('\n'));
      EXPECT_NE(first.find(o.name), std::string::npos) << where << ": " << out;
      EXPECT_NE(first.find(o.range), std::string::npos) << where << ": " << out;
      EXPECT_FALSE(fs::exists(out_dir)) << where << ": work started";
      EXPECT_FALSE(fs::exists("core")) << where;
    }
  }
}

// The edges of each range are accepted by the parser (checked with --help, which parses and stops).
TEST(CliRangesTrain, RangeEdgesParse) {
  for (const NumericOption& o : options()) {
    for (double edge : {o.lo, o.hi}) {
      if (edge == kInf) continue;
      std::string out;
      const std::string args = o.command + " " + o.name + " " + number(edge, o.integer) + " --help";
      EXPECT_EQ(test::run_cli(args, &out), 0) << args << "\n" << out;
    }
  }
}

// --help of each subcommand states the range of each numeric option, and every numeric option it
// lists is in the table above (a new option without a range, or missing here, fails).
TEST(CliRangesTrain, HelpStatesEveryRange) {
  std::set<std::string> listed;
  for (const NumericOption& o : options()) listed.insert(o.command + " " + o.name);
  for (const char* cmd : {"train", "prepare", "tokenize", "detokenize", "plot"}) {
    std::string help;
    ASSERT_EQ(test::run_cli(std::string(cmd) + " --help", &help), 0) << help;
    std::istringstream lines(help);
    for (std::string line; std::getline(lines, line);) {
      const size_t dash = line.find("--");
      if (dash == std::string::npos || line.compare(0, 2, "  ") != 0) continue;
      const size_t sp = line.find(' ', dash);
      if (sp == std::string::npos) continue;
      const std::string name = line.substr(dash, sp - dash);
      const std::string type = line.substr(sp + 1, line.find_first_of(" :", sp + 1) - sp - 1);
      if (type != "INT" && type != "UINT" && type != "FLOAT" && type != "NUMBER") continue;
      EXPECT_TRUE(line.find(":in [", sp) != std::string::npos || line.find(":>= ", sp) != std::string::npos)
          << cmd << ": " << line;
      EXPECT_TRUE(listed.count(std::string(cmd) + " " + name)) << cmd << " " << name << " is not in the table";
    }
    for (const NumericOption& o : options()) {
      if (o.command != cmd) continue;
      EXPECT_NE(help.find(o.name + " "), std::string::npos) << cmd << " " << o.name;
      EXPECT_NE(help.find(o.range), std::string::npos) << cmd << " " << o.name;
    }
  }
}

}  // namespace
}  // namespace sambalm
