// Prefill and decoding on the GPU (DeviceDecodeModel over a pool of decode states in device memory)
// against the one-pass GPU forward of the same model, for every model fixture:
//   fp32: chunked prefill (odd chunks, boundaries inside and across windows) + batched token-by-token
//         decode over 4x the attention window (sequences at different positions, slots not 0..B-1)
//         gives the one-pass logits within 1e-4 (max |got - want| / max |want|);
//   bf16: the same within 2e-2 of the one-pass bf16 forward;
//   greedy generation on the GPU (fp32) is the CPU engine's token sequence (up to a near tie of logits);
//   a state copied out of a GPU pool (the state file's body) continues on the CPU as on the GPU, and a
//   CPU state continues on the GPU; the pool's limit is a clear error and leaves the pool usable.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "core/error.h"
#include "gpu_testing.h"
#include "infer/decode_model.h"
#include "infer/device_decode_model.h"
#include "infer/state_file.h"
#include "io/model_dir.h"
#include "model/model.h"
#include "ops/memory_ops.h"
#include "state_file_testing.h"
#include "testing.h"

namespace sambalm {
namespace {

using namespace testing_gpu;

constexpr double kFp32Tol = 1e-4, kBf16Tol = 2e-2;

// The attention window of a fixture (8 for the Mamba ones: any length works, 4 x 8 is long enough to
// cross many chunk boundaries).
int64_t window_of(const ModelConfig& cfg) { return cfg.local_window > 0 && cfg.has_attention() ? cfg.local_window : 8; }

std::vector<int32_t> random_tokens(const ModelConfig& cfg, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = int32_t(rng() % cfg.vocab_size);
  return t;
}

// Logits [B, Tn, V] (host, fp32) of sequence b prefilling split + b tokens (capped at Tn) in chunks of
// `chunk`, then decoding the rest one token at a time, batched with whichever sequences are past their
// prefill (so a step mixes positions). One slot is taken before the sequences' so slot ids are not 0..B-1.
template <typename T>
std::vector<float> decode_logits(DeviceDecodeModel<T>& dm, const std::vector<int32_t>& tok, int64_t B, int64_t Tn,
                                 int64_t split) {
  const int64_t V = dm.vocab();
  std::vector<float> got(static_cast<size_t>(B * Tn * V), NAN);
  DecodeState spare = dm.new_state();
  std::vector<DecodeState> states;
  for (int64_t b = 0; b < B; ++b) states.push_back(dm.new_state());
  std::vector<int64_t> sp(B);
  for (int64_t b = 0; b < B; ++b) {
    sp[b] = std::min(Tn, split + b);
    dm.prefill(states[b], tok.data() + b * Tn, sp[b], got.data() + b * Tn * V, nullptr);
    EXPECT_EQ(states[b].pos(), sp[b]);
  }
  std::vector<float> logits(static_cast<size_t>(B * V));
  for (int64_t t = split; t < Tn; ++t) {
    std::vector<DecodeState*> ptrs;
    std::vector<int32_t> next;
    std::vector<int64_t> who;
    // Reverse order: the batch rows are not in slot order either.
    for (int64_t b = B - 1; b >= 0; --b)
      if (t >= sp[b]) {
        ptrs.push_back(&states[b]);
        next.push_back(tok[b * Tn + t]);
        who.push_back(b);
      }
    if (ptrs.empty()) continue;
    std::fill(logits.begin(), logits.end(), NAN);
    dm.step(ptrs.data(), int64_t(ptrs.size()), next.data(), logits.data());
    for (size_t i = 0; i < who.size(); ++i) std::copy_n(logits.data() + i * V, V, got.data() + (who[i] * Tn + t) * V);
  }
  return got;
}

template <typename T>
std::vector<float> to_host_f32(const T* p, int64_t n) {
  std::vector<T> v(static_cast<size_t>(n));
  ops::download(gpu(), v.data(), p, sizeof(T) * n);
  if constexpr (std::is_same_v<T, float>)
    return v;
  else
    return to_f32(v);
}

void check_fp32(const std::string& name) {
  LoadedModel lm = load_model(test::fixtures_dir() + "/" + name);
  const ModelConfig& cfg = lm.config;
  const int64_t w = window_of(cfg), B = 2, L = 4 * w, V = cfg.padded_vocab_size;
  const std::vector<float> host(lm.params.data(), lm.params.data() + lm.params.size());
  DeviceBuffer<float> d_params(host);
  const auto tok = random_tokens(cfg, B * L, 1);
  Model<float> model(cfg, lm.params.entries(), gpu());
  model.forward(d_params.get(), tok.data(), nullptr, B, L);
  const auto want = to_host_f32(model.logits(), B * L * V);
  for (int64_t chunk : {int64_t(5), w, 2 * w + 1}) {
    for (int64_t split : {int64_t(1), w - 1, 3 * w + 2}) {
      DecodeOptions opt;
      opt.chunk = chunk;
      opt.slots = B + 1;
      DeviceDecodeModel<float> dm(cfg, lm.params.entries(), d_params.get(), nullptr, gpu(), opt);
      const auto got = decode_logits(dm, tok, B, L, split);
      const double err = test::rel_error(got.data(), want.data(), B * L * V);
      std::printf("%s fp32 chunk %ld prefill %ld: max rel error %.3e\n", name.c_str(), long(chunk), long(split), err);
      EXPECT_LT(err, kFp32Tol) << name << " fp32 chunk " << chunk << " prefill " << split;
    }
  }
}

void check_bf16(const std::string& name) {
  LoadedModel lm = load_model(test::fixtures_dir() + "/" + name);
  const ModelConfig& cfg = lm.config;
  const int64_t w = window_of(cfg), B = 2, L = 4 * w, V = cfg.padded_vocab_size;
  const std::vector<float> host(lm.params.data(), lm.params.data() + lm.params.size());
  DeviceBuffer<float> d_master(host);
  DeviceBuffer<bf16> d_work(to_bf16(host));
  const auto tok = random_tokens(cfg, B * L, 2);
  Model<bf16> model(cfg, lm.params.entries(), gpu());
  model.forward(d_work.get(), d_master.get(), tok.data(), nullptr, B, L);
  const auto want = to_host_f32(model.logits(), B * L * V);
  for (int64_t chunk : {int64_t(7), 2 * w + 1}) {
    for (int64_t split : {int64_t(1), w + 3}) {
      DecodeOptions opt;
      opt.chunk = chunk;
      opt.slots = B + 1;
      DeviceDecodeModel<bf16> dm(cfg, lm.params.entries(), d_work.get(), d_master.get(), gpu(), opt);
      const auto got = decode_logits(dm, tok, B, L, split);
      const double err = test::rel_error(got.data(), want.data(), B * L * V);
      std::printf("%s bf16 chunk %ld prefill %ld: max rel error %.3e\n", name.c_str(), long(chunk), long(split), err);
      EXPECT_LT(err, kBf16Tol) << name << " bf16 chunk " << chunk << " prefill " << split;
    }
  }
}

int32_t argmax(const float* x, int64_t n) { return int32_t(std::max_element(x, x + n) - x); }

// Greedy continuation of `prompt` for n tokens: the CPU engine (DecodeModel) and the GPU's in fp32 give
// the same tokens. Where they part, the CPU's two best logits must be a near tie (within 1e-5 of the
// largest logit: fp32 rounding may order them either way), else the test fails.
void check_greedy(const std::string& name) {
  LoadedModel lm = load_model(test::fixtures_dir() + "/" + name);
  const ModelConfig& cfg = lm.config;
  const int64_t w = window_of(cfg), n = 4 * w, Vr = cfg.vocab_size, V = cfg.padded_vocab_size;
  const auto prompt = random_tokens(cfg, 11, 3);
  DecodeOptions opt;
  opt.chunk = 4;
  DecodeModel cpu(cfg, lm.params.entries(), lm.params.data(), opt);
  const std::vector<float> host(lm.params.data(), lm.params.data() + lm.params.size());
  DeviceBuffer<float> d_params(host);
  DeviceDecodeModel<float> dev(cfg, lm.params.entries(), d_params.get(), nullptr, gpu(), opt);
  // The tokens, and per step the gap between the best and the second best logit relative to the largest.
  auto run = [&](auto& dm, std::vector<double>* gaps) {
    std::vector<float> logits(static_cast<size_t>(V));
    DecodeState st = dm.new_state();
    dm.prefill(st, prompt.data(), int64_t(prompt.size()), nullptr, logits.data());
    std::vector<int32_t> out;
    for (int64_t i = 0; i < n; ++i) {
      const int32_t next = argmax(logits.data(), Vr);
      if (gaps) {
        float second = -INFINITY, top = 0;
        for (int64_t v = 0; v < Vr; ++v) {
          top = std::max(top, std::fabs(logits[v]));
          if (v != next) second = std::max(second, logits[v]);
        }
        gaps->push_back((double(logits[next]) - second) / std::max(top, 1e-30f));
      }
      out.push_back(next);
      DecodeState* p = &st;
      dm.step(&p, 1, &next, logits.data());
    }
    return out;
  };
  std::vector<double> gaps;
  const auto want = run(cpu, &gaps), got = run(dev, nullptr);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    if (got[i] == want[i]) continue;
    EXPECT_LT(gaps[i], 1e-5) << name << ": greedy token " << i << " is " << got[i] << " on the GPU, " << want[i]
                             << " on the CPU, whose two best logits are not a tie (gap " << gaps[i] << ")";
    std::printf("%s: greedy parts at token %zu on a near tie (gap %.2e)\n", name.c_str(), i, gaps[i]);
    break;  // after a tie the sequences continue from different tokens
  }
}

TEST(CudaDecode, Fp32SambaTiny) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  check_fp32("samba_tiny");
}
TEST(CudaDecode, Fp32SambaTinyGqa) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  check_fp32("samba_tiny_gqa");
}
TEST(CudaDecode, Fp32MambaTiny) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  check_fp32("mamba_tiny");
}
TEST(CudaDecode, Fp32HfMambaTiny) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  check_fp32("hf_mamba_tiny");
}
TEST(CudaDecode, Bf16SambaTiny) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  check_bf16("samba_tiny");
}
TEST(CudaDecode, Bf16SambaTinyGqa) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  check_bf16("samba_tiny_gqa");
}
TEST(CudaDecode, Bf16MambaTiny) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  check_bf16("mamba_tiny");
}
TEST(CudaDecode, Bf16HfMambaTiny) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  check_bf16("hf_mamba_tiny");
}
// The decode step replayed from captured CUDA graphs (one per batch size, re-captured when prefills
// re-laid the buffers out) computes what the step launched kernel by kernel computes; graphs are used.
TEST(CudaDecode, GraphsReplayTheSameSteps) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  for (const char* name : {"samba_tiny", "mamba_tiny"}) {
    LoadedModel lm = load_model(test::fixtures_dir() + "/" + name);
    const ModelConfig& cfg = lm.config;
    const int64_t w = window_of(cfg), B = 3, L = 4 * w, V = cfg.padded_vocab_size;
    const std::vector<float> host(lm.params.data(), lm.params.data() + lm.params.size());
    DeviceBuffer<float> d_params(host);
    const auto tok = random_tokens(cfg, B * L, 5);
    std::vector<float> runs[2];
    for (int graphs = 0; graphs < 2; ++graphs) {
      DecodeOptions opt;
      opt.chunk = 5;
      opt.slots = B + 1;
      opt.graphs = graphs == 1;
      DeviceDecodeModel<float> dm(cfg, lm.params.entries(), d_params.get(), nullptr, gpu(), opt);
      runs[graphs] = decode_logits(dm, tok, B, L, w - 1);
      if (graphs)
        EXPECT_GT(dm.graph_replays(), 0) << name;
      else
        EXPECT_EQ(dm.graph_replays(), 0) << name;
    }
    const double err = test::rel_error(runs[1].data(), runs[0].data(), B * L * V);
    std::printf("%s graphs on vs off: max rel difference %.3e\n", name, err);
    EXPECT_LT(err, 1e-6) << name;
  }
}

TEST(CudaDecode, GreedyMatchesCpu) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  for (const char* name : {"samba_tiny", "samba_tiny_gqa", "mamba_tiny", "hf_mamba_tiny"}) check_greedy(name);
}

// A state moves between a GPU pool and the CPU engine through its fp32 body (the state file's): the
// copy continues as the original does (fp32: within 1e-4 of each other).
TEST(CudaDecode, StateMovesBetweenGpuAndCpu) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  LoadedModel lm = load_model(test::fixtures_dir() + "/samba_tiny");
  const ModelConfig& cfg = lm.config;
  const int64_t w = window_of(cfg), V = cfg.padded_vocab_size;
  const auto tok = random_tokens(cfg, 3 * w, 4);
  const int64_t split = w + 5;  // the ring has wrapped
  DecodeOptions opt;
  opt.chunk = 6;
  opt.slots = 2;
  DecodeModel cpu(cfg, lm.params.entries(), lm.params.data(), opt);
  const std::vector<float> host(lm.params.data(), lm.params.data() + lm.params.size());
  DeviceBuffer<float> d_params(host);
  DeviceDecodeModel<float> dev(cfg, lm.params.entries(), d_params.get(), nullptr, gpu(), opt);
  auto rest = [&](auto& dm, DecodeState& st) { return test::step_logits(dm, st, tok, split, V); };
  for (bool from_gpu : {true, false}) {
    DecodeState a = from_gpu ? dev.new_state() : cpu.new_state();
    if (from_gpu)
      dev.prefill(a, tok.data(), split, nullptr, nullptr);
    else
      cpu.prefill(a, tok.data(), split, nullptr, nullptr);
    std::vector<float> body(static_cast<size_t>(a.floats()), NAN);
    a.copy_out(body.data());
    for (float x : body) ASSERT_TRUE(std::isfinite(x)) << "copy_out left values unwritten";
    DecodeState b = from_gpu ? cpu.new_state() : dev.new_state();
    b.copy_in(body.data());
    b.set_pos(a.pos());
    // And back: copy_out of the copy is the same body (exact: fp32 both sides).
    std::vector<float> again(body.size(), NAN);
    b.copy_out(again.data());
    EXPECT_EQ(again, body) << (from_gpu ? "gpu -> cpu" : "cpu -> gpu");
    const auto want = from_gpu ? rest(dev, a) : rest(cpu, a);
    const auto got = from_gpu ? rest(cpu, b) : rest(dev, b);
    EXPECT_LT(test::rel_error(got.data(), want.data(), int64_t(want.size())), kFp32Tol)
        << (from_gpu ? "gpu -> cpu" : "cpu -> gpu");
  }
}

// State files: saved from a GPU pool (fp32 and bf16) through the model's target, loaded by the CPU engine
// and continued: the logits follow the GPU's own continuation (fp32 within 1e-4, bf16 within 2e-2); and a
// file saved by the CPU engine loads into a GPU pool (fp32) and continues as on the CPU.
TEST(CudaDecode, StateFileAcrossDevices) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  for (const char* name : {"samba_tiny", "mamba_tiny"}) {
    LoadedModel lm = load_model(test::fixtures_dir() + "/" + name);
    const ModelConfig& cfg = lm.config;
    const int64_t w = window_of(cfg), V = cfg.padded_vocab_size, P = int64_t(lm.params.size());
    const auto tok = random_tokens(cfg, 3 * w, 6);
    const int64_t split = w + 5;
    DecodeOptions opt;
    opt.chunk = 6;
    DecodeModel cpu(cfg, lm.params.entries(), lm.params.data(), opt);
    const std::vector<float> host(lm.params.data(), lm.params.data() + P);
    DeviceBuffer<float> d_params(host);
    DeviceBuffer<bf16> d_work(to_bf16(host));
    DeviceDecodeModel<float> dev(cfg, lm.params.entries(), d_params.get(), nullptr, gpu(), opt);
    DeviceDecodeModel<bf16> dev16(cfg, lm.params.entries(), d_work.get(), d_params.get(), gpu(), opt);
    const auto target = decode_state_target(cfg, lm.params.entries(), lm.params.data(), P, *dev.layout());
    const std::string dir = test::temp_dir("cuda_state");
    auto rest = [&](auto& dm, DecodeState& st) { return test::step_logits(dm, st, tok, split, V); };
    auto gpu_to_cpu = [&](auto& dm, double tol, const char* what) {
      auto [a, b] =
          test::through_state_file(dm, target, cpu, cpu, tok, split, dir + "/g.state", std::string(name) + " " + what);
      const auto want = rest(dm, a), got = rest(cpu, b);
      const double err = test::rel_error(got.data(), want.data(), int64_t(want.size()));
      std::printf("%s %s: max rel error %.3e\n", name, what, err);
      EXPECT_LT(err, tol) << name << " " << what;
    };
    gpu_to_cpu(dev, kFp32Tol, "fp32 gpu -> cpu");
    gpu_to_cpu(dev16, kBf16Tol, "bf16 gpu -> cpu");
    // CPU -> GPU (fp32).
    auto [a, b] = test::through_state_file(cpu, cpu, dev, target, tok, split, dir + "/c.state", name);
    const auto want = rest(cpu, a), got = rest(dev, b);
    EXPECT_LT(test::rel_error(got.data(), want.data(), int64_t(want.size())), kFp32Tol) << name << " cpu -> gpu";
  }
}

// A bf16 pool's body is fp32 values (the state file's); in and out is exact for values that are bf16
// already, and the scan states keep fp32.
TEST(CudaDecode, Bf16StateBody) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  LoadedModel lm = load_model(test::fixtures_dir() + "/samba_tiny");
  const ModelConfig& cfg = lm.config;
  const std::vector<float> host(lm.params.data(), lm.params.data() + lm.params.size());
  DeviceBuffer<float> d_master(host);
  DeviceBuffer<bf16> d_work(to_bf16(host));
  DecodeOptions opt;
  opt.chunk = 5;
  DeviceDecodeModel<bf16> dm(cfg, lm.params.entries(), d_work.get(), d_master.get(), gpu(), opt);
  DecodeState st = dm.new_state();
  const auto tok = random_tokens(cfg, 2 * window_of(cfg) + 3, 5);
  dm.prefill(st, tok.data(), int64_t(tok.size()), nullptr, nullptr);
  std::vector<float> body(static_cast<size_t>(st.floats()), NAN);
  st.copy_out(body.data());
  double norm = 0;
  for (float x : body) {
    ASSERT_TRUE(std::isfinite(x));
    norm += double(x) * x;
  }
  EXPECT_GT(norm, 0) << "the state is all zero after a prefill";
  st.copy_in(body.data());
  std::vector<float> again(body.size(), NAN);
  st.copy_out(again.data());
  EXPECT_EQ(again, body);
}

// More sequences than the pool holds: a clear error; the pool stays usable (a released slot serves again).
TEST(CudaDecode, PoolFullIsAnError) {
  SAMBALM_REQUIRE_GPU();
  REQUIRE_FIXTURES();
  LoadedModel lm = load_model(test::fixtures_dir() + "/mamba_tiny");
  const std::vector<float> host(lm.params.data(), lm.params.data() + lm.params.size());
  DeviceBuffer<float> d_params(host);
  DecodeOptions opt;
  opt.slots = 2;
  DeviceDecodeModel<float> dm(lm.config, lm.params.entries(), d_params.get(), nullptr, gpu(), opt);
  DecodeState a = dm.new_state(), b = dm.new_state();
  try {
    DecodeState c = dm.new_state();
    FAIL() << "a third state from a pool of 2";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("slots of the decode-state pool are in use"), std::string::npos) << e.what();
  }
  const int32_t t = 1;
  std::vector<float> logits(static_cast<size_t>(dm.vocab()));
  DecodeState* p = &b;
  dm.step(&p, 1, &t, logits.data());
  EXPECT_EQ(b.pos(), 1);
  a = DecodeState();  // released
  DecodeState c = dm.new_state();
  EXPECT_EQ(c.pos(), 0);
  DecodeState* both[] = {&c, &b};
  const int32_t two[] = {1, 2};
  std::vector<float> l2(static_cast<size_t>(2 * dm.vocab()), NAN);
  dm.step(both, 2, two, l2.data());
  for (float x : l2) ASSERT_TRUE(std::isfinite(x));
  EXPECT_EQ(c.pos(), 1);
  EXPECT_EQ(b.pos(), 2);
}

}  // namespace
}  // namespace sambalm
