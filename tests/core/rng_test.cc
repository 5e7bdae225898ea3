#include "core/rng.h"

#include <cmath>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace rlvr {
namespace {

// Known answers from Random123's tests/kat_vectors ("philox4x32 10" lines).
TEST(RngTest, PhiloxKnownAnswers) {
  using A4 = std::array<uint32_t, 4>;
  EXPECT_EQ(Philox4x32({0, 0, 0, 0}, {0, 0}), (A4{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  EXPECT_EQ(Philox4x32({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}),
            (A4{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(Philox4x32({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}),
            (A4{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

TEST(RngTest, StreamLayoutIsPhiloxOfPositionAndStream) {
  // Block p of Rng(seed, stream) is Philox4x32((p, stream), seed), words in order.
  Rng zero(0, 0);
  EXPECT_EQ(zero.NextU32(), 0x6627e8d5u);
  EXPECT_EQ(zero.NextU32(), 0xe169c58du);
  EXPECT_EQ(zero.NextU32(), 0xbc57ac4cu);
  EXPECT_EQ(zero.NextU32(), 0x9b00dbd8u);
  Rng rng(0x299f31d0a4093822ull, 0x0370734413198a2eull);
  rng.Skip(4 * 5 + 2);
  auto block = Philox4x32({5, 0, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0});
  EXPECT_EQ(rng.NextU32(), block[2]);
  EXPECT_EQ(rng.NextU32(), block[3]);
}

TEST(RngTest, DeterministicAndSkipRestoresState) {
  Rng a(42, 7), b(42, 7);
  std::vector<uint32_t> first;
  for (int i = 0; i < 11; ++i) first.push_back(a.NextU32());
  for (int i = 0; i < 11; ++i) EXPECT_EQ(b.NextU32(), first[i]);
  EXPECT_EQ(a.words_drawn(), 11u);
  for (uint64_t k : {0, 1, 3, 4, 5, 8, 10}) {
    Rng c(42, 7);
    c.Skip(k);
    EXPECT_EQ(c.words_drawn(), k);
    EXPECT_EQ(c.NextU32(), first[k]) << k;
  }
}

TEST(RngTest, StreamsAndSplitsDiffer) {
  std::set<uint32_t> firsts;
  Rng parent(1);
  for (uint64_t s = 0; s < 50; ++s) {
    firsts.insert(Rng(1, s).NextU32());
    firsts.insert(parent.Split(s).NextU32());
  }
  EXPECT_EQ(firsts.size(), 100u);
  // Split does not depend on how much the parent drew.
  Rng p1(9), p2(9);
  p2.NextU64();
  EXPECT_EQ(p1.Split(3).NextU64(), p2.Split(3).NextU64());
}

TEST(RngTest, UniformAndNormalMoments) {
  Rng rng(123);
  const int n = 200000;
  double sum = 0, sum_sq = 0, nsum = 0, nsum_sq = 0;
  float fmin = 1, fmax = 0;
  for (int i = 0; i < n; ++i) {
    double u = rng.UniformDouble();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    sum_sq += u * u;
    float f = rng.UniformFloat();
    fmin = std::min(fmin, f);
    fmax = std::max(fmax, f);
    double z = rng.Normal();
    nsum += z;
    nsum_sq += z * z;
  }
  EXPECT_NEAR(sum / n, 0.5, 0.005);
  EXPECT_NEAR(sum_sq / n - 0.25, 1.0 / 12, 0.003);
  EXPECT_LT(fmax, 1.0f);
  EXPECT_GE(fmin, 0.0f);
  EXPECT_NEAR(nsum / n, 0.0, 0.01);
  EXPECT_NEAR(nsum_sq / n, 1.0, 0.02);
}

TEST(RngTest, UniformIntIsUnbiased) {
  Rng rng(5);
  std::vector<int> counts(7, 0);
  const int n = 70000;
  for (int i = 0; i < n; ++i) {
    uint64_t k = rng.UniformInt(7);
    ASSERT_LT(k, 7u);
    ++counts[k];
  }
  // Chi-square with 6 degrees of freedom; 22.46 is the 0.999 quantile.
  double chi2 = 0;
  for (int c : counts) chi2 += (c - n / 7.0) * (c - n / 7.0) / (n / 7.0);
  EXPECT_LT(chi2, 22.46);
  EXPECT_EQ(rng.UniformInt(1), 0u);
}

}  // namespace
}  // namespace rlvr
