#include "train/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace sambalm {

Progress::Progress(int64_t total, int64_t start, int64_t plain_every, bool plain)
    : total_(total),
      start_(start),
      plain_every_(plain_every > 0 ? plain_every : 1),
      tty_(!plain && isatty(STDOUT_FILENO)) {
  t0_ = std::chrono::steady_clock::now();
  last_draw_ = t0_ - std::chrono::seconds(1);
}

Progress::~Progress() { finish(); }

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

double Progress::eta_s(int64_t done) const {
  if (total_ <= 0 || done <= start_) return -1;
  const double rate = static_cast<double>(done - start_) / std::max(elapsed_s(), 1e-9);
  return static_cast<double>(total_ - done) / rate;
}

std::string Progress::format_duration(double s) {
  if (s < 0 || !std::isfinite(s)) return "?";
  const int64_t t = static_cast<int64_t>(std::llround(s));
  if (t < 60) return fmt::format("{}s", t);
  if (t < 3600) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}h{:02}m", t / 3600, (t % 3600) / 60);
}

void Progress::draw(int64_t done, const std::string& fields, bool force) {
  const auto now = std::chrono::steady_clock::now();
  std::string count =
      total_ > 0 ? fmt::format("{:>{}}/{}", done, std::to_string(total_).size(), total_) : std::to_string(done);
  std::string times = fmt::format("{} < {}", format_duration(elapsed_s()), format_duration(eta_s(done)));
  if (tty_) {
    if (!force && now - last_draw_ < std::chrono::milliseconds(100)) return;
    std::string bar;
    if (total_ > 0) {
      const int width = 20;
      const int filled = static_cast<int>(width * std::min<int64_t>(done, total_) / total_);
      bar = "[" + std::string(filled, '#') + std::string(width - filled, '.') + "] ";
      count += fmt::format(" {:3}%", 100 * std::min<int64_t>(done, total_) / total_);
    }
    std::printf("\r\033[K%s%s | %s | %s", bar.c_str(), count.c_str(), fields.c_str(), times.c_str());
    std::fflush(stdout);
    drawn_ = true;
  } else {
    const bool due = done == total_ || (done - start_) % plain_every_ == 0;
    if (!force && !due) return;
    if (done == last_done_) return;  // the same line twice (finish after the last update)
    std::printf("step %s | %s | %s\n", count.c_str(), fields.c_str(), times.c_str());
    std::fflush(stdout);
    last_done_ = done;
  }
  last_draw_ = now;
}

void Progress::update(int64_t done, const std::string& fields) {
  finished_ = false;
  last_fields_ = fields;
  draw(done, fields, total_ > 0 && done >= total_);
  if (tty_) last_done_ = done;
}

void Progress::message(const std::string& text) {
  if (tty_ && drawn_) std::printf("\r\033[K");
  std::printf("%s\n", text.c_str());
  std::fflush(stdout);
  if (tty_ && drawn_ && last_done_ >= 0) draw(last_done_, last_fields_, true);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (tty_ && drawn_) {
    if (last_done_ >= 0) draw(last_done_, last_fields_, true);
    std::printf("\n");
    std::fflush(stdout);
    drawn_ = false;
  }
}

}  // namespace sambalm
