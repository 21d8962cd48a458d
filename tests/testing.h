// Shared test helpers: where the fixtures are, relative-error comparison, temp dirs, running the CLI.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/params.h"

namespace sambalm {
class DecodeModel;
}

namespace sambalm::test {

// ../shared/fixtures beside the repository (or $SAMBALM_FIXTURES). When it is missing, tests skip,
// except under CI=true, where they fail.
std::string fixtures_dir();
// Calls GTEST_SKIP / FAIL as above when the fixtures are missing; use as: REQUIRE_FIXTURES();
bool fixtures_available();
#define REQUIRE_FIXTURES()                                                       \
  do {                                                                           \
    if (!::sambalm::test::fixtures_available()) {                                \
      if (std::getenv("CI") && std::string(std::getenv("CI")) == "true")         \
        FAIL() << "fixtures missing at " << ::sambalm::test::fixtures_dir();     \
      GTEST_SKIP() << "fixtures missing at " << ::sambalm::test::fixtures_dir(); \
    }                                                                            \
  } while (0)

// max |a - b| / max |b| (the fixtures README's measure). Shapes must match (numel).
double rel_error(const float* a, const float* b, int64_t n);
double rel_error(const Tensor& a, const Tensor& b);

// A model fixture (fixtures/<name>: config.json, model.safetensors, expected.safetensors): its config,
// its weights as float32 parameters with the state dict they came from (which tells the weight format),
// the expected outputs, and their input_ids / targets [B, T] as int32 token ids.
struct ModelFixture {
  std::string dir;
  ModelConfig cfg;
  std::map<std::string, Tensor> state_dict;
  ParamStore params;
  SafetensorsFile expected;
  std::vector<int32_t> tokens, targets;
  int64_t B = 0, T = 0;
};
ModelFixture load_model_fixture(const std::string& name);
// Every gradient the fixture holds (grad.<name>, in its own weight names) against `grads`, within 1e-3
// (the fixtures README's tolerance), and none of them left uncompared; `what` names the case.
void expect_fixture_grads(const ModelFixture& fx, const ParamStore& grads, const std::string& what);
// A tensor of int64 token ids (a fixture's input_ids / targets) as int32.
std::vector<int32_t> ids_of(const Tensor& t);

// Logits [B, Tn, V] of decoding B sequences of Tn tokens (`tok`, row-major) with `dm`, whose pool holds
// B more states: sequence b prefills splits[b] tokens (in dm's chunks, every logit kept), then all step
// together one token at a time, each at its own position, until every sequence has all Tn.
std::vector<float> decode_logits(DecodeModel& dm, const std::vector<int32_t>& tok, int64_t B, int64_t Tn,
                                 const std::vector<int64_t>& splits);

// Logits of stepping `st` through tok[from..] one token at a time with `engine` (the CPU DecodeModel or a
// GPU DeviceDecodeModel), one row of V after another.
template <typename Engine, typename State>
std::vector<float> step_logits(Engine& engine, State& st, const std::vector<int32_t>& tok, int64_t from, int64_t V) {
  std::vector<float> all, logits(static_cast<size_t>(V));
  for (int64_t t = from; t < int64_t(tok.size()); ++t) {
    State* p = &st;
    engine.step(&p, 1, &tok[t], logits.data());
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

// A fresh empty directory under the system temp dir, removed at process exit.
std::string temp_dir(const std::string& tag);

// Splits a safetensors file into `n_shards` safetensors shards (runs of consecutive tensors, in file
// order) named model-0000i-of-0000n.safetensors in `dir`, plus model.safetensors.index.json, the way
// Hugging Face saves a large checkpoint. Returns the index's weight_map (tensor -> shard file).
std::map<std::string, std::string> write_shards(const std::string& safetensors_path, const std::string& dir,
                                                int n_shards);

// A small Samba for tests: n_layer/2 blocks of (Mamba, MLP, sliding-window attention, MLP), RMSNorm,
// mamba_init, tied embeddings; d_state 0 / dt_rank 0 keep the config's defaults (16, ceil(d / 16)).
struct SambaShape {
  int64_t n_layer = 4, d = 32, heads = 4, groups = 4, head_size = 8, mlp = 64, window = 8, vocab = 50, padded = 64,
          d_state = 0, dt_rank = 0;
};
ModelConfig small_samba(const std::string& name, const SambaShape& s = {});

// Random parameters at a workable scale: N(0, 0.2), norm weights around 1, A_log around log(1..8),
// dt_proj bias around -3 (dt = softplus(...) of about 0.05).
void fill_random_params(ParamStore& store, uint64_t seed);

// Runs the sambalm binary with arguments (a shell command line fragment); returns exit code and
// captures stdout+stderr into `output`.
int run_cli(const std::string& args, std::string* output = nullptr);
// Runs a shell command line; returns its exit code (128 + signal when killed) and stdout+stderr.
int sh(const std::string& command, std::string* output);
// Splits a command line at whitespace (no quoting) into the arguments for spawn_cli.
std::vector<std::string> split_args(const std::string& line);
// Starts the sambalm binary with `args` in a child process, no shell between (the pid is the program's
// own, for tests that signal it mid-run), its stdout and stderr appended to `log`; returns the pid.
pid_t spawn_cli(const std::vector<std::string>& args, const std::string& log);

// max |a - b| / max |b| over each tensor of two safetensors files (the same names); each is expected
// within `tol`; returns the worst (and prints it).
double worst_tensor_error(const std::string& a_path, const std::string& b_path, double tol);

// dir/data.txt: about `bytes` of text drawn from a few words and sentence ends (fixed seed); returns its path.
std::string write_word_text(const std::string& dir, size_t bytes = 30000);

}  // namespace sambalm::test
