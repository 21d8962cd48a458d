// `sambalm plot RUN_DIR`: the loss curves of a training run (metrics.jsonl) as an SVG picture.
#include <cstdio>
#include <filesystem>

#include "cli/command.h"
#include "train/plot.h"

namespace sambalm::cli {
namespace {

struct PlotOpts {
  std::string run_dir, out;
};

Action add(CLI::App& app) {
  auto o = std::make_shared<PlotOpts>();
  auto* sub = app.add_subcommand("plot", "Draw a training run's loss curves (train, validation) to an SVG file");
  sub->footer(
      "Reads RUN_DIR/metrics.jsonl (written by `sambalm train`) and draws the training loss per step (raw and\n"
      "smoothed), the validation loss at evaluation steps and, when measured, the validation loss at other\n"
      "context lengths (--eval-lengths). Open the SVG in any browser. Works on a run that is still going.");
  sub->add_option("run_dir", o->run_dir, "Training run directory (the --out of sambalm train)")->required();
  sub->add_option("--out,-o", o->out, "Output file (default RUN_DIR/loss.svg)");
  return [o] {
    const std::string out = o->out.empty() ? (std::filesystem::path(o->run_dir) / "loss.svg").string() : o->out;
    plot_run(o->run_dir, out);
    std::printf("wrote %s\n", out.c_str());
    return 0;
  };
}

}  // namespace
SAMBALM_REGISTER_COMMAND(45, add);
}  // namespace sambalm::cli
