// docs/DATA.md stays true: scripts/check_data_doc.sh runs every command of the page on a small
// SlimPajama-shaped tree (prepare with --split/--group-by, a weighted mixture run and its --resume,
// lit_gpt PackedDataset data both ways) and checks what the page says they produce.
#include <cstdlib>
#include <fstream>

#include "testing.h"

namespace sambalm {
namespace {

TEST(DataDoc, EveryCommandRuns) {
  REQUIRE_FIXTURES();
  if (std::system("command -v zstd >/dev/null 2>&1 && command -v python3 >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "needs the zstd program and python3 (scripts/setup.sh installs them)";
  const std::string work = test::temp_dir("data_doc"), log = work + "/check.log";
  const std::string cmd = "SAMBALM_FIXTURES='" + test::fixtures_dir() + "' bash '" SAMBALM_SOURCE_DIR
                          "/scripts/check_data_doc.sh' '" SAMBALM_CLI_PATH "' '" + work + "/w' > '" + log + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream f(log);
  const std::string out((std::istreambuf_iterator<char>(f)), {});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("every command of docs/DATA.md ran"), std::string::npos) << out;
}

}  // namespace
}  // namespace sambalm
