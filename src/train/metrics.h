// metrics.jsonl: one JSON object per line, appended and flushed as training goes, so a crashed run
// keeps every line written before the crash and a reader (sambalm plot, a notebook) can follow a
// live run. Lines written by the trainer hold at least `step`, `loss`, `lr`, `tokens_per_s`, and on
// evaluation steps `val_loss` (see docs/FORMATS.md, "Training run directory").
#pragma once

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sambalm {

class MetricsLog {
 public:
  MetricsLog() = default;
  // Opens `path` for appending (created when absent). Throws Error when it cannot be opened.
  explicit MetricsLog(const std::string& path);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  void append(const nlohmann::json& record);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  FILE* f_ = nullptr;
};

// Every record of a metrics.jsonl file. Lines that are not JSON objects (a line cut short by a crash)
// are skipped.
std::vector<nlohmann::json> read_metrics(const std::string& path);

// Keeps only the records with step <= last_step (atomic rewrite). A resumed run calls this so the
// steps it is about to redo are not in the file twice.
void truncate_metrics(const std::string& path, int64_t last_step);

}  // namespace sambalm
