#include "policy/losses/policy_loss.h"

#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace rlvr::policy::losses {
namespace {

struct Batch {
  int64_t b = 0, t = 0;
  std::vector<double> logp, old, ref, adv;
  std::vector<uint8_t> mask;

  template <typename T>
  PolicyLossBatch<T> View(std::vector<T>* lp, std::vector<T>* o, std::vector<T>* r,
                          std::vector<T>* a) const {
    lp->assign(logp.begin(), logp.end());
    o->assign(old.begin(), old.end());
    r->assign(ref.begin(), ref.end());
    a->assign(adv.begin(), adv.end());
    PolicyLossBatch<T> v;
    v.batch = b;
    v.seq_len = t;
    v.logp_new = *lp;
    v.logp_old = *o;
    v.logp_ref = *r;
    v.advantages = *a;
    v.mask = mask;
    return v;
  }
};

PolicyLossConfig ConfigFromCase(const nlohmann::json& c) {
  PolicyLossConfig cfg;
  cfg.clip_eps_low = c["clip_eps_low"];
  cfg.clip_eps_high = c["clip_eps_high"];
  cfg.kl_coef = c["kl_coef"];
  cfg.dual_clip_c = c["dual_clip_c"];
  cfg.norm_length = c["norm_length"];
  cfg.kl_estimator = *ParseKlEstimator(c["kl_estimator"].get<std::string>());
  cfg.ratio_level = *ParseRatioLevel(c["ratio_level"].get<std::string>());
  cfg.agg_mode = *ParseLossAggMode(c["loss_agg_mode"].get<std::string>());
  return cfg;
}

std::string CaseName(const nlohmann::json& c) {
  return absl::StrCat(c["batch"].get<std::string>(), "/", c["ratio_level"].get<std::string>(), "/",
                      c["loss_agg_mode"].get<std::string>(), "/eps",
                      c["clip_eps_low"].get<double>(), "-", c["clip_eps_high"].get<double>(),
                      "/beta", c["kl_coef"].get<double>(), c["kl_estimator"].get<std::string>(),
                      "/dual", c["dual_clip_c"].get<double>());
}

class PolicyLossFixtureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ifstream in("tests/fixtures/grpo/policy_loss.json");
    ASSERT_TRUE(in.good()) << "missing tests/fixtures/grpo/policy_loss.json";
    fixture_ = nlohmann::json::parse(in);
    for (auto& [name, bj] : fixture_["batches"].items()) {
      Batch b;
      b.b = fixture_["B"];
      b.t = fixture_["T"];
      b.logp = bj["logp"].get<std::vector<double>>();
      b.old = bj["old"].get<std::vector<double>>();
      b.ref = bj["ref"].get<std::vector<double>>();
      b.adv = bj["adv"].get<std::vector<double>>();
      for (double m : bj["mask"].get<std::vector<double>>()) b.mask.push_back(m != 0);
      batches_[name] = b;
    }
  }
  nlohmann::json fixture_;
  std::map<std::string, Batch> batches_;
};

// The acceptance test: loss and d loss / d logp_new equal a PyTorch transcription of
// TRL's GRPO loss within 1e-6, for every aggregation mode, with and without each KL estimator,
// with clip-higher and the sequence-level ratio.
TEST_F(PolicyLossFixtureTest, MatchesTrlTranscription) {
  int cases = 0, clipped_cases = 0, seq_cases = 0, kl_cases = 0;
  int64_t compared = 0;
  for (const auto& c : fixture_["cases"]) {
    const std::string name = CaseName(c);
    const Batch& b = batches_.at(c["batch"].get<std::string>());
    const PolicyLossConfig cfg = ConfigFromCase(c);
    const double want_loss = c["loss"];
    const std::vector<double> want_grad = c["grad"];
    ASSERT_NE(want_loss, 0.0) << name;

    std::vector<double> lp, o, r, a;
    auto got = ComputePolicyLoss<double>(cfg, b.View(&lp, &o, &r, &a));
    ASSERT_TRUE(got.ok()) << name << ": " << got.status();
    EXPECT_NEAR(got->loss, want_loss, 1e-9) << name;
    ASSERT_EQ(got->grad_logp_new.size(), want_grad.size()) << name;
    int nonzero = 0;
    for (size_t k = 0; k < want_grad.size(); ++k) {
      EXPECT_NEAR(got->grad_logp_new[k], want_grad[k], 1e-9) << name << " grad[" << k << "]";
      nonzero += want_grad[k] != 0;
      ++compared;
    }
    EXPECT_GT(nonzero, 0) << name;
    EXPECT_EQ(got->stats.nonfinite, 0) << name;

    // The float path the trainer uses: same inputs rounded to float, within 1e-6.
    std::vector<float> lpf, of, rf, af;
    auto gotf = ComputePolicyLoss<float>(cfg, b.View(&lpf, &of, &rf, &af));
    ASSERT_TRUE(gotf.ok()) << name;
    EXPECT_NEAR(gotf->loss, want_loss, 1e-6) << name << " (float)";
    for (size_t k = 0; k < want_grad.size(); ++k) {
      EXPECT_NEAR(gotf->grad_logp_new[k], want_grad[k], 1e-6) << name << " float grad[" << k << "]";
    }

    if (!c["stats"].empty()) {
      const auto& s = c["stats"];
      EXPECT_NEAR(got->stats.clip_frac_low, s["clip_frac_low"].get<double>(), 1e-12) << name;
      EXPECT_NEAR(got->stats.clip_frac_high, s["clip_frac_high"].get<double>(), 1e-12) << name;
      EXPECT_NEAR(got->stats.ratio_mean, s["ratio_mean"].get<double>(), 1e-12) << name;
      EXPECT_NEAR(got->stats.ratio_min, s["ratio_min"].get<double>(), 1e-12) << name;
      EXPECT_NEAR(got->stats.ratio_max, s["ratio_max"].get<double>(), 1e-12) << name;
      EXPECT_NEAR(got->stats.approx_kl, s["approx_kl"].get<double>(), 1e-12) << name;
      clipped_cases += got->stats.clip_frac > 0;
    }
    seq_cases += cfg.ratio_level == RatioLevel::kSequence;
    kl_cases += cfg.kl_coef != 0;
    ++cases;
  }
  EXPECT_GE(cases, 96);
  EXPECT_GT(clipped_cases, 0) << "no fixture case exercises clipping";
  EXPECT_GT(seq_cases, 0);
  EXPECT_GT(kl_cases, 0);
  EXPECT_GT(compared, 5000);
}

// Random batch with ratios spread around 1 so that some tokens clip.
Batch RandomBatch(uint32_t seed, int64_t b, int64_t t, double spread) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::normal_distribution<double> n(0, 1);
  Batch x;
  x.b = b;
  x.t = t;
  for (int64_t i = 0; i < b; ++i) {
    const int64_t len = 1 + static_cast<int64_t>(u(rng) * t) % t;
    x.adv.push_back(n(rng));
    for (int64_t j = 0; j < t; ++j) {
      const double lp = -3 * u(rng) - 0.05;
      x.logp.push_back(lp);
      x.old.push_back(lp + spread * n(rng));
      x.ref.push_back(lp + 0.5 * n(rng));
      x.mask.push_back(j < len);
    }
  }
  return x;
}

// Central finite differences in double for every mode; tokens within 1e-4 of a clip boundary
// (where the loss has a kink) are skipped and counted.
TEST(PolicyLossTest, GradientMatchesFiniteDifferences) {
  const Batch base = RandomBatch(7, 6, 11, 0.3);
  int64_t checked = 0, skipped = 0;
  for (RatioLevel level : {RatioLevel::kToken, RatioLevel::kSequence}) {
    for (LossAggMode mode : {LossAggMode::kTokenMean, LossAggMode::kSeqMeanTokenMean,
                             LossAggMode::kSeqMeanTokenSumNorm}) {
      for (KlEstimator kl : {KlEstimator::kK1, KlEstimator::kK2, KlEstimator::kK3}) {
        for (double dual : {0.0, 1.5}) {
          PolicyLossConfig cfg;
          cfg.ratio_level = level;
          cfg.agg_mode = mode;
          cfg.kl_estimator = kl;
          cfg.kl_coef = 0.05;
          cfg.dual_clip_c = dual;
          cfg.norm_length = 16;
          std::vector<double> lp, o, r, a;
          auto view = base.View(&lp, &o, &r, &a);
          auto out = ComputePolicyLoss<double>(cfg, view);
          ASSERT_TRUE(out.ok()) << out.status();
          const double h = 1e-6;
          for (size_t k = 0; k < lp.size(); ++k) {
            if (!base.mask[k]) {
              EXPECT_EQ(out->grad_logp_new[k], 0.0);
              continue;
            }
            // Skip tokens whose ratio sits near a kink of the clipped surrogate.
            const double ratio = std::exp(lp[k] - o[k]);
            bool near_kink = false;
            for (double edge : {0.8, 1.28, dual}) {
              if (std::abs(ratio - edge) < 1e-4) near_kink = true;
            }
            if (level == RatioLevel::kSequence) near_kink = false;  // checked via the loss below
            if (near_kink) {
              ++skipped;
              continue;
            }
            const double saved = lp[k];
            lp[k] = saved + h;
            const double up = ComputePolicyLoss<double>(cfg, view)->loss;
            lp[k] = saved - h;
            const double down = ComputePolicyLoss<double>(cfg, view)->loss;
            lp[k] = saved;
            const double fd = (up - down) / (2 * h);
            EXPECT_NEAR(out->grad_logp_new[k], fd, 1e-7 + 1e-5 * std::abs(fd))
                << "level " << static_cast<int>(level) << " mode " << LossAggModeName(mode)
                << " kl " << static_cast<int>(kl) << " dual " << dual << " token " << k;
            ++checked;
          }
        }
      }
    }
  }
  EXPECT_GT(checked, 1000);
  EXPECT_LT(skipped, checked / 100);
}

// One optimizer step per batch, no staleness: logp_old == logp_new, so the ratio is exactly 1,
// nothing clips, and the gradient is -A * weight.
TEST(PolicyLossTest, OnPolicyRatioIsExactlyOneAndNothingClips) {
  Batch b = RandomBatch(3, 5, 8, 0.0);
  b.old = b.logp;
  for (RatioLevel level : {RatioLevel::kToken, RatioLevel::kSequence}) {
    PolicyLossConfig cfg;
    cfg.ratio_level = level;
    std::vector<float> lp, o, r, a;
    auto out = ComputePolicyLoss<float>(cfg, b.View(&lp, &o, &r, &a));
    ASSERT_TRUE(out.ok());
    EXPECT_EQ(out->stats.ratio_min, 1.0);
    EXPECT_EQ(out->stats.ratio_max, 1.0);
    EXPECT_EQ(out->stats.ratio_mean, 1.0);
    EXPECT_EQ(out->stats.clip_frac, 0.0);
    EXPECT_EQ(out->stats.clip_frac_low, 0.0);
    EXPECT_EQ(out->stats.clip_frac_high, 0.0);
    EXPECT_EQ(out->stats.approx_kl, 0.0);
    ASSERT_GT(out->stats.num_tokens, 0);
    int64_t n = 0;
    for (int64_t i = 0; i < b.b; ++i) {
      for (int64_t t = 0; t < b.t; ++t) {
        const size_t k = i * b.t + t;
        if (!b.mask[k]) continue;
        EXPECT_NEAR(out->grad_logp_new[k], -b.adv[i] / out->stats.num_tokens, 1e-7);
        ++n;
      }
    }
    EXPECT_EQ(n, out->stats.num_tokens);
    const auto metrics = PolicyLossMetrics(out->stats);
    std::map<std::string, double> m(metrics.begin(), metrics.end());
    EXPECT_EQ(m.at("actor/pg_clipfrac"), 0.0);
    EXPECT_EQ(m.at("actor/ratio_max"), 1.0);
    EXPECT_EQ(m.at("actor/response_tokens"), static_cast<double>(n));
  }
}

// Splitting a mini-batch into micro-batches with global normalizers sums to the whole.
TEST(PolicyLossTest, MicroBatchesSumToTheMiniBatch) {
  const Batch b = RandomBatch(11, 6, 7, 0.3);
  for (LossAggMode mode : {LossAggMode::kTokenMean, LossAggMode::kSeqMeanTokenMean,
                           LossAggMode::kSeqMeanTokenSumNorm}) {
    PolicyLossConfig cfg;
    cfg.agg_mode = mode;
    cfg.kl_coef = 0.1;
    std::vector<double> lp, o, r, a;
    auto whole = ComputePolicyLoss<double>(cfg, b.View(&lp, &o, &r, &a));
    ASSERT_TRUE(whole.ok());
    ASSERT_NE(whole->loss, 0.0);
    int64_t tokens = 0;
    for (uint8_t m : b.mask) tokens += m;
    cfg.global_tokens = tokens;
    cfg.global_sequences = b.b;
    double sum = 0;
    for (int64_t start = 0; start < b.b; start += 2) {
      auto view = b.View(&lp, &o, &r, &a);
      const size_t off = start * b.t, len = 2 * b.t;
      PolicyLossBatch<double> part;
      part.batch = 2;
      part.seq_len = b.t;
      part.logp_new = view.logp_new.subspan(off, len);
      part.logp_old = view.logp_old.subspan(off, len);
      part.logp_ref = view.logp_ref.subspan(off, len);
      part.advantages = view.advantages.subspan(start, 2);
      part.mask = view.mask.subspan(off, len);
      auto out = ComputePolicyLoss<double>(cfg, part);
      ASSERT_TRUE(out.ok());
      sum += out->loss;
      for (size_t k = 0; k < len; ++k) {
        EXPECT_NEAR(out->grad_logp_new[k], whole->grad_logp_new[off + k], 1e-15);
      }
    }
    EXPECT_NEAR(sum, whole->loss, 1e-12) << LossAggModeName(mode);
  }
}

TEST(PolicyLossTest, TokenLevelAdvantagesEqualBroadcastOnes) {
  const Batch b = RandomBatch(5, 4, 6, 0.3);
  Batch t = b;
  t.adv.clear();
  for (int64_t i = 0; i < b.b; ++i) {
    for (int64_t j = 0; j < b.t; ++j) t.adv.push_back(b.adv[i]);
  }
  PolicyLossConfig cfg;
  std::vector<double> lp, o, r, a, lp2, o2, r2, a2;
  auto x = ComputePolicyLoss<double>(cfg, b.View(&lp, &o, &r, &a));
  auto y = ComputePolicyLoss<double>(cfg, t.View(&lp2, &o2, &r2, &a2));
  ASSERT_TRUE(x.ok() && y.ok());
  EXPECT_DOUBLE_EQ(x->loss, y->loss);
  EXPECT_EQ(x->grad_logp_new, y->grad_logp_new);
}

TEST(PolicyLossTest, NanInputIsCountedNotHidden) {
  Batch b = RandomBatch(5, 3, 4, 0.1);
  b.logp[0] = NAN;
  b.mask[0] = 1;
  std::vector<float> lp, o, r, a;
  auto out = ComputePolicyLoss<float>(PolicyLossConfig{}, b.View(&lp, &o, &r, &a));
  ASSERT_TRUE(out.ok());
  EXPECT_GT(out->stats.nonfinite, 0);
  EXPECT_FALSE(std::isfinite(out->loss));
}

TEST(PolicyLossTest, SizeMismatchNamesTheArray) {
  Batch b = RandomBatch(5, 3, 4, 0.1);
  b.old.pop_back();
  std::vector<float> lp, o, r, a;
  auto out = ComputePolicyLoss<float>(PolicyLossConfig{}, b.View(&lp, &o, &r, &a));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(out.status().message().find("logp_old"), absl::string_view::npos) << out.status();
}

TEST(PolicyLossTest, KlWithoutReferenceIsAnError) {
  Batch b = RandomBatch(5, 3, 4, 0.1);
  std::vector<float> lp, o, r, a;
  auto view = b.View(&lp, &o, &r, &a);
  view.logp_ref = {};
  PolicyLossConfig cfg;
  cfg.kl_coef = 0.1;
  auto out = ComputePolicyLoss<float>(cfg, view);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("logp_ref"), absl::string_view::npos) << out.status();
}

TEST(PolicyLossTest, BadClipSettingsAreErrors) {
  Batch b = RandomBatch(5, 3, 4, 0.1);
  std::vector<float> lp, o, r, a;
  auto view = b.View(&lp, &o, &r, &a);
  PolicyLossConfig cfg;
  cfg.clip_eps_low = 1.0;
  EXPECT_FALSE(ComputePolicyLoss<float>(cfg, view).ok());
  cfg = PolicyLossConfig{};
  cfg.dual_clip_c = 0.5;
  auto out = ComputePolicyLoss<float>(cfg, view);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("dual_clip_c"), absl::string_view::npos);
}

TEST(PolicyLossTest, EmptyBatchIsZero) {
  PolicyLossBatch<float> empty;
  auto out = ComputePolicyLoss<float>(PolicyLossConfig{}, empty);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->loss, 0.0);
  EXPECT_EQ(out->stats.num_tokens, 0);
}

TEST(PolicyLossTest, ParseNamesAreErrorsNamingTheKey) {
  EXPECT_TRUE(ParseLossAggMode("seq_mean_token_sum_norm").ok());
  auto m = ParseLossAggMode("seq_sum");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("grpo.loss_agg_mode"), absl::string_view::npos);
  auto k = ParseKlEstimator("k4");
  ASSERT_FALSE(k.ok());
  EXPECT_NE(k.status().message().find("grpo.kl_estimator"), absl::string_view::npos);
  auto l = ParseRatioLevel("seq");
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().message().find("grpo.ratio_level"), absl::string_view::npos);
}

}  // namespace
}  // namespace rlvr::policy::losses
