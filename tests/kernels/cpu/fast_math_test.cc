// FastExp (kernels/cpu/fast_math.h) against std::exp in double, over every 97th float of the
// useful range and the special values.
#include "kernels/cpu/fast_math.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/dtype.h"
#include "gtest/gtest.h"

namespace rlvr::kernels::internal {
namespace {

double UlpError(float got, double want) {
  const float wf = static_cast<float>(want);
  const double ulp = std::nextafter(wf, std::numeric_limits<float>::infinity()) - wf;
  return std::fabs(got - want) / ulp;
}

TEST(FastExpTest, WithinTwoUlpOverTheNormalRange) {
  double worst = 0;
  float worst_x = 0;
  const uint32_t lo = std::bit_cast<uint32_t>(-87.3f), hi = std::bit_cast<uint32_t>(88.3f);
  // Negative floats: bit patterns from 0x80000000 (-0) up to lo; positive ones from 0 to hi.
  for (uint32_t u = 0x80000000u; u <= lo; u += 97) {
    const float x = std::bit_cast<float>(u);
    const double e = UlpError(FastExp(x), std::exp(static_cast<double>(x)));
    if (e > worst) worst = e, worst_x = x;
  }
  for (uint32_t u = 0; u <= hi; u += 97) {
    const float x = std::bit_cast<float>(u);
    const double e = UlpError(FastExp(x), std::exp(static_cast<double>(x)));
    if (e > worst) worst = e, worst_x = x;
  }
  EXPECT_LE(worst, 2.0) << "at x = " << worst_x;
}

TEST(FastExpTest, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(FastExp(0.0f), 1.0f);
  EXPECT_EQ(FastExp(-inf), 0.0f);
  EXPECT_EQ(FastExp(-100.0f), 0.0f);
  EXPECT_EQ(FastExp(inf), inf);
  EXPECT_EQ(FastExp(100.0f), inf);
  EXPECT_TRUE(std::isnan(FastExp(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_NEAR(FastExp(1.0f), 2.718281828f, 1e-6f);
}

TEST(FastExpTest, VectorizedLoopMatchesScalar) {
  // The same function inside an omp simd loop (how the kernels call it) gives the same bits.
  float x[1000], y[1000];
  for (int i = 0; i < 1000; ++i) x[i] = -90.0f + 0.179f * static_cast<float>(i);
#pragma omp simd
  for (int i = 0; i < 1000; ++i) y[i] = FastExp(x[i]);
  for (int i = 0; i < 1000; ++i) {
    const float s = FastExp(x[i]);
    EXPECT_EQ(std::bit_cast<uint32_t>(y[i]), std::bit_cast<uint32_t>(s)) << "x = " << x[i];
  }
}

// RoundBf16 (the inline rounding the decode attention uses) equals the project's converter
// (core/dtype.h F32ToBf16, checked bit-exactly against ml_dtypes) on every 4093rd bit pattern
// (NaNs, infinities, subnormals and ties included) and on exact ties.
TEST(RoundBf16Test, MatchesCoreF32ToBf16) {
  auto ref = [](float x) {
    return std::bit_cast<float>(static_cast<uint32_t>(F32ToBf16(x)) << 16);
  };
  int64_t checked = 0;
  for (uint64_t u = 0; u <= 0xFFFFFFFFull; u += 4093) {
    const float x = std::bit_cast<float>(static_cast<uint32_t>(u));
    ASSERT_EQ(std::bit_cast<uint32_t>(RoundBf16(x)), std::bit_cast<uint32_t>(ref(x))) << "bits " << u;
    ++checked;
  }
  for (uint32_t hi : {0x3F80u, 0x3F81u, 0xC2F7u}) {  // x.5 ulp ties round to even
    const float tie = std::bit_cast<float>((hi << 16) | 0x8000u);
    EXPECT_EQ(std::bit_cast<uint32_t>(RoundBf16(tie)), std::bit_cast<uint32_t>(ref(tie)));
  }
  EXPECT_GT(checked, 1000000);
}

}  // namespace
}  // namespace rlvr::kernels::internal
