// `sambalm train`: train a Samba / Mamba model from scratch or fine-tune one, on token data or a raw
// text file. Every knob of the run is an option here (scripts call these names).
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <limits>

#include "cli/command.h"
#include "cli/options.h"
#include "ops/device.h"
#include "train/communicator.h"
#include "train/trainer.h"

namespace sambalm::cli {
namespace {

// Largest values accepted: far beyond any model or run this program can train, small enough that
// sizes computed from them cannot overflow.
constexpr int64_t kMaxSteps = 1'000'000'000;
constexpr int64_t kMaxWidth = 1 << 20;
constexpr int64_t kMaxLength = 1 << 24;

template <typename T>
CLI::Option* opt_optional(CLI::App* sub, const std::string& name, std::optional<T>& dst, const std::string& help, T lo,
                          T hi) {
  return in_range(sub->add_option_function<T>(
                      name, [&dst](const T& v) { dst = v; }, help),
                  lo, hi);
}

template <typename T, typename R>
CLI::Option* opt(CLI::App* sub, const std::string& name, T& dst, const std::string& help, R lo, R hi) {
  return in_range(sub->add_option(name, dst, help), lo, hi);
}

Action add(CLI::App& app) {
  auto o = std::make_shared<TrainOptions>();
  auto* sub =
      app.add_subcommand("train", "Train a model (from scratch, fine-tune, or resume) and write a run directory");
  sub->footer(
      "Model: --model is a preset name (e.g. Samba_421M, mamba-130m) or a config.json, initialised as the original\n"
      "code does (pretrain.py _init_weights with mamba_init); the shape options override it, e.g.\n"
      "  --model Samba_421M --n-layer 4 --n-embd 128 --n-head 4 --intermediate-size 256 --local-window 64\n"
      "The vocabulary follows the data's tokenizer (256 for bytes) unless --vocab-size is given (at least the\n"
      "tokenizer's). A model whose shape differs from its preset is named after it with '-custom' (e.g.\n"
      "Samba_421M-custom) unless --name is given. --model refuses a directory of trained weights: --init-from DIR\n"
      "starts from a model directory's weights (fine-tuning), in that directory's shape (a shape option that\n"
      "contradicts it is an error).\n"
      "Data: --data FILE --tokenizer bytes trains on a file's bytes (character level); with a tokenizer.json /\n"
      "tokenizer.model the file is tokenized first. The last --val-fraction of the tokens validate. --data DIR\n"
      "takes the token shards of `sambalm prepare` (their tokenizer from meta.json unless --tokenizer is given).\n"
      "lit_gpt PackedDataset chunks (prepare_slimpajama.py's *.bin) are read too: a --data / --val-data path that\n"
      "does not exist is a file prefix, as pretrain.py's (--data data/slim/train_slim --val-data\n"
      "data/slim/validation: every file whose name starts with it); their vocabulary is --vocab-size or the\n"
      "tokenizer's (docs/FORMATS.md).\n"
      "--data A:0.7,B:0.3 mixes sources (each a file, a prefix, or a directory's train shards) by weight, as\n"
      "pretrain.py's train_data_config: each window's source is drawn from --seed, and every source's position is\n"
      "checkpointed, so --resume continues the same stream. Needs --val-data; weights must be >= 0, not all zero.\n"
      "--data MIX.json gives the list as [[\"path\", 0.7], [\"path2\", 0.3]] (paths from the file's directory).\n"
      "Defaults follow microsoft/Samba pretrain.py: AdamW betas 0.9/0.95, eps 1e-8, weight decay 0.1 on every\n"
      "parameter, gradient norm clipped at 1.0, lr linear from 0 over --warmup steps then cosine to --min-lr.\n"
      "\n"
      "The run directory (--out) gets: metrics.jsonl (one JSON object per step: step, loss, lr, tokens_per_s,\n"
      "grad_norm, and val_loss/val_ppl/val_bpb on evaluation steps), samples.txt (control bytes escaped),\n"
      "checkpoints/step_N/ (a model directory + trainer_state.safetensors; the newest --keep-last are kept) and,\n"
      "at the end, model/ (the final model). Model directories hold the tokenizer too, so `sambalm generate -m\n"
      "RUN/model` needs no --tokenizer. Ctrl-C, or an error in the middle of the run, saves a checkpoint and exits;\n"
      "the same command with --resume continues exactly. A resumed run keeps its model and seed (a note says so\n"
      "when the command line differs); a changed --batch, --grad-accum or --seq-len applies from the resumed step.\n"
      "`sambalm plot RUN_DIR` draws the curves.\n"
      "\n"
      "Data-parallel: `mpirun -np N sambalm train ...` (or srun) runs N processes; each reads its own share of the\n"
      "windows, the gradients are averaged over the processes, and rank 0 alone writes the run directory. The\n"
      "global batch (sequences per step) is --batch x --grad-accum x N, or --global-batch, which sets --grad-accum.\n"
      "--zero 1 shards the AdamW state over the processes. Checkpoints hold the full state: --resume works with\n"
      "any number of processes (the same global batch continues the same run). torchrun's RANK/WORLD_SIZE are read,\n"
      "but the CPU exchanges gradients over MPI: WORLD_SIZE > 1 without mpirun is an error. docs/DISTRIBUTED.md.");
  sub->add_option("--model,-m", o->model, "Preset name or config.json to train from scratch");
  sub->add_option("--init-from", o->init_from, "Model directory whose weights to start from (fine-tune)");
  sub->add_option("--name", o->name, "Name of the model (config.json, banner; default: see below)");
  opt_optional<int64_t>(sub, "--n-layer", o->n_layer, "Override: number of blocks", 1, 4096);
  opt_optional<int64_t>(sub, "--n-embd", o->n_embd, "Override: model width (the MLP width scales with it unless given)",
                        1, kMaxWidth);
  opt_optional<int64_t>(sub, "--n-head", o->n_head, "Override: attention heads", 1, 4096);
  opt_optional<int64_t>(sub, "--n-query-groups", o->n_query_groups, "Override: key/value heads (GQA)", 1, 4096);
  opt_optional<int64_t>(sub, "--intermediate-size", o->intermediate_size, "Override: MLP hidden size", 1,
                        4 * kMaxWidth);
  opt_optional<int64_t>(sub, "--local-window", o->local_window, "Override: sliding-window size of attention layers", 1,
                        kMaxLength);
  opt_optional<int64_t>(sub, "--vocab-size", o->vocab_size,
                        "Vocabulary size (default: the tokenizer's; padded to padding_multiple)", 1, kMaxLength);

  sub->add_option(
         "--data,-d", o->data,
         "Training data: a text file (with --tokenizer), a shard directory from `sambalm prepare`, one token shard, "
         "a file prefix of lit_gpt PackedDataset chunks, or a weighted list PATH:W,PATH:W")
      ->required();
  sub->add_option("--val-data", o->val_data, "Separate validation data (default: the tail of --data)");
  sub->add_option("--tokenizer,-t", o->tokenizer, "bytes, or a tokenizer.json / tokenizer.model / directory");
  opt(sub, "--val-fraction", o->val_fraction, "Share of the data kept for validation", 0.0, 0.99)
      ->capture_default_str();

  opt<int64_t, int64_t>(sub, "--seq-len", o->seq_len, "Training context length (default: the model's block_size)", 1,
                        kMaxLength);
  opt<int64_t, int64_t>(sub, "--batch,-b", o->batch, "Sequences per micro-batch", 1, 65536)->capture_default_str();
  opt<int64_t, int64_t>(sub, "--grad-accum", o->grad_accum, "Micro-batches per optimizer step", 1, 65536)
      ->capture_default_str();
  opt<int64_t, int64_t>(sub, "--global-batch", o->global_batch,
                        "Sequences per optimizer step over all processes; sets --grad-accum to it / (--batch x "
                        "processes), which must divide it (default: --batch x --grad-accum x processes)",
                        1, int64_t{1} << 30);
  opt<int, int>(sub, "--zero", o->zero,
                "ZeRO stage: 0 off, 1 shards the AdamW state and update over the processes (needs mpirun)", 0, 1)
      ->capture_default_str();
  opt(sub, "--bucket-mb", o->bucket_mb, "MiB of gradients per collective in a distributed run", 0.001, 4096.0)
      ->capture_default_str();
  auto dist_backend = std::make_shared<std::string>("auto");
  sub->add_option("--dist-backend", *dist_backend,
                  "How the processes of a distributed run exchange gradients: auto (NCCL on GPUs, MPI on the CPU), "
                  "nccl (also for one process, to check the backend), mpi, or single")
      ->check(CLI::IsMember({"auto", "nccl", "mpi", "single"}))
      ->capture_default_str();
  opt(sub, "--dist-timeout", o->dist_timeout,
      "Seconds a process waits in a collective for the others before it ends the job (a rank died or hangs)", 1.0,
      604800.0)
      ->capture_default_str();
  opt<int64_t, int64_t>(sub, "--steps", o->steps, "Optimizer steps (also the end of the cosine decay)", 1, kMaxSteps)
      ->capture_default_str();
  opt(sub, "--lr", o->lr, "Peak learning rate", 0.0, 10.0)->capture_default_str();
  opt_optional<double>(sub, "--min-lr", o->min_lr, "Final learning rate of the cosine (default lr/10)", 0.0, 10.0);
  opt_optional<int64_t>(sub, "--warmup", o->warmup, "Linear warmup steps from 0 (default steps/10)", 0, kMaxSteps);
  opt(sub, "--weight-decay", o->weight_decay, "AdamW decoupled weight decay", 0.0, 10.0)->capture_default_str();
  sub->add_flag("!--decay-all,--decay-matrices-only", o->decay_all,
                "Exclude norms, biases, embeddings, A_log and D from weight decay (Mamba's recipe)");
  opt(sub, "--beta1", o->beta1, "AdamW beta1", 0.0, 0.99999)->capture_default_str();
  opt(sub, "--beta2", o->beta2, "AdamW beta2", 0.0, 0.99999)->capture_default_str();
  opt(sub, "--eps", o->eps, "AdamW epsilon", 1e-30, 1.0)->capture_default_str();
  opt(sub, "--grad-clip", o->grad_clip, "Clip the global gradient norm to this (0: off)", 0.0, 1e9)
      ->capture_default_str();
  // The seed is unsigned 64-bit inside; the option takes the non-negative int64 range.
  opt<uint64_t, int64_t>(sub, "--seed", o->seed, "Seed of initialisation, batches and samples", 0,
                         std::numeric_limits<int64_t>::max())
      ->capture_default_str();

  opt<int64_t, int64_t>(sub, "--eval-every", o->eval_every, "Validate every N steps (0: never)", 0, kMaxSteps)
      ->capture_default_str();
  opt<int64_t, int64_t>(sub, "--eval-batches", o->eval_batches, "Fixed validation batches per evaluation", 1, 1000000)
      ->capture_default_str();
  opt<std::vector<int64_t>, int64_t>(sub, "--eval-lengths", o->eval_lengths,
                                     "Also validate at these context lengths (e.g. 4096,8192)", 1, kMaxLength)
      ->delimiter(',');
  sub->add_option("--final-eval", o->final_eval,
                  "At the end: sampled (the fixed batches), full (every window of the validation split), none")
      ->check(CLI::IsMember({"sampled", "full", "none"}))
      ->capture_default_str();
  opt<int64_t, int64_t>(sub, "--save-every", o->save_every, "Checkpoint every N steps (0: only at the end / on Ctrl-C)",
                        0, kMaxSteps)
      ->capture_default_str();
  opt<int, int>(sub, "--keep-last", o->keep_last, "Checkpoints to keep (0: all)", 0, 1000000)->capture_default_str();
  opt<int64_t, int64_t>(sub, "--sample-every", o->sample_every, "Print a generated sample every N steps (0: never)", 0,
                        kMaxSteps)
      ->capture_default_str();
  opt<int64_t, int64_t>(sub, "--sample-tokens", o->sample_tokens, "Length of each sample in tokens", 1, 1000000)
      ->capture_default_str();
  opt(sub, "--temperature", o->temperature, "Sampling temperature (0: greedy)", 0.0, 100.0)->capture_default_str();
  sub->add_option("--prompt", o->prompt, "Sample prompt (default: the start of the validation split)");

  sub->add_option("--out,-o", o->out, "Run directory")->required();
  sub->add_flag("--resume", o->resume, "Continue from the newest checkpoint in --out");
  opt<int64_t, int64_t>(sub, "--stop-after", o->stop_after, "Stop (with a checkpoint) after N steps of this invocation",
                        1, kMaxSteps);
  opt<int64_t, int64_t>(sub, "--max-bad-steps", o->max_bad_steps, "Stop after this many NaN/Inf steps in a row", 1,
                        kMaxSteps)
      ->capture_default_str();
  opt<int64_t, int64_t>(sub, "--log-every", o->log_every, "Plain progress line every N steps when not on a terminal", 1,
                        kMaxSteps)
      ->capture_default_str();
  auto threads = std::make_shared<int>(0);
  in_range(sub->add_option("--threads", *threads, "OpenMP threads (0: all cores)"), 0, 4096)->capture_default_str();
  sub->add_flag("--quiet,-q", o->quiet, "No progress output");
  sub->add_flag("--profile", o->profile,
                "Time each part of a training step (per sublayer op, forward and backward, LM head and loss, "
                "optimizer) with CUDA events on a GPU, the wall clock on the CPU; at the end print a table "
                "(region, ms per step, % of step; the first step left out when there are more) and write "
                "RUN/profile.json");
  o->device = "auto";
  sub->add_option("--device", o->device,
                  "cpu, cuda, cuda:N, or auto (the first GPU when this build has the CUDA backend and one is "
                  "visible, else the CPU)")
      ->capture_default_str();
  sub->add_option("--precision", o->precision,
                  "bf16 (GPU only: bf16 weights, activations and GEMMs beside fp32 master weights, AdamW state, "
                  "gradients, residual stream and statistics), fp32, or auto (bf16 on a GPU, fp32 on the CPU); "
                  "checkpoints hold the fp32 weights either way")
      ->check(CLI::IsMember({"bf16", "fp32", "auto"}))
      ->capture_default_str();
  return [o, threads, dist_backend] {
    if (*threads > 0) omp_set_num_threads(*threads);
    // On GPUs each process of a distributed run takes the GPU of its local rank unless --device names one.
    const LaunchInfo launch = launch_from_env();
    if (launch.world > 1 && (o->device == "cuda" || (o->device == "auto" && cuda_available())))
      o->device = "cuda:" + std::to_string(launch.local_rank);
    const DeviceSpec where = parse_device(o->device != "auto" ? o->device : cuda_available() ? "cuda" : "cpu");
    std::unique_ptr<Communicator> comm =
        connect_communicator(o->dist_timeout, *dist_backend, where.device == Device::CUDA ? where.index : -1);
    TrainResult r;
    try {
      r = train(*o, comm.get());
    } catch (const std::exception& e) {
      // The other ranks may be waiting in a collective that this one will never enter: end them all.
      if (comm->size() > 1) {
        std::fprintf(stderr, "error: rank %d of %d: %s\n", comm->rank(), comm->size(), e.what());
        comm->abort(1);
      }
      throw;
    }
    if (!o->quiet && comm->rank() == 0) {
      if (r.final_val_loss)
        std::printf("final validation loss %.4f (%s %.4f, perplexity %.3f)\n", *r.final_val_loss,
                    o->tokenizer == "bytes" ? "bits/byte" : "bits/token", *r.final_val_loss / std::log(2.0),
                    std::exp(*r.final_val_loss));
      std::printf("run directory %s (metrics.jsonl; plot with: sambalm plot %s)\n", o->out.c_str(), o->out.c_str());
    }
    return r.signalled ? 130 : 0;
  };
}

}  // namespace
SAMBALM_REGISTER_COMMAND(30, add);
}  // namespace sambalm::cli
