// `sambalm serve`: an OpenAI-compatible HTTP server (completions, chat completions, models, health,
// metrics) over one model, with continuous batching: every live request advances by one token per
// batched decode step (src/serve/scheduler.h), new requests join between steps.
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <thread>

#include "cli/command.h"
#include "cli/options.h"
#include "cli/run_env.h"
#include "cli/weights_option.h"
#include "core/error.h"
#include "infer/decode_model.h"
#include "io/model_dir.h"
#include "serve/chat_format.h"
#include "serve/server.h"

namespace sambalm::cli {
namespace {

struct ServeOpts {
  std::string model, config, tokenizer, name, host = "127.0.0.1", chat_format = "auto", weights_dtype;
  int64_t port = 8080, max_batch = 8, max_queue = 64, max_prompt_tokens = 8192, max_tokens = 4096,
          max_body_bytes = 8 << 20, chunk = 512, max_context = 0, threads = 0;
};

// The name clients use for the model: --model-name, else the model directory's (or file's) name.
std::string model_name(const ServeOpts& o) {
  if (!o.name.empty()) return o.name;
  std::filesystem::path p(o.model);
  if (!p.has_filename()) p = p.parent_path();
  const std::string n = p.filename().string();
  return n.empty() ? o.model : n;
}

int run(const ServeOpts& o) {
  apply_threads(o.threads);
  // SIGINT/SIGTERM are taken by one thread (sigwait) that stops the server; every other thread,
  // created after this, has them blocked. A client that hangs up must not kill the process (SIGPIPE).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  LoadedModel lm = load_model(o.model, o.config, {.keep_packed = true, .weights_dtype = o.weights_dtype});

  warn_if_packed_weights_are_slow(lm.params);
  if (lm.weights_path.empty())
    std::fprintf(stderr, "warning: '%s' is a preset or a config, not trained weights: the parameters are random\n",
                 o.model.c_str());
  std::unique_ptr<Tokenizer> tok;
  const std::string tok_path = o.tokenizer.empty() ? lm.tokenizer_path : o.tokenizer;
  if (!tok_path.empty()) tok = load_tokenizer(tok_path);
  // The chat format, decided before the (possibly long) start-up so that a bad choice fails at once.
  // Its template is beside the tokenizer's files, or in the model directory (the bytes tokenizer has none).
  const std::string template_dir = std::filesystem::exists(tok_path)        ? tok_path
                                   : std::filesystem::is_directory(o.model) ? o.model
                                                                            : std::string();
  const serve::ChatSetup chat = serve::choose_chat_format(
      o.chat_format, template_dir.empty() ? "" : serve::read_chat_template(template_dir), tok.get());
  if (chat.format == serve::ChatFormat::Unsupported)
    std::fprintf(stderr, "warning: chat completions are refused: %s\n", chat.why.c_str());
  DecodeOptions dopt;
  dopt.chunk = o.chunk;
  dopt.max_context = o.max_context;
  dopt.max_batch = dopt.slots = o.max_batch;
  DecodeModel dm(lm.config, lm.params.entries(), lm.params.data(), dopt);

  serve::Metrics metrics;
  serve::SchedulerOptions sopt;
  sopt.max_queue = o.max_queue;
  sopt.chunk = o.chunk;
  serve::ServerOptions hopt;
  hopt.host = o.host;
  hopt.port = int(o.port);
  hopt.max_body_bytes = o.max_body_bytes;
  hopt.http_threads = o.max_batch + o.max_queue + 4;  // every admitted or queued request can be waited on
  hopt.limits.model_ids = {model_name(o), o.model};
  hopt.limits.max_tokens = o.max_tokens;
  hopt.limits.max_prompt_tokens = o.max_prompt_tokens;
  hopt.limits.max_prompts = o.max_batch + o.max_queue;
  hopt.limits.vocab = sampling_vocab(lm.config, dm.vocab(), tok.get());
  hopt.limits.max_context = dm.layout()->max_context;
  hopt.limits.chat = chat;

  serve::Scheduler scheduler(dm, tok.get(), sopt, metrics);
  serve::Server server(scheduler, tok.get(), metrics, hopt);
  const int port = server.bind();
  std::printf("%d\n", port);
  std::fflush(stdout);
  std::fprintf(stderr, "serve: http://%s:%d/v1 model '%s' (%s), %lld slots, queue %lld, chat format %s; Ctrl-C stops\n",
               o.host.c_str(), port, hopt.limits.model_ids[0].c_str(), lm.config.name.c_str(), (long long)o.max_batch,
               (long long)o.max_queue, chat.name.c_str());
  std::thread([&server, stop_signals] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    std::fprintf(stderr, "serve: signal %d, stopping\n", sig);
    server.stop();
  }).detach();
  server.run();
  return 0;
}

Action add(CLI::App& app) {
  auto o = std::make_shared<ServeOpts>();
  auto* sub = app.add_subcommand("serve", "OpenAI-compatible HTTP server with continuous batching");
  sub->footer(
      "Routes: POST /v1/completions, POST /v1/chat/completions (both with \"stream\": true for server-sent\n"
      "events), GET /v1/models, GET /health, GET /metrics (Prometheus text); with a tokenizer also\n"
      "GET /tokenizer_info, POST /tokenize, POST /detokenize (vLLM's form: lm-eval's remote tokenizer).\n"
      "Completions take a prompt as a string, a list of strings, a list of token ids or a list of lists of ids,\n"
      "and max_tokens (default 16), temperature (default 1; 0 = greedy), top_p, top_k, min_p,\n"
      "repetition_penalty, seed, stop (a string or up to 16), logprobs (0-20 alternatives), echo, ignore_eos.\n"
      "echo + logprobs + max_tokens 0 scores a text (lm-eval's local-completions): each prompt token's logprob,\n"
      "null for the first. Logprobs are log-softmax of the model's logits (before sampling filters).\n"
      "Chat: the Phi-4 format when the tokenizer has <|user|>/<|assistant|>/<|end|>, else plain lines\n"
      "\"User: ...\\nAssistant:\" stopping at \"\\nUser:\" (docs/SERVE.md).\n"
      "Scheduling: --max-batch requests hold decode slots and advance together, one token per batched step;\n"
      "between steps up to --chunk prompt tokens are prefilled; further requests wait in a queue of --max-queue\n"
      "(then 429). A streaming client that disconnects frees its slot at once.\n"
      "The chosen port is printed on stdout (one line; useful with --port 0); one line per request goes to stderr.\n"
      "Example: sambalm serve -m run/model --port 8080 &\n"
      "  curl http://127.0.0.1:8080/v1/completions -d '{\"prompt\": \"Once\", \"max_tokens\": 20, \"temperature\": "
      "0}'");
  sub->add_option("--model,-m", o->model, "Model directory or weights file")->required();
  sub->add_option("--config", o->config, "config.json or preset for a bare weights file");
  sub->add_option("--tokenizer", o->tokenizer,
                  "tokenizer.json / tokenizer.model / 'bytes' (default: beside the model)");
  sub->add_option("--model-name", o->name, "Name clients give as \"model\" (default: the directory's name)");
  sub->add_option("--host", o->host, "Address to listen on")->capture_default_str();
  in_range<int64_t>(sub->add_option("--port", o->port, "TCP port (0: any free port)"), 0, 65535)->capture_default_str();
  in_range<int64_t>(sub->add_option("--max-batch", o->max_batch, "Requests decoded together (decode slots)"), 1, 4096)
      ->capture_default_str();
  in_range<int64_t>(sub->add_option("--max-queue", o->max_queue, "Requests waiting for a slot before 429"), 0, 65536)
      ->capture_default_str();
  in_range<int64_t>(sub->add_option("--max-prompt-tokens", o->max_prompt_tokens, "Longest prompt accepted, in tokens"),
                    1, int64_t(1) << 30)
      ->capture_default_str();
  in_range<int64_t>(sub->add_option("--max-tokens", o->max_tokens, "Largest max_tokens a request may ask for"), 1,
                    int64_t(1) << 30)
      ->capture_default_str();
  in_range<int64_t>(sub->add_option("--max-body-bytes", o->max_body_bytes, "Largest request body (413 beyond)"), 1024,
                    int64_t(1) << 32)
      ->capture_default_str();
  in_range<int64_t>(sub->add_option("--chunk", o->chunk, "Prompt tokens prefilled between two decode steps"), 1, 65536)
      ->capture_default_str();
  in_range<int64_t>(
      sub->add_option("--max-context", o->max_context, "Cache size of full-attention layers (0: block_size)"), 0,
      int64_t(1) << 30);
  in_range<int64_t>(sub->add_option("--threads", o->threads, "OpenMP threads (default: all cores)"), 1, 1024);
  sub->add_option("--chat-format", o->chat_format,
                  "How chat messages become a prompt: phi4 (<|user|>...<|end|><|assistant|>), plain (User: ...), or "
                  "auto: phi4 when the tokenizer has those tokens, plain when it has neither them nor a chat_template, "
                  "and chat refused (not guessed) when the model's chat_template is another format")
      ->check(CLI::IsMember({"auto", "phi4", "plain"}))
      ->capture_default_str();
  add_weights_dtype_option(sub, o->weights_dtype);
  return [o] {
    bound_openmp_spinning();
    return run(*o);
  };
}

}  // namespace
SAMBALM_REGISTER_COMMAND(37, add);
}  // namespace sambalm::cli
