#include "cluster/report.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rlvr::cluster {
namespace {

using ::testing::HasSubstr;

TEST(ReportTest, PlotsEveryNumericMetric) {
  std::string dir = ::testing::TempDir() + "/report_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  {
    std::ofstream m(dir + "/metrics.jsonl");
    for (int s = 1; s <= 5; ++s) {
      m << "{\"step\": " << s << ", \"reward/mean\": " << 0.1 * s
        << ", \"actor/entropy\": 2.5, \"note\": \"text is skipped\"}\n";
    }
    m << "{\"step\": 6, \"reward/m";  // a line cut short by a kill
  }
  std::ofstream(dir + "/config.yaml") << "seed: 1\n<script>\n";
  std::ofstream(dir + "/samples.jsonl") << "{\"step\": 1, \"prompt\": \"2+2\", \"completion\": "
                                           "\"\\\\boxed{4}\", \"reward\": 1.0}\n";
  auto html = RenderReport(dir);
  ASSERT_TRUE(html.ok()) << html.status();
  EXPECT_THAT(*html, HasSubstr("reward/mean (last 0.5)"));
  EXPECT_THAT(*html, HasSubstr("actor/entropy"));
  EXPECT_THAT(*html, ::testing::Not(HasSubstr("note")));
  EXPECT_THAT(*html, HasSubstr("&lt;script&gt;"));  // escaped
  EXPECT_THAT(*html, HasSubstr("\\boxed{4}"));
  EXPECT_THAT(*html, ::testing::Not(HasSubstr("src=")));  // self-contained
  EXPECT_THAT(*html, ::testing::Not(HasSubstr("<script")));
  EXPECT_THAT(*html, ::testing::Not(HasSubstr("src=")));
  EXPECT_THAT(*html, ::testing::Not(HasSubstr("href=")));
  EXPECT_THAT(*html, ::testing::Not(HasSubstr("<script")));
  auto path = WriteReport(dir);
  ASSERT_TRUE(path.ok());
  EXPECT_TRUE(std::filesystem::exists(*path));
}

TEST(ReportTest, MissingRunDirIsNotFound) {
  auto html = RenderReport("/nonexistent/run");
  ASSERT_FALSE(html.ok());
  EXPECT_EQ(html.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(html.status().message()), HasSubstr("metrics.jsonl"));
}

}  // namespace
}  // namespace rlvr::cluster
