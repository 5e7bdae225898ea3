#include "core/progress.h"

#include <cstdio>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rlvr {
namespace {

using ::testing::HasSubstr;

std::string ReadBack(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string out;
  char buf[256];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  return out;
}

TEST(ProgressTest, FormatLineWithTotal) {
  std::string line = ProgressBar::FormatLine("gen", 50, 200, 10.0, "prompts", 10);
  EXPECT_EQ(line, "gen:  25% [##........] 50/200 prompts | 10.0s | 5 prompts/s | ETA 30.0s");
}

TEST(ProgressTest, FormatLineWithoutTotal) {
  EXPECT_EQ(ProgressBar::FormatLine("read", 1500, 0, 3.0, "lines", 10),
            "read: 1500 lines | 3.0s | 500 lines/s");
}

TEST(ProgressTest, FormatHelpers) {
  EXPECT_EQ(FormatDuration(75), "1m15s");
  EXPECT_EQ(FormatDuration(3720), "1h02m");
  EXPECT_EQ(FormatDuration(-1), "?");
  EXPECT_EQ(FormatCount(12345), "12.3k");
  EXPECT_EQ(FormatCount(4.56e6), "4.56M");
  EXPECT_EQ(FormatCount(950), "950");
}

TEST(ProgressTest, QuietWhenNotATerminal) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressBar bar(10, "quiet", {.stream = f});
    EXPECT_FALSE(bar.drawing());
    for (int i = 0; i < 10; ++i) bar.Add();
    EXPECT_EQ(bar.count(), 10);
  }
  EXPECT_EQ(ReadBack(f), "");
  std::fclose(f);
}

TEST(ProgressTest, SummaryLineWhenQuiet) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressBar bar(3, "steps", {.unit = "steps", .stream = f, .summary_when_quiet = true});
    bar.Add(3);
    bar.Finish();
    bar.Finish();
  }
  std::string out = ReadBack(f);
  EXPECT_THAT(out, HasSubstr("steps: 3 steps in "));
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1);
  std::fclose(f);
}

TEST(ProgressTest, ForcedDrawRedrawsInPlace) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressBar bar(4, "draw", {.stream = f, .force_draw = true, .min_redraw_seconds = 0});
    for (int i = 0; i < 4; ++i) bar.Add();
  }
  std::string out = ReadBack(f);
  EXPECT_THAT(out, HasSubstr("\rdraw: 100% ["));
  EXPECT_THAT(out, HasSubstr("4/4 it"));
  EXPECT_EQ(out.back(), '\n');
  EXPECT_GE(std::count(out.begin(), out.end(), '\r'), 2);
  std::fclose(f);
}

}  // namespace
}  // namespace rlvr
