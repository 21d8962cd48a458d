// DeviceDecodeModel (the driver that runs on a GPU) on the host context: the same prefill and decode
// calls as DecodeModel, so the same logits bit for bit, and the same errors (the GPU runs of this
// driver are tests/gpu/test_cuda_decode.cpp).
#include <random>

#include "core/error.h"
#include "infer/decode_model.h"
#include "infer/device_decode_model.h"
#include "infer/state_file.h"
#include "io/model_dir.h"
#include "state_file_testing.h"
#include "testing.h"

using namespace sambalm;

namespace {

template <typename DM>
std::vector<float> run(DM& dm, const std::vector<int32_t>& tok, int64_t split) {
  const int64_t V = dm.vocab(), n = int64_t(tok.size());
  std::vector<float> out(static_cast<size_t>(n * V));
  DecodeState spare = dm.new_state();
  DecodeState st = dm.new_state();
  dm.prefill(st, tok.data(), split, out.data(), nullptr);
  for (int64_t t = split; t < n; ++t) {
    DecodeState* p = &st;
    dm.step(&p, 1, &tok[t], out.data() + t * V);
  }
  return out;
}

}  // namespace

TEST(DeviceDecodeOnHost, SameLogitsAsDecodeModel) {
  REQUIRE_FIXTURES();
  for (const char* name : {"samba_tiny", "mamba_tiny"}) {
    LoadedModel lm = load_model(test::fixtures_dir() + "/" + name);
    std::mt19937 rng(3);
    std::vector<int32_t> tok(50);
    for (auto& t : tok) t = int32_t(rng() % lm.config.vocab_size);
    DecodeOptions opt;
    opt.chunk = 7;
    opt.slots = 2;
    DecodeModel ref(lm.config, lm.params.entries(), lm.params.data(), opt);
    DeviceDecodeModel<float> dm(lm.config, lm.params.entries(), lm.params.data(), nullptr, cpu_context(), opt);
    EXPECT_EQ(dm.pool().context().device, Device::CPU);
    EXPECT_EQ(run(dm, tok, 19), run(ref, tok, 19)) << name;
  }
}

// Both drivers make the same argument checks (infer/decode_checks.h), state untouched after each.
template <typename DM>
void expect_decode_errors(DM& dm, const ModelConfig& cfg) {
  DecodeState a = dm.new_state(), b = dm.new_state();
  EXPECT_THROW(dm.new_state(), Error);
  const int32_t bad = int32_t(cfg.padded_vocab_size);
  EXPECT_THROW(dm.prefill(a, &bad, 1, nullptr, nullptr), Error);
  EXPECT_EQ(a.pos(), 0);
  const int32_t twice[] = {a.slot(), a.slot()}, tok[] = {1, 2}, outside[] = {a.slot(), 7};
  std::vector<float> logits(static_cast<size_t>(2 * dm.vocab()));
  EXPECT_THROW(dm.step_slots(twice, 2, tok, logits.data()), Error);
  EXPECT_THROW(dm.step_slots(outside, 2, tok, logits.data()), Error);
  EXPECT_THROW(dm.step_slots(twice, 0, tok, logits.data()), Error);
  EXPECT_EQ(a.pos(), 0);
  DecodeState* both[] = {&a, &b};
  dm.step(both, 2, tok, logits.data());
  EXPECT_EQ(a.pos(), 1);
  EXPECT_EQ(b.pos(), 1);
}

TEST(DeviceDecodeOnHost, Errors) {
  REQUIRE_FIXTURES();
  LoadedModel lm = load_model(test::fixtures_dir() + "/mamba_tiny");
  DecodeOptions opt;
  opt.slots = 2;
  opt.max_batch = 2;
  DeviceDecodeModel<float> dm(lm.config, lm.params.entries(), lm.params.data(), nullptr, cpu_context(), opt);
  expect_decode_errors(dm, lm.config);
  DecodeModel ref(lm.config, lm.params.entries(), lm.params.data(), opt);
  expect_decode_errors(ref, lm.config);
  // bf16 states are the GPU's only.
  EXPECT_THROW(DecodePool(dm.layout(), 1, cpu_context(), StateType::BF16), Error);
}

// State files through a target (the path a GPU model takes): saved from the driver's pool, loaded by the
// CPU engine and continued, the logits are the CPU's own; and back. Another model's target is refused.
TEST(DeviceDecodeOnHost, StateFileThroughTarget) {
  REQUIRE_FIXTURES();
  LoadedModel lm = load_model(test::fixtures_dir() + "/samba_tiny");
  const ModelConfig& cfg = lm.config;
  DecodeOptions opt;
  opt.chunk = 5;
  DecodeModel ref(cfg, lm.params.entries(), lm.params.data(), opt);
  DeviceDecodeModel<float> dm(cfg, lm.params.entries(), lm.params.data(), nullptr, cpu_context(), opt);
  const DecodeStateTarget target = decode_state_target(cfg, lm.params.entries(), lm.params.data(),
                                                       int64_t(lm.params.size()), *dm.layout());
  const DecodeStateTarget want = decode_state_target(ref);
  EXPECT_EQ(target.weights_hash, want.weights_hash);
  EXPECT_EQ(target.config_hash, want.config_hash);
  EXPECT_EQ(target.floats, want.floats);
  std::mt19937 rng(5);
  std::vector<int32_t> tok(40);
  for (auto& t : tok) t = int32_t(rng() % cfg.vocab_size);
  const std::string dir = test::temp_dir("device_state");
  const int64_t V = ref.vocab(), split = 23;
  auto rest = [&](auto& m, DecodeState& st) { return test::step_logits(m, st, tok, split, V); };
  {
    auto [a, b] = test::through_state_file(dm, target, ref, ref, tok, split, dir + "/a.state");
    EXPECT_EQ(rest(ref, b), rest(dm, a));
  }
  {
    auto [a, b] = test::through_state_file(ref, ref, dm, target, tok, split, dir + "/b.state");
    EXPECT_EQ(rest(dm, b), rest(ref, a));
  }
  // Another model's state: refused, the state untouched.
  LoadedModel other = load_model(test::fixtures_dir() + "/samba_tiny_gqa");
  DeviceDecodeModel<float> om(other.config, other.params.entries(), other.params.data(), nullptr, cpu_context(), opt);
  DecodeState c = om.new_state();
  std::vector<int32_t> ids;
  EXPECT_THROW(load_decode_state(dir + "/a.state",
                                 decode_state_target(other.config, other.params.entries(), other.params.data(),
                                                     int64_t(other.params.size()), *om.layout()),
                                 c, ids),
               Error);
  EXPECT_EQ(c.pos(), 0);
}
