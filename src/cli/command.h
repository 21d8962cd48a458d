// Subcommand registry. Each src/cli/cmd_<verb>.cpp defines one `sambalm <verb>` with
// SAMBALM_REGISTER_COMMAND: a function that adds its subcommand (options, help) to the CLI11 app and
// returns the action to run when that subcommand was chosen. main.cpp knows none of them by name.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <vector>

namespace sambalm::cli {

using Action = std::function<int()>;
using Registrar = Action (*)(CLI::App& app);

struct CommandEntry {
  int order;  // position in `sambalm --help`
  Registrar add;
};

std::vector<CommandEntry>& command_registry();

struct CommandRegistration {
  CommandRegistration(int order, Registrar add) { command_registry().push_back({order, add}); }
};

#define SAMBALM_REGISTER_COMMAND(order, fn) \
  static ::sambalm::cli::CommandRegistration sambalm_cmd_registration_##fn(order, fn)

}  // namespace sambalm::cli
