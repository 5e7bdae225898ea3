// Test harnesses and the JSON record verifier: comparisons, code extraction, stdio and assert
// styles in Python and C++, reward hacking, malformed records.
#include "verifiers/code/harness.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "verifiers/code/code_verifier.h"

namespace rlvr::verifiers::code {
namespace {

TEST(OutputsMatchTest, WhitespaceInsensitiveAndNumericTolerance) {
  EXPECT_TRUE(OutputsMatch("1 2\n3\n", "1  2 3", 0));
  EXPECT_TRUE(OutputsMatch("  yes\r\n", "yes", 0));
  EXPECT_FALSE(OutputsMatch("1 2", "1 2 3", 0));
  EXPECT_FALSE(OutputsMatch("Yes", "yes", 0));
  EXPECT_FALSE(OutputsMatch("0.3333333", "0.3333334", 0));
  EXPECT_TRUE(OutputsMatch("0.3333333", "0.3333334", 1e-6));
  EXPECT_FALSE(OutputsMatch("0.33", "0.3333334", 1e-6));
  EXPECT_TRUE(OutputsMatch("1000000.5", "1000000.4", 1e-6));  // relative for large values
  EXPECT_FALSE(OutputsMatch("nan", "nan2", 1e-6));
  EXPECT_TRUE(OutputsMatch("", "\n", 0));
}

TEST(ExtractCodeTest, FencesAndLanguages) {
  EXPECT_EQ(ExtractCode("print(1)", Language::kPython), "print(1)");
  EXPECT_EQ(ExtractCode("Here:\n```python\nprint(2)\n```\nDone.", Language::kPython), "print(2)\n");
  EXPECT_EQ(ExtractCode("```\na\n```\ntext\n```py\nb\n```", Language::kPython), "b\n");
  EXPECT_EQ(ExtractCode("```cpp\nint main(){}\n```\n```python\nx\n```", Language::kCpp),
            "int main(){}\n");
  EXPECT_EQ(ExtractCode("```python\nunterminated\n", Language::kPython), "unterminated\n");
  EXPECT_EQ(ExtractCode("```rust\nfn main(){}\n```", Language::kPython), "fn main(){}\n");
}

TEST(ParseLanguageTest, NamesAndErrors) {
  EXPECT_EQ(*ParseLanguage("Python"), Language::kPython);
  EXPECT_EQ(*ParseLanguage("c++"), Language::kCpp);
  auto bad = ParseLanguage("cobol");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "cobol"));
}

class HarnessTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SandboxOptions o;
    o.concurrency = 2;
    auto sb = Sandbox::Create(o);
    ASSERT_TRUE(sb.ok()) << sb.status();
    sandbox_ = sb->release();
  }
  static void TearDownTestSuite() {
    delete sandbox_;
    sandbox_ = nullptr;
  }
  static HarnessOptions Options(bool stop = true) {
    HarnessOptions o;
    o.run_limits.wall_seconds = 5;
    o.stop_at_first_failure = stop;
    return o;
  }
  static Sandbox* sandbox_;
};
Sandbox* HarnessTest::sandbox_ = nullptr;

const std::vector<StdioCase> kSumCases = {{"1 2\n", "3\n"}, {"10 -4\n", "6"}, {"0 0", "0"}};

TEST_F(HarnessTest, PythonStdio) {
  CodeHarness h(sandbox_, Options());
  auto ok =
      h.RunStdio(Language::kPython, "a, b = map(int, input().split())\nprint(a + b)\n", kSumCases);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->verdict, Verdict::kOk) << ok->detail;
  EXPECT_EQ(ok->passed, 3);
  EXPECT_EQ(ok->total, 3);
  auto wrong =
      h.RunStdio(Language::kPython, "a, b = map(int, input().split())\nprint(a - b)\n", kSumCases);
  ASSERT_TRUE(wrong.ok());
  EXPECT_EQ(wrong->verdict, Verdict::kWrongAnswer);
  EXPECT_EQ(wrong->passed, 0);
  EXPECT_EQ(wrong->cases.size(), 1u);  // stopped at the first failure
  EXPECT_TRUE(absl::StrContains(wrong->detail, "expected '3")) << wrong->detail;
}

TEST_F(HarnessTest, KeepGoingScoresEveryCase) {
  CodeHarness h(sandbox_, Options(/*stop=*/false));
  // Right only when b == 0 ... and for 1 2 by luck of hard-coding.
  auto res =
      h.RunStdio(Language::kPython,
                 "a, b = map(int, input().split())\nprint(a + b if a != 10 else 0)\n", kSumCases);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->verdict, Verdict::kWrongAnswer);
  EXPECT_EQ(res->passed, 2);
  EXPECT_EQ(res->cases.size(), 3u);
}

TEST_F(HarnessTest, PrintingTheExpectedOutputPassesOnlyTheCaseItKnows) {
  CodeHarness h(sandbox_, Options(/*stop=*/false));
  auto res = h.RunStdio(Language::kPython, "print(3)\n", kSumCases);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->verdict, Verdict::kWrongAnswer);
  EXPECT_EQ(res->passed, 1);
}

TEST_F(HarnessTest, CppStdioCompilesOnceAndRunsEachCase) {
  CodeHarness h(sandbox_, Options());
  auto res = h.RunStdio(Language::kCpp,
                        "#include <iostream>\nint main() { long a, b; std::cin >> a >> b; "
                        "std::cout << a + b << std::endl; }\n",
                        kSumCases);
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(res->verdict, Verdict::kOk) << res->detail;
  EXPECT_EQ(res->passed, 3);
  auto bad = h.RunStdio(Language::kCpp, "int main() { return undefined_name; }\n", kSumCases);
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->verdict, Verdict::kCompileError);
  EXPECT_EQ(bad->total, 3);
  EXPECT_TRUE(absl::StrContains(bad->detail, "undefined_name")) << bad->detail;
}

TEST_F(HarnessTest, CppRuntimeErrorAndFloatTolerance) {
  CodeHarness h(sandbox_, Options());
  auto res = h.RunStdio(Language::kCpp,
                        "#include <cstdio>\nint main() { std::printf(\"%.9f\\n\", 1.0 / 3); }\n",
                        {{"", "0.333333"}});
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->verdict, Verdict::kOk) << res->detail;
  auto crash = h.RunStdio(Language::kCpp, "int main() { volatile int* p = nullptr; return *p; }\n",
                          {{"", ""}});
  ASSERT_TRUE(crash.ok());
  EXPECT_EQ(crash->verdict, Verdict::kRuntimeError);
  EXPECT_TRUE(absl::StrContains(crash->detail, "signal 11")) << crash->detail;
}

TEST_F(HarnessTest, PythonAssertStyleScoresEachAssert) {
  CodeHarness h(sandbox_, Options(/*stop=*/false));
  AssertSpec spec{"assert add(1, 2) == 3\nassert add(2, 2) == 4\nassert add(0, 5) == 6\n", ""};
  auto res = h.RunAssert(Language::kPython, "def add(a, b):\n    return a + b\n", spec);
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(res->verdict, Verdict::kWrongAnswer);
  EXPECT_EQ(res->passed, 2);
  EXPECT_EQ(res->total, 3);
  EXPECT_TRUE(absl::StrContains(res->detail, "AssertionError")) << res->detail;
}

TEST_F(HarnessTest, PythonCheckEntryPoint) {
  CodeHarness h(sandbox_, Options());
  AssertSpec spec{"def check(candidate):\n    assert candidate([3, 1, 2]) == [1, 2, 3]\n",
                  "sort_list"};
  auto ok = h.RunAssert(Language::kPython, "def sort_list(x):\n    return sorted(x)\n", spec);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->verdict, Verdict::kOk) << ok->detail;
  EXPECT_EQ(ok->total, 1);
  auto bad = h.RunAssert(Language::kPython, "def sort_list(x):\n    return x\n", spec);
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->verdict, Verdict::kWrongAnswer);
}

// Reward hacks: each must fail, never pass.
TEST_F(HarnessTest, RewardHacksFail) {
  CodeHarness h(sandbox_, Options());
  AssertSpec spec{"assert add(1, 2) == 3\nassert add(2, 2) == 4\n", ""};
  const std::vector<std::pair<std::string, std::string>> hacks = {
      {"sys_exit_0", "import sys\ndef add(a, b):\n    return 0\nsys.exit(0)\n"},
      {"os_exit_0", "import os\ndef add(a, b):\n    return 0\nos._exit(0)\n"},
      {"raise_systemexit", "def add(a, b):\n    return 0\nraise SystemExit(0)\n"},
      {"override_exit",
       "import sys, builtins\nbuiltins.exit = lambda *a: None\nsys.exit = lambda *a: None\n"
       "def add(a, b):\n    return 0\n"},
      {"exit_inside_function", "import sys\ndef add(a, b):\n    sys.exit(0)\n"},
      {"fake_report",
       "import sys\ndef add(a, b):\n    return 0\nprint('\\n0123 2 2')\nsys.stdout.flush()\n"
       "import os\nos._exit(0)\n"},
      {"read_test_file", "import os\nprint(os.listdir('.'))\ndef add(a, b):\n    return 0\n"},
  };
  for (const auto& [name, code] : hacks) {
    auto res = h.RunAssert(Language::kPython, code, spec);
    ASSERT_TRUE(res.ok()) << name << ": " << res.status();
    EXPECT_NE(res->verdict, Verdict::kOk) << name;
    EXPECT_EQ(res->passed, 0) << name;
  }
  // The test code is not a file the program can read.
  auto ls =
      h.RunAssert(Language::kPython,
                  "import os\nassert sorted(os.listdir('.')) == ['runner.py', 'solution.py']\n"
                  "def add(a, b):\n    return a + b\n",
                  spec);
  ASSERT_TRUE(ls.ok());
  EXPECT_EQ(ls->verdict, Verdict::kOk) << ls->detail;
}

TEST_F(HarnessTest, CppAssertStyle) {
  CodeHarness h(sandbox_, Options());
  AssertSpec spec{"#include <cassert>\nint main() { assert(add(2, 3) == 5); }\n", ""};
  auto ok = h.RunAssert(Language::kCpp, "int add(int a, int b) { return a + b; }\n", spec);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->verdict, Verdict::kOk) << ok->detail;
  auto bad = h.RunAssert(Language::kCpp, "int add(int a, int b) { return a - b; }\n", spec);
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->verdict, Verdict::kRuntimeError);
}

TEST_F(HarnessTest, VerifyRecordBothFormats) {
  CodeHarness h(sandbox_, Options(/*stop=*/false));
  CodeVerifierOptions vo;
  nlohmann::json stdio = {
      {"completion", "Sure:\n```python\na, b = map(int, input().split())\nprint(a + b)\n```"},
      {"tests", {{"inputs", {"1 2", "3 4"}}, {"outputs", {"3", "8"}}}}};
  auto v = VerifyRecord(h, stdio, vo);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->verdict, Verdict::kWrongAnswer);
  EXPECT_EQ(v->passed, 1);
  EXPECT_EQ(v->total, 2);
  EXPECT_DOUBLE_EQ(v->reward, 0.5);
  vo.all_or_nothing = true;
  auto all = VerifyRecord(h, stdio, vo);
  ASSERT_TRUE(all.ok());
  EXPECT_DOUBLE_EQ(all->reward, 0.0);
  nlohmann::json asserts = {
      {"completion", "def f(x):\n    return x * 2\n"},
      {"tests",
       nlohmann::json({{"test", "def check(c):\n    assert c(2) == 4\n"}, {"entry_point", "f"}})
           .dump()}};  // tests as a JSON string, as APPS stores it
  auto a = VerifyRecord(h, asserts, vo);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->verdict, Verdict::kOk);
  EXPECT_DOUBLE_EQ(a->reward, 1.0);
  nlohmann::json record = asserts;
  AnnotateRecord(*a, &record);
  EXPECT_EQ(record["verdict"], "ok");
  EXPECT_EQ(record["passed"], 1);
  EXPECT_EQ(record["total"], 1);
  nlohmann::json cpp = {
      {"completion", "```cpp\n#include <cstdio>\nint main(){std::puts(\"hi\");}\n```"},
      {"language", "cpp"},
      {"tests", {{"inputs", {""}}, {"outputs", {"hi"}}}}};
  auto c = VerifyRecord(h, cpp, vo);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->verdict, Verdict::kOk) << c->detail;
}

TEST_F(HarnessTest, MalformedRecordsNameTheKey) {
  CodeHarness h(sandbox_, Options());
  CodeVerifierOptions vo;
  const std::vector<std::pair<nlohmann::json, std::string>> bad = {
      {nlohmann::json::array(), "record"},
      {{{"tests", {{"test", "pass"}}}}, "completion"},
      {{{"completion", "x"}}, "tests"},
      {{{"completion", "x"}, {"tests", "{not json"}}, "tests"},
      {{{"completion", "x"}, {"tests", {{"inputs", {"1"}}}}}, "tests.outputs"},
      {{{"completion", "x"}, {"tests", {{"inputs", "1"}, {"outputs", {"1"}}}}}, "tests.inputs"},
      {{{"completion", "x"}, {"tests", {{"inputs", {"1", "2"}}, {"outputs", {"1"}}}}}, "2 inputs"},
      {{{"completion", "x"}, {"tests", {{"inputs", {{{"a", 1}}}}, {"outputs", {"1"}}}}},
       "tests.inputs[0]"},
      {{{"completion", "x"}, {"tests", {{"test", 5}}}}, "tests.test"},
      {{{"completion", "x"}, {"language", "cobol"}, {"tests", {{"test", "pass"}}}}, "language"},
      {{{"completion", "x"}, {"tests", {{"foo", 1}}}}, "tests"},
  };
  for (const auto& [record, key] : bad) {
    auto v = VerifyRecord(h, record, vo);
    ASSERT_FALSE(v.ok()) << record.dump();
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << record.dump();
    EXPECT_TRUE(absl::StrContains(v.status().message(), key))
        << record.dump() << " -> " << v.status();
  }
}

}  // namespace
}  // namespace rlvr::verifiers::code
