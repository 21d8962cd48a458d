#include "io/shard_index.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "io/file.h"

namespace sambalm {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Real indexes are a few MB at most (one line per tensor); anything far larger is not an index.
constexpr uintmax_t kMaxIndexBytes = uintmax_t{64} << 20;

// Dumps a scalar or a flat array/object; a deeper one is summarised, since dumping recurses once per
// level of nesting and a file can nest millions of levels deep.
std::string describe(const json& v) {
  const bool flat = std::none_of(v.begin(), v.end(), [](const json& e) { return e.is_structured(); });
  std::string s =
      flat ? v.dump()
           : (v.is_array() ? fmt::format("[... {} items]", v.size()) : fmt::format("{{... {} keys}}", v.size()));
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return fmt::format("{} ({})", s, v.type_name());
}

// A shard must be a file of the index's own directory, named without any path: no separator (so
// no absolute path and no sub-directory), not "." or "..", no control characters (a NUL would cut
// the name short when it reaches the operating system).
bool plain_file_name(const std::string& s) {
  if (s.empty() || s == "." || s == "..") return false;
  for (unsigned char c : s)
    if (c == '/' || c == '\\' || c < 0x20) return false;
  return true;
}

}  // namespace

bool is_shard_index_path(const std::string& path) {
  const std::string suffix = ".index.json";
  const std::string name = fs::path(path).filename().string();
  return name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

ShardIndex read_shard_index(const std::string& path) {
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  SAMBALM_CHECK(!ec, "{}: cannot read the shard index: {}", path, ec.message());
  SAMBALM_CHECK(size <= kMaxIndexBytes, "{}: shard index of {} bytes is larger than the {} MB limit", path, size,
                kMaxIndexBytes >> 20);
  const std::string text = read_text_file(path);

  // A JSON object may repeat a key, and the parser would keep only the last value: a tensor listed
  // twice (possibly in two shards) would pass unseen. The callback sees every key as it is read.
  std::set<std::string> top_keys, tensor_keys;
  std::string current_top, duplicate;
  json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event != json::parse_event_t::key || !duplicate.empty()) return true;
    const std::string key = parsed.get<std::string>();
    if (depth == 1) {
      current_top = key;
      if (!top_keys.insert(key).second) duplicate = fmt::format("key '{}' appears twice", key);
    } else if (depth == 2 && current_top == "weight_map" && !tensor_keys.insert(key).second) {
      duplicate = fmt::format("weight_map lists tensor '{}' twice", key);
    }
    return true;
  };
  json j = json::parse(text, on_event, /*allow_exceptions=*/false);
  SAMBALM_CHECK(!j.is_discarded(), "{}: the shard index is not valid JSON", path);
  SAMBALM_CHECK(j.is_object(), "{}: the shard index must be a JSON object, found {}", path, j.type_name());
  SAMBALM_CHECK(duplicate.empty(), "{}: {}", path, duplicate);
  if (j.contains("metadata"))
    SAMBALM_CHECK(j.at("metadata").is_object(), "{}: key 'metadata' must be an object, found {}", path,
                  describe(j.at("metadata")));
  SAMBALM_CHECK(j.contains("weight_map"), "{}: no 'weight_map' key: not a sharded-checkpoint index", path);
  const json& map = j.at("weight_map");
  SAMBALM_CHECK(map.is_object(), "{}: key 'weight_map' must be an object of tensor name -> shard file, found {}", path,
                describe(map));
  SAMBALM_CHECK(!map.empty(), "{}: 'weight_map' is empty: the index lists no tensors", path);

  ShardIndex index;
  index.path = path;
  const fs::path dir = fs::path(path).has_parent_path() ? fs::path(path).parent_path() : fs::path(".");
  index.dir = dir.string();
  std::set<std::string> shards;
  for (const auto& [name, shard] : map.items()) {
    SAMBALM_CHECK(shard.is_string(), "{}: weight_map['{}'] must be a shard file name (a string), found {}", path, name,
                  describe(shard));
    const std::string file = shard.get<std::string>();
    SAMBALM_CHECK(plain_file_name(file),
                  "{}: weight_map['{}'] is \"{}\": expected a plain file name in the index's directory (no '/', '\\', "
                  "'..' or absolute path)",
                  path, name, file);
    if (shards.insert(file).second)
      SAMBALM_CHECK(fs::is_regular_file(dir / file, ec), "{}: shard '{}' (listed for tensor '{}') not found in {}",
                    path, file, name, index.dir);
    index.weight_map.emplace(name, file);
  }
  index.shards.assign(shards.begin(), shards.end());
  return index;
}

}  // namespace sambalm
