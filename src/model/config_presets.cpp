// Named presets: lookup by exact original name, refusal of the ones sambalm cannot build, and
// "did you mean" suggestions for unknown names.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/config.h"
#include "model/presets.h"

namespace sambalm {

namespace {

std::string lower(const std::string& s) {
  std::string out = s;
  for (auto& ch : out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// Up to five names close to `name`: case-insensitive matches, substrings, then small edit distance.
std::vector<std::string> close_names(const std::string& name) {
  std::string q = lower(name);
  std::vector<std::pair<size_t, std::string>> scored;
  for (const auto& p : preset_table()) {
    std::string n = lower(p.name);
    size_t score;
    if (n == q)
      score = 0;
    else if (!q.empty() && (n.find(q) != std::string::npos || q.find(n) != std::string::npos))
      score = 1;
    else
      score = 2 + edit_distance(q, n);
    if (score <= 2 + std::max<size_t>(3, q.size() / 3)) scored.emplace_back(score, p.name);
  }
  std::stable_sort(scored.begin(), scored.end(), [](auto& a, auto& b) { return a.first < b.first; });
  std::vector<std::string> out;
  for (size_t i = 0; i < scored.size() && i < 5; ++i) out.push_back(scored[i].second);
  return out;
}

}  // namespace

const PresetEntry* find_preset(const std::string& name) {
  for (const auto& p : preset_table())
    if (name == p.name) return &p;
  return nullptr;
}

std::vector<std::string> ModelConfig::preset_names() {
  std::vector<std::string> names;
  for (const auto& p : preset_table()) names.push_back(p.name);
  return names;
}

ModelConfig ModelConfig::from_preset(const std::string& name) {
  const PresetEntry* p = find_preset(name);
  if (!p) {
    auto close = close_names(name);
    if (close.empty())
      fail("unknown preset '{}' (see `sambalm info --list` for the {} presets)", name, preset_table().size());
    fail("unknown preset '{}'; did you mean: {}? (see `sambalm info --list`)", name, fmt::join(close, ", "));
  }
  std::string why = preset_refusal(*p);
  SAMBALM_CHECK(why.empty(), "preset '{}' is not supported: {}", name, why);
  ModelConfig c = from_json(nlohmann::json::parse(p->config_json), std::string("preset ") + p->name);
  c.name = p->name;
  return c;
}

}  // namespace sambalm
