#include "ops/profiler.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/error.h"
#if SAMBALM_HAVE_CUDA
#include "ops/cuda/events.h"
#endif

namespace sambalm {

namespace {
using Clock = std::chrono::steady_clock;
double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
}  // namespace

Profiler::Profiler(const Context& ctx) : ctx_(ctx), gpu_(ctx.device == Device::CUDA) {
#if !SAMBALM_HAVE_CUDA
  SAMBALM_CHECK(!gpu_, "profiler: this build has no CUDA backend");
#endif
}

void Profiler::set_active(Profiler* p) { active_ = p; }

Profiler::~Profiler() {
  if (active_ == this) active_ = nullptr;
#if SAMBALM_HAVE_CUDA
  for (void* e : events_) ops::cuda::event_destroy(e);
#endif
}

void Profiler::begin_step() {
  labels_.clear();
  times_.clear();
  in_step_ = true;
  wall_start_ = Clock::now();
  if (gpu_) {
#if SAMBALM_HAVE_CUDA
    if (events_.empty()) events_.push_back(ops::cuda::event_create());
    ops::cuda::event_record(events_[0], ctx_.stream);
#endif
  } else {
    times_.push_back(Clock::now());
  }
}

void Profiler::mark(const char* region) {
  if (!in_step_) return;
  labels_.push_back(region);
  if (gpu_) {
#if SAMBALM_HAVE_CUDA
    const size_t i = labels_.size();  // event i closes mark i - 1
    if (events_.size() <= i) events_.push_back(ops::cuda::event_create());
    ops::cuda::event_record(events_[i], ctx_.stream);
#endif
  } else {
    times_.push_back(Clock::now());
  }
}

void Profiler::end_step() {
  if (!in_step_) return;
  mark("other");
  in_step_ = false;
  std::vector<double> ms(labels_.size(), 0.0);
  if (gpu_) {
#if SAMBALM_HAVE_CUDA
    ops::cuda::event_synchronize(events_[labels_.size()]);
    for (size_t i = 0; i < labels_.size(); ++i) ms[i] = ops::cuda::event_elapsed_ms(events_[i], events_[i + 1]);
#endif
  } else {
    for (size_t i = 0; i < labels_.size(); ++i) ms[i] = ms_between(times_[i], times_[i + 1]);
  }
  const double wall = ms_between(wall_start_, Clock::now());
  Totals& t = first_.steps == 0 ? first_ : later_;
  for (size_t i = 0; i < labels_.size(); ++i) {
    auto [it, fresh] = t.ms.try_emplace(labels_[i], 0.0);
    if (fresh) t.order.emplace_back(labels_[i]);
    it->second += std::max(0.0, ms[i]);
  }
  t.wall_ms += wall;
  ++t.steps;
}

int64_t Profiler::steps_reported() const { return reported().steps; }

double Profiler::step_ms() const {
  const Totals& t = reported();
  double sum = 0;
  for (const auto& [name, ms] : t.ms) sum += ms;
  return t.steps > 0 ? sum / double(t.steps) : 0.0;
}

double Profiler::wall_step_ms() const {
  const Totals& t = reported();
  return t.steps > 0 ? t.wall_ms / double(t.steps) : 0.0;
}

std::vector<Profiler::Row> Profiler::rows() const {
  const Totals& t = reported();
  std::vector<Row> out;
  if (t.steps == 0) return out;
  const double step = step_ms();
  for (const std::string& name : t.order) {
    const double ms = t.ms.at(name) / double(t.steps);
    out.push_back(Row{name, ms, step > 0 ? 100.0 * ms / step : 0.0});
  }
  std::stable_sort(out.begin(), out.end(), [](const Row& a, const Row& b) { return a.ms_per_step > b.ms_per_step; });
  return out;
}

std::string Profiler::table() const {
  const auto rs = rows();
  size_t w = 6;
  for (const auto& r : rs) w = std::max(w, r.region.size());
  std::string s = fmt::format("profile ({}, {} step{}{}; {} time between marks)\n", ctx_.name(), steps_reported(),
                              steps_reported() == 1 ? "" : "s", later_.steps > 0 ? " after the first" : "",
                              gpu_ ? "CUDA-event" : "wall-clock");
  s += fmt::format("{:<{}}  {:>10}  {:>7}\n", "region", w, "ms/step", "% step");
  for (const auto& r : rs) s += fmt::format("{:<{}}  {:>10.3f}  {:>6.1f}%\n", r.region, w, r.ms_per_step, r.percent);
  s += fmt::format("{:<{}}  {:>10.3f}  {:>6.1f}%\n", "total", w, step_ms(), 100.0);
  s += fmt::format("(host wall-clock per step: {:.3f} ms)\n", wall_step_ms());
  return s;
}

std::string Profiler::json() const {
  nlohmann::json regions = nlohmann::json::array();
  for (const auto& r : rows())
    regions.push_back({{"region", r.region}, {"ms_per_step", r.ms_per_step}, {"percent", r.percent}});
  nlohmann::json j = {{"device", ctx_.name()},     {"timer", gpu_ ? "cuda_event" : "steady_clock"},
                      {"steps", steps_reported()}, {"first_step_excluded", later_.steps > 0},
                      {"step_ms", step_ms()},      {"wall_step_ms", wall_step_ms()},
                      {"regions", regions}};
  return j.dump(2) + "\n";
}

}  // namespace sambalm
