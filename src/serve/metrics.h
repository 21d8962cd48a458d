// Counters the server exports at GET /metrics, in Prometheus' text format.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace sambalm::serve {

class Metrics {
 public:
  void count_request(const std::string& path, int status);
  std::atomic<int64_t> prompt_tokens{0}, generated_tokens{0};
  std::atomic<int64_t> queue_depth{0}, live_sequences{0}, decode_steps{0};
  std::atomic<int64_t> busy_microseconds{0};  // time the scheduler spent in prefill and decode steps

  // The exposition text; queue depth and live sequences are read from the atomics above.
  std::string render() const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> requests_;  // (path, status) -> count
};

}  // namespace sambalm::serve
