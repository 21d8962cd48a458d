// Passkey retrieval: a five-digit key hidden in filler text at a given depth, asked for at the end.
//
// A prompt of about `length` tokens is, line by line:
//   the intro ("There is an important info hidden inside a lot of irrelevant text. ...")
//   filler (the sentences "The grass is green. The sky is blue. ..." repeated), first part
//   "The pass key is NNNNN. Remember it. NNNNN is the pass key."
//   filler, second part
//   "What is the pass key? The pass key is"
// The filler is a number of whole words, chosen so that the prompt's token count is at most `length`
// and as close to it as words allow; the key line goes between sentences of the filler, at the
// sentence end nearest to `depth` (0: right after the intro, 1: right before the question) of it.
// The answer is " NNNNN." (what the model should continue with). A trial is correct when the first
// number in the greedy continuation is the key.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "infer/generator.h"
#include "tokenizer/tokenizer.h"

namespace sambalm {

struct PasskeyPrompt {
  std::string text;          // the prompt (ends with "The pass key is")
  std::vector<int32_t> ids;  // its tokens
  std::string key;           // "NNNNN"
  int64_t key_token = 0;     // tokens of the prompt before the key line
  int64_t filler_begin = 0;  // tokens before the filler (the intro)
  int64_t filler_end = 0;    // tokens before the question
  double depth = 0;          // the depth asked for
};

// Builds the prompt (Error when `length` cannot hold the intro, key line and question).
PasskeyPrompt make_passkey_prompt(const Tokenizer& tok, int64_t length, double depth, const std::string& key);

// The key of trial `trial` at (length index, depth index): five digits from a splitmix64 stream of the
// seed, the same on every platform.
std::string passkey_key(uint64_t seed, size_t length_index, size_t depth_index, int64_t trial);

// True when the first run of digits in `generated` is `key`.
bool passkey_correct(const std::string& generated, const std::string& key);

// The answer a prompt should be continued with: " NNNNN." (the training target of --write-data).
inline std::string passkey_answer(const std::string& key) { return " " + key + "."; }

struct PasskeyTrial {
  int64_t length = 0;
  double depth = 0;
  int64_t trial = 0, prompt_tokens = 0;
  std::string key, generated;
  bool correct = false;
};
struct PasskeyCell {
  int64_t length = 0;
  double depth = 0;
  int64_t trials = 0, correct = 0;
  double accuracy() const { return trials > 0 ? double(correct) / double(trials) : 0.0; }
};

// Runs trials x lengths x depths prompts through greedy decoding (a few tokens: the answer's and one
// more) and returns one cell per (length, depth), lengths outer. on_trial (optional) sees each trial.
std::vector<PasskeyCell> evaluate_passkey(Generator& gen, const Tokenizer& tok, const std::vector<int64_t>& lengths,
                                          const std::vector<double>& depths, int64_t trials, uint64_t seed,
                                          const std::function<void(const PasskeyTrial&)>& on_trial = {});

}  // namespace sambalm
