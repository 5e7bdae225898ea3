#include "core/file_util.h"

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rlvr {
namespace {

using ::testing::HasSubstr;

std::string TempDir(const std::string& name) {
  std::string dir = std::string(::testing::TempDir()) + "/rlvr_file_util_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

int CountEntries(const std::string& dir) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) n += !e.path().empty();
  return n;
}

TEST(FileUtilTest, AtomicWriteThenRead) {
  std::string dir = TempDir("write");
  std::string path = dir + "/a.txt";
  ASSERT_TRUE(WriteFileAtomically(path, "hello").ok());
  auto got = ReadFile(path);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "hello");
  ASSERT_TRUE(WriteFileAtomically(path, std::string(100000, 'x')).ok());
  got = ReadFile(path);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->size(), 100000u);
  EXPECT_EQ(CountEntries(dir), 1);  // no temporary files left
}

TEST(FileUtilTest, AbortedWriterLeavesOldFile) {
  std::string dir = TempDir("abort");
  std::string path = dir + "/a.txt";
  ASSERT_TRUE(WriteFileAtomically(path, "old").ok());
  {
    auto w = AtomicFileWriter::Open(path);
    ASSERT_TRUE(w.ok()) << w.status();
    ASSERT_TRUE(w->Append("new contents").ok());
    EXPECT_TRUE(std::filesystem::exists(w->temp_path()));
    EXPECT_EQ(*ReadFile(path), "old");  // not visible before Commit
  }                                     // destroyed without Commit
  EXPECT_EQ(*ReadFile(path), "old");
  EXPECT_EQ(CountEntries(dir), 1);
}

TEST(FileUtilTest, CommitTwiceIsFailedPrecondition) {
  std::string dir = TempDir("twice");
  auto w = AtomicFileWriter::Open(dir + "/f");
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(w->Append("x").ok());
  ASSERT_TRUE(w->Commit().ok());
  EXPECT_EQ(w->Commit().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(w->Append("y").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(w->bytes_written(), 1);
}

TEST(FileUtilTest, WriteIntoMissingDirectoryFails) {
  std::string dir = TempDir("missing");
  auto s = WriteFileAtomically(dir + "/no/such/dir/f", "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("no/such/dir/f"));
}

TEST(FileUtilTest, ReadMissingIsNotFound) {
  auto got = ReadFile("/nonexistent/rlvr/file");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("/nonexistent/rlvr/file: open"));
}

TEST(FileUtilTest, ReadDirectoryIsInvalidArgument) {
  std::string dir = TempDir("readdir");
  EXPECT_EQ(ReadFile(dir).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(FileUtilTest, MakeDirsCreatesParentsAndIsIdempotent) {
  std::string dir = TempDir("mkdirs");
  std::string deep = dir + "/a/b/c";
  ASSERT_TRUE(MakeDirs(deep).ok());
  EXPECT_TRUE(std::filesystem::is_directory(deep));
  EXPECT_TRUE(MakeDirs(deep).ok());
  ASSERT_TRUE(WriteFileAtomically(dir + "/file", "x").ok());
  EXPECT_EQ(MakeDirs(dir + "/file").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(FsyncDir(deep).ok());
}

TEST(FileUtilTest, MappedFileSeesContents) {
  std::string dir = TempDir("mmap");
  ASSERT_TRUE(WriteFileAtomically(dir + "/m", "mapped bytes").ok());
  auto m = MappedFile::Open(dir + "/m");
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->size(), 12u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m->data().data()), m->size()),
            "mapped bytes");
  MappedFile moved = std::move(*m);
  EXPECT_EQ(moved.size(), 12u);
  ASSERT_TRUE(WriteFileAtomically(dir + "/empty", "").ok());
  auto e = MappedFile::Open(dir + "/empty");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->size(), 0u);
}

TEST(FileUtilTest, DirName) {
  EXPECT_EQ(DirName("a/b/c.txt"), "a/b");
  EXPECT_EQ(DirName("c.txt"), ".");
  EXPECT_EQ(DirName("/c.txt"), "/");
}

}  // namespace
}  // namespace rlvr
