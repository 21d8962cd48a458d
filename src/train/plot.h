// Loss curves of a training run as a self-contained SVG (no plotting library needed): training loss
// per step (raw, faint, and smoothed), validation loss at evaluation steps, and validation loss at
// other context lengths when the run measured them (val_loss_<len> keys).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sambalm {

struct PlotSeries {
  std::string label;
  std::vector<double> x, y;
  std::string color;
  double width = 1.5;
  double opacity = 1.0;
  bool markers = false;
};

// Series drawn from metrics.jsonl records (see metrics.h).
std::vector<PlotSeries> loss_series(const std::vector<nlohmann::json>& records);

// An SVG document: axes with ticks, the series, a legend and a title.
std::string render_svg(const std::vector<PlotSeries>& series, const std::string& title, const std::string& xlabel,
                       const std::string& ylabel, int width = 900, int height = 540);

// Reads RUN/metrics.jsonl and writes the plot to `out_path` (atomically). Throws Error when the run
// has no metrics or the extension is not .svg.
void plot_run(const std::string& run_dir, const std::string& out_path);

}  // namespace sambalm
