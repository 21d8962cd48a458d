// Passkey prompts (see passkey.h).
#include "eval/passkey.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "core/error.h"

namespace sambalm {
namespace {

constexpr const char* kIntro =
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz you "
    "about the important information there.";
constexpr const char* kQuestion = "What is the pass key? The pass key is";
constexpr const char* kFiller[] = {"The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.",
                                   "There and back again."};

// The first `n` words of the repeated filler, with the word counts after which a sentence ends.
struct Filler {
  std::vector<std::string> words;
  std::vector<int64_t> sentence_ends;  // word counts 0, ..., at sentence ends
};

Filler filler_words(int64_t n) {
  Filler f;
  f.sentence_ends.push_back(0);
  for (size_t s = 0; int64_t(f.words.size()) < n; ++s) {
    const std::string sentence = kFiller[s % std::size(kFiller)];
    size_t a = 0;
    while (a < sentence.size() && int64_t(f.words.size()) < n) {
      size_t b = sentence.find(' ', a);
      if (b == std::string::npos) b = sentence.size();
      f.words.push_back(sentence.substr(a, b - a));
      a = b + 1;
    }
    if (a >= sentence.size()) f.sentence_ends.push_back(int64_t(f.words.size()));
  }
  if (f.sentence_ends.back() != int64_t(f.words.size())) f.sentence_ends.push_back(int64_t(f.words.size()));
  return f;
}

std::string join(const std::vector<std::string>& w, int64_t a, int64_t b) {
  std::string s;
  for (int64_t i = a; i < b; ++i) s += (i > a ? " " : "") + w[size_t(i)];
  return s;
}

struct Pieces {
  std::string before, text;  // the prompt up to the key line, the whole prompt
  std::string filler_head;   // the intro and its line break
  std::string before_question;
};

Pieces assemble(const Filler& f, int64_t split, const std::string& key_line) {
  const int64_t n = int64_t(f.words.size());
  Pieces p;
  p.filler_head = std::string(kIntro) + "\n";
  p.before = p.filler_head + (split > 0 ? join(f.words, 0, split) + "\n" : "");
  p.before_question = p.before + key_line + "\n" + (split < n ? join(f.words, split, n) + "\n" : "");
  p.text = p.before_question + kQuestion;
  return p;
}

int64_t count_tokens(const Tokenizer& tok, const std::string& s) {
  std::vector<int32_t> ids;
  encode_input(tok, s, "the passkey prompt", ids);
  return int64_t(ids.size());
}

uint64_t splitmix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

std::string passkey_key(uint64_t seed, size_t length_index, size_t depth_index, int64_t trial) {
  uint64_t h = splitmix64(seed);
  h = splitmix64(h ^ uint64_t(length_index));
  h = splitmix64(h ^ uint64_t(depth_index));
  h = splitmix64(h ^ uint64_t(trial));
  return std::to_string(10000 + h % 90000);
}

bool passkey_correct(const std::string& generated, const std::string& key) {
  const size_t a = generated.find_first_of("0123456789");
  if (a == std::string::npos) return false;
  size_t b = a;
  while (b < generated.size() && std::isdigit(static_cast<unsigned char>(generated[b]))) ++b;
  return generated.compare(a, b - a, key) == 0 && b - a == key.size();
}

PasskeyPrompt make_passkey_prompt(const Tokenizer& tok, int64_t length, double depth, const std::string& key) {
  SAMBALM_CHECK(depth >= 0 && depth <= 1, "passkey: depth must be in [0, 1], got {}", depth);
  const std::string key_line = "The pass key is " + key + ". Remember it. " + key + " is the pass key.";
  auto build = [&](int64_t words) {
    Filler f = filler_words(words);
    // The sentence end nearest to the depth (the first of two equally near).
    const double want = depth * double(f.words.size());
    int64_t split = 0;
    for (int64_t e : f.sentence_ends)
      if (std::abs(double(e) - want) < std::abs(double(split) - want)) split = e;
    return std::make_pair(assemble(f, split, key_line), f);
  };
  const int64_t fixed = count_tokens(tok, build(0).first.text);
  SAMBALM_CHECK(fixed <= length,
                "passkey: a length of {} tokens cannot hold the prompt's intro, key line and question ({} tokens)",
                length, fixed);
  // Tokens per filler word, measured on a sample; then a few corrections from the counts found.
  const int64_t sample = 200;
  const double per_word = std::max(0.1, double(count_tokens(tok, build(sample).first.text) - fixed) / double(sample));
  // Search the largest word count that fits: lo fits, hi (once known) does not; each guess moves by the
  // token shortfall over the measured tokens per word, so a few encodings suffice at any length.
  const int64_t close_enough = std::max<int64_t>(1, int64_t(std::ceil(per_word)));
  int64_t lo = 0, hi = -1;
  int64_t words = std::max<int64_t>(0, int64_t(double(length - fixed) / per_word));
  for (int iter = 0; iter < 64; ++iter) {
    const int64_t t = count_tokens(tok, build(words).first.text);
    if (t <= length) {
      lo = std::max(lo, words);
      if (length - t <= close_enough) break;
    } else {
      hi = hi < 0 ? words : std::min(hi, words);
    }
    if (hi >= 0 && hi - lo <= 1) break;
    const int64_t guess = words + int64_t(std::floor(double(length - t) / per_word));
    words = hi < 0 ? std::max(guess, lo + 1) : std::clamp(guess, lo + 1, hi - 1);
  }
  words = lo;
  auto [p, f] = build(words);
  PasskeyPrompt out;
  out.text = p.text;
  out.key = key;
  out.depth = depth;
  encode_input(tok, out.text, "the passkey prompt", out.ids);
  out.filler_begin = count_tokens(tok, p.filler_head);
  out.key_token = count_tokens(tok, p.before);
  out.filler_end = count_tokens(tok, p.before_question);
  return out;
}

std::vector<PasskeyCell> evaluate_passkey(Generator& gen, const Tokenizer& tok, const std::vector<int64_t>& lengths,
                                          const std::vector<double>& depths, int64_t trials, uint64_t seed,
                                          const std::function<void(const PasskeyTrial&)>& on_trial) {
  std::vector<PasskeyCell> cells;
  Session s = gen.new_session();
  GenerateOptions opt;
  opt.sampling.top_k = 1;  // greedy
  opt.max_prompt_tokens = int64_t(1) << 40;
  for (size_t li = 0; li < lengths.size(); ++li)
    for (size_t di = 0; di < depths.size(); ++di) {
      PasskeyCell cell{lengths[li], depths[di], 0, 0};
      for (int64_t t = 0; t < trials; ++t) {
        const std::string key = passkey_key(seed, li, di, t);
        const PasskeyPrompt p = make_passkey_prompt(tok, lengths[li], depths[di], key);
        opt.max_tokens = count_tokens(tok, passkey_answer(key)) + 1;
        s.state.reset();
        s.history.clear();
        s.pending.clear();
        std::vector<Session*> ss = {&s};
        const auto r = gen.run(ss, {p.ids}, opt);
        PasskeyTrial tr{lengths[li], depths[di], t, int64_t(p.ids.size()), key, r[0].text, false};
        tr.correct = passkey_correct(tr.generated, key);
        cell.trials += 1;
        cell.correct += tr.correct;
        if (on_trial) on_trial(tr);
      }
      cells.push_back(cell);
    }
  return cells;
}

}  // namespace sambalm
