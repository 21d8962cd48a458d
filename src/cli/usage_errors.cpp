// Plain one-line messages for command-line mistakes; see usage_errors.h.
#include "cli/usage_errors.h"

#include <fmt/format.h>

#include <cstdlib>
#include <regex>

namespace sambalm::cli {
namespace {

std::string command_list(CLI::App& app) {
  std::string out;
  for (const CLI::App* sub : app.get_subcommands({})) out += (out.empty() ? "" : ", ") + sub->get_name();
  return out;
}

// The deepest subcommand that was chosen on this command line, or null.
CLI::App* chosen(CLI::App& app) {
  for (CLI::App* sub : app.get_subcommands({}))
    if (sub->parsed()) return sub;
  return nullptr;
}

// "NAME: rest" -> {"NAME", "rest"}, for CLI11 messages that start with the option's name.
std::pair<std::string, std::string> split_name(const std::string& msg) {
  const size_t k = msg.find(": ");
  if (k == std::string::npos) return {"", msg};
  return {msg.substr(0, k), msg.substr(k + 2)};
}

// CLI11's own range validators print bounds with six decimals and DBL_MAX in full: say it briefly.
std::string plain_range(const std::string& name, const std::string& rest) {
  static const std::regex re(R"(Value (\S+) not in range (\S+) to (\S+))");
  std::smatch m;
  if (!std::regex_search(rest, m, re)) return name.empty() ? rest : name + ": " + rest;
  auto short_num = [](const std::string& s) { return fmt::format("{:g}", std::strtod(s.c_str(), nullptr)); };
  const double hi = std::strtod(m[3].str().c_str(), nullptr);
  const std::string range = hi > 1e300 ? fmt::format("> {}", short_num(m[2].str()))
                                       : fmt::format("in [{}, {}]", short_num(m[2].str()), short_num(m[3].str()));
  return fmt::format("{}: must be a number {}, got {}", name, range, m[1].str());
}

}  // namespace

std::string usage_error_message(CLI::App& app, const CLI::ParseError& e, int argc, char** argv) {
  const std::string msg = e.what();
  CLI::App* sub = chosen(app);
  const std::string help =
      sub ? fmt::format("see `sambalm {} --help`", sub->get_name()) : std::string("see `sambalm --help`");

  if (dynamic_cast<const CLI::RequiredError*>(&e) && !sub && msg.rfind("A subcommand", 0) == 0) {
    // No command, or a first word that is not one.
    std::string first;
    for (int i = 1; i < argc && first.empty(); ++i)
      if (argv[i][0] != '-') first = argv[i];
    if (first.empty()) return fmt::format("no command given; commands are: {} ({})", command_list(app), help);
    return fmt::format("unknown command '{}'; commands are: {}", first, command_list(app));
  }
  if (dynamic_cast<const CLI::ArgumentMismatch*>(&e)) {
    auto [name, rest] = split_name(msg);
    if (rest.rfind("At Most ", 0) == 0) {
      const size_t k = rest.rfind(' ');
      return fmt::format("{} was given {} times; give it once", name, rest.substr(k + 1));
    }
    if (rest.find("required") != std::string::npos && rest.find("missing") != std::string::npos)
      return fmt::format("{} needs a value ({})", name, help);
    return fmt::format("{} ({})", msg, help);
  }
  if (dynamic_cast<const CLI::ExtrasError*>(&e)) {
    // "The following argument(s) was/were not expected: X Y"
    const size_t k = msg.find(": ");
    const std::string extras = k == std::string::npos ? msg : msg.substr(k + 2);
    const bool option = !extras.empty() && extras[0] == '-';
    if (!sub && !option) return fmt::format("unknown command '{}'; commands are: {}", extras, command_list(app));
    const std::string where = sub ? fmt::format("'sambalm {}'", sub->get_name()) : std::string("sambalm");
    return fmt::format("{} '{}' for {} ({})", option ? "unknown option" : "unexpected argument", extras, where, help);
  }
  if (dynamic_cast<const CLI::ValidationError*>(&e)) {
    auto [name, rest] = split_name(msg);
    return plain_range(name, rest);
  }
  if (dynamic_cast<const CLI::ConversionError*>(&e)) {
    static const std::regex re(R"(Could not convert: (\S+) = (.*))");
    std::smatch m;
    if (std::regex_search(msg, m, re))
      return fmt::format("{}: '{}' is not a valid value ({})", m[1].str(), m[2].str(), help);
  }
  if (dynamic_cast<const CLI::RequiredError*>(&e)) return fmt::format("{} ({})", msg, help);
  return fmt::format("{} ({})", msg, help);
}

}  // namespace sambalm::cli
