// sambalm — one program for Samba and Mamba language models: train, generate, evaluate, serve.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>

#include "cli/command.h"
#include "cli/usage_errors.h"
#include "core/error.h"

namespace sambalm::cli {
std::vector<CommandEntry>& command_registry() {
  static std::vector<CommandEntry> entries;
  return entries;
}
}  // namespace sambalm::cli

int main(int argc, char** argv) {
  using namespace sambalm::cli;
  CLI::App app{"sambalm " SAMBALM_VERSION
               " - train, run and evaluate Samba (Mamba + sliding-window attention) and Mamba language models.\n"
               "Models are named by preset (e.g. Samba_421M, mamba-130m) or by a model directory\n"
               "(config.json + model.safetensors | pytorch_model.bin | *.pth, or shards with their *.index.json).\n"
               "Run `sambalm <command> --help`."};
  app.require_subcommand(1);
  app.footer(
      fmt::format("Exit status: 0 on success, {} for a command-line mistake (the message says what is valid),\n"
                  "1 for any other error.",
                  kUsageExitCode));
  app.set_version_flag("--version", SAMBALM_VERSION);
  auto& reg = command_registry();
  std::stable_sort(reg.begin(), reg.end(), [](auto& a, auto& b) { return a.order < b.order; });
  std::vector<std::pair<CLI::App*, Action>> actions;
  for (auto& e : reg) {
    size_t before = app.get_subcommands({}).size();
    Action act = e.add(app);
    auto subs = app.get_subcommands({});
    if (subs.size() > before) actions.emplace_back(subs.back(), std::move(act));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help, --version: printed on stdout, exit 0
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "error: %s\n", usage_error_message(app, e, argc, argv).c_str());
    return kUsageExitCode;
  } catch (const sambalm::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  try {
    for (auto& [sub, act] : actions)
      if (sub->parsed()) return act();
  } catch (const sambalm::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
