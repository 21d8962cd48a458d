// Help and docs agree with the program: every option that `sambalm <command> --help` lists is one the
// command accepts, and every option README.md shows with a command is one that command has.
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "testing.h"

namespace sambalm {
namespace {

struct ListedOption {
  std::vector<std::string> names;  // "-m", "--model"
  bool takes_value = false;
};

// The subcommands that `sambalm <prefix> --help` lists (none when it lists none).
std::vector<std::string> subcommands(const std::string& prefix) {
  std::string help;
  EXPECT_EQ(test::run_cli(prefix + " --help", &help), 0) << prefix;
  std::vector<std::string> out;
  const size_t at = help.find("Subcommands:");
  if (at == std::string::npos) return out;
  std::istringstream in(help.substr(at));
  std::string line;
  std::getline(in, line);
  static const std::regex re(R"(^  ([a-z]+)\s+\S)");
  std::smatch m;
  while (std::getline(in, line) && !line.empty())
    if (std::regex_search(line, m, re)) out.push_back(m[1]);
  return out;
}

// The commands that `sambalm --help` lists, and their own subcommands as "eval ppl".
std::vector<std::string> commands() {
  std::vector<std::string> out;
  for (const auto& c : subcommands("")) {
    out.push_back(c);
    for (const auto& s : subcommands(c)) out.push_back(c + " " + s);
  }
  return out;
}

// The options `sambalm <cmd> --help` lists, e.g. "  -m,--model TEXT REQUIRED    ..." or
// "  --decay-all{false},--decay-matrices-only".
std::vector<ListedOption> listed_options(const std::string& cmd) {
  std::string help;
  EXPECT_EQ(test::run_cli(cmd + " --help", &help), 0) << cmd;
  std::vector<ListedOption> out;
  std::istringstream in(help.substr(help.find("Options:")));
  std::string line;
  static const std::regex re(R"(^  (-[^ ]+)( [A-Z\[][^ ]*)?)");
  std::smatch m;
  while (std::getline(in, line)) {
    if (line.empty()) break;
    if (!std::regex_search(line, m, re)) continue;
    ListedOption o;
    o.takes_value = m[2].matched;
    std::istringstream names(m[1].str());
    std::string n;
    while (std::getline(names, n, ',')) o.names.push_back(n.substr(0, n.find('{')));
    out.push_back(o);
  }
  return out;
}

TEST(CliHelp, EveryListedOptionParses) {
  const auto cmds = commands();
  ASSERT_GE(cmds.size(), 8u);
  for (const auto& cmd : cmds) {
    const auto opts = listed_options(cmd);
    EXPECT_FALSE(opts.empty()) << cmd;
    for (const auto& o : opts)
      for (const auto& name : o.names) {
        if (name == "-h" || name == "--help") continue;
        // A known option is consumed while parsing, before any requirement or work: one that needs a
        // value and has none is "needs a value"; a flag given a non-boolean value is refused as such.
        // An unknown one would be "unknown option" (or, first, a missing required option).
        if (!o.takes_value && name.rfind("--", 0) != 0) continue;  // a short flag: its long name is checked
        const std::string args = o.takes_value ? cmd + " " + name : cmd + " " + name + "=notabool";
        std::string log;
        const int rc = test::run_cli(args + " < /dev/null", &log);
        EXPECT_EQ(rc, 2) << args << "\n" << log;
        EXPECT_EQ(log.find("unknown option"), std::string::npos) << args << "\n" << log;
        EXPECT_EQ(log.find(" is required"), std::string::npos) << args << "\n" << log;
        if (o.takes_value) {
          EXPECT_NE(log.find(o.names.back() + " needs a value"), std::string::npos) << args << "\n" << log;
        }
      }
  }
}

// README's command sections: each option written after `sambalm <cmd>` in the same paragraph or
// table row must be an option of <cmd>.
TEST(CliHelp, ReadmeMentionsOnlyOptionsTheProgramHas) {
  std::ifstream f(std::string(SAMBALM_SOURCE_DIR) + "/README.md");
  ASSERT_TRUE(f) << "README.md";
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string readme = ss.str();
  std::map<std::string, std::set<std::string>> known;
  for (const auto& cmd : commands())
    for (const auto& o : listed_options(cmd))
      for (const auto& n : o.names) known[cmd].insert(n);

  // Paragraphs: runs of non-blank lines, except that each table row stands alone.
  std::vector<std::string> blocks;
  std::istringstream in(readme);
  std::string line, cur;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '|') {
      if (!cur.empty()) blocks.push_back(cur);
      cur.clear();
      if (!line.empty()) blocks.push_back(line);
      continue;
    }
    cur += line + " ";
  }
  if (!cur.empty()) blocks.push_back(cur);

  static const std::regex token(R"(sambalm ([a-z]+(?: [a-z]+)?)|(--[a-z][a-z0-9-]*))");
  int checked = 0;
  for (const auto& b : blocks) {
    std::string cmd;
    for (std::sregex_iterator it(b.begin(), b.end(), token), end; it != end; ++it) {
      if ((*it)[1].matched) {
        // "sambalm eval ppl" names the subcommand; "sambalm generate runs" only the command.
        const std::string two = (*it)[1].str(), one = two.substr(0, two.find(' '));
        cmd = known.count(two) ? two : known.count(one) ? one : "";
        continue;
      }
      if (cmd.empty()) continue;
      EXPECT_TRUE(known[cmd].count((*it)[2]))
          << "README: `sambalm " << cmd << "` has no option " << (*it)[2] << "\nin: " << b;
      ++checked;
    }
  }
  EXPECT_GT(checked, 10);
  // The demo reads an installed package; it downloads nothing.
  EXPECT_EQ(readme.find("fetch"), std::string::npos);
}

}  // namespace
}  // namespace sambalm
