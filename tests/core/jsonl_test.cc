#include "core/jsonl.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rlvr {
namespace {

using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/" + std::to_string(::getpid()) + "_" + name;
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(JsonlTest, ReadsRealDataSet) {
  auto records = ReadJsonl("../shared/data/gsm8k_test.jsonl");
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 1319u);
  EXPECT_TRUE((*records)[0].contains("question"));
  EXPECT_THAT((*records)[0]["answer"].get<std::string>(), HasSubstr("####"));
}

TEST(JsonlTest, BadLineNamesFileAndLine) {
  std::string path = TempPath("bad.jsonl");
  WriteText(path, "{\"a\": 1}\n\n{\"a\": 2}\n{\"a\": \n{\"a\": 4}\n");
  auto records = ReadJsonl(path);
  ASSERT_FALSE(records.ok());
  EXPECT_EQ(records.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(records.status().message()), HasSubstr(path + ":4: not valid JSON"));

  JsonlReadOptions skip;
  skip.skip_bad_lines = true;
  auto reader = JsonlReader::Open(path, skip);
  ASSERT_TRUE(reader.ok());
  nlohmann::json rec;
  int n = 0;
  while (true) {
    auto more = (*reader)->Next(&rec);
    ASSERT_TRUE(more.ok());
    if (!*more) break;
    ++n;
  }
  EXPECT_EQ(n, 3);
  EXPECT_EQ((*reader)->bad_lines(), 1);
  std::remove(path.c_str());
}

TEST(JsonlTest, NonObjectLineIsAnError) {
  std::string path = TempPath("arr.jsonl");
  WriteText(path, "[1, 2]\n");
  auto records = ReadJsonl(path);
  ASSERT_FALSE(records.ok());
  EXPECT_THAT(std::string(records.status().message()), HasSubstr(":1: not a JSON object"));
  std::remove(path.c_str());
}

TEST(JsonlTest, CrlfAndMissingFinalNewline) {
  std::string path = TempPath("crlf.jsonl");
  WriteText(path, "{\"a\": 1}\r\n{\"a\": 2}");
  auto records = ReadJsonl(path);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[1]["a"], 2);
  std::remove(path.c_str());
}

TEST(JsonlTest, MissingFileIsNotFound) {
  auto records = ReadJsonl("/nonexistent/x.jsonl");
  ASSERT_FALSE(records.ok());
  EXPECT_EQ(records.status().code(), absl::StatusCode::kNotFound);
}

TEST(JsonlTest, WriterIsAtomicAndRoundTrips) {
  std::string path = TempPath("out.jsonl");
  WriteText(path, "{\"old\": true}\n");
  {
    auto w = JsonlWriter::Open(path);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Write({{"text", "héllo \xff bytes"}, {"n", 1}}).ok());
    // Until Close() the previous file is untouched.
    auto before = ReadJsonl(path);
    ASSERT_TRUE(before.ok());
    EXPECT_TRUE((*before)[0].contains("old"));
    ASSERT_TRUE((*w)->Write({{"n", 2}}).ok());
    ASSERT_TRUE((*w)->Close().ok());
  }
  auto after = ReadJsonl(path);
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_EQ(after->size(), 2u);
  EXPECT_EQ((*after)[1]["n"], 2);
  // Invalid UTF-8 was replaced, not dropped or thrown.
  EXPECT_THAT((*after)[0]["text"].get<std::string>(), HasSubstr("\xef\xbf\xbd"));
  std::remove(path.c_str());
}

TEST(JsonlTest, AbandonedWriterLeavesOldFile) {
  std::string path = TempPath("keep.jsonl");
  WriteText(path, "{\"old\": true}\n");
  {
    auto w = JsonlWriter::Open(path);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Write({{"n", 1}}).ok());
  }
  auto after = ReadJsonl(path);
  ASSERT_TRUE(after.ok());
  ASSERT_EQ(after->size(), 1u);
  EXPECT_TRUE((*after)[0].contains("old"));
  EXPECT_NE(::access((path + ".tmp").c_str(), F_OK), 0);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace rlvr
