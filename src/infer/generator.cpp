#include "infer/generator.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/error.h"

namespace sambalm {

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Length of the longest proper prefix of some stop string that `text` ends with: text that may
// still become a stop string and so must not be shown yet.
size_t stop_holdback(std::string_view text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const auto& s : stops) {
    for (size_t k = std::min(s.size() - 1, text.size()); k > hold; --k) {
      if (text.substr(text.size() - k) == std::string_view(s).substr(0, k)) {
        hold = k;
        break;
      }
    }
  }
  return hold;
}

// Sampling from NaN or Inf logits gives arbitrary ids (garbage text with exit 0); weights that
// overflow, or a state that went bad, must stop the run instead. One pass over the row: negligible
// next to the step that read every weight to produce it.
void check_finite(const float* logits, int64_t n, size_t seq, int64_t pos) {
  for (int64_t v = 0; v < n; ++v)
    SAMBALM_CHECK(std::isfinite(logits[v]),
                  "generate: the model's logits are not finite (logit of id {} is {}) for sequence {} after {} "
                  "tokens: the weights or the activations overflow, so any text would be garbage",
                  v, logits[v], seq, pos);
}

}  // namespace

int64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      std::istringstream ss(line.substr(6));
      int64_t kb = 0;
      ss >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

GenerationMemory estimate_generation_memory(const ModelConfig& cfg, int64_t max_context, int64_t batch) {
  GenerationMemory m;
  auto layout = DecodeLayout::make(cfg, max_context > 0 ? max_context : cfg.block_size);
  m.state_bytes = layout->floats * int64_t(sizeof(float));
  for (const auto& s : layout->subs)
    if (s.kind == SublayerKind::Attention) m.attention_bytes += 2 * layout->n_kv * s.cap * layout->head_size * 4;
  const int64_t V = cfg.padded_vocab_size, d = cfg.n_embd, di = cfg.d_inner(), hs = cfg.head_size;
  const int64_t H = cfg.n_head, G = cfg.n_query_groups;
  // The decode step's buffers per sequence (Model::layout_cached; an upper bound: the sublayer kinds
  // share one region there, summed here): the residual stream, its norm and the sublayer output, the
  // widest projection three times, the Mamba rows and the attention rows.
  const int64_t widest = std::max({2 * di, 2 * cfg.intermediate_size, (H + 2 * G) * hs, int64_t(1)});
  const int64_t scratch = 3 * d + 3 * widest + 6 * di + cfg.mamba_dt_rank() + 2 * cfg.d_state + 2 * (H + G) * hs + hs;
  // Logits of the last step and of the step before sampling (2 x V floats); the sampler's penalised
  // logits (float), candidates (float + int32) and probabilities (double) over the vocabulary.
  m.per_sequence = m.state_bytes + 2 * V * 4 + V * 20 + scratch * 4;
  const int64_t limit = std::numeric_limits<int64_t>::max();
  m.total = batch > 0 && m.per_sequence > limit / batch ? limit : m.per_sequence * batch;
  return m;
}

int64_t available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("MemAvailable:", 0) == 0) {
      std::istringstream ss(line.substr(13));
      int64_t kb = 0;
      ss >> kb;
      if (kb > 0) return kb * 1024;
    }
  }
  const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? int64_t(pages) * page : 0;
}

int64_t sampling_vocab(const ModelConfig& cfg, int64_t padded_vocab, const Tokenizer* tok) {
  // Padding rows of the head are never sampled (mamba_ssm slices logits to the real vocabulary).
  int64_t n = cfg.vocab_size > 0 ? std::min<int64_t>(cfg.vocab_size, padded_vocab) : padded_vocab;
  if (tok) n = std::min<int64_t>(n, std::max<int64_t>(tok->vocab_size(), 1));
  return n;
}

int32_t end_id(const GenerateOptions& opt, const Tokenizer* tok) {
  return opt.eos_id >= 0 ? opt.eos_id : (tok && tok->eos_id() ? *tok->eos_id() : -1);
}

SequenceDecoder::SequenceDecoder(const Tokenizer* tok, const GenerateOptions& opt, const SamplingParams& sampling,
                                 int32_t eos)
    : tok_(tok),
      stop_(opt.stop),
      stop_at_eos_(opt.stop_at_eos),
      eos_(eos),
      max_tokens_(opt.max_tokens),
      interrupt_(opt.interrupt),
      sampler_(sampling) {
  for (const auto& s : stop_) {
    SAMBALM_CHECK(!s.empty(), "generate: empty stop string");
    max_stop_ = std::max(max_stop_, s.size());
  }
  if (tok_) decoder_ = std::make_unique<StreamDecoder>(*tok_);
  if (max_tokens_ <= 0) result_.stop_reason = "max_tokens";
}

std::string_view SequenceDecoder::next(const float* logits, int64_t n, std::vector<int32_t>& history) {
  SAMBALM_CHECK(!done(), "generate: the sequence has ended ({})", result_.stop_reason);
  const int32_t id = sampler_.sample(logits, n, history);
  result_.ids.push_back(id);
  history.push_back(id);
  std::string_view stop_reason;
  size_t cut = std::string::npos;
  if (tok_) {
    const size_t before = text_.size();
    text_ += decoder_->push(id);
    if (!stop_.empty() && text_.size() > before) {
      const size_t from = before >= max_stop_ ? before - max_stop_ + 1 : 0;
      for (const auto& st : stop_) {
        const size_t at = text_.find(st, from);
        if (at != std::string::npos && at < cut) cut = at;
      }
      if (cut != std::string::npos) stop_reason = "stop";
    }
  }
  if (stop_reason.empty() && stop_at_eos_ && id == eos_) stop_reason = "eos";
  if (stop_reason.empty() && int64_t(result_.ids.size()) >= max_tokens_) stop_reason = "max_tokens";
  if (stop_reason.empty() && interrupt_ && interrupt_->load()) stop_reason = "interrupted";
  if (!stop_reason.empty()) {
    result_.stop_reason = std::string(stop_reason);
    if (tok_ && cut == std::string::npos) text_ += decoder_->flush();
    if (cut != std::string::npos) text_.resize(std::max(cut, shown_));
    result_.text = text_;
    const size_t from = shown_;
    shown_ = text_.size();
    return std::string_view(text_).substr(from);
  }
  const size_t safe = text_.size() - stop_holdback(text_, stop_);
  if (safe <= shown_) return {};
  const size_t from = shown_;
  shown_ = safe;
  return std::string_view(text_).substr(from, safe - from);
}

Generator::Generator(DecodeModel& model, const Tokenizer* tok)
    : own_(std::make_unique<DecodeEngineOf<DecodeModel>>(model)), model_(*own_), tok_(tok) {}

Generator::Generator(DecodeEngine& engine, const Tokenizer* tok) : model_(engine), tok_(tok) {}

std::vector<int32_t> Generator::encode(std::string_view text, bool add_bos, const std::string& input) const {
  SAMBALM_CHECK(tok_ != nullptr, "generate: a text prompt needs a tokenizer (none found; pass --tokenizer)");
  std::vector<int32_t> ids;
  if (add_bos) {
    SAMBALM_CHECK(tok_->bos_id().has_value(), "generate: --bos given but tokenizer {} has no BOS token",
                  tok_->source());
    ids.push_back(*tok_->bos_id());
  }
  encode_input(*tok_, text, input, ids);
  return ids;
}

void Generator::flush_pending(Session& s) {
  if (s.pending.empty()) return;
  model_.prefill(s.state, s.pending.data(), int64_t(s.pending.size()), nullptr, nullptr);
  s.pending.clear();
}

std::vector<GenerationResult> Generator::run(std::vector<Session*>& sessions,
                                             const std::vector<std::vector<int32_t>>& prompts,
                                             const GenerateOptions& opt, const TextCallback& on_text) {
  SAMBALM_CHECK(sessions.size() == prompts.size() && !sessions.empty(), "generate: {} sessions for {} prompts",
                sessions.size(), prompts.size());
  opt.sampling.validate();
  SAMBALM_CHECK(opt.max_tokens >= 0, "generate: max tokens must be >= 0, got {}", opt.max_tokens);
  for (const auto& s : opt.stop) SAMBALM_CHECK(!s.empty(), "generate: empty stop string");
  const size_t B = sessions.size();
  const int64_t V = model_.vocab();
  const int64_t n_real = sampling_vocab(model_.config(), V, tok_);
  const int32_t eos = end_id(opt, tok_);

  // Validate every prompt before touching any state.
  std::vector<std::vector<int32_t>> feed(B);
  for (size_t i = 0; i < B; ++i) {
    feed[i] = sessions[i]->pending;
    feed[i].insert(feed[i].end(), prompts[i].begin(), prompts[i].end());
    SAMBALM_CHECK(!feed[i].empty() || sessions[i]->state.pos() == 0,
                  "generate: no prompt, and the state of sequence {} has consumed all of its {} tokens (its last "
                  "logits are not kept): give a prompt to continue from it",
                  i, sessions[i]->state.pos());
    SAMBALM_CHECK(!feed[i].empty(), "generate: prompt {} is empty (give at least one token; --bos adds one)", i);
    SAMBALM_CHECK(int64_t(prompts[i].size()) <= opt.max_prompt_tokens,
                  "generate: prompt {} has {} tokens, more than the limit of {} (--max-prompt)", i, prompts[i].size(),
                  opt.max_prompt_tokens);
    for (size_t j = 0; j < prompts[i].size(); ++j)
      SAMBALM_CHECK(prompts[i][j] >= 0 && prompts[i][j] < n_real,
                    "generate: prompt {} token {} has id {}, outside the vocabulary [0, {})", i, j, prompts[i][j],
                    n_real);
  }

  // A full-attention cache is checked before any work: failing at token 90 of 100 would waste the
  // run. The prompt and every generated token but the last (which stays pending) take a position.
  const int64_t cache = model_.layout()->max_context;
  if (cache > 0) {
    for (size_t i = 0; i < B; ++i) {
      const int64_t need =
          sessions[i]->state.pos() + int64_t(feed[i].size()) + std::max<int64_t>(0, opt.max_tokens - 1);
      SAMBALM_CHECK(need <= cache,
                    "generate: sequence {} needs {} positions (context {} + prompt {} + {} new tokens), more than the "
                    "full-attention cache of {} positions; raise --max-context (memory grows with it) or lower "
                    "--max-tokens",
                    i, need, sessions[i]->state.pos(), feed[i].size(), opt.max_tokens, cache);
    }
  }

  stats_ = {};
  logits_.resize(B * V);
  double t0 = now_s();
  for (size_t i = 0; i < B; ++i) {
    Session& s = *sessions[i];
    model_.prefill(s.state, feed[i].data(), int64_t(feed[i].size()), nullptr, logits_.data() + i * V);
    check_finite(logits_.data() + i * V, n_real, i, s.state.pos());
    s.history.insert(s.history.end(), prompts[i].begin(), prompts[i].end());
    s.pending.clear();
    stats_.prompt_tokens += int64_t(feed[i].size());
  }
  stats_.prefill_seconds = now_s() - t0;

  std::vector<SequenceDecoder> seqs;
  seqs.reserve(B);
  for (size_t i = 0; i < B; ++i) {
    SamplingParams sp = opt.sampling;
    sp.seed += i;
    seqs.emplace_back(tok_, opt, sp, eos);
    seqs.back().result().prompt_tokens = int64_t(prompts[i].size());
  }

  std::vector<DecodeState*> batch;
  std::vector<int32_t> batch_tok;
  std::vector<size_t> batch_idx;
  std::vector<float> step_logits(B * V);
  t0 = now_s();
  for (;;) {
    batch.clear();
    batch_tok.clear();
    batch_idx.clear();
    for (size_t i = 0; i < B; ++i) {
      if (seqs[i].done()) continue;
      Session& s = *sessions[i];
      const std::string_view shown = seqs[i].next(logits_.data() + i * V, n_real, s.history);
      ++stats_.generated_tokens;
      if (on_text && !shown.empty()) on_text(i, shown);
      if (seqs[i].done()) {
        s.pending.push_back(seqs[i].result().ids.back());  // a later turn feeds it first
        continue;
      }
      const int32_t id = seqs[i].result().ids.back();
      batch.push_back(&s.state);
      batch_tok.push_back(id);
      batch_idx.push_back(i);
    }
    if (batch.empty()) break;
    model_.step(batch.data(), int64_t(batch.size()), batch_tok.data(), step_logits.data());
    ++stats_.decode_steps;
    for (size_t j = 0; j < batch.size(); ++j) {
      check_finite(step_logits.data() + j * V, n_real, batch_idx[j], batch[j]->pos());
      std::copy_n(step_logits.data() + j * V, V, logits_.data() + batch_idx[j] * V);
    }
  }
  stats_.decode_seconds = now_s() - t0;
  std::vector<GenerationResult> results;
  for (auto& q : seqs) results.push_back(std::move(q.result()));
  return results;
}

}  // namespace sambalm
