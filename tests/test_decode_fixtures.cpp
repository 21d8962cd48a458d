// Decoding on the reference fixtures (outputs of the original PyTorch code): chunked prefill + token-by-
// token decoding reproduces `expected.safetensors` logits, and on sequences 4x the attention window
// (longer than the fixtures') equals the one-pass forward with the fixture weights. Chunk sizes are
// chosen to put boundaries inside a window and across windows.
#include <random>

#include "infer/decode_model.h"
#include "io/model_dir.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "model/weights.h"
#include "testing.h"

using namespace sambalm;

namespace {

// Logits [B, T, V] of prefilling `split` tokens per sequence in chunks of `chunk`, then decoding the
// rest one token at a time with all sequences batched.
std::vector<float> decode_logits(const LoadedModel& lm, const std::vector<int32_t>& tok, int64_t B, int64_t Tn,
                                 int64_t chunk, int64_t split) {
  DecodeOptions opt;
  opt.chunk = chunk;
  opt.slots = B;
  DecodeModel dm(lm.config, lm.params.entries(), lm.params.data(), opt);
  return test::decode_logits(dm, tok, B, Tn, std::vector<int64_t>(B, split));
}

void check_fixture(const std::string& name) {
  const std::string dir = test::fixtures_dir() + "/" + name;
  LoadedModel lm = load_model(dir);
  auto expected = read_safetensors(dir + "/expected.safetensors");
  const Tensor& ids = expected.get("input_ids");
  const int64_t B = ids.dim(0), Tn = ids.dim(1);
  std::vector<int32_t> tok = test::ids_of(ids);
  const float* want = expected.get("logits").data<float>();
  const int64_t window = lm.config.local_window > 0 && lm.config.has_attention() ? lm.config.local_window : 8;

  // The fixture's own inputs against the original code's logits.
  for (int64_t chunk : {int64_t(3), window, window + 3}) {
    for (int64_t split : {int64_t(1), window + 2, Tn}) {
      auto got = decode_logits(lm, tok, B, Tn, chunk, split);
      EXPECT_LT(test::rel_error(got.data(), want, B * Tn * lm.config.padded_vocab_size), 1e-4)
          << name << " chunk " << chunk << " prefill " << split;
    }
  }

  // 4 windows long, against the one-pass forward with the same weights.
  const int64_t L = 4 * window;
  std::mt19937 rng(1);
  std::vector<int32_t> longtok(B * L);
  for (auto& t : longtok) t = int32_t(rng() % lm.config.vocab_size);
  Model<float> model(lm.config, lm.params.entries());
  model.forward(lm.params.data(), longtok.data(), nullptr, B, L);
  for (int64_t chunk : {int64_t(5), window, 2 * window + 1}) {
    for (int64_t split : {int64_t(1), window - 1, 3 * window + 2}) {
      auto got = decode_logits(lm, longtok, B, L, chunk, split);
      EXPECT_LT(test::rel_error(got.data(), model.logits(), B * L * lm.config.padded_vocab_size), 1e-4)
          << name << " (4 windows) chunk " << chunk << " prefill " << split;
    }
  }
}

}  // namespace

TEST(DecodeFixtures, SambaTiny) {
  REQUIRE_FIXTURES();
  check_fixture("samba_tiny");
}
TEST(DecodeFixtures, SambaTinyGqa) {
  REQUIRE_FIXTURES();
  check_fixture("samba_tiny_gqa");
}
TEST(DecodeFixtures, MambaTiny) {
  REQUIRE_FIXTURES();
  check_fixture("mamba_tiny");
}
TEST(DecodeFixtures, HfMambaTiny) {
  REQUIRE_FIXTURES();
  check_fixture("hf_mamba_tiny");
}
