// The training loop: model + data + AdamW + schedule + evaluation + checkpoints, as `sambalm train`
// runs it. Defaults follow microsoft/Samba pretrain.py (AdamW 0.9/0.95, weight decay 0.1 on every
// parameter, clipping at 1.0, linear warmup then cosine to lr/10, the original initialisation).
//
// One step s = 0 .. steps-1:
//   lr = schedule(s)                               (set before the update, as pretrain.py)
//   grads = 0; for each of grad_accum micro-batches: forward(loss / grad_accum), backward (adds)
//   if the loss or the gradient norm is not finite: skip the update (reported; K in a row stops)
//   clip the global gradient norm to grad_clip; AdamW update
// Data-parallel (mpirun -np N): each of the N processes runs grad_accum micro-batches of its own
// windows; the gradients are averaged over the processes before clipping, so a step sees the global
// batch batch x grad_accum x N, and the run equals one process with that batch (train/data_parallel.h).
// After step s the run has done s+1 steps: metrics, evaluation, samples and checkpoints are keyed by
// that count (`step` in metrics.jsonl; step 0 is the evaluation before training).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sambalm {

struct TrainOptions {
  // Model: a preset name or config.json (fresh init), or --init-from a model directory (fine-tune).
  std::string model, init_from;
  std::string name;            // the model's name (default: the preset's, + "-custom" when overridden)
  std::string device = "cpu";  // --device: cpu, cuda, cuda:N, auto (ops/device.h)
  std::string precision = "auto";  // --precision: bf16, fp32, auto (bf16 on a GPU, fp32 on the CPU)
  std::optional<int64_t> n_layer, n_embd, n_head, n_query_groups, intermediate_size, local_window, vocab_size;

  // Data: token shards, or a raw text file with tokenizer "bytes" (or a tokenizer path).
  std::string data, val_data, tokenizer;
  double val_fraction = 0.1;

  int64_t seq_len = 0;  // 0: the model's block_size
  int64_t batch = 8;    // sequences per micro-batch, per process
  int64_t grad_accum = 1;
  int64_t global_batch = 0;  // sequences per optimizer step over all processes (0: batch x grad_accum x world);
                             // when given, grad_accum = global_batch / (batch x world), which must divide

  // Data-parallel runs (train/communicator.h, train/data_parallel.h).
  int zero = 0;                // 1: ZeRO stage 1, the optimizer state sharded over the processes
  double bucket_mb = 25;       // gradient buckets (MiB of fp32) reduced per collective
  double dist_timeout = 1800;  // seconds a collective may wait for the other ranks before the job ends
  int64_t steps = 1000;
  double lr = 4e-4;
  std::optional<double> min_lr;   // default lr / 10
  std::optional<int64_t> warmup;  // default steps / 10 (pretrain.py warms up over a fixed share)
  double weight_decay = 0.1;
  bool decay_all = true;  // false: no decay on norms, biases, embeddings, A_log, D (Mamba's recipe)
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double grad_clip = 1.0;
  uint64_t seed = 1234;

  int64_t eval_every = 100;  // 0: never (except the final evaluation)
  int64_t eval_batches = 16;
  std::vector<int64_t> eval_lengths;   // extra context lengths evaluated (length extrapolation)
  std::string final_eval = "sampled";  // "sampled", "full" (every window of the validation split), "none"

  int64_t save_every = 0;  // 0: only at the end (and on Ctrl-C)
  int keep_last = 3;
  int64_t sample_every = 0;  // 0: no samples during training
  int64_t sample_tokens = 200;
  double temperature = 0.8;
  std::string prompt;

  std::string out;
  bool resume = false;
  int64_t stop_after = 0;  // stop after this many steps of this invocation (0: run to --steps)
  int64_t max_bad_steps = 5;
  int64_t log_every = 10;  // plain-text progress lines when stdout is not a terminal
  bool profile = false;    // time each region of a step (ops/profiler.h): a table and RUN/profile.json
  bool quiet = false;
};

struct TrainResult {
  int64_t steps_done = 0;
  double last_loss = 0;
  std::optional<double> final_val_loss;
  bool interrupted = false;  // stopped before --steps (Ctrl-C / SIGTERM or --stop-after)
  bool signalled = false;    // by Ctrl-C / SIGTERM
  std::string checkpoint;    // last checkpoint written ("" if none)
};

class Communicator;

// Runs training as configured; throws Error for bad options or input (clear messages) and when the
// loss stays non-finite for max_bad_steps steps in a row. `comm`: the processes of a data-parallel
// run (null: this process alone). Every rank runs the same loop on its share of each batch; rank 0
// alone writes progress, metrics, samples and checkpoints. An Error thrown on one rank of several may
// leave the others in a collective: the caller ends the job (Communicator::abort).
TrainResult train(const TrainOptions& opts, Communicator* comm = nullptr);

}  // namespace sambalm
