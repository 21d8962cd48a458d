// `sambalm train`: train a Samba / Mamba model from scratch or fine-tune one, on token data or a raw
// text file. Every knob of the run is an option here (scripts call these names).
#include <omp.h>

#include <cmath>
#include <cstdio>

#include "cli/command.h"
#include "train/trainer.h"

namespace sambalm::cli {
namespace {

template <typename T>
void opt_optional(CLI::App* sub, const std::string& name, std::optional<T>& dst, const std::string& help) {
  sub->add_option_function<T>(
      name, [&dst](const T& v) { dst = v; }, help);
}

Action add(CLI::App& app) {
  auto o = std::make_shared<TrainOptions>();
  auto* sub =
      app.add_subcommand("train", "Train a model (from scratch, fine-tune, or resume) and write a run directory");
  sub->footer(
      "Model: --model is a preset name (e.g. Samba_421M, mamba-130m) or a config.json, initialised as the original\n"
      "code does (pretrain.py _init_weights with mamba_init); the shape options override it, e.g.\n"
      "  --model Samba_421M --n-layer 4 --n-embd 128 --n-head 4 --intermediate-size 256 --local-window 64\n"
      "--init-from DIR starts from a model directory's weights instead (fine-tuning).\n"
      "Data: --data FILE --tokenizer bytes trains on a file's bytes (character level); with a tokenizer.json /\n"
      "tokenizer.model the file is tokenized first. The last --val-fraction of the tokens validate.\n"
      "Defaults follow microsoft/Samba pretrain.py: AdamW betas 0.9/0.95, eps 1e-8, weight decay 0.1 on every\n"
      "parameter, gradient norm clipped at 1.0, lr linear from 0 over --warmup steps then cosine to --min-lr.\n"
      "\n"
      "The run directory (--out) gets: metrics.jsonl (one JSON object per step: step, loss, lr, tokens_per_s,\n"
      "grad_norm, and val_loss/val_ppl/val_bpb on evaluation steps), samples.txt, checkpoints/step_N/ (a model\n"
      "directory + trainer_state.safetensors; the newest --keep-last are kept) and, at the end, model/ (the\n"
      "final model). Ctrl-C saves a checkpoint and exits; the same command with --resume continues exactly.\n"
      "`sambalm plot RUN_DIR` draws the curves.");
  sub->add_option("--model,-m", o->model, "Preset name or config.json to train from scratch");
  sub->add_option("--init-from", o->init_from, "Model directory whose weights to start from (fine-tune)");
  opt_optional(sub, "--n-layer", o->n_layer, "Override: number of blocks");
  opt_optional(sub, "--n-embd", o->n_embd, "Override: model width (the MLP width scales with it unless given)");
  opt_optional(sub, "--n-head", o->n_head, "Override: attention heads");
  opt_optional(sub, "--n-query-groups", o->n_query_groups, "Override: key/value heads (GQA)");
  opt_optional(sub, "--intermediate-size", o->intermediate_size, "Override: MLP hidden size");
  opt_optional(sub, "--local-window", o->local_window, "Override: sliding-window size of attention layers");
  opt_optional(sub, "--vocab-size", o->vocab_size, "Override: vocabulary size (padded to padding_multiple)");

  sub->add_option("--data,-d", o->data,
                  "Training data: a raw text file (with --tokenizer) or a shard directory from `prepare`")
      ->required();
  sub->add_option("--val-data", o->val_data, "Separate validation data (default: the tail of --data)");
  sub->add_option("--tokenizer,-t", o->tokenizer, "bytes, or a tokenizer.json / tokenizer.model / directory");
  sub->add_option("--val-fraction", o->val_fraction, "Share of the data kept for validation")->capture_default_str();

  sub->add_option("--seq-len", o->seq_len, "Training context length (default: the model's block_size)");
  sub->add_option("--batch,-b", o->batch, "Sequences per micro-batch")->capture_default_str();
  sub->add_option("--grad-accum", o->grad_accum, "Micro-batches per optimizer step")->capture_default_str();
  sub->add_option("--steps", o->steps, "Optimizer steps (also the end of the cosine decay)")->capture_default_str();
  sub->add_option("--lr", o->lr, "Peak learning rate")->capture_default_str();
  opt_optional(sub, "--min-lr", o->min_lr, "Final learning rate of the cosine (default lr/10)");
  opt_optional(sub, "--warmup", o->warmup, "Linear warmup steps from 0 (default steps/10)");
  sub->add_option("--weight-decay", o->weight_decay, "AdamW decoupled weight decay")->capture_default_str();
  sub->add_flag("!--decay-all,--decay-matrices-only", o->decay_all,
                "Exclude norms, biases, embeddings, A_log and D from weight decay (Mamba's recipe)");
  sub->add_option("--beta1", o->beta1, "AdamW beta1")->capture_default_str();
  sub->add_option("--beta2", o->beta2, "AdamW beta2")->capture_default_str();
  sub->add_option("--eps", o->eps, "AdamW epsilon")->capture_default_str();
  sub->add_option("--grad-clip", o->grad_clip, "Clip the global gradient norm to this (0: off)")->capture_default_str();
  sub->add_option("--seed", o->seed, "Seed of initialisation, batches and samples")->capture_default_str();

  sub->add_option("--eval-every", o->eval_every, "Validate every N steps (0: never)")->capture_default_str();
  sub->add_option("--eval-batches", o->eval_batches, "Fixed validation batches per evaluation")->capture_default_str();
  sub->add_option("--eval-lengths", o->eval_lengths, "Also validate at these context lengths (e.g. 4096,8192)")
      ->delimiter(',');
  sub->add_option("--final-eval", o->final_eval,
                  "At the end: sampled (the fixed batches), full (every window of the validation split), none")
      ->capture_default_str();
  sub->add_option("--save-every", o->save_every, "Checkpoint every N steps (0: only at the end / on Ctrl-C)")
      ->capture_default_str();
  sub->add_option("--keep-last", o->keep_last, "Checkpoints to keep (0: all)")->capture_default_str();
  sub->add_option("--sample-every", o->sample_every, "Print a generated sample every N steps (0: never)")
      ->capture_default_str();
  sub->add_option("--sample-tokens", o->sample_tokens, "Length of each sample in tokens")->capture_default_str();
  sub->add_option("--temperature", o->temperature, "Sampling temperature (0: greedy)")->capture_default_str();
  sub->add_option("--prompt", o->prompt, "Sample prompt (default: the start of the validation split)");

  sub->add_option("--out,-o", o->out, "Run directory")->required();
  sub->add_flag("--resume", o->resume, "Continue from the newest checkpoint in --out");
  sub->add_option("--stop-after", o->stop_after, "Stop (with a checkpoint) after N steps of this invocation");
  sub->add_option("--max-bad-steps", o->max_bad_steps, "Stop after this many NaN/Inf steps in a row")
      ->capture_default_str();
  sub->add_option("--log-every", o->log_every, "Plain progress line every N steps when not on a terminal")
      ->capture_default_str();
  auto threads = std::make_shared<int>(0);
  sub->add_option("--threads", *threads, "OpenMP threads (default: all cores)");
  sub->add_flag("--quiet,-q", o->quiet, "No progress output");
  return [o, threads] {
    if (*threads > 0) omp_set_num_threads(*threads);
    TrainResult r = train(*o);
    if (!o->quiet) {
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
