#include "cluster/checkpoint_manager.h"

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rlvr::cluster {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string FreshDir(const std::string& name) {
  std::string d = ::testing::TempDir() + "/ckpt_" + std::to_string(::getpid()) + "_" + name;
  fs::remove_all(d);
  return d;
}

// Writes a small payload whose content depends on the step.
absl::Status Payload(const std::string& dir, int64_t step) {
  std::ofstream(dir + "/model.safetensors", std::ios::binary)
      << std::string(4096, static_cast<char>('a' + step % 26));
  fs::create_directories(dir + "/optim");
  std::ofstream(dir + "/optim/state.bin", std::ios::binary) << "step " << step;
  std::ofstream(dir + "/trainer_state.json") << "{\"step\": " << step << "}";
  return absl::OkStatus();
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(CheckpointManagerTest, SaveListVerifyPrune) {
  std::string root = FreshDir("basic");
  auto m = CheckpointManager::Open(root, 2);
  ASSERT_TRUE(m.ok()) << m.status();
  for (int step : {10, 20, 30}) {
    auto info = m->Save(step, [&](const std::string& d) { return Payload(d, step); });
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_TRUE(CheckpointManager::Verify(info->path).ok());
  }
  auto all = m->List();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);  // keep = 2
  EXPECT_EQ((*all)[0].step, 20);
  EXPECT_EQ((*all)[1].step, 30);
  auto latest = m->LatestValid();
  ASSERT_TRUE(latest.ok());
  ASSERT_TRUE(latest->has_value());
  EXPECT_EQ((*latest)->step, 30);
}

TEST(CheckpointManagerTest, FailedWriteKeepsPreviousAndLeavesNoTemp) {
  std::string root = FreshDir("fail");
  auto m = CheckpointManager::Open(root, 3);
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(m->Save(1, [](const std::string& d) { return Payload(d, 1); }).ok());
  auto s = m->Save(2, [](const std::string& d) {
    std::ofstream(d + "/partial.bin") << "x";
    return absl::ResourceExhaustedError("No space left on device");
  });
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("saving checkpoint 2"));
  auto all = m->List();
  ASSERT_EQ(all->size(), 1u);
  EXPECT_TRUE(CheckpointManager::Verify((*all)[0].path).ok());
  int entries = 0;
  for (const auto& e : fs::directory_iterator(root)) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST(CheckpointManagerTest, EveryByteFlipAndTruncationIsRejected) {
  std::string root = FreshDir("flip");
  auto m = CheckpointManager::Open(root, 2);
  ASSERT_TRUE(m.ok());
  auto info = m->Save(5, [](const std::string& d) { return Payload(d, 5); });
  ASSERT_TRUE(info.ok());
  std::mt19937 rng(1234);
  int checked = 0;
  for (std::string rel : {"model.safetensors", "optim/state.bin", "trainer_state.json",
                          "MANIFEST.json"}) {
    std::string path = info->path + "/" + rel;
    std::string original = ReadAll(path);
    ASSERT_FALSE(original.empty());
    for (int trial = 0; trial < 20; ++trial) {
      std::string bad = original;
      if (trial % 2 == 0) {
        size_t pos = rng() % bad.size();
        bad[pos] = static_cast<char>(bad[pos] ^ (1 + rng() % 255));
      } else {
        bad.resize(rng() % bad.size());
      }
      std::ofstream(path, std::ios::binary | std::ios::trunc) << bad;
      absl::Status s = CheckpointManager::Verify(info->path);
      if (rel == "MANIFEST.json" && s.ok()) {
        // A flip inside JSON whitespace can leave the manifest meaning the same; that is fine
        // as long as every payload byte is still checked.
        continue;
      }
      EXPECT_FALSE(s.ok()) << rel << " trial " << trial;
      EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
      ++checked;
    }
    std::ofstream(path, std::ios::binary | std::ios::trunc) << original;
    ASSERT_TRUE(CheckpointManager::Verify(info->path).ok());
  }
  EXPECT_GE(checked, 70);
  // A corrupt newest checkpoint falls back to the previous one, naming the file.
  ASSERT_TRUE(m->Save(6, [](const std::string& d) { return Payload(d, 6); }).ok());
  std::ofstream(root + "/" + CheckpointDirName(6) + "/trainer_state.json", std::ios::app) << " ";
  std::vector<std::string> skipped;
  auto latest = m->LatestValid(&skipped);
  ASSERT_TRUE(latest.ok());
  ASSERT_TRUE(latest->has_value());
  EXPECT_EQ((*latest)->step, 5);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_THAT(skipped[0], HasSubstr("trainer_state.json"));
  // An extra file is also a corruption.
  std::ofstream(root + "/" + CheckpointDirName(5) + "/extra.bin") << "x";
  EXPECT_FALSE(CheckpointManager::Verify(root + "/" + CheckpointDirName(5)).ok());
}

// Crashes a child process at each point of the save protocol and checks that the survivors
// always hold a complete, verified checkpoint (the new one or the previous one).
TEST(CheckpointManagerTest, CrashAtEverySavePoint) {
  for (SavePoint point : {SavePoint::kTempDirCreated, SavePoint::kFilesWritten,
                          SavePoint::kManifestWritten, SavePoint::kRenamed,
                          SavePoint::kOldPruned}) {
    std::string root = FreshDir("crash" + std::to_string(static_cast<int>(point)));
    {
      auto m = CheckpointManager::Open(root, 1);
      ASSERT_TRUE(m.ok());
      ASSERT_TRUE(m->Save(1, [](const std::string& d) { return Payload(d, 1); }).ok());
    }
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      CheckpointManager::SetFaultHookForTesting([point](SavePoint p) {
        if (p == point) ::_exit(77);
      });
      auto m = CheckpointManager::Open(root, 1);
      if (!m.ok()) ::_exit(1);
      (void)m->Save(2, [](const std::string& d) { return Payload(d, 2); });
      ::_exit(0);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 77) << "fault point not reached";
    auto m = CheckpointManager::Open(root, 1);  // sweeps .tmp-*
    ASSERT_TRUE(m.ok());
    auto latest = m->LatestValid();
    ASSERT_TRUE(latest.ok());
    ASSERT_TRUE(latest->has_value()) << "no valid checkpoint after crash at point "
                                     << static_cast<int>(point);
    int64_t expect = point >= SavePoint::kRenamed ? 2 : 1;
    EXPECT_EQ((*latest)->step, expect) << "point " << static_cast<int>(point);
    for (const auto& e : fs::directory_iterator(root)) {
      EXPECT_NE(e.path().filename().string().rfind(".tmp-", 0), 0u) << e.path();
    }
  }
}

TEST(CheckpointManagerTest, BadKeepIsAnError) {
  auto m = CheckpointManager::Open(FreshDir("keep"), 0);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("keep_checkpoints"));
}

}  // namespace
}  // namespace rlvr::cluster
