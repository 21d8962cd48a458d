// Weighted data mixtures: parsing `--data a:0.7,b:0.3` and the seeded per-window source choice.
#include "train/mixture.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>

#include "core/error.h"
#include "io/file.h"

namespace sambalm {
namespace {

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The weight after the last ':' of an item, when it is a whole number text.
bool split_weight(const std::string& item, std::string& path, double& weight) {
  const size_t colon = item.rfind(':');
  if (colon == std::string::npos || colon + 1 >= item.size()) return false;
  const std::string w = item.substr(colon + 1);
  char* end = nullptr;
  weight = std::strtod(w.c_str(), &end);
  if (end != w.c_str() + w.size()) return false;
  path = item.substr(0, colon);
  return !path.empty();
}

void check_weights(const std::vector<double>& w, const std::vector<std::string>& names, const std::string& option) {
  double total = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    SAMBALM_CHECK(std::isfinite(w[i]) && w[i] >= 0, "{}: the weight of {} is {}; weights must be zero or positive",
                  option, names[i], w[i]);
    total += w[i];
  }
  SAMBALM_CHECK(total > 0, "{}: every weight is zero; at least one source needs a positive weight", option);
}

}  // namespace

namespace {

// A mixture file: [["path", w], ...] (pretrain.py's train_data_config) or {"path": w, ...}; paths
// relative to the file's directory. nullopt when the JSON has neither shape.
std::optional<std::vector<std::pair<std::string, double>>> read_mixture_file(const std::string& path,
                                                                             const std::string& option) {
  auto j = nlohmann::json::parse(read_text_file(path), nullptr, false);
  std::vector<std::pair<std::string, double>> out;
  auto add = [&](const nlohmann::json& name, const nlohmann::json& w) {
    if (!name.is_string() || !w.is_number()) return false;
    std::filesystem::path p(name.get<std::string>());
    if (p.is_relative()) p = std::filesystem::path(path).parent_path() / p;
    out.emplace_back(p.string(), w.get<double>());
    return true;
  };
  if (j.is_array() && !j.empty()) {
    for (const auto& e : j)
      if (!e.is_array() || e.size() != 2 || !add(e[0], e[1])) return std::nullopt;
  } else if (j.is_object() && !j.empty()) {
    for (auto it = j.begin(); it != j.end(); ++it)
      if (!add(nlohmann::json(it.key()), it.value())) return std::nullopt;
  } else {
    return std::nullopt;
  }
  std::vector<double> weights;
  std::vector<std::string> names;
  for (const auto& [n, w] : out) weights.push_back(w), names.push_back(n);
  check_weights(weights, names, option + " " + path);
  return out;
}

}  // namespace

std::vector<std::pair<std::string, double>> parse_data_mixture(const std::string& spec, const std::string& option) {
  std::error_code ec;
  if (spec.ends_with(".json") && std::filesystem::is_regular_file(spec, ec))
    if (auto m = read_mixture_file(spec, option)) return *m;
  std::vector<std::string> items;
  for (size_t a = 0;;) {
    size_t b = spec.find(',', a);
    items.push_back(spec.substr(a, b == std::string::npos ? std::string::npos : b - a));
    if (b == std::string::npos) break;
    a = b + 1;
  }
  std::vector<std::pair<std::string, double>> out;
  std::string path;
  double w = 0;
  if (items.size() == 1) {
    if (!split_weight(items[0], path, w)) return out;  // one plain path
  }
  std::vector<double> weights;
  std::vector<std::string> names;
  for (const auto& item : items) {
    SAMBALM_CHECK(split_weight(item, path, w), "{}: '{}' in the list '{}' has no weight (expected PATH:WEIGHT)", option,
                  item, spec);
    out.emplace_back(path, w);
    weights.push_back(w);
    names.push_back(path);
  }
  check_weights(weights, names, option);
  return out;
}

MixtureSampler::MixtureSampler(std::vector<Source> sources, uint64_t seed, const std::string& option, int rank,
                               int world)
    : sources_(std::move(sources)), seed_(seed), rank_(rank), world_(world) {
  SAMBALM_CHECK(world >= 1 && rank >= 0 && rank < world, "data mixture: rank {} of world {} is not valid", rank, world);
  SAMBALM_CHECK(!sources_.empty(), "{}: a mixture needs at least one source", option);
  std::vector<double> w;
  std::vector<std::string> names;
  for (const auto& s : sources_) w.push_back(s.weight), names.push_back(s.name);
  check_weights(w, names, option);
  double c = 0;
  for (size_t i = 0; i < sources_.size(); ++i) {
    c += sources_[i].weight;
    cumulative_.push_back(c);
    samplers_.emplace_back(sources_[i].tokens, seed + 0x9E3779B97F4A7C15ull * (i + 1));
  }
  counts_.assign(sources_.size(), 0);
}

size_t MixtureSampler::pick(uint64_t g) const {
  const uint64_t r = mix64(mix64(seed_ ^ mix64(g + 0x3C6EF372FE94F82Bull)) + 0x9E3779B97F4A7C15ull);
  const double u = double(r >> 11) * 0x1.0p-53 * cumulative_.back();
  size_t i = 0;
  // The first source whose cumulative weight exceeds u; a zero weight adds nothing, so is never chosen.
  while (i + 1 < cumulative_.size() && !(u < cumulative_[i])) ++i;
  return i;
}

std::pair<size_t, int64_t> MixtureSampler::next(int64_t T) {
  // The world's draws G .. G + world - 1 happen together; this process's is G + rank. Every process
  // counts all of them, so the per-source counts stay the same everywhere.
  std::pair<size_t, int64_t> mine{0, 0};
  for (int w = 0; w < world_; ++w) {
    const size_t i = pick(windows_drawn_ + uint64_t(w));
    if (w == rank_) mine = {i, samplers_[i].offset_at(counts_[i], T)};
    ++counts_[i];
  }
  windows_drawn_ += uint64_t(world_);
  return mine;
}

void MixtureSampler::next_batch(int32_t* inputs, int32_t* targets, int64_t B, int64_t T) {
  window_.resize(size_t(T + 1));
  for (int64_t b = 0; b < B; ++b) {
    auto [i, offset] = next(T);
    sources_[i].tokens.read(offset, T + 1, window_.data());
    std::memcpy(inputs + b * T, window_.data(), size_t(T) * sizeof(int32_t));
    std::memcpy(targets + b * T, window_.data() + 1, size_t(T) * sizeof(int32_t));
  }
}

nlohmann::json MixtureSampler::state() const {
  nlohmann::json s = {{"kind", "mixture"}, {"seed", seed_}, {"windows_drawn", windows_drawn_}};
  s["sources"] = nlohmann::json::array();
  for (size_t i = 0; i < sources_.size(); ++i)
    s["sources"].push_back({{"name", sources_[i].name},
                            {"weight", sources_[i].weight},
                            {"tokens", sources_[i].tokens.size()},
                            {"sampler", to_json(SamplerState{samplers_[i].state().seed, counts_[i]})}});
  return s;
}

void MixtureSampler::restore(const nlohmann::json& s) {
  SAMBALM_CHECK(s.is_object() && s.value("kind", "") == "mixture" && s.contains("sources") && s["sources"].is_array() &&
                    s.contains("windows_drawn") && s["windows_drawn"].is_number_unsigned(),
                "checkpoint: the data state is not a mixture state: {}", s.dump().substr(0, 200));
  SAMBALM_CHECK(s["sources"].size() == sources_.size(),
                "--data: the mixture has {} sources, the checkpoint was made on {}", sources_.size(),
                s["sources"].size());
  for (size_t i = 0; i < sources_.size(); ++i) {
    const auto& j = s["sources"][i];
    SAMBALM_CHECK(j.is_object() && j.value("tokens", int64_t{-1}) == sources_[i].tokens.size() &&
                      j.value("weight", -1.0) == sources_[i].weight,
                  "--data {}: source {} has {} tokens and weight {}, the checkpoint's had {} and {}", sources_[i].name,
                  i, sources_[i].tokens.size(), sources_[i].weight, j.value("tokens", int64_t{-1}),
                  j.value("weight", -1.0));
    SAMBALM_CHECK(j.contains("sampler"), "checkpoint: mixture source {} has no sampler state", i);
  }
  for (size_t i = 0; i < sources_.size(); ++i) {
    const SamplerState st = sampler_state_from_json(s["sources"][i]["sampler"]);
    samplers_[i].restore({st.seed, 0});
    counts_[i] = st.windows_drawn;
  }
  windows_drawn_ = s["windows_drawn"].get<uint64_t>();
}

}  // namespace sambalm
