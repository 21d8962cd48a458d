// Typed reads of integer fields from JSON that came from a file (a state file, a resume record).
// nlohmann's get<int64_t>() converts a float silently, and one outside int64's range is undefined
// behaviour; these accept only JSON integers that fit, and name the field and file otherwise.
#pragma once

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string_view>

#include "core/error.h"

namespace sambalm {

// obj[key] as an int64: an error names `source` and the key when it is missing, not an integer,
// or above INT64_MAX.
inline int64_t json_int64(const nlohmann::json& obj, const char* key, std::string_view source) {
  SAMBALM_CHECK(obj.is_object() && obj.contains(key), "{}: field '{}' is missing", source, key);
  const nlohmann::json& v = obj.at(key);
  SAMBALM_CHECK(v.is_number_integer(), "{}: field '{}' must be an integer, found {}", source, key, v.dump());
  if (v.is_number_unsigned())
    SAMBALM_CHECK(v.get<uint64_t>() <= uint64_t(std::numeric_limits<int64_t>::max()),
                  "{}: field '{}' is {}, too large", source, key, v.dump());
  return v.get<int64_t>();
}

// The same with a default for a missing (or null) field.
inline int64_t json_int64_or(const nlohmann::json& obj, const char* key, int64_t def, std::string_view source) {
  if (!obj.is_object() || !obj.contains(key) || obj.at(key).is_null()) return def;
  return json_int64(obj, key, source);
}

// obj[key] as a count: a non-negative integer.
inline uint64_t json_count(const nlohmann::json& obj, const char* key, std::string_view source) {
  SAMBALM_CHECK(obj.is_object() && obj.contains(key), "{}: field '{}' is missing", source, key);
  const nlohmann::json& v = obj.at(key);
  SAMBALM_CHECK(v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0),
                "{}: field '{}' must be a non-negative integer, found {}", source, key, v.dump());
  return v.get<uint64_t>();
}

}  // namespace sambalm
