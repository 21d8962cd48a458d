#include "infer/generator.h"

#include <algorithm>
#include <chrono>
#include <fstream>
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

Generator::Generator(DecodeModel& model, const Tokenizer* tok) : model_(model), tok_(tok) {}

std::vector<int32_t> Generator::encode(std::string_view text, bool add_bos) const {
  SAMBALM_CHECK(tok_ != nullptr, "generate: a text prompt needs a tokenizer (none found; pass --tokenizer)");
  std::vector<int32_t> ids;
  if (add_bos) {
    SAMBALM_CHECK(tok_->bos_id().has_value(), "generate: --bos given but tokenizer {} has no BOS token",
                  tok_->source());
    ids.push_back(*tok_->bos_id());
  }
  tok_->encode(text, ids);
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
  const ModelConfig& cfg = model_.config();
  // Padding rows of the head are never sampled (mamba_ssm slices logits to the real vocabulary).
  int64_t n_real = cfg.vocab_size > 0 ? std::min<int64_t>(cfg.vocab_size, V) : V;
  if (tok_) n_real = std::min<int64_t>(n_real, std::max<int64_t>(tok_->vocab_size(), 1));
  const int32_t eos = opt.eos_id >= 0 ? opt.eos_id : (tok_ && tok_->eos_id() ? *tok_->eos_id() : -1);

  // Validate every prompt before touching any state.
  std::vector<std::vector<int32_t>> feed(B);
  for (size_t i = 0; i < B; ++i) {
    feed[i] = sessions[i]->pending;
    feed[i].insert(feed[i].end(), prompts[i].begin(), prompts[i].end());
    SAMBALM_CHECK(!feed[i].empty(), "generate: prompt {} is empty (give at least one token; --bos adds one)", i);
    SAMBALM_CHECK(int64_t(prompts[i].size()) <= opt.max_prompt_tokens,
                  "generate: prompt {} has {} tokens, more than the limit of {} (--max-prompt)", i, prompts[i].size(),
                  opt.max_prompt_tokens);
    for (size_t j = 0; j < prompts[i].size(); ++j)
      SAMBALM_CHECK(prompts[i][j] >= 0 && prompts[i][j] < n_real,
                    "generate: prompt {} token {} has id {}, outside the vocabulary [0, {})", i, j, prompts[i][j],
                    n_real);
  }

  stats_ = {};
  logits_.resize(B * V);
  double t0 = now_s();
  for (size_t i = 0; i < B; ++i) {
    Session& s = *sessions[i];
    model_.prefill(s.state, feed[i].data(), int64_t(feed[i].size()), nullptr, logits_.data() + i * V);
    s.history.insert(s.history.end(), prompts[i].begin(), prompts[i].end());
    s.pending.clear();
    stats_.prompt_tokens += int64_t(feed[i].size());
  }
  stats_.prefill_seconds = now_s() - t0;

  std::vector<GenerationResult> results(B);
  std::vector<Sampler> samplers;
  std::vector<std::unique_ptr<StreamDecoder>> decoders;
  std::vector<std::string> text(B);
  std::vector<size_t> shown(B, 0);
  std::vector<bool> active(B, opt.max_tokens > 0);
  for (size_t i = 0; i < B; ++i) {
    SamplingParams sp = opt.sampling;
    sp.seed += i;
    samplers.emplace_back(sp);
    if (tok_) decoders.push_back(std::make_unique<StreamDecoder>(*tok_));
    results[i].prompt_tokens = int64_t(prompts[i].size());
    if (opt.max_tokens == 0) results[i].stop_reason = "max_tokens";
  }
  size_t max_stop = 0;
  for (const auto& s : opt.stop) max_stop = std::max(max_stop, s.size());

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
      if (!active[i]) continue;
      Session& s = *sessions[i];
      GenerationResult& r = results[i];
      const int32_t id = samplers[i].sample(logits_.data() + i * V, n_real, s.history);
      r.ids.push_back(id);
      s.history.push_back(id);
      ++stats_.generated_tokens;
      std::string_view stop_reason;
      size_t cut = std::string::npos;
      if (tok_) {
        const size_t before = text[i].size();
        text[i] += decoders[i]->push(id);
        if (!opt.stop.empty() && text[i].size() > before) {
          const size_t from = before >= max_stop ? before - max_stop + 1 : 0;
          for (const auto& st : opt.stop) {
            const size_t at = text[i].find(st, from);
            if (at != std::string::npos && at < cut) cut = at;
          }
          if (cut != std::string::npos) stop_reason = "stop";
        }
      }
      if (stop_reason.empty() && opt.stop_at_eos && id == eos) stop_reason = "eos";
      if (stop_reason.empty() && int64_t(r.ids.size()) >= opt.max_tokens) stop_reason = "max_tokens";
      if (!stop_reason.empty()) {
        active[i] = false;
        r.stop_reason = std::string(stop_reason);
        s.pending.push_back(id);  // a later turn feeds it first
        if (tok_ && cut == std::string::npos) text[i] += decoders[i]->flush();
        if (cut != std::string::npos) text[i].resize(cut);
        if (on_text && text[i].size() > shown[i]) on_text(i, std::string_view(text[i]).substr(shown[i]));
        shown[i] = text[i].size();
        r.text = text[i];
        continue;
      }
      if (on_text) {
        const size_t safe = text[i].size() - stop_holdback(text[i], opt.stop);
        if (safe > shown[i]) on_text(i, std::string_view(text[i]).substr(shown[i], safe - shown[i]));
        shown[i] = std::max(shown[i], safe);
      }
      batch.push_back(&s.state);
      batch_tok.push_back(id);
      batch_idx.push_back(i);
    }
    if (batch.empty()) break;
    model_.step(batch.data(), int64_t(batch.size()), batch_tok.data(), step_logits.data());
    ++stats_.decode_steps;
    for (size_t j = 0; j < batch.size(); ++j)
      std::copy_n(step_logits.data() + j * V, V, logits_.data() + batch_idx[j] * V);
  }
  stats_.decode_seconds = now_s() - t0;
  return results;
}

}  // namespace sambalm
