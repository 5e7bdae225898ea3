// Stop conditions: EOS ids, stop strings across token boundaries, the token budget.
#include "rollout/stop.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace rlvr::rollout {
namespace {

// Token id i stands for the bytes kPieces[i].
const std::vector<std::string> kPieces = {"a", "b", "</", "answer", ">", "</answer>", "x"};
const TokenBytesFn kBytes = [](int32_t id) -> std::string_view {
  return id >= 0 && id < static_cast<int32_t>(kPieces.size()) ? std::string_view(kPieces[id])
                                                              : std::string_view();
};

FinishReason Feed(StopChecker& c, const std::vector<int32_t>& ids) {
  FinishReason r = FinishReason::kNone;
  for (int32_t id : ids) {
    r = c.Add(id);
    if (r != FinishReason::kNone) break;
  }
  return r;
}

TEST(StopTest, EosEndsWithReasonEos) {
  StopConditions sc{.eos_ids = {6, 99}, .stop_strings = {}, .max_new_tokens = 10};
  StopChecker c(&sc, &kBytes);
  EXPECT_EQ(Feed(c, {0, 1, 99, 0}), FinishReason::kEos);
  EXPECT_EQ(c.generated(), 3);
  EXPECT_STREQ(FinishReasonName(c.reason()), "eos");
}

TEST(StopTest, BudgetEndsWithReasonLength) {
  StopConditions sc{.eos_ids = {6}, .stop_strings = {}, .max_new_tokens = 3};
  StopChecker c(&sc, &kBytes);
  EXPECT_EQ(c.Add(0), FinishReason::kNone);
  EXPECT_EQ(c.Add(1), FinishReason::kNone);
  EXPECT_EQ(c.Add(0), FinishReason::kLength);
  EXPECT_STREQ(FinishReasonName(c.reason()), "length");
  // EOS on the last allowed token is reported as EOS.
  StopChecker d(&sc, &kBytes);
  EXPECT_EQ(Feed(d, {0, 1, 6}), FinishReason::kEos);
}

TEST(StopTest, StopStringAcrossTokens) {
  StopConditions sc{.eos_ids = {}, .stop_strings = {"</answer>"}, .max_new_tokens = 100};
  StopChecker c(&sc, &kBytes);
  // "ab" "</" "answer" ">" : the match completes on the 5th token.
  EXPECT_EQ(Feed(c, {0, 1, 2, 3, 4, 0}), FinishReason::kStop);
  EXPECT_EQ(c.generated(), 5);
  EXPECT_EQ(c.text_end(), 2 + 9);
  EXPECT_EQ(c.matched_stop(), 0);
}

TEST(StopTest, StopStringInsideOneTokenCutsTextAfterIt) {
  StopConditions sc{.eos_ids = {}, .stop_strings = {"ans", "zzz"}, .max_new_tokens = 100};
  StopChecker c(&sc, &kBytes);
  EXPECT_EQ(Feed(c, {0, 5}), FinishReason::kStop);
  EXPECT_EQ(c.text_end(), 1 + 5);  // "a</ans"
  EXPECT_EQ(c.matched_stop(), 0);
}

TEST(StopTest, EarliestOfSeveralStopStringsWins) {
  StopConditions sc{.eos_ids = {}, .stop_strings = {"answer>", "</"}, .max_new_tokens = 100};
  StopChecker c(&sc, &kBytes);
  EXPECT_EQ(Feed(c, {0, 5}), FinishReason::kStop);
  EXPECT_EQ(c.matched_stop(), 1);
  EXPECT_EQ(c.text_end(), 3);
}

TEST(StopTest, ValidateNamesTheField) {
  StopConditions a{.eos_ids = {}, .stop_strings = {"ok", ""}, .max_new_tokens = 5};
  EXPECT_EQ(a.Validate().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(a.Validate().message().find("stop[1]"), std::string::npos);
  StopConditions b{.eos_ids = {}, .stop_strings = {}, .max_new_tokens = 0};
  EXPECT_NE(b.Validate().message().find("max_new_tokens"), std::string::npos);
}

}  // namespace
}  // namespace rlvr::rollout
