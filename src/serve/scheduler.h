// Continuous batching: one thread owns the DecodeModel and its pool of decode states and runs, in a
// loop,
//   1. admit   waiting jobs take free slots (first come, first served) while any slot is free;
//   2. cancel  jobs whose client went away give their slot back at once;
//   3. prefill up to `chunk` prompt tokens in all, taken from the prefilling jobs in arrival order
//              (a long prompt is spread over several iterations, so it delays the others' next token
//              by at most one chunk's time); a job whose prompt is done samples its first token;
//   4. decode  one batched step (DecodeModel::step_slots) over every live job that has a token to
//              feed, then each samples its next token (SequenceDecoder: sampling, stop strings, eos,
//              max tokens) and hands it to its job.
// A job that ends (or fails) leaves its slot at once, so the next waiting job joins the following step.
// HTTP threads only submit jobs and read what the scheduler writes into them.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "infer/decode_model.h"
#include "serve/job.h"
#include "serve/metrics.h"
#include "tokenizer/tokenizer.h"

namespace sambalm::serve {

struct SchedulerOptions {
  int64_t max_queue = 64;  // jobs waiting for a slot before submit() refuses
  int64_t chunk = 512;     // prompt tokens prefilled per iteration (<= the DecodeModel's chunk)
};

class Scheduler {
 public:
  // The model's pool size is the most jobs decoded together.
  Scheduler(DecodeModel& model, const Tokenizer* tok, const SchedulerOptions& opt, Metrics& metrics);
  ~Scheduler();  // stops the thread; unfinished jobs end with an error
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues the jobs (all or none): false when the queue has no room for all of them.
  bool submit(const std::vector<std::shared_ptr<Job>>& jobs);
  int64_t slots() const { return model_.pool().slots(); }

 private:
  struct Live;
  void loop();
  void admit(std::vector<std::unique_ptr<Live>>& live);
  void prefill(std::vector<std::unique_ptr<Live>>& live);
  void decode(std::vector<std::unique_ptr<Live>>& live);
  // Samples the live job's next token from `logits` and hands it over; true when the job ended.
  bool next_token(Live& l, const float* logits);
  static void finish(Job& job, const std::string& reason, const std::string& error = {});
  // finish() for a job that holds a slot: its slot counts as free from then on (live_count_).
  void finish_live(Job& job, const std::string& reason, const std::string& error = {});

  DecodeModel& model_;
  const Tokenizer* tok_;
  SchedulerOptions opt_;
  Metrics& metrics_;
  int64_t n_real_ = 0;
  std::vector<float> chunk_logits_, step_logits_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stop_ = false;
  // Jobs holding a slot whose answer is not complete yet (written by the scheduler thread): set when it
  // admits or erases jobs, decremented the moment a job's answer is complete, so that a client that
  // sends its next request as soon as it has the last one finds the slot free.
  std::atomic<int64_t> live_count_{0};
  std::thread thread_;
};

}  // namespace sambalm::serve
