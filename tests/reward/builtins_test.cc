#include "reward/builtins.h"

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "core/jsonl.h"
#include "gtest/gtest.h"

namespace rlvr::reward {
namespace {

Sample MakeSample(std::string completion, nlohmann::json record = nlohmann::json::object()) {
  Sample s;
  s.completion = std::move(completion);
  s.record = std::make_shared<const nlohmann::json>(std::move(record));
  s.source = "test.jsonl";
  s.line = 7;
  return s;
}

double ScoreOf(const Verifier& v, const Sample& s) {
  absl::StatusOr<VerdictResult> r = v.Score(s);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->reward : -999;
}

TEST(FormatVerifierTest, AcceptsR1Format) {
  auto v = MakeFormatVerifier({});
  ASSERT_TRUE(v.ok()) << v.status();
  const Verifier& f = **v;
  EXPECT_EQ(ScoreOf(f, MakeSample("<think>2+2 is 4</think> <answer>4</answer>")), 1.0);
  EXPECT_EQ(ScoreOf(f, MakeSample("<think>\nsteps\n</think>\n<answer>\n4\n</answer>\n")), 1.0);
  EXPECT_EQ(ScoreOf(f, MakeSample("<think>steps</think>So the answer is \\boxed{4}.")), 1.0);
  // R1-Zero prompt ending in <think>: the completion continues the think block.
  Sample cont = MakeSample("steps</think><answer>4</answer>");
  cont.prompt = "User: 2+2?\nAssistant: <think>";
  EXPECT_EQ(ScoreOf(f, cont), 1.0);
}

TEST(FormatVerifierTest, RejectsMalformed) {
  auto v = MakeFormatVerifier({});
  ASSERT_TRUE(v.ok());
  const Verifier& f = **v;
  for (const char* bad : {
           "<answer>4</answer>",                                  // no think
           "<think>steps</think>",                                // no answer
           "<think>steps</think><answer></answer>",               // empty answer
           "<think>steps</think><answer>4</answer> trailing",     // text after the answer
           "<think>a<think>b</think><answer>4</answer>",          // nested think
           "<think>a</think><think>b</think><answer>4</answer>",  // two think blocks
           "steps</think><answer>4</answer>",                     // no <think> anywhere
           "<think>steps<answer>4</answer>",                      // think never closed
       }) {
    EXPECT_EQ(ScoreOf(f, MakeSample(bad)), 0.0) << bad;
  }
}

TEST(FormatVerifierTest, Options) {
  auto tag_only = MakeFormatVerifier({{"answer", "answer_tag"}, {"reward", "0.5"}});
  ASSERT_TRUE(tag_only.ok());
  EXPECT_EQ(ScoreOf(**tag_only, MakeSample("<think>x</think>\\boxed{4}")), 0.0);
  EXPECT_EQ(ScoreOf(**tag_only, MakeSample("<think>x</think><answer>4</answer>")), 0.5);
  auto bad = MakeFormatVerifier({{"answer", "tag"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("format.options.answer"), absl::string_view::npos);
  auto typo = MakeFormatVerifier({{"rewrd", "1"}});
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("format.options.rewrd: unknown option"),
            absl::string_view::npos)
      << typo.status();
  auto nan = MakeFormatVerifier({{"reward", "x"}});
  ASSERT_FALSE(nan.ok());
  EXPECT_NE(nan.status().message().find("format.options.reward: expected a number"),
            absl::string_view::npos);
}

TEST(OverlongTest, DapoSoftPunishment) {
  // max 100, buffer 20: free up to 80, then linear to -penalty at 100.
  EXPECT_EQ(OverlongReward(50, 100, 20, 1.0), 0.0);
  EXPECT_EQ(OverlongReward(80, 100, 20, 1.0), 0.0);
  EXPECT_DOUBLE_EQ(OverlongReward(90, 100, 20, 1.0), -0.5);
  EXPECT_DOUBLE_EQ(OverlongReward(100, 100, 20, 1.0), -1.0);
  EXPECT_DOUBLE_EQ(OverlongReward(95, 100, 20, 0.5), -0.375);
  EXPECT_DOUBLE_EQ(OverlongReward(130, 100, 20, 1.0), -1.0);

  auto v = MakeOverlongVerifier({{"buffer_tokens", "20"}});
  ASSERT_TRUE(v.ok()) << v.status();
  Sample s = MakeSample("x");
  s.completion_tokens = 90;
  s.max_tokens = 100;
  EXPECT_DOUBLE_EQ(ScoreOf(**v, s), -0.5);
  s.max_tokens = 0;
  EXPECT_FALSE((*v)->Score(s).ok());
  auto bad = MakeOverlongVerifier({});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("buffer_tokens"), absl::string_view::npos);
}

TEST(CountdownTest, HandCases) {
  const std::vector<int64_t> nums = {3, 4, 5};
  EXPECT_EQ(CheckCountdown("(3 + 5) * 4", nums, 32), CountdownOutcome::kCorrect);
  EXPECT_EQ(CheckCountdown("4 * (5 + 3) = 32", nums, 32), CountdownOutcome::kCorrect);
  EXPECT_EQ(CheckCountdown("3 \\times 4 + 5", nums, 17), CountdownOutcome::kCorrect);
  EXPECT_EQ(CheckCountdown("(3 + 5) * 4", nums, 31), CountdownOutcome::kWrongValue);
  EXPECT_EQ(CheckCountdown("(3 + 5) * 4 * 1", nums, 32), CountdownOutcome::kWrongNumbers);
  EXPECT_EQ(CheckCountdown("3 * 4", nums, 12), CountdownOutcome::kWrongNumbers);
  EXPECT_EQ(CheckCountdown("(3 + 5 * 4", nums, 23), CountdownOutcome::kInvalid);
  EXPECT_EQ(CheckCountdown("-3 + 5 + 4", nums, 6), CountdownOutcome::kInvalid);
  EXPECT_EQ(CheckCountdown("3 ^ 4 + 5", nums, 86), CountdownOutcome::kInvalid);
  EXPECT_EQ(CheckCountdown("3 / (5 - 5) + 4", {3, 5, 5, 4}, 4), CountdownOutcome::kWrongValue);
  // Exact rationals: 5 / 3 * 3 is exactly 5.
  EXPECT_EQ(CheckCountdown("5 / 3 * 3", {5, 3, 3}, 5), CountdownOutcome::kCorrect);
  EXPECT_EQ(CheckCountdown(std::string(200, '(') + "3" + std::string(200, ')'), {3}, 3),
            CountdownOutcome::kInvalid);
}

// Every witness solution of the real data set is accepted, and perturbed targets are not.
TEST(CountdownTest, AcceptsEveryWitnessOfTheDataSet) {
  auto records = ReadJsonl("../shared/data/countdown.jsonl");
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 1000u);
  auto v = MakeCountdownVerifier({});
  ASSERT_TRUE(v.ok());
  int correct = 0;
  for (const nlohmann::json& r : *records) {
    const std::string expr = r["solution"];
    const std::vector<int64_t> nums = r["nums"];
    const int64_t target = r["target"];
    EXPECT_EQ(CheckCountdown(expr, nums, target), CountdownOutcome::kCorrect) << r.dump();
    EXPECT_EQ(CheckCountdown(expr, nums, target + 1), CountdownOutcome::kWrongValue);
    Sample s = MakeSample("<think>search</think><answer>" + expr + "</answer>", r);
    auto verdict = (*v)->Score(s);
    ASSERT_TRUE(verdict.ok());
    correct += verdict->correct.value_or(false) ? 1 : 0;
  }
  EXPECT_EQ(correct, 1000);
}

TEST(CountdownTest, VerifierRewardsAndRecordErrors) {
  auto v = MakeCountdownVerifier({{"format_reward", "0.1"}});
  ASSERT_TRUE(v.ok());
  const nlohmann::json rec = {{"target", 32}, {"nums", {3, 4, 5}}};
  EXPECT_EQ(ScoreOf(**v, MakeSample("<answer>(3+5)*4</answer>", rec)), 1.0);
  EXPECT_EQ(ScoreOf(**v, MakeSample("<answer>(3+5)*5</answer>", rec)), 0.1);
  EXPECT_EQ(ScoreOf(**v, MakeSample("so \\boxed{(3+5)*4}", rec)), 1.0);
  EXPECT_EQ(ScoreOf(**v, MakeSample("no answer here", rec)), 0.0);
  absl::Status missing = (*v)->CheckRecord({{"nums", {1, 2}}});
  EXPECT_EQ(missing.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(missing.message().find("'target'"), absl::string_view::npos) << missing;
  absl::Status bad_nums = (*v)->CheckRecord({{"target", 3}, {"nums", "1 2"}});
  EXPECT_NE(bad_nums.message().find("'nums'"), absl::string_view::npos) << bad_nums;
}

TEST(ExtractTaggedAnswerTest, LastAnswerOrBox) {
  EXPECT_EQ(ExtractTaggedAnswer("<answer>1</answer> then <answer> 2 </answer>"), "2");
  EXPECT_EQ(ExtractTaggedAnswer("\\boxed{\\frac{1}{2}} and \\boxed{3}"), "3");
  EXPECT_EQ(ExtractTaggedAnswer("\\boxed{\\frac{1}{2}}"), "\\frac{1}{2}");
  EXPECT_EQ(ExtractTaggedAnswer("\\boxed{unclosed"), "");
  EXPECT_EQ(ExtractTaggedAnswer("nothing"), "");
}

TEST(MathAdapterTest, ScoresGsm8kStyleRecords) {
  auto v = MakeMathVerifier({});
  ASSERT_TRUE(v.ok()) << v.status();
  const nlohmann::json rec = {{"question", "q"}, {"answer", "6 * 12 = <<6*12=72>>72\n#### 72"}};
  auto right = (*v)->Score(MakeSample("<think>6*12</think> The answer is \\boxed{72}.", rec));
  ASSERT_TRUE(right.ok()) << right.status();
  EXPECT_EQ(right->reward, 1.0);
  EXPECT_TRUE(right->correct.value_or(false));
  auto wrong = (*v)->Score(MakeSample("\\boxed{71}", rec));
  ASSERT_TRUE(wrong.ok());
  EXPECT_EQ(wrong->reward, 0.0);
  EXPECT_FALSE(wrong->correct.value_or(true));
  // AMC stores answers as numbers.
  auto amc = (*v)->Score(MakeSample("\\boxed{27}", {{"answer", 27.0}}));
  ASSERT_TRUE(amc.ok());
  EXPECT_EQ(amc->reward, 1.0);
  absl::Status missing = (*v)->CheckRecord({{"question", "q"}});
  EXPECT_EQ(missing.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(missing.message().find("'answer'"), absl::string_view::npos);
  auto keyed = MakeMathVerifier({{"answer_key", "gold"}});
  ASSERT_TRUE(keyed.ok());
  EXPECT_TRUE((*keyed)->CheckRecord({{"gold", "1"}}).ok());
}

TEST(CodeAdapterTest, ReadsHumanEvalAndMbppRecords) {
  auto v = MakeCodeVerifier({});
  ASSERT_TRUE(v.ok()) << v.status();
  auto he = ReadJsonl("../shared/data/humaneval.jsonl");
  ASSERT_TRUE(he.ok()) << he.status();
  auto mbpp = ReadJsonl("../shared/data/mbpp.jsonl");
  ASSERT_TRUE(mbpp.ok()) << mbpp.status();
  int checked = 0;
  for (const auto& r : *he) {
    EXPECT_TRUE((*v)->CheckRecord(r).ok());
    ++checked;
  }
  for (const auto& r : *mbpp) {
    EXPECT_TRUE((*v)->CheckRecord(r).ok());
    ++checked;
  }
  EXPECT_EQ(checked, 164 + 974);
  absl::Status missing = (*v)->CheckRecord({{"prompt", "def f(): pass"}});
  EXPECT_EQ(missing.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(missing.message().find("'tests'"), absl::string_view::npos) << missing;
  auto bad = MakeCodeVerifier({{"language", "cobol"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("code.options.language"), absl::string_view::npos);
}

}  // namespace
}  // namespace rlvr::reward

namespace rlvr::reward {
namespace {

// End to end through the sandbox when this machine can run it (root, namespaces, cgroups);
// skipped elsewhere. The canonical HumanEval/0 solution passes, a wrong one fails.
TEST(CodeAdapterTest, RunsHumanEvalInTheSandbox) {
  auto he = ReadJsonl("../shared/data/humaneval.jsonl");
  ASSERT_TRUE(he.ok()) << he.status();
  const nlohmann::json& rec = (*he)[0];
  auto v = MakeCodeVerifier({{"prefix_field", "prompt"}, {"concurrency", "1"}});
  ASSERT_TRUE(v.ok()) << v.status();
  auto right = (*v)->Score(MakeSample(rec["canonical_solution"].get<std::string>(), rec));
  if (!right.ok() && absl::StrContains(right.status().message(), "starting the sandbox")) {
    GTEST_SKIP() << right.status();
  }
  ASSERT_TRUE(right.ok()) << right.status();
  EXPECT_EQ(right->reward, 1.0) << right->detail;
  EXPECT_TRUE(right->correct.value_or(false));
  auto wrong = (*v)->Score(MakeSample("    return False\n", rec));
  ASSERT_TRUE(wrong.ok()) << wrong.status();
  EXPECT_LT(wrong->reward, 1.0);
  EXPECT_FALSE(wrong->correct.value_or(true));
}

}  // namespace
}  // namespace rlvr::reward
