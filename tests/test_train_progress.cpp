// The progress bar's plain-line mode (stdout not a terminal) and its duration format.
#include <gtest/gtest.h>

#include <sstream>

#include "train/progress.h"

namespace sambalm {
namespace {

int count_lines(const std::string& s, const std::string& needle) {
  int n = 0;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos;
  return n;
}

TEST(Progress, PlainLinesWhenNotATerminal) {
  testing::internal::CaptureStdout();
  {
    Progress p(100, 0, 25);
    EXPECT_FALSE(p.is_tty());
    for (int i = 1; i <= 100; ++i) p.update(i, "loss 1.0");
    p.message("evaluation done");
    p.finish();
  }
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(count_lines(out, "loss 1.0"), 4) << out;  // steps 25, 50, 75, 100
  EXPECT_NE(out.find(" 25/100"), std::string::npos) << out;
  EXPECT_NE(out.find("100/100"), std::string::npos) << out;
  EXPECT_EQ(count_lines(out, "evaluation done"), 1);
  EXPECT_EQ(out.find('\r'), std::string::npos) << "no carriage returns in plain mode";
  EXPECT_EQ(out.find("\033["), std::string::npos) << "no escape codes in plain mode";
}

TEST(Progress, ResumedBarCountsFromItsStart) {
  testing::internal::CaptureStdout();
  {
    Progress p(10, 6, 2);
    for (int i = 7; i <= 10; ++i) p.update(i, "x");
  }
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(count_lines(out, " x "), 2) << out;  // steps 8 and 10
}

TEST(Progress, DurationFormat) {
  EXPECT_EQ(Progress::format_duration(0), "0s");
  EXPECT_EQ(Progress::format_duration(59.4), "59s");
  EXPECT_EQ(Progress::format_duration(185), "3m05s");
  EXPECT_EQ(Progress::format_duration(7260), "2h01m");
  EXPECT_EQ(Progress::format_duration(-1), "?");
}

}  // namespace
}  // namespace sambalm
