#include "train/plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

#include "core/error.h"
#include "io/file.h"
#include "train/metrics.h"

namespace sambalm {
namespace {

// Tick spacing of 1, 2 or 5 times a power of ten giving about `n` intervals over [lo, hi].
double nice_step(double lo, double hi, int n) {
  const double raw = (hi - lo) / std::max(n, 1);
  if (!(raw > 0)) return 1.0;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0})
    if (raw <= m * p) return m * p;
  return 10 * p;
}

std::string escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<')
      o += "&lt;";
    else if (c == '>')
      o += "&gt;";
    else if (c == '&')
      o += "&amp;";
    else if (c == '"')
      o += "&quot;";
    else
      o += c;
  }
  return o;
}

std::string fmt_tick(double v, double step) {
  if (std::fabs(v) < step * 1e-9) return "0";
  const int decimals = std::max(0, static_cast<int>(-std::floor(std::log10(step))));
  if (std::fabs(v) >= 1e5) return fmt::format("{:.0f}k", v / 1000);
  return fmt::format("{:.{}f}", v, decimals);
}

}  // namespace

std::vector<PlotSeries> loss_series(const std::vector<nlohmann::json>& records) {
  PlotSeries train{"train loss", {}, {}, "#1f77b4", 1.0, 0.3, false};
  PlotSeries val{"validation loss", {}, {}, "#d62728", 2.0, 1.0, true};
  std::map<std::string, PlotSeries> other;  // val_loss_<len>
  const char* colors[] = {"#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};
  for (const auto& r : records) {
    if (!r.contains("step") || !r["step"].is_number()) continue;
    const double step = r["step"].get<double>();
    auto num = [&](const char* k) { return r.contains(k) && r[k].is_number() && std::isfinite(r[k].get<double>()); };
    if (num("loss")) train.x.push_back(step), train.y.push_back(r["loss"].get<double>());
    if (num("val_loss")) val.x.push_back(step), val.y.push_back(r["val_loss"].get<double>());
    for (auto it = r.begin(); it != r.end(); ++it) {
      if (it.key().rfind("val_loss_", 0) != 0 || !it->is_number()) continue;
      auto& s = other[it.key()];
      if (s.label.empty()) {
        s = {"validation loss, context " + it.key().substr(9), {}, {}, colors[other.size() % 6], 1.5, 1.0, true};
      }
      s.x.push_back(step), s.y.push_back(it->get<double>());
    }
  }
  std::vector<PlotSeries> out;
  if (!train.x.empty()) {
    // Exponential moving average (debiased, like TensorBoard's smoothing) over the training loss.
    PlotSeries smooth{"train loss (smoothed)", train.x, {}, "#1f77b4", 2.0, 1.0, false};
    const double a = 0.9;
    double ema = 0, w = 0;
    for (double y : train.y) {
      ema = a * ema + (1 - a) * y, w = a * w + (1 - a);
      smooth.y.push_back(ema / w);
    }
    out.push_back(std::move(train));
    out.push_back(std::move(smooth));
  }
  if (!val.x.empty()) out.push_back(std::move(val));
  for (auto& [k, s] : other) out.push_back(std::move(s));
  return out;
}

std::string render_svg(const std::vector<PlotSeries>& series, const std::string& title, const std::string& xlabel,
                       const std::string& ylabel, int width, int height) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size(); ++i)
      x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]), y0 = std::min(y0, s.y[i]), y1 = std::max(y1, s.y[i]);
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) y1 = y0 + 1;
  const double ystep = nice_step(y0, y1, 8), xstep = nice_step(x0, x1, 10);
  y0 = std::floor(y0 / ystep) * ystep, y1 = std::ceil(y1 / ystep) * ystep;
  x0 = std::floor(x0 / xstep) * xstep, x1 = std::ceil(x1 / xstep) * xstep;

  const double L = 70, R = 20, T = 40, B = 55;
  const double pw = width - L - R, ph = height - T - B;
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * pw; };
  auto py = [&](double y) { return T + (1 - (y - y0) / (y1 - y0)) * ph; };

  std::string o = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      width, height, width, height);
  o += fmt::format("<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n", width / 2,
                   escape(title));
  for (double y = y0; y <= y1 + ystep * 1e-6; y += ystep) {
    o += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", L, py(y),
                     L + pw, py(y));
    o += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", L - 6, py(y) + 4,
                     fmt_tick(y, ystep));
  }
  for (double x = x0; x <= x1 + xstep * 1e-6; x += xstep) {
    o += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#eee\"/>\n", px(x), T,
                     px(x), T + ph);
    o += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", px(x), T + ph + 18,
                     fmt_tick(x, xstep));
  }
  o +=
      fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>\n", L, T, pw, ph);
  o += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", L + pw / 2, height - 12,
                   escape(xlabel));
  o += fmt::format("<text x=\"16\" y=\"{:.1f}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1f})\">{}</text>\n",
                   T + ph / 2, T + ph / 2, escape(ylabel));
  for (const auto& s : series) {
    if (s.x.empty()) continue;
    std::string pts;
    for (size_t i = 0; i < s.x.size(); ++i) pts += fmt::format("{:.1f},{:.1f} ", px(s.x[i]), py(s.y[i]));
    o +=
        fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"{}\" stroke-opacity=\"{}\" points=\"{}\"/>\n",
                    s.color, s.width, s.opacity, pts);
    if (s.markers)
      for (size_t i = 0; i < s.x.size(); ++i)
        o += fmt::format(
            "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"><title>step {} : {:.4f}</title>"
            "</circle>\n",
            px(s.x[i]), py(s.y[i]), s.color, s.x[i], s.y[i]);
  }
  double ly = T + 14;
  for (const auto& s : series) {
    o += fmt::format(
        "<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"3\" "
        "stroke-opacity=\"{}\"/>\n",
        L + pw - 210, ly - 4, L + pw - 186, ly - 4, s.color, std::max(s.opacity, 0.4));
    o += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n", L + pw - 180, ly, escape(s.label));
    ly += 18;
  }
  o += "</svg>\n";
  return o;
}

void plot_run(const std::string& run_dir, const std::string& out_path) {
  const std::string metrics = (std::filesystem::path(run_dir) / "metrics.jsonl").string();
  SAMBALM_CHECK(std::filesystem::exists(metrics), "{}: no metrics.jsonl here (is it a training run directory?)",
                run_dir);
  SAMBALM_CHECK(std::filesystem::path(out_path).extension() == ".svg", "{}: plot output must end in .svg", out_path);
  auto series = loss_series(read_metrics(metrics));
  SAMBALM_CHECK(!series.empty(), "{}: no loss values to plot", metrics);
  const std::string title = "loss: " + std::filesystem::absolute(run_dir).lexically_normal().filename().string();
  write_file_atomic(out_path, render_svg(series, title, "step", "cross-entropy loss (nats)"));
}

}  // namespace sambalm
