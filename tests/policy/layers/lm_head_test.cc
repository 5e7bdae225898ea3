// LM head with the blocked log-softmax: against a direct full softmax, backward against finite
// differences, masked vocabulary padding, the SFT cross-entropy entry.
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "policy/layers/lm_head.h"
#include "tests/policy/layers/grad_check.h"

namespace rlvr::policy::layers {
namespace {

using ::rlvr::testing::Dot;
using ::rlvr::testing::ExpectGradMatches;
using ::rlvr::testing::RandomVec;
using ::rlvr::testing::RelMaxErr;

// Full-matrix reference: logits, then log_softmax over the valid entries.
void Direct(const std::vector<double>& W, const std::vector<double>& h,
            const std::vector<int32_t>& tgt, int64_t N, int64_t C, int64_t /*V*/, int64_t valid,
            double scale, std::vector<double>* lp, std::vector<double>* ent) {
  lp->assign(N, 0.0);
  ent->assign(N, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    std::vector<double> z(valid);
    for (int64_t v = 0; v < valid; ++v) {
      double a = 0;
      for (int64_t c = 0; c < C; ++c) a += h[n * C + c] * W[v * C + c];
      z[v] = scale * a;
    }
    double m = -1e300, s = 0;
    for (double a : z) m = std::max(m, a);
    for (double a : z) s += std::exp(a - m);
    const double lse = m + std::log(s);
    (*lp)[n] = z[tgt[n]] - lse;
    for (double a : z) (*ent)[n] -= std::exp(a - lse) * (a - lse);
  }
}

TEST(LmHeadTest, BlockedLogprobAndEntropyMatchFullSoftmax) {
  std::mt19937_64 rng(30);
  const int64_t N = 11, C = 8, V = 37, valid = 33;
  auto W = RandomVec(rng, V * C), h = RandomVec(rng, N * C);
  std::vector<int32_t> tgt(N);
  for (int64_t n = 0; n < N; ++n) tgt[n] = static_cast<int32_t>((n * 7) % valid);
  std::vector<double> ref_lp, ref_ent;
  Direct(W, h, tgt, N, C, V, valid, 0.8, &ref_lp, &ref_ent);
  for (int64_t block : {1, 4, 64}) {
    SCOPED_TRACE(block);
    LmHeadConfig cfg{C, V, valid, block, 0.8};
    LmHeadActivations<double> act;
    std::vector<double> lp(N), ent(N);
    ASSERT_TRUE(
        LmHeadLogprobForward(cfg, W.data(), h.data(), tgt.data(), N, &act, lp.data(), ent.data())
            .ok());
    EXPECT_LT(RelMaxErr(lp, ref_lp), 1e-13);
    EXPECT_LT(RelMaxErr(ent, ref_ent), 1e-13);
  }
}

TEST(LmHeadTest, BackwardMatchesFiniteDifferences) {
  std::mt19937_64 rng(31);
  const int64_t N = 7, C = 6, V = 19, valid = 16;
  LmHeadConfig cfg{C, V, valid, /*row_block=*/3, /*scale=*/1.3};
  auto W = RandomVec(rng, V * C), h = RandomVec(rng, N * C);
  auto a = RandomVec(rng, N), b = RandomVec(rng, N);  // d loss / d logprob, d entropy
  std::vector<int32_t> tgt(N);
  for (int64_t n = 0; n < N; ++n) tgt[n] = static_cast<int32_t>((n * 5 + 1) % valid);
  auto loss = [&] {
    LmHeadActivations<double> act;
    std::vector<double> lp(N), ent(N);
    EXPECT_TRUE(
        LmHeadLogprobForward(cfg, W.data(), h.data(), tgt.data(), N, &act, lp.data(), ent.data())
            .ok());
    return Dot(lp, a) + Dot(ent, b);
  };
  LmHeadActivations<double> act;
  std::vector<double> lp(N), ent(N), dh(N * C, 0.0), dW(V * C, 0.0);
  ASSERT_TRUE(
      LmHeadLogprobForward(cfg, W.data(), h.data(), tgt.data(), N, &act, lp.data(), ent.data())
          .ok());
  LmHeadLogprobBackward(cfg, W.data(), h.data(), tgt.data(), N, act, a.data(), b.data(),
                        dh.data(), dW.data());
  ExpectGradMatches("lm_head dh", &h, dh, loss);
  ExpectGradMatches("lm_head dW", &W, dW, loss);
  // The padded vocabulary rows get no gradient.
  for (int64_t v = valid; v < V; ++v) {
    for (int64_t c = 0; c < C; ++c) EXPECT_EQ(dW[v * C + c], 0.0);
  }
}

TEST(LmHeadTest, CrossEntropyEqualsWeightedLogprobBackward) {
  std::mt19937_64 rng(32);
  const int64_t N = 9, C = 5, V = 23;
  LmHeadConfig cfg{C, V, 0, /*row_block=*/4, 1.0};
  auto W = RandomVec(rng, V * C), h = RandomVec(rng, N * C), wt = RandomVec(rng, N);
  std::vector<int32_t> tgt(N);
  for (int64_t n = 0; n < N; ++n) tgt[n] = static_cast<int32_t>((n * 3) % V);
  std::vector<double> dh(N * C, 0.0), dW(V * C, 0.0);
  auto loss = CrossEntropyForwardBackward(cfg, W.data(), h.data(), tgt.data(), wt.data(), N,
                                          dh.data(), dW.data());
  ASSERT_TRUE(loss.ok()) << loss.status();
  std::vector<double> lp, ent;
  Direct(W, h, tgt, N, C, V, V, 1.0, &lp, &ent);
  EXPECT_NEAR(*loss, -Dot(lp, wt), 1e-12);
  auto f = [&] {
    std::vector<double> l, e;
    Direct(W, h, tgt, N, C, V, V, 1.0, &l, &e);
    return -Dot(l, wt);
  };
  ExpectGradMatches("ce dh", &h, dh, f);
  ExpectGradMatches("ce dW", &W, dW, f);
}

TEST(LmHeadTest, LogitsMaskPaddingAndTargetsAreChecked) {
  const int64_t C = 2, V = 4;
  std::vector<float> W = {1, 0, 0, 1, 1, 1, 2, 2}, h = {0.5f, -1.0f};
  LmHeadConfig cfg{C, V, 3, 64, 2.0};
  std::vector<float> logits(V);
  ASSERT_TRUE(LmHeadLogits(cfg, W.data(), h.data(), 1, logits.data()).ok());
  EXPECT_FLOAT_EQ(logits[0], 1.0f);
  EXPECT_FLOAT_EQ(logits[1], -2.0f);
  EXPECT_FLOAT_EQ(logits[2], -1.0f);
  EXPECT_EQ(logits[3], -std::numeric_limits<float>::infinity());
  const int32_t bad = 3;
  LmHeadActivations<float> act;
  float lp;
  absl::Status s = LmHeadLogprobForward(cfg, W.data(), h.data(), &bad, 1, &act, &lp,
                                        static_cast<float*>(nullptr));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("row 0"), std::string_view::npos) << s;
}

}  // namespace
}  // namespace rlvr::policy::layers
