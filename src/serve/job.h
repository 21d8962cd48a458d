// A request as the scheduler sees it: prompt ids and generation options in, tokens out. The HTTP
// thread that made it waits on it (or streams from it); the scheduler thread fills it. Everything
// written after submission is guarded by `mu` and signalled on `cv`.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "infer/generator.h"

namespace sambalm::serve {

// One token with its log-probability under the model (log-softmax of the raw logits over the real
// vocabulary, before any sampling filter) and the `top` most likely alternatives.
struct TokenInfo {
  int32_t id = -1;
  bool has_logprob = false;  // false for the first prompt token (nothing predicts it)
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;
  std::string text;  // generated tokens: the text that became final with this token (may be empty)
};

struct Job {
  // Inputs, fixed before submission.
  std::vector<int32_t> prompt;
  GenerateOptions gen;
  int top_logprobs = -1;         // >= 0: report logprobs with that many alternatives; -1: no logprobs
  bool prompt_logprobs = false;  // also for the prompt's tokens (echo)

  // Outputs.
  std::mutex mu;
  std::condition_variable cv;
  std::vector<TokenInfo> prompt_info;  // echo with logprobs: one per prompt token, complete before `tokens`
  std::deque<TokenInfo> tokens;        // generated tokens not yet taken by a streaming reader
  std::vector<TokenInfo> all_tokens;   // every generated token (non-streaming readers use it)
  bool prompt_done = false;
  bool finished = false;
  std::string finish_reason;  // "stop" or "length"
  std::string error;          // non-empty: the job failed
  std::string text;           // the whole generated text (cut before a stop string) once finished
  int64_t completion_tokens = 0;

  // Set by the HTTP side when the client is gone: the scheduler frees the slot at its next step.
  std::atomic<bool> cancelled{false};
};

}  // namespace sambalm::serve
