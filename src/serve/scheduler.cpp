#include "serve/scheduler.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "serve/logprobs.h"

namespace sambalm::serve {

struct Scheduler::Live {
  std::shared_ptr<Job> job;
  DecodeState state;
  std::unique_ptr<SequenceDecoder> seq;
  std::vector<int32_t> history;  // prompt + generated: the repetition penalty's ids
  size_t prefilled = 0;          // prompt tokens consumed
  int32_t feed = -1;             // the sampled token the next decode step consumes (-1: none)
  std::vector<TokenInfo> prompt_info;
};

namespace {
using Clock = std::chrono::steady_clock;
int64_t micros_since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
}
}  // namespace

Scheduler::Scheduler(DecodeModel& model, const Tokenizer* tok, const SchedulerOptions& opt, Metrics& metrics)
    : model_(model), tok_(tok), opt_(opt), metrics_(metrics) {
  opt_.chunk = std::clamp<int64_t>(opt_.chunk, 1, model_.options().chunk);
  n_real_ = sampling_vocab(model_.config(), model_.vocab(), tok_);
  step_logits_.resize(size_t(model_.pool().slots() * model_.vocab()));
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  for (auto& j : queue_) finish(*j, "", "the server is shutting down");
}

bool Scheduler::submit(const std::vector<std::shared_ptr<Job>>& jobs) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Jobs that free slots will take at once do not count against the queue's bound.
    const int64_t free = model_.pool().slots() - live_count_.load();
    if (int64_t(queue_.size() + jobs.size()) > opt_.max_queue + std::max<int64_t>(free, 0)) return false;
    for (const auto& j : jobs) queue_.push_back(j);
    metrics_.queue_depth = int64_t(queue_.size());
  }
  cv_.notify_one();
  return true;
}

void Scheduler::finish(Job& job, const std::string& reason, const std::string& error) {
  {
    std::lock_guard<std::mutex> lock(job.mu);
    job.finished = true;
    job.prompt_done = true;
    job.finish_reason = reason;
    job.error = error;
  }
  job.cv.notify_all();
}

void Scheduler::finish_live(Job& job, const std::string& reason, const std::string& error) {
  --live_count_;
  finish(job, reason, error);
}

void Scheduler::loop() {
  std::vector<std::unique_ptr<Live>> live;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty() || !live.empty(); });
      if (stop_) break;
    }
    admit(live);
    // A client that went away frees its slot now, before any more work is spent on it.
    std::erase_if(live, [](const std::unique_ptr<Live>& l) {
      if (!l->job->cancelled.load()) return false;
      finish(*l->job, "", "cancelled");
      return true;
    });
    metrics_.live_sequences = live_count_ = int64_t(live.size());
    if (live.empty()) continue;
    prefill(live);
    decode(live);
    metrics_.live_sequences = live_count_ = int64_t(live.size());
  }
  for (auto& l : live) finish(*l->job, "", "the server is shutting down");
}

void Scheduler::admit(std::vector<std::unique_ptr<Live>>& live) {
  std::lock_guard<std::mutex> lock(mu_);
  while (!queue_.empty() && model_.pool().free_slots() > 0) {
    std::shared_ptr<Job> job = std::move(queue_.front());
    queue_.pop_front();
    if (job->cancelled.load()) {
      finish(*job, "", "cancelled");
      continue;
    }
    auto l = std::make_unique<Live>();
    l->job = std::move(job);
    try {
      l->state = model_.new_state();
      const GenerateOptions& g = l->job->gen;
      l->seq = std::make_unique<SequenceDecoder>(tok_, g, g.sampling, end_id(g, tok_));
      l->history = l->job->prompt;
    } catch (const Error& e) {
      finish(*l->job, "", e.what());
      continue;
    }
    live.push_back(std::move(l));
  }
  live_count_ = int64_t(live.size());
  metrics_.queue_depth = int64_t(queue_.size());
}

bool Scheduler::next_token(Live& l, const float* logits) {
  Job& job = *l.job;
  const std::string_view text = l.seq->next(logits, n_real_, l.history);
  const int32_t id = l.seq->result().ids.back();
  TokenInfo t =
      job.top_logprobs >= 0 ? token_logprobs(logits, model_.vocab(), n_real_, id, job.top_logprobs) : TokenInfo{};
  t.id = id;
  t.text = std::string(text);
  ++metrics_.generated_tokens;
  const bool done = l.seq->done();
  {
    std::lock_guard<std::mutex> lock(job.mu);
    job.tokens.push_back(t);
    job.all_tokens.push_back(std::move(t));
    job.completion_tokens = int64_t(l.seq->result().ids.size());
    if (done) {
      job.text = l.seq->result().text;
      job.finished = true;
      job.finish_reason = l.seq->result().stop_reason == "max_tokens" ? "length" : "stop";
    }
  }
  // Its slot counts as free from the moment its client can see the answer (the state itself is
  // released when the scheduler erases it, before it admits anything).
  if (done) --live_count_;
  job.cv.notify_all();
  l.feed = done ? -1 : id;
  return done;
}

void Scheduler::prefill(std::vector<std::unique_ptr<Live>>& live) {
  const auto t0 = Clock::now();
  const int64_t V = model_.vocab();
  int64_t budget = opt_.chunk;
  std::vector<float> last(static_cast<size_t>(V));
  for (auto it = live.begin(); it != live.end() && budget > 0;) {
    Live& l = **it;
    Job& job = *l.job;
    if (l.prefilled == job.prompt.size()) {
      ++it;
      continue;
    }
    bool ended = false;
    try {
      const int64_t n = std::min<int64_t>(budget, int64_t(job.prompt.size() - l.prefilled));
      const int32_t* ids = job.prompt.data() + l.prefilled;
      if (job.prompt_logprobs) {
        if (chunk_logits_.empty()) chunk_logits_.resize(size_t(opt_.chunk * V));
        if (l.prefilled == 0) {  // nothing predicts the first token
          TokenInfo first;
          first.id = ids[0];
          l.prompt_info.push_back(first);
        }
        model_.prefill(l.state, ids, n, chunk_logits_.data(), last.data());
        // Row r predicts prompt token prefilled + r + 1.
        for (int64_t r = 0; r < n && l.prefilled + r + 1 < job.prompt.size(); ++r)
          l.prompt_info.push_back(token_logprobs(chunk_logits_.data() + r * V, V, n_real_,
                                                 job.prompt[l.prefilled + r + 1], std::max(job.top_logprobs, 0)));
      } else {
        model_.prefill(l.state, ids, n, nullptr, last.data());
      }
      l.prefilled += size_t(n);
      budget -= n;
      metrics_.prompt_tokens += n;
      if (l.prefilled == job.prompt.size()) {
        {
          std::lock_guard<std::mutex> lock(job.mu);
          job.prompt_info = std::move(l.prompt_info);
          job.prompt_done = true;
        }
        job.cv.notify_all();
        if (l.seq->done()) {  // max_tokens 0: the prompt (and its logprobs) is the whole answer
          finish_live(job, "length");
          ended = true;
        } else {
          ended = next_token(l, last.data());
        }
      }
    } catch (const Error& e) {
      finish_live(job, "", e.what());
      ended = true;
    }
    it = ended ? live.erase(it) : it + 1;
  }
  metrics_.busy_microseconds += micros_since(t0);
}

void Scheduler::decode(std::vector<std::unique_ptr<Live>>& live) {
  std::vector<int32_t> slots, feed;
  std::vector<Live*> batch;
  for (auto& l : live)
    if (l->feed >= 0) {
      slots.push_back(l->state.slot());
      feed.push_back(l->feed);
      batch.push_back(l.get());
    }
  if (batch.empty()) return;
  const auto t0 = Clock::now();
  const int64_t V = model_.vocab();
  try {
    model_.step_slots(slots.data(), int64_t(batch.size()), feed.data(), step_logits_.data());
    ++metrics_.decode_steps;
  } catch (const Error& e) {
    for (Live* l : batch) {
      finish_live(*l->job, "", e.what());
      l->job->cancelled = true;  // removed below
    }
    std::erase_if(live, [](const std::unique_ptr<Live>& l) { return l->job->cancelled.load(); });
    return;
  }
  std::vector<const Live*> ended;
  for (size_t b = 0; b < batch.size(); ++b) {
    try {
      if (next_token(*batch[b], step_logits_.data() + b * V)) ended.push_back(batch[b]);
    } catch (const Error& e) {
      finish_live(*batch[b]->job, "", e.what());
      ended.push_back(batch[b]);
    }
  }
  std::erase_if(live, [&](const std::unique_ptr<Live>& l) {
    return std::find(ended.begin(), ended.end(), l.get()) != ended.end();
  });
  metrics_.busy_microseconds += micros_since(t0);
}

}  // namespace sambalm::serve
