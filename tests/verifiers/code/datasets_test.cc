// Real data: HumanEval canonical solutions all pass, MBPP reference solutions pass except the
// documented platform-dependent tasks, and mutated solutions fail.
#include <atomic>
#include <cstdio>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "core/jsonl.h"
#include "gtest/gtest.h"
#include "verifiers/code/harness.h"

namespace rlvr::verifiers::code {
namespace {

struct Job {
  std::string id;
  std::string code;
  AssertSpec spec;
};

struct Result {
  std::string id;
  Verdict verdict;
  std::string detail;
};

std::vector<Result> RunAll(const CodeHarness& h, const std::vector<Job>& jobs, int threads) {
  std::vector<Result> out(jobs.size());
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (size_t i = next++; i < jobs.size(); i = next++) {
        auto res = h.RunAssert(Language::kPython, jobs[i].code, jobs[i].spec);
        out[i].id = jobs[i].id;
        if (!res.ok()) {
          out[i].verdict = Verdict::kRuntimeError;
          out[i].detail = res.status().ToString();
        } else {
          out[i].verdict = res->verdict;
          out[i].detail = res->detail;
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  return out;
}

class DatasetsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SandboxOptions o;
    o.concurrency = 3;
    auto sb = Sandbox::Create(o);
    ASSERT_TRUE(sb.ok()) << sb.status();
    sandbox_ = sb->release();
  }
  static void TearDownTestSuite() {
    delete sandbox_;
    sandbox_ = nullptr;
  }
  static CodeHarness Harness() {
    HarnessOptions o;
    o.run_limits.wall_seconds = 10;
    o.run_limits.memory_bytes = int64_t{1} << 30;
    o.stop_at_first_failure = true;
    return CodeHarness(sandbox_, o);
  }
  static Sandbox* sandbox_;
};
Sandbox* DatasetsTest::sandbox_ = nullptr;

std::vector<nlohmann::json> Load(const std::string& path) {
  auto records = ReadJsonl(path);
  EXPECT_TRUE(records.ok()) << records.status();
  return records.ok() ? *records : std::vector<nlohmann::json>{};
}

// The HumanEval program for a body: prompt + body (+ the test via the runner).
Job HumanEvalJob(const nlohmann::json& r, const std::string& body) {
  Job j;
  j.id = r["task_id"].get<std::string>();
  j.code = r["prompt"].get<std::string>() + body;
  j.spec.test = r["test"].get<std::string>();
  j.spec.entry_point = r["entry_point"].get<std::string>();
  return j;
}

// An off-by-one in the result: numbers +1, sequences lose their last element, booleans flip.
std::string OffByOne(const std::string& entry) {
  return absl::StrCat("\n_orig_", entry, " = ", entry, "\n", "def ", entry, "(*a, **k):\n",
                      "    r = _orig_", entry, "(*a, **k)\n",
                      "    if isinstance(r, bool):\n        return not r\n",
                      "    if isinstance(r, (int, float)):\n        return r + 1\n",
                      "    if isinstance(r, (str, list, tuple)):\n        return r[:-1] if len(r) "
                      "else r + r[:0] + type(r)('x' if isinstance(r, str) else [0])\n",
                      "    if r is None:\n        return 0\n", "    return None\n");
}

TEST_F(DatasetsTest, HumanEvalCanonicalSolutionsAllPass) {
  std::vector<nlohmann::json> records = Load("../shared/data/humaneval.jsonl");
  ASSERT_EQ(records.size(), 164u);
  std::vector<Job> jobs;
  for (const auto& r : records) jobs.push_back(HumanEvalJob(r, r["canonical_solution"]));
  std::vector<Result> results = RunAll(Harness(), jobs, 3);
  int passed = 0;
  for (const Result& r : results) {
    if (r.verdict == Verdict::kOk) {
      ++passed;
    } else {
      ADD_FAILURE() << r.id << ": " << VerdictName(r.verdict) << ": " << r.detail;
    }
  }
  EXPECT_EQ(passed, 164);
}

TEST_F(DatasetsTest, HumanEvalMutantsAllFail) {
  std::vector<nlohmann::json> records = Load("../shared/data/humaneval.jsonl");
  ASSERT_EQ(records.size(), 164u);
  std::vector<Job> jobs;
  for (const auto& r : records) {
    Job none = HumanEvalJob(r, "    return None\n");
    none.id += " (return None)";
    jobs.push_back(none);
    Job off = HumanEvalJob(r, r["canonical_solution"].get<std::string>() +
                                  OffByOne(r["entry_point"].get<std::string>()));
    off.id += " (off by one)";
    jobs.push_back(off);
  }
  std::vector<Result> results = RunAll(Harness(), jobs, 3);
  int failed = 0;
  for (const Result& r : results) {
    if (r.verdict != Verdict::kOk) {
      ++failed;
    } else {
      ADD_FAILURE() << r.id << " passed although it is wrong";
    }
  }
  EXPECT_EQ(failed, 2 * 164);
}

// MBPP reference solutions. The README of the data set lists three tasks whose original tests
// depend on the platform (596: sys.getsizeof values; 341 and 642: set/tuple iteration order).
TEST_F(DatasetsTest, MbppReferenceSolutionsPassExceptPlatformDependentTasks) {
  std::vector<nlohmann::json> records = Load("../shared/data/mbpp.jsonl");
  ASSERT_EQ(records.size(), 974u);
  std::vector<Job> jobs;
  for (const auto& r : records) {
    Job j;
    j.id = std::to_string(r["task_id"].get<int>());
    j.code = absl::StrReplaceAll(r["code"].get<std::string>(), {{"\r\n", "\n"}});
    std::vector<std::string> tests;
    for (const auto& t : r["test_list"]) tests.push_back(t.get<std::string>());
    j.spec.test = absl::StrCat(r["test_setup_code"].get<std::string>(), "\n",
                               absl::StrJoin(tests, "\n"), "\n");
    jobs.push_back(j);
  }
  std::vector<Result> results = RunAll(Harness(), jobs, 3);
  const std::set<std::string> kPlatformDependent = {"596", "341", "642"};
  int passed = 0;
  std::vector<std::string> misses;
  for (const Result& r : results) {
    if (r.verdict == Verdict::kOk) {
      ++passed;
      continue;
    }
    misses.push_back(r.id);
    std::printf("MBPP miss %s: %s: %s\n", r.id.c_str(), std::string(VerdictName(r.verdict)).c_str(),
                r.detail.substr(0, 300).c_str());
    EXPECT_TRUE(kPlatformDependent.count(r.id))
        << "unexpected MBPP miss " << r.id << ": " << r.detail;
  }
  std::printf("MBPP reference solutions: %d/%zu pass (%.2f%%); misses: %s\n", passed,
              results.size(), 100.0 * passed / results.size(), absl::StrJoin(misses, ", ").c_str());
  EXPECT_GE(passed, 971);
}

}  // namespace
}  // namespace rlvr::verifiers::code
