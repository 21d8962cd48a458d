// Comma-separated numeric lists on the command line ("1,8,32", "1K,16K,1M", "0,0.25,0.5"), checked
// while the command line is parsed, like the single numbers of options.h: the range shows in --help
// and a bad item is refused before any work with a one-line message naming the option.
#pragma once

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"

namespace sambalm::cli {

// "1,8,32" / "1K,16K,1M" (K = 1024, M = 1048576), each in [lo, hi]. Error names `what`.
inline std::vector<int64_t> parse_int_list(const std::string& s, const char* what, int64_t lo, int64_t hi) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  const std::string range =
      fmt::format("a comma-separated list of integers in [{}, {}], K = 1024, M = 1048576", lo, hi);
  while (std::getline(ss, item, ',')) {
    const std::string given = item;
    int64_t mult = 1;
    if (!item.empty() && (item.back() == 'K' || item.back() == 'k')) mult = 1024, item.pop_back();
    if (!item.empty() && (item.back() == 'M' || item.back() == 'm')) mult = 1 << 20, item.pop_back();
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::out_of_range&) {
      fail("{}: must be {}, got {}", what, range, given);
    } catch (const std::exception&) {
      used = 0;
    }
    SAMBALM_CHECK(used == item.size() && used > 0, "{}: must be {}; '{}' is not a number", what, range, given);
    SAMBALM_CHECK(v >= 0 && v <= hi / mult && v * mult >= lo, "{}: must be {}, got {}", what, range, given);
    out.push_back(int64_t(v) * mult);
  }
  SAMBALM_CHECK(!out.empty(), "{}: must be {}, got an empty list", what, range);
  return out;
}

// "0,0.25,1": numbers in [lo, hi].
inline std::vector<double> parse_number_list(const std::string& s, const char* what, double lo, double hi) {
  std::vector<double> out;
  std::stringstream ss(s);
  std::string item;
  const std::string range = fmt::format("a comma-separated list of numbers in [{}, {}]", lo, hi);
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    SAMBALM_CHECK(!item.empty() && end != item.c_str() && *end == '\0', "{}: must be {}; '{}' is not a number", what,
                  range, item);
    SAMBALM_CHECK(std::isfinite(v) && v >= lo && v <= hi, "{}: must be {}, got {}", what, range, item);
    out.push_back(v);
  }
  SAMBALM_CHECK(!out.empty(), "{}: must be {}, got an empty list", what, range);
  return out;
}

// A CLI11 check running `parse` at parse time (CLI11 prefixes the option's name to the message).
template <typename Parse>
CLI::Validator list_check(const char* what, Parse parse, const std::string& desc) {
  return CLI::Validator(
      [what, parse](std::string& s) -> std::string {
        try {
          parse(s, what);
        } catch (const Error& e) {
          const std::string m = e.what();
          return m.substr(m.find(": ") + 2);
        }
        return std::string();
      },
      desc, "LIST");
}

inline CLI::Validator int_list_in(const char* what, int64_t lo, int64_t hi) {
  return list_check(
      what, [lo, hi](const std::string& s, const char* w) { parse_int_list(s, w, lo, hi); },
      fmt::format("LIST in [{}, {}]", lo, hi));
}
inline CLI::Validator number_list_in(const char* what, double lo, double hi) {
  return list_check(
      what, [lo, hi](const std::string& s, const char* w) { parse_number_list(s, w, lo, hi); },
      fmt::format("LIST in [{}, {}]", lo, hi));
}

}  // namespace sambalm::cli
