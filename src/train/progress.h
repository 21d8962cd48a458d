// A progress bar for long loops (training steps, evaluation batches, generation):
//
//   [########..........]  240/600  40% | loss 1.8123 lr 1.86e-03 | 21.4k tok/s | 1m02s < 1m33s
//
// On a terminal it redraws one line in place (at most ~10 times a second) and messages are printed
// above it. When stdout is not a terminal (a log file, a pipe, CI) it degrades to plain lines, one
// every `plain_every` updates and at the end, so logs stay readable and grep-able.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace sambalm {

class Progress {
 public:
  // total: number of units (0 = unknown). start: units already done (a resumed run). plain: plain
  // lines even on a terminal (under mpirun, whose pseudo-terminal says nothing of where the job's
  // output goes).
  Progress(int64_t total, int64_t start = 0, int64_t plain_every = 10, bool plain = false);
  ~Progress();

  // `done` units are complete; `fields` is free text shown after the count (e.g. "loss 1.23").
  void update(int64_t done, const std::string& fields);
  // Prints a line of text without breaking the bar.
  void message(const std::string& text);
  // Ends the bar (newline on a terminal). Idempotent.
  void finish();

  bool is_tty() const { return tty_; }
  double elapsed_s() const;
  // Seconds left, extrapolated from the rate since the bar started; < 0 when unknown.
  double eta_s(int64_t done) const;

  static std::string format_duration(double seconds);  // "45s", "3m05s", "2h01m"

 private:
  void draw(int64_t done, const std::string& fields, bool force);

  int64_t total_, start_, plain_every_;
  bool tty_;
  bool drawn_ = false, finished_ = false;
  int64_t last_done_ = -1;
  std::string last_fields_;
  std::chrono::steady_clock::time_point t0_, last_draw_;
};

}  // namespace sambalm
