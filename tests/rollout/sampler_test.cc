// Sampler: hand-computed cases for every filter, and frequency checks against the exact
// filtered distribution.
#include "rollout/sampler.h"

#include <cmath>
#include <map>
#include <vector>

#include "core/rng.h"
#include "gtest/gtest.h"

namespace rlvr::rollout {
namespace {

// Logits whose softmax is [1/6, 2/6, 3/6].
std::vector<float> ThreeWay() {
  return {0.0f, static_cast<float>(std::log(2.0)), static_cast<float>(std::log(3.0))};
}

TokenSample Draw(const std::vector<float>& z, const SamplingParams& p, double u,
                 std::vector<int32_t> history = {}, int64_t valid = -1) {
  Sampler s;
  auto r = s.Sample(z, valid < 0 ? static_cast<int64_t>(z.size()) : valid, p, history, u);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : TokenSample{};
}

TEST(SamplerTest, GreedyPicksFirstMaximumAndReportsPolicyLogprob) {
  SamplingParams p;
  p.temperature = 0;
  const std::vector<float> z = {1.0f, 3.0f, 3.0f, -2.0f};
  TokenSample t = Draw(z, p, 0.99);
  EXPECT_EQ(t.token, 1);
  const double lse = std::log(std::exp(1.0) + 2 * std::exp(3.0) + std::exp(-2.0));
  EXPECT_NEAR(t.logprob, 3.0 - lse, 1e-12);
  EXPECT_EQ(t.sampling_logprob, 0.0);
}

TEST(SamplerTest, InversionInIdOrderWithoutFilters) {
  SamplingParams p;
  const auto z = ThreeWay();
  // Cumulative masses 1/6, 3/6, 1.
  EXPECT_EQ(Draw(z, p, 0.10).token, 0);
  EXPECT_EQ(Draw(z, p, 0.20).token, 1);
  EXPECT_EQ(Draw(z, p, 0.49).token, 1);
  EXPECT_EQ(Draw(z, p, 0.51).token, 2);
  EXPECT_EQ(Draw(z, p, 0.0).token, 0);
  TokenSample t = Draw(z, p, 0.3);
  EXPECT_NEAR(t.logprob, std::log(2.0 / 6), 1e-7);
  EXPECT_NEAR(t.sampling_logprob, std::log(2.0 / 6), 1e-7);
}

TEST(SamplerTest, TemperatureScalesSamplingButNotPolicyLogprob) {
  SamplingParams p;
  p.temperature = 0.5;  // p ∝ [1, 4, 9] / 14
  const auto z = ThreeWay();
  TokenSample t = Draw(z, p, 0.05);  // 1/14 = 0.071 > 0.05
  EXPECT_EQ(t.token, 0);
  EXPECT_NEAR(t.sampling_logprob, std::log(1.0 / 14), 1e-7);
  EXPECT_NEAR(t.logprob, std::log(1.0 / 6), 1e-7);
  EXPECT_EQ(Draw(z, p, 0.36).token, 2);  // (1 + 4) / 14 = 0.357 < 0.36
  EXPECT_EQ(Draw(z, p, 0.35).token, 1);
  EXPECT_EQ(Draw(z, p, 0.07).token, 0);
  EXPECT_EQ(Draw(z, p, 0.072).token, 1);
}

TEST(SamplerTest, TopKKeepsMostProbableInDescendingOrder) {
  SamplingParams p;
  p.top_k = 2;  // keeps ids 2 (3/6) and 1 (2/6); mass 5/6; walk order 2, 1
  const auto z = ThreeWay();
  TokenSample a = Draw(z, p, 0.5);  // target 0.4167 < 0.5
  EXPECT_EQ(a.token, 2);
  EXPECT_NEAR(a.sampling_logprob, std::log(3.0 / 5), 1e-7);
  EXPECT_NEAR(a.logprob, std::log(3.0 / 6), 1e-7);
  TokenSample b = Draw(z, p, 0.7);  // target 0.583 > 0.5
  EXPECT_EQ(b.token, 1);
  EXPECT_NEAR(b.sampling_logprob, std::log(2.0 / 5), 1e-7);
  EXPECT_NE(Draw(z, p, 0.999).token, 0);
}

TEST(SamplerTest, TopKBreaksTiesBySmallerId) {
  SamplingParams p;
  p.top_k = 1;
  EXPECT_EQ(Draw({2.0f, 5.0f, 5.0f, 5.0f}, p, 0.9).token, 1);
}

TEST(SamplerTest, TopPKeepsShortestPrefixReachingMass) {
  const auto z = ThreeWay();
  SamplingParams p;
  p.top_p = 0.5;  // mass before id 1 is exactly 0.5, not < 0.5: only id 2
  for (double u : {0.0, 0.5, 0.99}) {
    TokenSample t = Draw(z, p, u);
    EXPECT_EQ(t.token, 2);
    EXPECT_NEAR(t.sampling_logprob, 0.0, 1e-12);
  }
  p.top_p = 0.6;  // ids 2 and 1
  EXPECT_EQ(Draw(z, p, 0.7).token, 1);
  EXPECT_NE(Draw(z, p, 0.999).token, 0);
  p.top_p = 0.9;  // all three
  EXPECT_EQ(Draw(z, p, 0.999).token, 0);
}

TEST(SamplerTest, MinPDropsTokensBelowFractionOfMax) {
  SamplingParams p;
  p.min_p = 0.5;  // threshold 0.25: ids 1 and 2 survive (mass 5/6)
  const auto z = ThreeWay();
  for (double u : {0.0, 0.3, 0.6, 0.999}) EXPECT_NE(Draw(z, p, u).token, 0) << u;
  EXPECT_NEAR(Draw(z, p, 0.0).sampling_logprob, std::log(3.0 / 5), 1e-7);
}

TEST(SamplerTest, RepetitionPenaltyDividesPositiveAndMultipliesNegative) {
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 4.0;
  // id 0: 2.0 -> 0.5; id 1: 1.0 stays; id 2: -0.1 -> -0.4.
  const std::vector<float> z = {2.0f, 1.0f, -0.1f};
  EXPECT_EQ(Draw(z, p, 0.5, {0, 0, 2}).token, 1);
  EXPECT_EQ(Draw(z, p, 0.5, {}).token, 0);
  // Off by default.
  SamplingParams off;
  off.temperature = 0;
  EXPECT_EQ(Draw(z, off, 0.5, {0}).token, 0);
  // The policy logprob ignores the penalty.
  TokenSample t = Draw(z, p, 0.5, {0});
  const double lse = std::log(std::exp(2.0) + std::exp(1.0) + std::exp(-0.1));
  EXPECT_NEAR(t.logprob, 1.0 - lse, 1e-7);
}

TEST(SamplerTest, PaddingIdsAreNeverChosen) {
  SamplingParams p;
  const std::vector<float> z = {0.0f, 0.0f, 50.0f, 50.0f};
  for (double u : {0.0, 0.5, 0.999}) {
    TokenSample t = Draw(z, p, u, {}, 2);
    EXPECT_LT(t.token, 2);
    EXPECT_NEAR(t.logprob, std::log(0.5), 1e-7);
  }
}

TEST(SamplerTest, BadRowsAreErrors) {
  Sampler s;
  SamplingParams p;
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> nan_row = {0.0f, std::nanf("")};
  auto r = s.Sample(nan_row, 2, p, {}, 0.5);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("NaN"), std::string::npos) << r.status();
  std::vector<float> dead = {-inf, -inf};
  EXPECT_EQ(s.Sample(dead, 2, p, {}, 0.5).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.Sample(dead, 3, p, {}, 0.5).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SamplerTest, ValidateNamesTheField) {
  struct Case {
    SamplingParams p;
    const char* field;
  };
  std::vector<Case> cases(5);
  cases[0].p.temperature = -1;
  cases[0].field = "temperature";
  cases[1].p.top_p = 1.5;
  cases[1].field = "top_p";
  cases[2].p.top_k = -3;
  cases[2].field = "top_k";
  cases[3].p.min_p = 1.0;
  cases[3].field = "min_p";
  cases[4].p.repetition_penalty = 0;
  cases[4].field = "repetition_penalty";
  for (const Case& c : cases) {
    absl::Status st = c.p.Validate();
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(st.message().rfind(c.field, 0), 0u) << st;
  }
  EXPECT_TRUE(SamplingParams{}.Validate().ok());
}

// Draws many tokens with fresh uniforms and compares the frequencies with the exact filtered
// distribution (within 5 standard deviations), and that filtered ids never appear.
void CheckFrequencies(const std::vector<float>& z, const SamplingParams& p,
                      const std::vector<double>& want) {
  Sampler s;
  Rng rng(1234);
  const int n = 60000;
  std::vector<int> count(z.size(), 0);
  for (int i = 0; i < n; ++i) {
    auto r = s.Sample(z, static_cast<int64_t>(z.size()), p, {}, rng.UniformDouble());
    ASSERT_TRUE(r.ok());
    ++count[r->token];
    // The recorded sampling logprob is the exact filtered probability.
    ASSERT_NEAR(std::exp(r->sampling_logprob), want[r->token], 1e-9) << "token " << r->token;
  }
  int compared = 0;
  for (size_t j = 0; j < z.size(); ++j) {
    const double f = static_cast<double>(count[j]) / n;
    const double sd = std::sqrt(want[j] * (1 - want[j]) / n);
    if (want[j] == 0) {
      EXPECT_EQ(count[j], 0) << "filtered id " << j << " was drawn";
    } else {
      EXPECT_NEAR(f, want[j], 5 * sd + 1e-12) << "id " << j;
      ++compared;
    }
  }
  EXPECT_GT(compared, 1);
}

TEST(SamplerTest, FrequenciesMatchFilteredDistribution) {
  const std::vector<float> z = {0.1f, 1.2f, -0.7f, 0.9f, 2.0f, -1.5f};
  std::vector<double> p(z.size());
  double sum = 0;
  for (size_t j = 0; j < z.size(); ++j) sum += p[j] = std::exp(z[j] / 0.8);
  for (double& x : p) x /= sum;
  // Sorted: 4, 1, 3, 0, 2, 5.
  {
    SamplingParams sp;
    sp.temperature = 0.8;
    CheckFrequencies(z, sp, p);
  }
  {
    SamplingParams sp;
    sp.temperature = 0.8;
    sp.top_k = 3;
    const double m = p[4] + p[1] + p[3];
    CheckFrequencies(z, sp, {0, p[1] / m, 0, p[3] / m, p[4] / m, 0});
  }
  {
    SamplingParams sp;
    sp.temperature = 0.8;
    sp.top_p = p[4] + p[1] + 1e-3;  // mass before id 3 is below top_p: 4, 1, 3 kept
    const double m = p[4] + p[1] + p[3];
    CheckFrequencies(z, sp, {0, p[1] / m, 0, p[3] / m, p[4] / m, 0});
  }
  {
    SamplingParams sp;
    sp.temperature = 0.8;
    sp.min_p = p[0] / p[4] - 1e-6;  // keeps ids with p >= p[0]: 4, 1, 3, 0
    const double m = p[4] + p[1] + p[3] + p[0];
    CheckFrequencies(z, sp, {p[0] / m, p[1] / m, 0, p[3] / m, p[4] / m, 0});
  }
}

}  // namespace
}  // namespace rlvr::rollout
