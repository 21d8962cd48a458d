// Shared test helpers: where the fixtures are, relative-error comparison, temp dirs, running the CLI.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "core/tensor.h"

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

// A fresh empty directory under the system temp dir, removed at process exit.
std::string temp_dir(const std::string& tag);

// Splits a safetensors file into `n_shards` safetensors shards (runs of consecutive tensors, in file
// order) named model-0000i-of-0000n.safetensors in `dir`, plus model.safetensors.index.json, the way
// Hugging Face saves a large checkpoint. Returns the index's weight_map (tensor -> shard file).
std::map<std::string, std::string> write_shards(const std::string& safetensors_path, const std::string& dir,
                                                int n_shards);

// Runs the sambalm binary with arguments (a shell command line fragment); returns exit code and
// captures stdout+stderr into `output`.
int run_cli(const std::string& args, std::string* output = nullptr);

}  // namespace sambalm::test
