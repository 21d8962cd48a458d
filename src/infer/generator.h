// Generation: prompts in, sampled continuations out, for a batch of sequences decoded together.
//
// Each sequence is a Session (its DecodeState, the ids it has seen, and the ids sampled but not yet
// fed to the model). A run prefills each session's new ids (chunked), then repeats: sample one token
// per active sequence (Sampler, history = every id the session has seen, as mamba_ssm's repetition
// penalty), check the stop conditions (eos, a stop string in the decoded text, max tokens), and feed
// the surviving sequences' tokens to one batched decode step. Text is decoded incrementally
// (StreamDecoder: never half a UTF-8 character) and handed to a callback as it becomes final; text
// that could still turn out to be the start of a stop string is held back until it cannot.
// Sessions persist, so an interactive conversation continues from its state without re-reading.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "infer/decode_model.h"
#include "infer/sampler.h"
#include "tokenizer/tokenizer.h"

namespace sambalm {

struct GenerateOptions {
  SamplingParams sampling;                       // sequence i samples with seed sampling.seed + i
  int64_t max_tokens = 128;                      // new tokens per sequence
  std::vector<std::string> stop;                 // stop strings (not included in the text)
  bool stop_at_eos = true;                       // tokenizer's eos (or eos_id below)
  int32_t eos_id = -1;                           // overrides the tokenizer's eos when >= 0
  int64_t max_prompt_tokens = int64_t(1) << 20;  // longer prompts are an error
  // Set (e.g. by a SIGINT handler) to stop generating: every active sequence ends with stop reason
  // "interrupted" after the step in progress, keeping what it has generated so far.
  const std::atomic<bool>* interrupt = nullptr;
};

struct Session {
  explicit Session(DecodeState st) : state(std::move(st)) {}
  DecodeState state;
  std::vector<int32_t> history;  // every id seen: consumed by the state, then `pending`
  std::vector<int32_t> pending;  // sampled ids not yet fed to the model (the last token of a turn)
};

struct GenerationResult {
  std::vector<int32_t> ids;  // generated ids (including a final eos)
  std::string text;          // their text, cut before a stop string
  std::string stop_reason;   // "eos", "stop", "max_tokens", "interrupted"
  int64_t prompt_tokens = 0;
};

struct GenerationStats {
  int64_t prompt_tokens = 0, generated_tokens = 0, decode_steps = 0;
  double prefill_seconds = 0, decode_seconds = 0;
  double prefill_tok_s() const { return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0; }
  double decode_tok_s() const { return decode_seconds > 0 ? generated_tokens / decode_seconds : 0; }
};

// Peak resident set size of this process in bytes (VmHWM), 0 when unknown.
int64_t peak_rss_bytes();

// Memory that decoding `batch` sequences of `cfg` takes beyond the weights, estimated before any of it
// is allocated: per sequence its DecodeState (Mamba conv + SSM states, attention rings of `window`
// keys and values, full-attention caches of `max_context`), two rows of logits, the sampler's work
// arrays over the vocabulary and the decode step's scratch rows.
struct GenerationMemory {
  int64_t state_bytes = 0;      // one sequence's DecodeState
  int64_t attention_bytes = 0;  // of which attention rings / caches
  int64_t per_sequence = 0;     // state + logits + sampler + step scratch, one sequence
  int64_t total = 0;            // per_sequence x batch (saturating: never overflows)
};
GenerationMemory estimate_generation_memory(const ModelConfig& cfg, int64_t max_context, int64_t batch);
// Physical memory available to this process (MemAvailable of /proc/meminfo, else free pages), 0 when unknown.
int64_t available_memory_bytes();

// One sequence's sampling and stopping, token by token: what Generator::run does for each sequence of
// its batch, and what the server does for each request between the decode steps it shares with others.
// Holds the sampler, the incremental text and the stop checks (a stop string in the text, eos, max
// tokens, an interrupt); text that could still become a stop string is held back until it cannot.
class SequenceDecoder {
 public:
  // `sampling` is the sequence's own (its seed included); `eos` < 0: none. `tok` may be null.
  SequenceDecoder(const Tokenizer* tok, const GenerateOptions& opt, const SamplingParams& sampling, int32_t eos);
  // Samples the next id from logits[0..n) given `history` (the ids seen so far; the new id is appended
  // to it and to result().ids) and returns the text that became final with it (possibly none). After
  // it, done() tells whether the sequence ended (result().stop_reason set, result().text complete).
  std::string_view next(const float* logits, int64_t n, std::vector<int32_t>& history);
  bool done() const { return !result_.stop_reason.empty(); }
  const GenerationResult& result() const { return result_; }
  GenerationResult& result() { return result_; }

 private:
  const Tokenizer* tok_;
  std::vector<std::string> stop_;
  size_t max_stop_ = 0;
  bool stop_at_eos_;
  int32_t eos_;
  int64_t max_tokens_;
  const std::atomic<bool>* interrupt_;
  Sampler sampler_;
  std::unique_ptr<StreamDecoder> decoder_;
  std::string text_;
  size_t shown_ = 0;
  GenerationResult result_;
};

// The ids a model may produce: its real vocabulary (not the padding rows of the head), bounded by the
// tokenizer's when there is one.
int64_t sampling_vocab(const ModelConfig& cfg, int64_t padded_vocab, const Tokenizer* tok);
// The id that ends a sequence: opt.eos_id when >= 0, else the tokenizer's eos, else -1.
int32_t end_id(const GenerateOptions& opt, const Tokenizer* tok);

// What a Generator needs of a decode model: DecodeModel (the CPU engine) or DeviceDecodeModel<T> (a
// GPU's), through DecodeEngineOf. The calls are theirs (decode_model.h): logits are host arrays.
class DecodeEngine {
 public:
  virtual ~DecodeEngine() = default;
  virtual const ModelConfig& config() const = 0;
  virtual int64_t vocab() const = 0;
  virtual const std::shared_ptr<const DecodeLayout>& layout() const = 0;
  virtual DecodeState new_state() = 0;
  virtual void prefill(DecodeState& st, const int32_t* tokens, int64_t n, float* all_logits, float* last_logits) = 0;
  virtual void step(DecodeState* const* states, int64_t B, const int32_t* tokens, float* logits) = 0;
};

template <typename M>
class DecodeEngineOf final : public DecodeEngine {
 public:
  explicit DecodeEngineOf(M& m) : m_(m) {}
  const ModelConfig& config() const override { return m_.config(); }
  int64_t vocab() const override { return m_.vocab(); }
  const std::shared_ptr<const DecodeLayout>& layout() const override { return m_.layout(); }
  DecodeState new_state() override { return m_.new_state(); }
  void prefill(DecodeState& st, const int32_t* tokens, int64_t n, float* all_logits, float* last_logits) override {
    m_.prefill(st, tokens, n, all_logits, last_logits);
  }
  void step(DecodeState* const* states, int64_t B, const int32_t* tokens, float* logits) override {
    m_.step(states, B, tokens, logits);
  }

 private:
  M& m_;
};

class Generator {
 public:
  using TextCallback = std::function<void(size_t seq, std::string_view text)>;
  // `tok` may be null (ids in, ids out; stop strings then never match).
  Generator(DecodeModel& model, const Tokenizer* tok);
  // Any engine (a GPU's); it must outlive the Generator.
  Generator(DecodeEngine& engine, const Tokenizer* tok);

  Session new_session() const { return Session(model_.new_state()); }
  // Prompt ids of a text (Error: empty or too long is checked in run()).
  // `input` names the text in errors (e.g. invalid UTF-8 at a byte offset of it).
  std::vector<int32_t> encode(std::string_view text, bool add_bos, const std::string& input = "the prompt") const;

  // Feeds prompts[i] to sessions[i] (after its pending ids) and generates for all of them.
  std::vector<GenerationResult> run(std::vector<Session*>& sessions, const std::vector<std::vector<int32_t>>& prompts,
                                    const GenerateOptions& opt, const TextCallback& on_text = {});
  const GenerationStats& stats() const { return stats_; }
  // Feeds a session's pending ids to its state (e.g. before saving it).
  void flush_pending(Session& s);

 private:
  std::unique_ptr<DecodeEngine> own_;  // the adapter of a DecodeModel
  DecodeEngine& model_;
  const Tokenizer* tok_;
  GenerationStats stats_;
  std::vector<float> logits_;
};

}  // namespace sambalm
