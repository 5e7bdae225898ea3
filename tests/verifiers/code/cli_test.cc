// The `rlvr sandbox run` and `rlvr verify --verifier code` commands, called in-process.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "cli/commands.h"
#include "core/jsonl.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace rlvr::cli {
namespace {

std::vector<std::string>& TempPaths() {
  static auto* paths = new std::vector<std::string>();
  return *paths;
}

// Files made by the tests are removed when the test program ends.
class RemoveTempFiles : public ::testing::Environment {
 public:
  void TearDown() override {
    for (const std::string& p : TempPaths()) std::remove(p.c_str());
  }
};
const auto* const kRemoveTempFiles = ::testing::AddGlobalTestEnvironment(new RemoveTempFiles);

std::string TempPath(const std::string& name) {
  std::string p = ::testing::TempDir() + "/rlvr_code_cli_" + std::to_string(getpid()) + "_" + name;
  TempPaths().push_back(p);
  return p;
}

void WriteText(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(SandboxCliTest, RunsPythonAndPrintsJson) {
  std::string file = TempPath("hello.py");
  WriteText(file, "import sys\nprint('hello', sys.stdin.read().strip())\nsys.exit(4)\n");
  std::string in = TempPath("hello.in");
  WriteText(in, "world\n");
  ::testing::internal::CaptureStdout();
  int rc = SandboxMain({"sandbox", "run", "--language", "python", "--time", "5", "--memory", "256",
                        "--stdin", in, file});
  std::string out = ::testing::internal::GetCapturedStdout();
  ASSERT_EQ(rc, 0) << out;
  nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_EQ(j["status"], "runtime_error");
  EXPECT_EQ(j["exit_code"], 4);
  EXPECT_EQ(j["stdout"], "hello world\n");
  EXPECT_GT(j["wall_seconds"].get<double>(), 0.0);
  EXPECT_GT(j["peak_memory_bytes"].get<int64_t>(), 0);
}

TEST(SandboxCliTest, CppCompileErrorAndTimeout) {
  std::string bad = TempPath("bad.cc");
  WriteText(bad, "int main() { return nope; }\n");
  ::testing::internal::CaptureStdout();
  int rc = SandboxMain({"sandbox", "run", "--language", "cpp", bad});
  std::string out = ::testing::internal::GetCapturedStdout();
  ASSERT_EQ(rc, 0) << out;
  nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_EQ(j["status"], "compile_error");
  EXPECT_TRUE(absl::StrContains(j["compile"]["stderr"].get<std::string>(), "nope"));

  std::string loop = TempPath("loop.cc");
  WriteText(loop, "int main() { for (volatile int i = 0;; ++i) {} }\n");
  ::testing::internal::CaptureStdout();
  rc = SandboxMain({"sandbox", "run", "--language", "cpp", "--time", "0.5", loop});
  out = ::testing::internal::GetCapturedStdout();
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out)["status"], "timeout");
}

TEST(SandboxCliTest, AllowMissingTakesOneNamePerFlagOrCommaList) {
  std::string file = TempPath("allow.py");
  WriteText(file, "print(7)\n");
  ::testing::internal::CaptureStdout();
  int rc = SandboxMain({"sandbox", "run", "--language", "python", "--allow-missing", "seccomp",
                        "--allow-missing", "cgroup_pids,cgroup_memory", file});
  std::string out = ::testing::internal::GetCapturedStdout();
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out)["stdout"], "7\n");
  ::testing::internal::CaptureStderr();
  rc = SandboxMain({"sandbox", "run", "--language", "python", "--allow-missing", "bogus", file});
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(rc, 1);
  EXPECT_TRUE(absl::StrContains(err, "bogus")) << err;
}

TEST(SandboxCliTest, UsageErrors) {
  EXPECT_EQ(SandboxMain({"sandbox", "run", "--language", "cobol", "x.py"}), 2);
  EXPECT_EQ(SandboxMain({"sandbox", "run", "x.py"}), 2);
  EXPECT_EQ(SandboxMain({"sandbox"}), 2);
  EXPECT_EQ(SandboxMain({"sandbox", "run", "--language", "python", "/nonexistent.py"}), 1);
}

TEST(VerifyCodeCliTest, ScoresRecordsInOrder) {
  std::string in = TempPath("in.jsonl");
  std::string out = TempPath("out.jsonl");
  {
    std::ofstream f(in);
    f << nlohmann::json({{"id", 0},
                         {"completion", "```python\nprint(int(input()) * 2)\n```"},
                         {"tests", {{"inputs", {"2", "5"}}, {"outputs", {"4", "10"}}}}})
             .dump()
      << "\n";
    f << nlohmann::json(
             {{"id", 1},
              {"completion", "def f(x):\n    return x + 1\n"},
              {"tests", {{"test", "def check(c):\n    assert c(1) == 3\n"}, {"entry_point", "f"}}}})
             .dump()
      << "\n";
    f << nlohmann::json({{"id", 2},
                         {"completion", "import os\nos.fork()\nwhile True: pass\n"},
                         {"tests", {{"inputs", {""}}, {"outputs", {""}}}}})
             .dump()
      << "\n";
  }
  int rc =
      VerifyCodeMain({"verify", "--verifier", "code", "--in", in, "--out", out, "--time", "1"});
  ASSERT_EQ(rc, 0);
  auto records = ReadJsonl(out);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 3u);
  EXPECT_EQ((*records)[0]["id"], 0);
  EXPECT_EQ((*records)[0]["verdict"], "ok");
  EXPECT_EQ((*records)[0]["reward"], 1.0);
  EXPECT_EQ((*records)[0]["passed"], 2);
  EXPECT_EQ((*records)[1]["verdict"], "wrong_answer");
  EXPECT_EQ((*records)[1]["reward"], 0.0);
  EXPECT_EQ((*records)[2]["verdict"], "timeout");
}

TEST(VerifyCodeCliTest, MalformedRecordNamesFileAndKey) {
  std::string in = TempPath("bad.jsonl");
  std::string out = TempPath("bad_out.jsonl");
  WriteText(in, "{\"completion\": \"x\", \"tests\": {\"inputs\": [\"1\"]}}\n");
  ::testing::internal::CaptureStderr();
  int rc = VerifyCodeMain({"verify", "--verifier", "code", "--in", in, "--out", out});
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(rc, 1);
  EXPECT_TRUE(absl::StrContains(err, in)) << err;
  EXPECT_TRUE(absl::StrContains(err, "tests.outputs")) << err;
  EXPECT_NE(access(out.c_str(), F_OK), 0) << "no output on failure";
  EXPECT_EQ(VerifyCodeMain({"verify", "--verifier", "math", "--in", in, "--out", out}), 2);
  EXPECT_EQ(VerifyCodeMain({"verify", "--in", in}), 2);
}

}  // namespace
}  // namespace rlvr::cli
