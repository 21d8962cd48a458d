// Command-line mistakes in plain words. CLI11 reports them in its own terms ("At Most 1 required but
// received 2", "A subcommand is required", "Value 0 not in range 0.000000 to 1797...<300 digits>");
// usage_error_message turns each kind into one line that says what was wrong and what is valid.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace sambalm::cli {

// Exit status for a command line the program cannot accept (documented in `sambalm --help`).
inline constexpr int kUsageExitCode = 2;

// One line (no "error: " prefix, no newline) for a parse error of `app` given argv.
std::string usage_error_message(CLI::App& app, const CLI::ParseError& e, int argc, char** argv);

}  // namespace sambalm::cli
