// Numeric options with a stated range. Every numeric option of every subcommand goes through
// `in_range`: its valid range is printed in --help and checked while the command line is parsed,
// before any work starts, with a one-line error that names the option, the range and what was given
// ("--batch: must be an integer in [1, 65536], got '0'"). Values are parsed here, not by CLI11, so an
// absurdly large or non-numeric value gets the same plain message instead of a conversion error.
#pragma once

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>

namespace sambalm::cli {

namespace detail {

template <typename T>
std::string range_text(T lo, T hi) {
  if constexpr (std::is_integral_v<T>) {
    if (hi == std::numeric_limits<T>::max()) return fmt::format(">= {}", lo);
    return fmt::format("in [{}, {}]", lo, hi);
  } else {
    if (hi == std::numeric_limits<T>::infinity()) return fmt::format(">= {}", lo);
    return fmt::format("in [{}, {}]", lo, hi);
  }
}

}  // namespace detail

// A validator accepting numbers of type T in [lo, hi]. Integers must be written as integers.
template <typename T>
CLI::Validator number_in(T lo, T hi) {
  static_assert(std::is_arithmetic_v<T>);
  const std::string desc = detail::range_text(lo, hi);
  return CLI::Validator(
      [lo, hi, desc](std::string& s) -> std::string {
        const char* b = s.c_str();
        char* end = nullptr;
        errno = 0;
        if constexpr (std::is_integral_v<T>) {
          const long long v = std::strtoll(b, &end, 10);
          if (s.empty() || end == b || *end != '\0') return fmt::format("must be an integer {}, got '{}'", desc, s);
          if (errno == ERANGE || v < static_cast<long long>(lo) || v > static_cast<long long>(hi))
            return fmt::format("must be an integer {}, got {}", desc, s);
        } else {
          const double v = std::strtod(b, &end);
          if (s.empty() || end == b || *end != '\0') return fmt::format("must be a number {}, got '{}'", desc, s);
          if (!std::isfinite(v) || v < static_cast<double>(lo) || v > static_cast<double>(hi))
            return fmt::format("must be a number {}, got {}", desc, s);
        }
        return std::string();
      },
      desc, "RANGE");
}

// Adds the range check to `opt` (see number_in) and returns it for chaining.
template <typename T>
CLI::Option* in_range(CLI::Option* opt, T lo, T hi) {
  return opt->check(number_in<T>(lo, hi));
}

}  // namespace sambalm::cli
