#include "policy/losses/advantages.h"

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace rlvr::policy::losses {
namespace {

nlohmann::json LoadFixture(const std::string& name) {
  std::ifstream in("tests/fixtures/grpo/" + name);
  EXPECT_TRUE(in.good()) << "missing fixture " << name << " (run from the source root)";
  return nlohmann::json::parse(in);
}

void ExpectNear(const std::vector<double>& got, const std::vector<double>& want, double tol,
                const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int nonzero = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], tol) << what << " at " << i;
    nonzero += want[i] != 0 ? 1 : 0;
  }
  EXPECT_GT(nonzero, 0) << what << ": reference is all zeros";
}

TEST(AdvantagesTest, MatchesTorchTranscriptionOfTrlAndVerl) {
  nlohmann::json f = LoadFixture("advantages.json");
  const int64_t g = f["G"], t = f["T"];
  const std::vector<double> rewards = f["rewards"];
  std::vector<uint8_t> mask;
  for (double m : f["mask"].get<std::vector<double>>()) mask.push_back(m != 0 ? 1 : 0);
  const int64_t n = static_cast<int64_t>(rewards.size());
  ASSERT_EQ(n, f["N"].get<int64_t>());

  struct Case {
    AdvantageEstimator est;
    double gamma;
    const char* key;
    bool token_level;
  };
  const Case cases[] = {
      {AdvantageEstimator::kGrpo, 1.0, "grpo", false},
      {AdvantageEstimator::kDrGrpo, 1.0, "dr_grpo", false},
      {AdvantageEstimator::kRloo, 1.0, "rloo", false},
      {AdvantageEstimator::kReinforcePP, 1.0, "reinforce_pp_gamma1", true},
      {AdvantageEstimator::kReinforcePP, 0.9, "reinforce_pp_gamma0.9", true},
      {AdvantageEstimator::kReinforcePPBaseline, 1.0, "reinforce_pp_baseline", true},
  };
  for (const Case& c : cases) {
    AdvantageOptions opt;
    opt.estimator = c.est;
    opt.eps = f["eps"];
    opt.gamma = c.gamma;
    const std::vector<double> want = f[c.key];
    if (!c.token_level) {
      auto per_sample = ComputeSampleAdvantages(opt, rewards, g);
      ASSERT_TRUE(per_sample.ok()) << per_sample.status();
      ExpectNear(*per_sample, want, 1e-9, c.key);
      auto tok = ComputeTokenAdvantages(opt, rewards, g, mask, t);
      ASSERT_TRUE(tok.ok()) << tok.status();
      ExpectNear(*tok, BroadcastToTokens(want, mask, t), 1e-9, c.key);
    } else {
      auto tok = ComputeTokenAdvantages(opt, rewards, g, mask, t);
      ASSERT_TRUE(tok.ok()) << tok.status();
      ExpectNear(*tok, want, 1e-9, c.key);
    }
  }
}

TEST(AdvantagesTest, HandComputedGroup) {
  // Group {1, 0, 0, 1}: mean 0.5, sample std sqrt(1/3).
  const std::vector<double> r = {1, 0, 0, 1};
  AdvantageOptions opt;
  opt.eps = 0;
  auto a = ComputeSampleAdvantages(opt, r, 4);
  ASSERT_TRUE(a.ok());
  EXPECT_NEAR((*a)[0], 0.5 / std::sqrt(1.0 / 3.0), 1e-12);
  EXPECT_NEAR((*a)[1], -0.5 / std::sqrt(1.0 / 3.0), 1e-12);
  opt.estimator = AdvantageEstimator::kRloo;
  a = ComputeSampleAdvantages(opt, r, 4);
  ASSERT_TRUE(a.ok());
  EXPECT_NEAR((*a)[0], 1.0 - 1.0 / 3.0, 1e-12);
  EXPECT_NEAR((*a)[1], 0.0 - 2.0 / 3.0, 1e-12);
  opt.estimator = AdvantageEstimator::kDrGrpo;
  a = ComputeSampleAdvantages(opt, r, 4);
  ASSERT_TRUE(a.ok());
  EXPECT_DOUBLE_EQ((*a)[0], 0.5);
  EXPECT_DOUBLE_EQ((*a)[2], -0.5);
}

TEST(AdvantagesTest, DegenerateGroupHasZeroAdvantageAndIsCounted) {
  const std::vector<double> r = {1, 1, 1, 0, 1, 0};
  AdvantageOptions opt;
  auto a = ComputeSampleAdvantages(opt, r, 3);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a)[0], 0.0);
  EXPECT_EQ((*a)[2], 0.0);
  EXPECT_GT((*a)[4], 0.0);
  auto s = ComputeGroupStats(r, 3);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->num_groups, 2);
  EXPECT_EQ(s->num_degenerate, 1);
  EXPECT_EQ(s->degenerate, (std::vector<uint8_t>{1, 0}));
}

TEST(AdvantagesTest, GroupOfOne) {
  const std::vector<double> r = {2.0, -1.0};
  AdvantageOptions opt;
  auto a = ComputeSampleAdvantages(opt, r, 1);
  ASSERT_TRUE(a.ok());
  EXPECT_NEAR((*a)[0], 2.0, 1e-5);  // veRL: mean 0, std 1
  opt.estimator = AdvantageEstimator::kRloo;
  a = ComputeSampleAdvantages(opt, r, 1);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a)[1], -1.0);
}

TEST(AdvantagesTest, BatchNotDividingIntoGroupsIsAnError) {
  const std::vector<double> r = {1, 0, 1, 0, 1};
  auto a = ComputeSampleAdvantages(AdvantageOptions{}, r, 4);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(a.status().message().find("groups of 4"), absl::string_view::npos) << a.status();
}

TEST(AdvantagesTest, NonFiniteRewardIsAnErrorNamingTheSample) {
  const std::vector<double> r = {1, NAN};
  auto a = ComputeSampleAdvantages(AdvantageOptions{}, r, 2);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("sample 1"), absl::string_view::npos) << a.status();
}

TEST(AdvantagesTest, MaskSizeMismatchIsAnError) {
  const std::vector<double> r = {1, 0};
  const std::vector<uint8_t> mask(5, 1);
  auto a = ComputeTokenAdvantages(AdvantageOptions{}, r, 2, mask, 3);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("2 x 3"), absl::string_view::npos) << a.status();
}

TEST(AdvantagesTest, ParseNames) {
  for (const char* name : {"grpo", "dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline"}) {
    auto e = ParseAdvantageEstimator(name);
    ASSERT_TRUE(e.ok()) << name;
    EXPECT_EQ(AdvantageEstimatorName(*e), name);
  }
  auto bad = ParseAdvantageEstimator("ppo");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("grpo.advantage_estimator"), absl::string_view::npos);
}

}  // namespace
}  // namespace rlvr::policy::losses
