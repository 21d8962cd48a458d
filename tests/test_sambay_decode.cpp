// Decoding SambaY equals its one-pass forward: chunked prefill then token-by-token steps over 4x the
// sliding window give Model::forward's logits (fixtures/sambay_tiny and random small configs); the
// prefill that runs the cross-decoder on the last token only (or not at all) gives the forward's last
// logits and leaves caches from which decoding goes on exactly; a pool of sequences at different
// positions decodes each like alone; the state holds nothing for the cross-decoder and grows with the
// context only in the shared-KV layer's cache.
#include <cmath>
#include <random>

#include "core/error.h"
#include "infer/decode_model.h"
#include "io/state_dict.h"
#include "model/memory_estimate.h"
#include "model/model.h"
#include "model/params.h"
#include "model/weights.h"
#include "ops/ops.h"
#include "testing.h"

using namespace sambalm;

namespace {

// A small SambaY with a small window: 8 layers (self-decoder Mamba/window 3, memory Mamba, shared KV,
// GMU/cross-attention), 2 query heads per kv head.
ModelConfig small_sambay(int64_t window = 3) {
  ModelConfig c;
  c.name = "decode_sambay";
  c.sambay = true;
  c.n_layer = 8;
  c.n_embd = 16;
  c.n_head = 4;
  c.n_query_groups = 2;
  c.head_size = 4;
  c.intermediate_size = 24;
  c.vocab_size = 30;
  c.padded_vocab_size = 32;
  c.local_window = window;
  c.block_size = 64;
  c.nope = true;
  c.norm = NormKind::LayerNorm;
  c.d_state = 4;
  c.dt_rank = 2;
  c.mamba_init = true;
  return c;
}

struct Loaded {
  ModelConfig cfg;
  ParamStore params;
};

Loaded fixture_model() {
  const std::string dir = test::fixtures_dir() + "/sambay_tiny";
  ModelConfig cfg = ModelConfig::from_json_file(dir + "/config.json");
  auto sd = read_state_dict(dir + "/model.safetensors");
  return {cfg, load_params(cfg, sd, "model.safetensors")};
}

std::vector<int32_t> random_tokens(const ModelConfig& cfg, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> tok(n);
  for (auto& t : tok) t = int32_t(rng() % cfg.vocab_size);
  return tok;
}

// B sequences of Tn tokens: sequence b prefills splits[b] tokens in chunks of `chunk` (all logits),
// then all decode together one token per step, each at its own position. Every logit is compared with
// the one-pass forward's.
void check_decode(const ModelConfig& cfg, const ParamStore& store, int64_t B, int64_t Tn, int64_t chunk,
                  const std::vector<int64_t>& splits) {
  auto tok = random_tokens(cfg, B * Tn, 11);
  Model<float> model(cfg, store.entries());
  model.forward(store.data(), tok.data(), nullptr, B, Tn);
  const int64_t V = cfg.padded_vocab_size;
  DecodeOptions opt;
  opt.chunk = chunk;
  opt.max_context = Tn;
  opt.slots = B + 1;  // one slot stays free: the kernels reach states by slot id, not by order
  DecodeModel dm(cfg, store.entries(), store.data(), opt);
  DecodeState spare = dm.new_state();
  const std::vector<float> got = test::decode_logits(dm, tok, B, Tn, splits);
  for (int64_t b = 0; b < B; ++b)
    EXPECT_LT(test::rel_error(got.data() + b * Tn * V, model.logits() + b * Tn * V, Tn * V), 1e-4)
        << cfg.name << " chunk " << chunk << " sequence " << b << " (prefilled " << splits[b] << ")";
}

// Prefill of the whole prompt asking for the last logits only (the cross-decoder skipped on every
// other token, and on every chunk but the last), then `extra` decode steps: the forward's logits at
// the last prompt position and at every decoded one.
void check_skip_prefill(const ModelConfig& cfg, const ParamStore& store, int64_t prompt, int64_t extra, int64_t chunk,
                        bool skip) {
  const int64_t Tn = prompt + extra, V = cfg.padded_vocab_size;
  auto tok = random_tokens(cfg, Tn, 17);
  Model<float> model(cfg, store.entries());
  model.forward(store.data(), tok.data(), nullptr, 1, Tn);
  DecodeOptions opt;
  opt.chunk = chunk;
  opt.max_context = Tn;
  DecodeModel dm(cfg, store.entries(), store.data(), opt);
  dm.set_cross_decoder_skip(skip);
  DecodeState st = dm.new_state();
  std::vector<float> last(V);
  dm.prefill(st, tok.data(), prompt, nullptr, last.data());
  EXPECT_LT(test::rel_error(last.data(), model.logits() + (prompt - 1) * V, V), 1e-4)
      << cfg.name << " prompt " << prompt << " chunk " << chunk << " skip " << skip;
  DecodeState* sp = &st;
  for (int64_t t = prompt; t < Tn; ++t) {
    dm.step(&sp, 1, tok.data() + t, last.data());
    EXPECT_LT(test::rel_error(last.data(), model.logits() + t * V, V), 1e-4)
        << cfg.name << " step at " << t << " after a prefill of " << prompt << " (chunk " << chunk << ")";
  }
}

}  // namespace

TEST(SambaYDecode, FixtureChunkedPrefillThenStepsEqualForward) {
  REQUIRE_FIXTURES();
  Loaded m = fixture_model();
  const int64_t window = m.cfg.local_window;  // 6
  ASSERT_EQ(window, 6);
  // 4 windows of tokens; chunks inside a window, across windows, one token, the whole sequence.
  for (int64_t chunk : {1, 4, 7, 24}) check_decode(m.cfg, m.params, 2, 4 * window, chunk, {1, 15});
  check_decode(m.cfg, m.params, 1, 4 * window, 5, {24});  // prefill only, all logits
}

TEST(SambaYDecode, RandomSmallWindowChunksInsideAndAcrossWindows) {
  for (int64_t window : {3, 5}) {
    ModelConfig c = small_sambay(window);
    ParamStore store(param_specs(c));
    test::fill_random_params(store, 7);
    for (int64_t chunk : {2, 3, 7, 64}) check_decode(c, store, 2, 4 * window, chunk, {2, 4 * window - 3});
  }
}

TEST(SambaYDecode, RandomUntiedNoBiasesMoreHeadsPerGroup) {
  ModelConfig c = small_sambay(4);
  c.n_head = 8;
  c.n_query_groups = 2;  // 4 query heads per kv head
  c.attn_bias = false;
  c.attn_out_bias = false;
  c.tied_embeddings = false;
  ParamStore store(param_specs(c));
  test::fill_random_params(store, 9);
  check_decode(c, store, 2, 16, 5, {3, 9});
}

TEST(SambaYDecode, CrossDecoderSkippingPrefillGivesForwardLastLogits) {
  REQUIRE_FIXTURES();
  Loaded m = fixture_model();
  for (int64_t chunk : {4, 7, 30}) check_skip_prefill(m.cfg, m.params, 30, 6, chunk, true);
  check_skip_prefill(m.cfg, m.params, 30, 2, 7, false);  // the same without the skip
  ModelConfig c = small_sambay(3);
  ParamStore store(param_specs(c));
  test::fill_random_params(store, 3);
  for (int64_t chunk : {1, 2, 5, 12}) check_skip_prefill(c, store, 12, 4, chunk, true);
}

TEST(SambaYDecode, SkipChangesOnlyWhatRuns) {
  // The skipping prefill and the full one leave the same states (the cross-decoder keeps none).
  ModelConfig c = small_sambay(3);
  ParamStore store(param_specs(c));
  test::fill_random_params(store, 5);
  auto tok = random_tokens(c, 13, 2);
  std::vector<std::vector<float>> states;
  for (bool skip : {true, false}) {
    DecodeOptions opt;
    opt.chunk = 4;
    opt.max_context = 16;
    DecodeModel dm(c, store.entries(), store.data(), opt);
    dm.set_cross_decoder_skip(skip);
    DecodeState st = dm.new_state();
    std::vector<float> last(c.padded_vocab_size);
    dm.prefill(st, tok.data(), 13, nullptr, last.data());
    states.emplace_back(st.floats());
    st.copy_out(states.back().data());
  }
  EXPECT_EQ(states[0], states[1]);
}

TEST(SambaYDecode, PoolOfSequencesAtDifferentPositionsDecodesEachLikeAlone) {
  ModelConfig c = small_sambay(3);
  ParamStore store(param_specs(c));
  test::fill_random_params(store, 13);
  // 5 sequences prefilled to 5 different positions, then batched steps: each sequence's logits are
  // those of its own forward pass (the batch of the forward is independent sequences).
  check_decode(c, store, 5, 14, 3, {1, 2, 6, 9, 14});
}

TEST(SambaYDecode, StateHoldsNothingForTheCrossDecoderAndGrowsOnlyInTheSharedCache) {
  ModelConfig c = small_sambay(3);
  auto small = DecodeLayout::make(c, 16);
  auto large = DecodeLayout::make(c, 64);
  const auto layout = c.layout();
  size_t k = 0, shared = 0;
  int64_t shared_layers = 0;
  for (const auto& block : layout)
    for (const auto& s : block.sublayers) {
      const auto& a = small->subs[k];
      const auto& b = large->subs[k];
      if (s.kind == SublayerKind::CrossAttention || s.kind == SublayerKind::Gmu || s.kind == SublayerKind::MLP) {
        EXPECT_EQ(a.conv_floats + a.ssm_floats + a.kv_floats, 0) << "sublayer " << k;
      }
      if (s.kind == SublayerKind::DiffAttention && !s.shares_kv) {
        EXPECT_EQ(a.cap, 3);
        EXPECT_EQ(b.cap, 3);
      }
      if (s.shares_kv) {
        shared = k;
        ++shared_layers;
        EXPECT_TRUE(a.shares_kv);
      }
      ++k;
    }
  ASSERT_EQ(shared_layers, 1);
  EXPECT_EQ(small->subs[shared].cap, 16);
  EXPECT_EQ(large->subs[shared].cap, 64);
  // Per sequence: 2 (keys, values) * kv heads * head size * context, plus a constant.
  EXPECT_EQ(large->floats - small->floats, 2 * c.n_query_groups * c.head_size * (64 - 16));
}

TEST(SambaYDecode, PrefillBeyondTheSharedCacheIsRefused) {
  ModelConfig c = small_sambay(3);
  ParamStore store(param_specs(c));
  test::fill_random_params(store, 1);
  DecodeOptions opt;
  opt.max_context = 8;
  DecodeModel dm(c, store.entries(), store.data(), opt);
  DecodeState st = dm.new_state();
  auto tok = random_tokens(c, 9, 1);
  std::vector<float> last(c.padded_vocab_size);
  try {
    dm.prefill(st, tok.data(), 9, nullptr, last.data());
    ADD_FAILURE() << "a prompt longer than the shared cache was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max context"), std::string::npos) << e.what();
  }
}

// The decode state of the Phi-4-mini-flash shape, per sequence, in float32 (docs/BENCHMARKS.md):
//   9 Mamba layers (8 self-decoder + the memory layer) x ((d_conv - 1) + d_state) x d_inner
// + 8 sliding-window layers x 2 x kv_heads x window x head_dim
// + 2 x kv_heads x head_dim x context                       (the shared-KV layer: the one that grows)
// and `info`'s estimate says the same.
TEST(SambaYDecode, PhiFourMiniFlashStateFormula) {
  const ModelConfig c = ModelConfig::from_preset("phi4miniflash_d32");
  const int64_t di = 2 * 2560, kv = 20, hd = 64, window = 512;
  for (int64_t ctx : {1024, 16384, 65536}) {
    const int64_t floats = 9 * (3 + 16) * di + 8 * 2 * kv * window * hd + 2 * kv * hd * ctx;
    EXPECT_EQ(DecodeLayout::make(c, ctx)->floats, floats) << ctx;
    EXPECT_EQ(estimate_memory(c, 1, 0, ctx).decode_per_seq, 4 * floats) << ctx;
  }
}

// The cached op against the training op: the first p0 positions go into the ring (kv_cache_write_rows),
// the rest are new rows; their outputs equal the training forward's on the whole sequence. Head sizes
// on both sides of the one-pass limit (256), windowed and full, query pairs per kv pair within one group
// and over several.
TEST(SambaYDecode, CachedDiffAttentionEqualsTheTrainingOp) {
  const int64_t Tn = 9, p0 = 5, L = Tn - p0;
  // (H, G): 2 query pairs per kv pair, and 10 (walked in groups of 4, 4 and 2).
  for (auto [H, G] : {std::pair<int64_t, int64_t>{4, 2}, {40, 4}})
    for (int64_t hd : {4, 300})
      for (int64_t window : {3, 0}) {
        const int64_t W = (H + 2 * G) * hd, cap = window > 0 ? window : Tn;
        std::mt19937 rng(uint32_t(hd + window));
        std::normal_distribution<float> nd(0.0f, 0.5f);
        std::vector<float> qkv(Tn * W), want(Tn * H * hd), got(L * H * hd), kc(G * cap * hd), vc(G * cap * hd);
        for (auto& x : qkv) x = nd(rng);
        const float lambda = 0.3f;
        const double scale = 1.0 / std::sqrt(double(hd));
        const Context& ctx = cpu_context();
        ops::diff_attention_forward(ctx, want.data(), static_cast<float*>(nullptr), qkv.data(), W, qkv.data() + H * hd,
                                    qkv.data() + (H + G) * hd, W, &lambda, 1, Tn, H, G, hd, window, scale);
        const int32_t slot = 0;
        const int64_t zero = 0, at = p0;
        ops::kv_cache_write_rows(ctx, kc.data(), vc.data(), qkv.data() + H * hd, qkv.data() + (H + G) * hd, W, &slot,
                                 &zero, 1, p0, G, hd, cap);
        const float* rows = qkv.data() + p0 * W;
        ops::diff_attention_cached_forward(ctx, got.data(), rows, W, rows + H * hd, rows + (H + G) * hd, W, kc.data(),
                                           vc.data(), &slot, &at, &lambda, 1, L, H, G, hd, cap, window, scale);
        EXPECT_LT(test::rel_error(got.data(), want.data() + p0 * H * hd, L * H * hd), 1e-5)
            << "H " << H << " G " << G << " hd " << hd << " window " << window;
      }
}

// The rows the cross-decoder keeps in a prefill of B sequences: each one's last, moved to the front.
TEST(SambaYDecode, TakeLastRowsAndPositions) {
  const int64_t B = 3, L = 4, width = 2;
  std::vector<float> x(B * L * width);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(i);
  ops::take_last_rows(cpu_context(), x.data(), width, B, L);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < width; ++c) EXPECT_EQ(x[b * width + c], float((b * L + L - 1) * width + c));
  const int64_t pos[B] = {0, 7, 30};
  int64_t last[B];
  ops::last_positions(cpu_context(), last, pos, B, L);
  EXPECT_EQ(last[0], 3);
  EXPECT_EQ(last[1], 10);
  EXPECT_EQ(last[2], 33);
}
