// Multiple choice by log-likelihood, as lm-evaluation-harness scores `multiple_choice` tasks.
//
// Task file (JSON Lines, docs/EVAL.md): one object per non-empty line,
//   {"context": "...", "choices": ["...", ...], "label": i}        optional "target_delimiter" (" ")
// Choice j is scored as the continuation target_delimiter + choices[j] of the context: the sum of its
// tokens' log-probabilities. The pair is tokenized as the harness does: trailing spaces of the context
// move to the continuation, whole = encode(context + continuation), the continuation's tokens are
// whole[len(encode(context)):]; an empty context becomes the tokenizer's BOS (else EOS) token.
// acc: the choice of highest log-likelihood is the label; acc_norm: the same after dividing each
// log-likelihood by the UTF-8 byte length of its choice string (ties go to the first choice).
// Few-shot: K other items of the file (drawn by a seeded generator, never the item itself), each
// written as context + target_delimiter + its correct choice, joined and followed by "\n\n", precede
// the context.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eval/scorer.h"
#include "tokenizer/tokenizer.h"

namespace sambalm {

struct McItem {
  std::string context;
  std::vector<std::string> choices;
  int64_t label = 0;
  std::string target_delimiter = " ";
};

// Reads a task file. Errors name the file and the line: not JSON, not an object, a missing or
// mistyped field, fewer than two choices, a label outside [0, choices). Error when no item.
std::vector<McItem> read_mc_tasks(const std::string& path);

// The context of item i with `fewshot` examples from the other items (seeded).
std::string mc_fewshot_context(const std::vector<McItem>& items, size_t i, int64_t fewshot, uint64_t seed);

// Token ids of one request: context tokens then continuation tokens (see above).
struct McRequest {
  std::vector<int32_t> ids;
  int64_t context_tokens = 0;  // ids[0..context_tokens) are the context
};
McRequest mc_encode(const Tokenizer& tok, const std::string& context, const std::string& continuation);

struct McItemResult {
  std::vector<double> loglik;  // per choice, natural log
  int64_t label = 0, pred = 0, pred_norm = 0;
};
struct McResult {
  std::vector<McItemResult> items;
  double acc = 0, acc_norm = 0, acc_stderr = 0, acc_norm_stderr = 0;
};

// Scores items[0..limit) (limit 0: all). The choices of an item share the context's state: it is
// prefilled once and copied for each choice.
McResult evaluate_mc(Scorer& scorer, const Tokenizer& tok, const std::vector<McItem>& items, int64_t fewshot,
                     int64_t limit, uint64_t seed);

}  // namespace sambalm
