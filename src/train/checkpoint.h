// Training checkpoints: a model directory plus the trainer's state, written so that a crash at
// any moment leaves the previous checkpoints intact and never a partial one under a final name.
//
//   RUN/checkpoints/step_00000600/        one complete checkpoint (a loadable model directory)
//     config.json, model.safetensors      the model, as `sambalm` reads any model directory
//     trainer_state.safetensors           AdamW moments + JSON metadata (step, data position, RNG)
//
// Writing: everything goes into step_N.tmp/ (each file fsynced), then the directory is renamed to
// step_N/ and the parent fsynced. rename() of a directory is atomic, so a step_N/ without the .tmp
// suffix is always complete; leftover *.tmp directories (a killed save) are removed by the next save
// and ignored by readers. After a save, only the newest `keep_last` checkpoints are kept.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/params.h"

namespace sambalm {

// What the trainer needs besides the weights to continue exactly.
struct TrainerState {
  int64_t step = 0;            // optimizer steps completed
  int64_t adam_t = 0;          // AdamW's step count (== step unless steps were skipped)
  std::vector<float> exp_avg;  // AdamW first moments, ParamStore layout
  std::vector<float> exp_avg_sq;
  nlohmann::json data;   // data loader position / RNG (its own format)
  std::string rng;       // the trainer's sampling RNG (std::mt19937_64 text form)
  nlohmann::json extra;  // counters: tokens seen, bad steps in a row, elapsed seconds, options
};

std::string checkpoint_name(int64_t step);  // "step_00000600"

// Writes RUN/checkpoints/step_N/ atomically and prunes to keep_last (<= 0: keep all). `extra_files`
// (file name -> bytes) go into the directory too: the tokenizer's files, so that a checkpoint is a
// model directory usable without --tokenizer. Returns the checkpoint directory.
std::string save_checkpoint(const std::string& run_dir, const ModelConfig& cfg, const ParamStore& params,
                            const TrainerState& state, int keep_last,
                            const std::map<std::string, std::string>& extra_files = {});

// Complete checkpoints under RUN/checkpoints, oldest first (by step).
std::vector<std::string> list_checkpoints(const std::string& run_dir);
// The newest complete checkpoint, if any.
std::optional<std::string> latest_checkpoint(const std::string& run_dir);

// Reads trainer_state.safetensors of a checkpoint directory; checks the moments have n_params
// entries (throws Error naming the file otherwise).
TrainerState load_trainer_state(const std::string& ckpt_dir, size_t n_params);

}  // namespace sambalm
