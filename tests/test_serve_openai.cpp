// The official `openai` Python package (scripts/setup.sh installs it) as the client of `sambalm serve`:
// tests/serve_openai_client.py does completions, chat, streaming and logprobs. Skipped when Python or
// the package is missing.
#include <cstdlib>

#include "serve_testing.h"

using namespace sambalm;

TEST(ServeOpenAI, OfficialPythonClientWorks) {
  if (std::system("python3 -c 'import openai' > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "the openai Python package is not installed (pip install openai; scripts/setup.sh does it)";
  const std::string model = test::serve_model_dir("serve_openai");
  test::ServeProcess s(model, {"--model-name", "tiny-bytes"});
  ASSERT_GT(s.port, 0) << s.log();
  const std::string cmd =
      "python3 " SAMBALM_SOURCE_DIR "/tests/serve_openai_client.py http://127.0.0.1:" + std::to_string(s.port) +
      "/v1 tiny-bytes 2>&1";
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int rc = pclose(p);
  EXPECT_EQ(rc, 0) << out << "\nserver log:\n" << s.log();
  EXPECT_NE(out.find("all checks passed"), std::string::npos) << out;
}
