// sambalm::Error — the one exception type of the project. Every failure that comes from input (a
// file, a config, a command-line value) is thrown as an Error whose message names the file or key
// and says what was expected and what was found. The CLI prints the message and exits non-zero.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace sambalm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Throws Error with a fmt-formatted message: fail("{}: tensor '{}' has {} bytes, expected {}", ...).
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

// Checks a condition that input data must satisfy; throws Error with the message otherwise.
#define SAMBALM_CHECK(cond, ...)              \
  do {                                        \
    if (!(cond)) ::sambalm::fail(__VA_ARGS__); \
  } while (0)

}  // namespace sambalm
