// Multiple choice by log-likelihood (see multiple_choice.h).
#include "eval/multiple_choice.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "io/file.h"

namespace sambalm {
namespace {

// splitmix64: a fixed, documented generator, so few-shot draws are the same on every platform.
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

template <typename F>
int64_t argmax(size_t n, F value) {
  int64_t best = 0;
  for (size_t j = 1; j < n; ++j)
    if (value(j) > value(size_t(best))) best = int64_t(j);
  return best;
}

double stderr_of_mean(double p, size_t n) { return n > 1 ? std::sqrt(p * (1 - p) / double(n - 1)) : 0.0; }

}  // namespace

std::vector<McItem> read_mc_tasks(const std::string& path) {
  std::istringstream in(read_text_file(path));
  std::vector<McItem> items;
  std::string line;
  for (int64_t lineno = 1; std::getline(in, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      fail("{}:{}: not valid JSON (at column {})", path, lineno, e.byte);
    }
    SAMBALM_CHECK(j.is_object(), "{}:{}: expected a JSON object {{\"context\", \"choices\", \"label\"}}", path, lineno);
    McItem it;
    SAMBALM_CHECK(j.contains("context") && j["context"].is_string(), "{}:{}: 'context' must be a string", path, lineno);
    it.context = j["context"].get<std::string>();
    SAMBALM_CHECK(j.contains("choices") && j["choices"].is_array(), "{}:{}: 'choices' must be a list of strings", path,
                  lineno);
    for (const auto& c : j["choices"]) {
      SAMBALM_CHECK(c.is_string(), "{}:{}: 'choices' must be a list of strings", path, lineno);
      it.choices.push_back(c.get<std::string>());
    }
    SAMBALM_CHECK(it.choices.size() >= 2, "{}:{}: 'choices' needs at least 2 entries, found {}", path, lineno,
                  it.choices.size());
    for (size_t c = 0; c < it.choices.size(); ++c)
      SAMBALM_CHECK(!it.choices[c].empty(), "{}:{}: choice {} is empty", path, lineno, c);
    SAMBALM_CHECK(j.contains("label") && j["label"].is_number_integer(), "{}:{}: 'label' must be an integer", path,
                  lineno);
    it.label = j["label"].get<int64_t>();
    SAMBALM_CHECK(it.label >= 0 && it.label < int64_t(it.choices.size()),
                  "{}:{}: label {} is out of range: there are {} choices (labels 0..{})", path, lineno, it.label,
                  it.choices.size(), it.choices.size() - 1);
    if (j.contains("target_delimiter")) {
      SAMBALM_CHECK(j["target_delimiter"].is_string(), "{}:{}: 'target_delimiter' must be a string", path, lineno);
      it.target_delimiter = j["target_delimiter"].get<std::string>();
    }
    items.push_back(std::move(it));
  }
  SAMBALM_CHECK(!items.empty(), "{}: no task items (one JSON object per line expected)", path);
  return items;
}

std::string mc_fewshot_context(const std::vector<McItem>& items, size_t i, int64_t fewshot, uint64_t seed) {
  if (fewshot <= 0) return items[i].context;
  SAMBALM_CHECK(size_t(fewshot) < items.size(), "--fewshot {}: the task has {} items, so at most {} others", fewshot,
                items.size(), items.size() - 1);
  // A partial Fisher-Yates shuffle of the other items, seeded by (seed, i).
  std::vector<size_t> others;
  for (size_t k = 0; k < items.size(); ++k)
    if (k != i) others.push_back(k);
  uint64_t state = seed ^ (0xA0761D6478BD642Full * (uint64_t(i) + 1));
  std::string ctx;
  for (int64_t k = 0; k < fewshot; ++k) {
    const size_t pick = size_t(k) + size_t(splitmix64(state) % (others.size() - size_t(k)));
    std::swap(others[size_t(k)], others[pick]);
    const McItem& ex = items[others[size_t(k)]];
    ctx += ex.context + ex.target_delimiter + ex.choices[size_t(ex.label)] + "\n\n";
  }
  return ctx + items[i].context;
}

McRequest mc_encode(const Tokenizer& tok, const std::string& context, const std::string& continuation) {
  McRequest r;
  if (context.empty()) {
    const auto prefix = tok.bos_id() ? tok.bos_id() : tok.eos_id();
    SAMBALM_CHECK(prefix.has_value(),
                  "multiple choice: an empty context needs a BOS or EOS token to condition on; tokenizer {} has none",
                  tok.source());
    r.ids.push_back(*prefix);
    r.context_tokens = 1;
    encode_input(tok, continuation, "a choice", r.ids);
  } else {
    const size_t keep = context.find_last_not_of(' ') + 1;  // trailing spaces go to the continuation
    const std::string ctx = context.substr(0, keep), cont = context.substr(keep) + continuation;
    std::vector<int32_t> ctx_ids;
    encode_input(tok, ctx, "a context", ctx_ids);
    encode_input(tok, ctx + cont, "a context and choice", r.ids);
    r.context_tokens = std::min<int64_t>(int64_t(ctx_ids.size()), int64_t(r.ids.size()));
  }
  SAMBALM_CHECK(r.context_tokens >= 1, "multiple choice: the context has no tokens");
  SAMBALM_CHECK(int64_t(r.ids.size()) > r.context_tokens, "multiple choice: a choice has no tokens");
  return r;
}

McResult evaluate_mc(Scorer& scorer, const Tokenizer& tok, const std::vector<McItem>& items, int64_t fewshot,
                     int64_t limit, uint64_t seed) {
  const size_t n = limit > 0 ? std::min(items.size(), size_t(limit)) : items.size();
  McResult res;
  DecodeState& st = scorer.state();
  std::vector<char> saved(static_cast<size_t>(st.bytes()));
  size_t correct = 0, correct_norm = 0;
  for (size_t i = 0; i < n; ++i) {
    const McItem& it = items[i];
    const std::string ctx = mc_fewshot_context(items, i, fewshot, seed);
    std::vector<McRequest> reqs;
    for (const auto& c : it.choices) reqs.push_back(mc_encode(tok, ctx, it.target_delimiter + c));
    // The inputs every choice shares and does not score: prefilled once, then copied per choice.
    int64_t shared = reqs[0].context_tokens - 1;
    for (const auto& r : reqs) {
      int64_t k = 0;
      while (k < shared && k < r.context_tokens - 1 && r.ids[size_t(k)] == reqs[0].ids[size_t(k)]) ++k;
      shared = k;
    }
    st.reset();
    if (shared > 0) scorer.model().prefill(st, reqs[0].ids.data(), shared, nullptr, nullptr);
    st.copy_out(saved.data());
    McItemResult r;
    r.label = it.label;
    for (const auto& q : reqs) {
      st.copy_in(saved.data());
      st.set_pos(shared);
      r.loglik.push_back(-scorer.score_continued(q.ids.data(), int64_t(q.ids.size()), q.context_tokens));
    }
    r.pred = argmax(r.loglik.size(), [&](size_t j) { return r.loglik[j]; });
    r.pred_norm = argmax(r.loglik.size(), [&](size_t j) { return r.loglik[j] / double(it.choices[j].size()); });
    correct += r.pred == r.label;
    correct_norm += r.pred_norm == r.label;
    res.items.push_back(std::move(r));
  }
  res.acc = double(correct) / double(n);
  res.acc_norm = double(correct_norm) / double(n);
  res.acc_stderr = stderr_of_mean(res.acc, n);
  res.acc_norm_stderr = stderr_of_mean(res.acc_norm, n);
  return res;
}

}  // namespace sambalm
