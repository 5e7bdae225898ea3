#include "policy/losses/sft_loss.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace rlvr::policy::losses {
namespace {

TEST(SftLossTest, MeanNllOverMaskedTokens) {
  const std::vector<float> logp = {-1.0f, -2.0f, -3.0f, -4.0f};
  const std::vector<uint8_t> mask = {0, 1, 1, 0};
  auto out = SftLoss(logp, mask);
  ASSERT_TRUE(out.ok());
  EXPECT_DOUBLE_EQ(out->loss, 2.5);
  EXPECT_EQ(out->num_tokens, 2);
  EXPECT_EQ(out->grad, (std::vector<float>{0.0f, -0.5f, -0.5f, 0.0f}));
  auto norm = SftLoss(logp, mask, 5);
  ASSERT_TRUE(norm.ok());
  EXPECT_DOUBLE_EQ(norm->loss, 1.0);
}

TEST(SftLossTest, SizeMismatchIsAnError) {
  const std::vector<float> logp = {-1.0f};
  const std::vector<uint8_t> mask = {1, 1};
  EXPECT_FALSE(SftLoss(logp, mask).ok());
}

TEST(KdLossTest, GradientMatchesFiniteDifferences) {
  std::mt19937 rng(1);
  std::normal_distribution<float> n(0, 2);
  const int64_t rows = 3, vocab = 5;
  std::vector<float> s(rows * vocab), t(rows * vocab);
  for (auto& x : s) x = n(rng);
  for (auto& x : t) x = n(rng);
  const std::vector<uint8_t> mask = {1, 0, 1};
  for (double tau : {1.0, 2.0}) {
    auto out = KdLoss(s, t, mask, vocab, tau);
    ASSERT_TRUE(out.ok());
    ASSERT_GT(out->loss, 0.0);
    int checked = 0;
    for (size_t k = 0; k < s.size(); ++k) {
      const float saved = s[k];
      const float h = 1e-2f;
      s[k] = saved + h;
      const double up = KdLoss(s, t, mask, vocab, tau)->loss;
      s[k] = saved - h;
      const double down = KdLoss(s, t, mask, vocab, tau)->loss;
      s[k] = saved;
      const double fd = (up - down) / (2.0 * h);
      EXPECT_NEAR(out->grad[k], fd, 2e-4 + 1e-3 * std::abs(fd)) << "logit " << k;
      ++checked;
    }
    EXPECT_EQ(checked, rows * vocab);
  }
  // Identical logits: zero loss and gradient.
  auto same = KdLoss(t, t, mask, vocab, 1.0);
  ASSERT_TRUE(same.ok());
  EXPECT_NEAR(same->loss, 0.0, 1e-12);
}

}  // namespace
}  // namespace rlvr::policy::losses
