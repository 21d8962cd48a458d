#include "serve/metrics.h"

#include <fmt/format.h>

namespace sambalm::serve {

void Metrics::count_request(const std::string& path, int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{path, status}];
}

std::string Metrics::render() const {
  std::string out;
  out += "# HELP sambalm_requests_total HTTP requests answered, by path and status code.\n";
  out += "# TYPE sambalm_requests_total counter\n";
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, n] : requests_)
      out += fmt::format("sambalm_requests_total{{path=\"{}\",status=\"{}\"}} {}\n", key.first, key.second, n);
  }
  auto metric = [&](const char* name, const char* type, const char* help, auto value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
  };
  const int64_t gen = generated_tokens.load(), busy = busy_microseconds.load();
  metric("sambalm_prompt_tokens_total", "counter", "Prompt tokens prefilled.", prompt_tokens.load());
  metric("sambalm_generated_tokens_total", "counter", "Tokens generated.", gen);
  metric("sambalm_decode_steps_total", "counter", "Batched decode steps run.", decode_steps.load());
  metric("sambalm_queue_depth", "gauge", "Requests waiting for a decode slot.", queue_depth.load());
  metric("sambalm_live_sequences", "gauge", "Requests holding a decode slot.", live_sequences.load());
  metric("sambalm_busy_seconds_total", "counter", "Time spent in prefill and decode steps.", double(busy) * 1e-6);
  metric("sambalm_generated_tokens_per_second", "gauge",
         "Tokens generated per second of busy time (generated tokens / busy seconds).",
         busy > 0 ? double(gen) / (double(busy) * 1e-6) : 0.0);
  return out;
}

}  // namespace sambalm::serve
