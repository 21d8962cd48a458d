// Decoding equals the one-pass forward: chunked prefill followed by token-by-token decoding gives the
// logits of Model::forward on the whole sequence, for every mixer and wiring (Mamba, sliding-window
// attention MHA/GQA/MQA, full attention, partial RoPE, LayerNorm, biases, untied head), with the
// prefill chunk boundaries inside and across attention windows and batched steps of sequences at
// different positions. Random weights here; test_decode_fixtures.cpp does the same on the fixtures.
#include <cmath>
#include <random>

#include "core/error.h"
#include "infer/decode_model.h"
#include "model/model.h"
#include "model/params.h"
#include "testing.h"

using namespace sambalm;

namespace {

ModelConfig samba(int64_t window, int64_t groups) {
  return test::small_samba("decode_samba",
                           {.groups = groups, .head_size = 8, .mlp = 48, .window = window, .d_state = 8});
}

// One-pass logits of each sequence [B, T, V] vs prefill of `split` tokens (chunk `chunk`) then steps.
void check_decode(const ModelConfig& cfg, int64_t B, int64_t Tn, int64_t chunk, std::vector<int64_t> splits) {
  ParamStore store(param_specs(cfg));
  test::fill_random_params(store, 3);
  std::mt19937 rng(5);
  std::vector<int32_t> tok(B * Tn);
  for (auto& t : tok) t = int32_t(rng() % cfg.vocab_size);
  Model<float> model(cfg, store.entries());
  model.forward(store.data(), tok.data(), nullptr, B, Tn);
  const int64_t V = cfg.padded_vocab_size;

  DecodeOptions opt;
  opt.chunk = chunk;
  opt.max_context = Tn;
  opt.slots = B;  // every sequence holds a slot of the pool
  DecodeModel dm(cfg, store.entries(), store.data(), opt);
  // Sequence b prefills splits[b] tokens, so the batched steps mix positions.
  const std::vector<float> got = test::decode_logits(dm, tok, B, Tn, splits);
  double err = test::rel_error(got.data(), model.logits(), B * Tn * V);
  EXPECT_LT(err, 1e-4) << cfg.name << " chunk " << chunk;
}

}  // namespace

TEST(Decode, SambaChunksInsideAndAcrossWindows) {
  // window 8, sequence 4 windows; chunks of 3 (inside a window) and 11 (across windows).
  for (int64_t chunk : {3, 8, 11, 64}) check_decode(samba(8, 4), 3, 32, chunk, {1, 13, 32});
}

TEST(Decode, LargeBatchesMixingPositions) {
  // 10 sequences (register-tiled GEMV with partial tiles) and 70 (past the GEMV limit: sgemm), every
  // sequence at its own position, through both paths of infer::linear.
  for (int64_t B : {10, 70}) {
    std::vector<int64_t> splits;
    for (int64_t b = 0; b < B; ++b) splits.push_back(1 + (b * 7) % 20);
    check_decode(samba(6, 2), B, 20, 5, splits);
  }
}

TEST(Decode, SambaGqaAndMqa) {
  check_decode(samba(6, 2), 2, 24, 5, {7, 12});
  check_decode(samba(6, 1), 2, 24, 4, {1, 24});
}

TEST(Decode, FullAttentionPartialRopeLayerNormBiases) {
  ModelConfig c = samba(-1, 2);
  c.name = "decode_full";
  c.rotary_percentage = 0.5;
  c.norm = NormKind::LayerNorm;
  c.bias = true;
  c.tied_embeddings = false;
  check_decode(c, 2, 20, 6, {5, 11});
}

TEST(Decode, PureMamba) {
  ModelConfig c;
  c.name = "decode_mamba";
  c.mamba = true;
  c.n_layer = 3;
  c.n_embd = 32;
  c.vocab_size = 40;
  c.padded_vocab_size = 48;
  c.d_state = 8;
  c.tied_embeddings = true;
  check_decode(c, 2, 30, 7, {1, 20});
}

TEST(Decode, BadIdsLeaveStateUntouched) {
  ModelConfig cfg = samba(8, 4);
  ParamStore store(param_specs(cfg));
  test::fill_random_params(store, 1);
  DecodeModel dm(cfg, store.entries(), store.data());
  DecodeState st = dm.new_state();
  std::vector<int32_t> bad = {1, 2, 64};
  EXPECT_THROW(dm.prefill(st, bad.data(), 3, nullptr, nullptr), Error);
  EXPECT_EQ(st.pos(), 0);
  EXPECT_THROW(dm.prefill(st, bad.data(), 0, nullptr, nullptr), Error);
  int32_t neg = -1;
  DecodeState* p = &st;
  std::vector<float> logits(cfg.padded_vocab_size);
  EXPECT_THROW(dm.step(&p, 1, &neg, logits.data()), Error);
}
