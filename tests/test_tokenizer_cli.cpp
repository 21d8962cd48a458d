// `sambalm tokenize` / `sambalm detokenize` end to end.
#include <fstream>

#include "testing.h"

namespace sambalm {
namespace {

TEST(TokenizeCli, EncodesAndDecodesLikeTheFixture) {
  REQUIRE_FIXTURES();
  const std::string tj = test::fixtures_dir() + "/bpe_split_tiny/tokenizer.json";
  std::string out;
  // "Hello, world! It's 2026 and THEY'RE here." -> the ids HF tokenizers gives (encodings.json).
  ASSERT_EQ(test::run_cli("tokenize -t " + tj + " --json --text \"Hello, world! It's 2026 and THEY'RE here.\"", &out),
            0)
      << out;
  EXPECT_EQ(out, "[44, 3452, 16, 3242, 426, 5, 3891, 225, 1851, 22, 26, 342, 352, 44, 41, 61, 11, 769, 1842, 18]\n");
  ASSERT_EQ(test::run_cli("detokenize -t " + tj +
                              " --ids '[44, 3452, 16, 3242, 426, 5, 3891, 225, 1851, 22, 26, 342, 352, 44, 41, 61, 11, "
                              "769, 1842, 18]'",
                          &out),
            0)
      << out;
  EXPECT_EQ(out, "Hello, world! It's 2026 and THEY'RE here.");
}

TEST(TokenizeCli, StdinRoundTripAndSpecials) {
  REQUIRE_FIXTURES();
  std::string dir = test::temp_dir("tokcli");
  std::ofstream(dir + "/in.txt", std::ios::binary) << "caf\xC3\xA9 \xF0\x9F\x99\x82\n\ttabs";
  std::string out;
  for (std::string t : {test::fixtures_dir() + "/bpe_tiny", test::fixtures_dir() + "/sp_tiny", std::string("bytes")}) {
    ASSERT_EQ(test::run_cli("tokenize -t " + t + " < " + dir + "/in.txt > " + dir + "/ids.txt", &out), 0) << out;
    ASSERT_EQ(test::run_cli("detokenize -t " + t + " < " + dir + "/ids.txt", &out), 0) << out;
    EXPECT_EQ(out, "caf\xC3\xA9 \xF0\x9F\x99\x82\n\ttabs") << t;
  }
  ASSERT_EQ(test::run_cli("tokenize -t " + test::fixtures_dir() + "/sp_tiny --bos --eos --text hi", &out), 0);
  EXPECT_EQ(out.substr(0, 2), "1 ");
  EXPECT_EQ(out.substr(out.size() - 3), " 2\n");
}

TEST(TokenizeCli, Errors) {
  REQUIRE_FIXTURES();
  std::string dir = test::temp_dir("tokcli_err");
  std::ofstream(dir + "/bad.txt", std::ios::binary) << "ok \xFF";
  std::string out;
  const std::string tj = test::fixtures_dir() + "/bpe_tiny/tokenizer.json";
  EXPECT_NE(test::run_cli("tokenize -t " + tj + " < " + dir + "/bad.txt", &out), 0);
  EXPECT_NE(out.find("not valid UTF-8"), std::string::npos) << out;
  // --raw-bytes takes any bytes, and they come back.
  ASSERT_EQ(test::run_cli("tokenize -t " + tj + " --raw-bytes < " + dir + "/bad.txt > " + dir + "/ids", &out), 0)
      << out;
  ASSERT_EQ(test::run_cli("detokenize -t " + tj + " < " + dir + "/ids", &out), 0);
  EXPECT_EQ(out, "ok \xFF");
  EXPECT_NE(test::run_cli("detokenize -t " + tj + " --ids '1 x2'", &out), 0);
  EXPECT_NE(out.find("'x2' is not a token id"), std::string::npos) << out;
  EXPECT_NE(test::run_cli("detokenize -t " + tj + " --ids '99999'", &out), 0);
  EXPECT_NE(out.find("99999"), std::string::npos) << out;
  EXPECT_NE(test::run_cli("tokenize -t " + dir + "/none.model --text x", &out), 0);
  EXPECT_NE(out.find("none.model"), std::string::npos) << out;
}

}  // namespace
}  // namespace sambalm
