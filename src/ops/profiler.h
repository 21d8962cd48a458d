// Step profiler (`sambalm train --profile`): where a training step's time goes, by region.
//
// The regions tile the step: begin_step() starts the clock, each mark(region) charges the time since
// the previous mark (or the step's start) to `region`, and end_step() charges the rest to "other".
// So the regions add up to the step by construction, with no nesting to get wrong; a caller marks
// after the work it names. On a GPU context each mark records a CUDA event on the backend's stream
// (no synchronisation: the ops stay asynchronous); end_step() waits for the step's last event and
// reads the intervals. What is charged is GPU time between events, so host work that keeps the GPU
// idle lands on the next region. On the CPU each mark reads steady_clock (the ops are synchronous).
//
// Off, nothing is created: code reaches the profiler through one process-wide pointer (set by the
// training loop, the one user; a process runs one loop), and profile_mark() is one test of it when
// it is null. It is not a Context field so that the op signatures and the CUDA backend, which copy
// and compile against Context, stay as they are. Marks outside a step (evaluation, sampling) are
// ignored; marks come from the thread that runs the step.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/context.h"

namespace sambalm {

class Profiler {
 public:
  explicit Profiler(const Context& ctx);  // the device and stream the marks are timed on
  ~Profiler();                            // detaches itself if it is the active one
  // The profiler profile_mark() reaches (nullptr: none).
  static void set_active(Profiler* p);
  static Profiler* active() { return active_; }
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  void begin_step();
  void mark(const char* region);  // `region` must outlive the profiler (a string literal)
  void end_step();

  struct Row {
    std::string region;
    double ms_per_step = 0;  // mean over the steps reported
    double percent = 0;      // of the regions' sum
  };
  // Largest first. The first step (warm-up: library heuristics, first-touch allocations) is left out
  // when later steps exist.
  std::vector<Row> rows() const;
  int64_t steps_reported() const;
  double step_ms() const;       // the regions' sum per step
  double wall_step_ms() const;  // host wall-clock per step over the same steps, for comparison
  std::string table() const;    // aligned text: region, ms per step, % of step
  std::string json() const;     // {"device", "steps", "step_ms", "wall_step_ms", "regions": [...]}

 private:
  struct Totals {
    std::map<std::string, double> ms;
    std::vector<std::string> order;  // first-seen order (ties in rows())
    double wall_ms = 0;
    int64_t steps = 0;
  };
  const Totals& reported() const { return later_.steps > 0 ? later_ : first_; }

  Context ctx_;
  bool gpu_ = false;
  bool in_step_ = false;
  std::vector<const char*> labels_;  // label of mark i of this step
  std::vector<void*> events_;        // GPU: event 0 = step start, event i+1 = mark i (reused every step)
  std::vector<std::chrono::steady_clock::time_point> times_;  // CPU: the same, as time points
  std::chrono::steady_clock::time_point wall_start_;
  Totals first_, later_;
  static inline Profiler* active_ = nullptr;
};

// The hook the model, layers and trainer call: nothing happens unless a profiler is active.
inline void profile_mark(const char* region) {
  if (Profiler* p = Profiler::active()) p->mark(region);
}

}  // namespace sambalm
