// Training memory from the model's buffer plan (model/train_memory.h, `sambalm info --device
// --precision`): fp32 equals what the CPU model's arena allocates; bf16 (the GPU plan, computed
// without a GPU) equals a count by hand of the buffers Model<bf16> lays out.
#include <gtest/gtest.h>

#include <random>

#include "model/model.h"
#include "model/train_memory.h"
#include "testing.h"

namespace sambalm {
namespace {

// One pair of blocks: Mamba + MLP, then attention (2 query heads of 64 sharing one key/value group) + MLP.
ModelConfig tiny() {
  test::SambaShape s;
  s.n_layer = 2, s.d = 128, s.heads = 2, s.groups = 1, s.head_size = 64, s.mlp = 96, s.window = 8;
  return test::small_samba("memory", s);
}

TEST(TrainMemory, Fp32PlanEqualsTheCpuModelsArena) {
  const ModelConfig cfg = tiny();
  const int64_t B = 3, Tn = 20;
  const TrainMemory m = training_memory(cfg, Device::CPU, Precision::FP32, B, Tn);
  ParamStore params(param_specs(cfg));
  test::fill_random_params(params, 1);
  Model<float> model(cfg, params.entries());
  std::vector<int32_t> tokens(B * Tn), targets(B * Tn);
  std::mt19937 g(3);
  for (auto& t : tokens) t = int32_t(g() % cfg.vocab_size);
  for (auto& t : targets) t = int32_t(g() % cfg.vocab_size);
  EXPECT_EQ(model.train_arena_bytes(), 0u);
  model.forward(params.data(), tokens.data(), targets.data(), B, Tn);
  EXPECT_GT(model.train_arena_bytes(), 0u);
  EXPECT_EQ(m.activations, int64_t(model.train_arena_bytes()));
  const int64_t P = cfg.num_params();
  EXPECT_EQ(m.master, 4 * P);
  EXPECT_EQ(m.working, 0);
  EXPECT_EQ(m.grads, 4 * P);
  EXPECT_EQ(m.adam, 8 * P);
  EXPECT_EQ(m.total, 16 * P + m.activations);
}

TEST(TrainMemory, Bf16IsAGpuPlan) { EXPECT_THROW(training_memory(tiny(), Device::CPU, Precision::BF16, 1, 8), Error); }

#if SAMBALM_HAVE_CUDA
// Model<bf16>::layout_train counted by hand: T = bf16 (2 bytes) for activations and GEMM operands,
// S = fp32 (4 bytes) for the residual stream, statistics, dt_pre, A, the scan's chunk states and the
// backward's scratch; each buffer rounded up to the arena's 64 bytes; the layers' backward temporaries
// share one region (the largest counts).
TEST(TrainMemory, Bf16PlanMatchesAHandCount) {
  const ModelConfig cfg = tiny();
  const int64_t B = 3, Tn = 100, BT = B * Tn;
  const int64_t d = 128, di = 256, N = 16, R = 8, X = R + 2 * N, H = 2, G = 1, hs = 64, hid = 96;
  const int64_t V = cfg.padded_vocab_size, rope_half = cfg.rope_n_elem() / 2;
  ASSERT_EQ(cfg.d_inner(), di);
  ASSERT_EQ(cfg.mamba_dt_rank(), R);
  ASSERT_EQ(cfg.d_state, N);
  ASSERT_EQ(cfg.head_size, hs);
  ASSERT_EQ(V, 64);
  auto al = [](int64_t bytes) { return (bytes + 63) / 64 * 64; };
  // An arena buffer: rounded to 64 bytes, plus 64 where that is a whole number of 4 KiB pages (the
  // arena staggers such buffers so that they do not all start at the same cache set).
  auto buf = [&](int64_t bytes) { return al(bytes) % 4096 == 0 ? al(bytes) + 64 : al(bytes); };
  auto t = [&](int64_t n) { return buf(2 * n); };  // bf16
  auto s = [&](int64_t n) { return buf(4 * n); };  // fp32
  auto i32 = [&](int64_t n) { return buf(4 * n); };
  const int64_t chunks = (Tn + 15) / 16;  // the CUDA scan's checkpoints: every 16 steps
  int64_t bytes = 2 * i32(BT);            // tokens, targets
  bytes += 5 * s(BT * d);                 // residual streams: 4 sublayers + 1
  bytes += t(BT * d);                     // f
  bytes += 4 * (t(BT * d) + s(BT));       // per sublayer: normed input, rstd (RMSNorm: no mean)
  // Mamba: xz, conv_out, xc, xdbl, dt_pre (fp32), dt, y, yg, chunk states (fp32), then A (fp32).
  bytes += t(BT * 2 * di) + 2 * t(BT * di) + t(BT * X) + s(BT * di) + 3 * t(BT * di) + s(B * (chunks + 1) * di * N) +
           s(di * N);
  bytes += 2 * 3 * t(BT * hid);  // two MLPs: gate, up, hidden
  // Attention: qkv, q, k, v, att, lse (fp32).
  bytes += t(BT * (H + 2 * G) * hs) + t(BT * H * hs) + 2 * t(BT * G * hs) + t(BT * H * hs) + s(BT * H);
  bytes += t(BT * d) + s(BT) + 2 * t(BT * V) + 2 * t(Tn * rope_half);  // xf, xf_rstd, logits, dlogits, rope
  bytes += s(BT * d) + 3 * t(BT * d);                                  // dres (fp32), dres_t, dxn, dxf
  // The backward region. Mamba: dgated, dy, dxz, dxc, ddt, dxdbl, ddt_pre, dA (fp32), and the GPU scan
  // backward's scratch (fp32): the dB/dC accumulators of every row.
  const int64_t mamba = 2 * t(BT * di) + t(BT * 2 * di) + 2 * t(BT * di) + t(BT * X) + t(BT * di) + s(di * N) +
                        s(BT * 2 * N);
  // Attention: datt, dq, dk, dv, dqkv, and the flash backward's fp32 dQ accumulator and Di
  // (attention_backward_scratch_size, head size 64).
  const int64_t attn = 2 * t(BT * H * hs) + 2 * t(BT * G * hs) + t(BT * (H + 2 * G) * hs) + s(B * H * Tn * (hs + 1));
  const int64_t mlp = 3 * t(BT * hid);
  bytes += std::max({mamba, attn, mlp});

  const TrainMemory m = training_memory(cfg, Device::CUDA, Precision::BF16, B, Tn);
  EXPECT_EQ(m.activations, bytes);
  const int64_t P = cfg.num_params();
  EXPECT_EQ(m.master, 4 * P);
  EXPECT_EQ(m.working, al(2 * P));
  EXPECT_EQ(m.grads, 4 * P);
  EXPECT_EQ(m.adam, 8 * P);
  EXPECT_EQ(m.total, 16 * P + al(2 * P) + bytes);
}
#endif

TEST(InfoCli, TrainingPlanFollowsDeviceAndPrecision) {
  std::string out;
  ASSERT_EQ(test::run_cli("info Samba_421M -b 2 -t 256 --device cpu --precision fp32", &out), 0) << out;
  EXPECT_NE(out.find("training CPU memory, fp32, batch 2 x seq-len 256"), std::string::npos) << out;
  EXPECT_EQ(test::run_cli("info Samba_421M --device cpu --precision bf16", &out), 1) << out;
  EXPECT_NE(out.find("bf16"), std::string::npos) << out;
#if SAMBALM_HAVE_CUDA
  // The GPU plan needs the CUDA backend's sizes, not a GPU.
  ASSERT_EQ(test::run_cli("info Samba_421M -b 8 -t 4096 --device cuda --precision bf16", &out), 0) << out;
  EXPECT_NE(out.find("training GPU memory, bf16 mixed precision, batch 8 x seq-len 4096"), std::string::npos) << out;
  EXPECT_NE(out.find("bf16 working copy"), std::string::npos) << out;
#endif
}

}  // namespace
}  // namespace sambalm
