#include "train/metrics.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/file.h"

namespace sambalm {

MetricsLog::MetricsLog(const std::string& path) : path_(path) {
  f_ = std::fopen(path.c_str(), "a");
  SAMBALM_CHECK(f_ != nullptr, "{}: cannot open for appending: {}", path, std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (f_) std::fclose(f_);
}

void MetricsLog::append(const nlohmann::json& record) {
  if (!f_) return;
  const std::string line = record.dump() + "\n";
  const bool ok = std::fwrite(line.data(), 1, line.size(), f_) == line.size() && std::fflush(f_) == 0;
  SAMBALM_CHECK(ok, "{}: write failed: {}", path_, std::strerror(errno));
}

std::vector<nlohmann::json> read_metrics(const std::string& path) {
  std::ifstream in(path);
  SAMBALM_CHECK(in.good(), "{}: cannot open metrics file", path);
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object()) out.push_back(std::move(j));
  }
  return out;
}

void truncate_metrics(const std::string& path, int64_t last_step) {
  if (!std::filesystem::exists(path)) return;
  std::string kept;
  for (const auto& r : read_metrics(path)) {
    if (r.contains("step") && r["step"].is_number_integer() && r["step"].get<int64_t>() > last_step) continue;
    kept += r.dump() + "\n";
  }
  write_file_atomic(path, kept);
}

}  // namespace sambalm
