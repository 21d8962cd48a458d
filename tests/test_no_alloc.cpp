// Buffers are planned, not grown: after the first call of a shape, nothing allocates — not a
// training step (forward, backward, clipping, AdamW), not a prefill chunk, not a decode step, and not
// sequences joining and leaving the pool of decode states. operator new is counted around the calls.
#include <optional>
#include <random>
#include <vector>

#include "count_allocations.h"
#include "infer/decode_model.h"
#include "model/model.h"
#include "testing.h"
#include "train/adamw.h"

using namespace sambalm;

namespace {

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& t : v) t = int32_t(rng() % vocab);
  return v;
}

ModelConfig cfg_with_window(int64_t window) {
  return test::small_samba("noalloc",
                           {.d = 32, .groups = 2, .head_size = 8, .mlp = 64, .window = window, .d_state = 8});
}

void expect_training_allocates_nothing(const ModelConfig& cfg) {
  ParamStore store(param_specs(cfg));
  test::fill_random_params(store, 1);
  const int64_t B = 2, Tn = 40;
  Model<float> model(cfg, store.entries());
  std::vector<float> grads(store.size());
  AdamW opt(store.size(), AdamWOptions{}, decay_ranges(store.entries(), false));
  auto tokens = random_ids(B * Tn, cfg.vocab_size, 2), targets = random_ids(B * Tn, cfg.vocab_size, 3);
  auto step = [&] {
    std::fill(grads.begin(), grads.end(), 0.0f);
    const double loss = model.forward(store.data(), tokens.data(), targets.data(), B, Tn);
    model.backward(store.data(), grads.data());
    clip_grad_norm(grads.data(), grads.size(), 1.0);
    opt.step(store.data(), grads.data(), 1e-3);
    return loss;
  };
  const double first = step();
  double last = 0;
  {
    test::CountAllocations c;
    for (int i = 0; i < 3; ++i) last = step();
    EXPECT_EQ(c.count(), 0) << "allocations in 3 training steps";
  }
  EXPECT_LT(last, first);  // the steps did train
}

}  // namespace

TEST(NoAllocation, ThreeTrainingStepsAfterTheFirst) { expect_training_allocates_nothing(cfg_with_window(8)); }

// SambaY's mixers (differential attention, cross-attention on the shared KV, GMU on the memory) too.
ModelConfig small_sambay() {
  ModelConfig c;
  c.name = "noalloc_sambay";
  c.sambay = true;
  c.n_layer = 8;
  c.n_embd = 32;
  c.n_head = 4;
  c.n_query_groups = 2;
  c.head_size = 8;
  c.intermediate_size = 64;
  c.vocab_size = 50;
  c.padded_vocab_size = 64;
  c.local_window = 8;
  c.nope = true;
  c.norm = NormKind::LayerNorm;
  c.d_state = 8;
  return c;
}

TEST(NoAllocation, ThreeSambaYTrainingStepsAfterTheFirst) { expect_training_allocates_nothing(small_sambay()); }

void expect_decoding_allocates_nothing(const ModelConfig& cfg) {
  ParamStore store(param_specs(cfg));
  test::fill_random_params(store, 4);
  DecodeOptions dopt;
  dopt.chunk = 16;
  dopt.max_batch = 4;
  dopt.slots = 4;
  dopt.max_context = 256;  // full attention (SambaY's shared KV): longer than any sequence here
  DecodeModel dm(cfg, store.entries(), store.data(), dopt);
  const int64_t V = cfg.padded_vocab_size;
  std::vector<float> logits(4 * V), last(V);
  const auto prompt = random_ids(100, cfg.vocab_size, 5);
  std::optional<DecodeState> live[4];
  DecodeState* batch[4];
  int32_t toks[4];
  // The first prefill and the first step of every batch size plan the buffers.
  live[0].emplace(dm.new_state());
  dm.prefill(*live[0], prompt.data(), 37, nullptr, last.data());
  for (int64_t B = 1; B <= 4; ++B) {
    for (int64_t b = 0; b < B; ++b)
      if (!live[b]) live[b].emplace(dm.new_state());
    for (int64_t b = 0; b < B; ++b) batch[b] = &*live[b], toks[b] = int32_t(b);
    dm.step(batch, B, toks, logits.data());
  }
  for (auto& s : live) s.reset();
  int64_t steps = 0, joined = 0, left = 0;
  {
    test::CountAllocations c;
    std::mt19937 rng(9);
    for (int i = 0; i < 100; ++i) {
      // Now and then a sequence leaves and another joins with a prompt (chunked prefill).
      const int k = int(rng() % 4);
      if (live[k] && rng() % 3 == 0) {
        live[k].reset();
        ++left;
      } else if (!live[k]) {
        live[k].emplace(dm.new_state());
        const int64_t n = 1 + int64_t(rng() % 40);
        dm.prefill(*live[k], prompt.data(), n, nullptr, last.data());
        ++joined;
      }
      int64_t B = 0;
      for (int b = 0; b < 4; ++b)
        if (live[b]) {
          batch[B] = &*live[b];
          toks[B] = int32_t(rng() % cfg.vocab_size);
          ++B;
        }
      if (B == 0) continue;
      dm.step(batch, B, toks, logits.data());
      ++steps;
    }
    EXPECT_EQ(c.count(), 0) << "allocations over " << steps << " steps, " << joined << " joins, " << left << " leaves";
  }
  EXPECT_GT(steps, 80);
  EXPECT_GT(joined, 3);
  EXPECT_GT(left, 3);
  for (int64_t v = 0; v < V; ++v) ASSERT_TRUE(std::isfinite(logits[v]));
}

TEST(NoAllocation, PrefillAndDecodeWithSequencesJoiningAndLeaving) {
  expect_decoding_allocates_nothing(cfg_with_window(8));
}

// SambaY: the prefill skips the cross-decoder (last token or none), the steps read the shared cache.
TEST(NoAllocation, SambaYPrefillAndDecodeWithSequencesJoiningAndLeaving) {
  expect_decoding_allocates_nothing(small_sambay());
}

TEST(NoAllocation, PoolRefusesMoreSequencesThanItHolds) {
  const ModelConfig cfg = cfg_with_window(8);
  ParamStore store(param_specs(cfg));
  test::fill_random_params(store, 6);
  DecodeOptions dopt;
  dopt.slots = 2;
  DecodeModel dm(cfg, store.entries(), store.data(), dopt);
  DecodeState a = dm.new_state(), b = dm.new_state();
  try {
    DecodeState c = dm.new_state();
    FAIL() << "a third state from a pool of 2";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("all 2 slots"), std::string::npos) << e.what();
  }
  { DecodeState gone = std::move(b); }  // released: its slot is free again
  DecodeState c = dm.new_state();
  EXPECT_EQ(c.pos(), 0);
  EXPECT_NE(c.slot(), a.slot());
}
