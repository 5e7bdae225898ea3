// The bf16 GEMM (kernels/cpu/gemm_bf16.cc, reached through Gemm<float> under
// MatmulPrecision::kBf16) against a double-precision product of the bf16-rounded operands.
// The only difference left is float32 accumulation, so the tolerance is 1e-5 of sum |a||b|
// per element. Every transpose combination, ragged sizes (not multiples of the 16 x 16 tile,
// odd K, several K blocks, several column blocks), leading dimensions larger than the rows,
// beta = 0 over a NaN-poisoned C, beta != 0 and alpha != 1.
#include "kernels/cpu/gemm_bf16.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <tuple>
#include <vector>

#include "core/dtype.h"
#include "gtest/gtest.h"
#include "kernels/matmul.h"

namespace rlvr::kernels {
namespace {

double Bf16(float x) {
  const uint32_t u = static_cast<uint32_t>(F32ToBf16(x)) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

struct Case {
  bool ta, tb;
  int64_t M, N, K;
  float alpha, beta;
};

class PrecisionGuard {
 public:
  explicit PrecisionGuard(MatmulPrecision p) : old_(GetMatmulPrecision()) { SetMatmulPrecision(p); }
  ~PrecisionGuard() { SetMatmulPrecision(old_); }

 private:
  MatmulPrecision old_;
};

void Check(const Case& c) {
  SCOPED_TRACE(::testing::Message()
               << "ta=" << c.ta << " tb=" << c.tb << " M=" << c.M << " N=" << c.N << " K=" << c.K
               << " alpha=" << c.alpha << " beta=" << c.beta);
  std::mt19937 rng(static_cast<uint32_t>(c.M * 131 + c.N * 7 + c.K));
  std::uniform_real_distribution<float> d(-1, 1);
  // op(A) is [M, K]; stored [M, K] (lda = K + 3) or [K, M] (lda = M + 5).
  const int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K, lda = a_cols + 3;
  const int64_t b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N, ldb = b_cols + 5;
  const int64_t ldc = c.N + 2;
  std::vector<float> A(a_rows * lda), B(b_rows * ldb), C(c.M * ldc);
  for (float& x : A) x = d(rng);
  for (float& x : B) x = d(rng);
  for (float& x : C) x = c.beta == 0 ? std::numeric_limits<float>::quiet_NaN() : d(rng);
  const std::vector<float> C0 = C;
  auto a = [&](int64_t m, int64_t k) { return c.ta ? A[k * lda + m] : A[m * lda + k]; };
  auto b = [&](int64_t k, int64_t n) { return c.tb ? B[n * ldb + k] : B[k * ldb + n]; };
  {
    PrecisionGuard guard(MatmulPrecision::kBf16);
    Gemm<float>(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta, C.data(),
                ldc);
  }
  int64_t bad = 0;
  double worst_rel_fp32 = 0;
  for (int64_t m = 0; m < c.M; ++m) {
    for (int64_t n = 0; n < c.N; ++n) {
      double ref = 0, ref32 = 0, mag = 0;
      for (int64_t k = 0; k < c.K; ++k) {
        ref += Bf16(a(m, k)) * Bf16(b(k, n));
        ref32 += static_cast<double>(a(m, k)) * b(k, n);
        mag += std::fabs(Bf16(a(m, k)) * Bf16(b(k, n)));
      }
      ref *= c.alpha;
      ref32 *= c.alpha;
      if (c.beta != 0) {
        ref += static_cast<double>(c.beta) * C0[m * ldc + n];
        ref32 += static_cast<double>(c.beta) * C0[m * ldc + n];
      }
      const double got = C[m * ldc + n];
      const double tol = 1e-5 * (std::fabs(c.alpha) * mag + std::fabs(c.beta) + 1e-30);
      if (!(std::fabs(got - ref) <= tol) && bad++ < 5) {
        ADD_FAILURE() << "C[" << m << "," << n << "] = " << got << ", expected " << ref << " (tol "
                      << tol << ")";
      }
      worst_rel_fp32 = std::max(worst_rel_fp32, std::fabs(got - ref32) / (mag + 1e-30));
    }
    // Padding columns of C are never written.
    for (int64_t n = c.N; n < ldc; ++n) {
      const float before = C0[m * ldc + n], after = C[m * ldc + n];
      EXPECT_TRUE(std::memcmp(&before, &after, sizeof(float)) == 0)
          << "padding C[" << m << "," << n << "] written";
    }
  }
  EXPECT_EQ(bad, 0);
  // The operands really were rounded: the result is measurably off the float32 product.
  if (c.K >= 16) {
    EXPECT_GT(worst_rel_fp32, 1e-4);
  }
}

class GemmBf16Test : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!Bf16MatmulAvailable()) GTEST_SKIP() << "this CPU has no AVX512-BF16";
  }
};

TEST_F(GemmBf16Test, EveryTransposeAndRaggedShape) {
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (auto [M, N, K] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
               {2, 2, 1}, {16, 16, 32}, {17, 33, 31}, {5, 70, 64}, {70, 5, 129}, {97, 81, 601}}) {
        Check({ta, tb, M, N, K, 1.0f, 0.0f});
      }
    }
  }
}

TEST_F(GemmBf16Test, AlphaBetaAndAccumulation) {
  Check({false, true, 40, 50, 300, 0.5f, 1.0f});     // LinearBackward's += form
  Check({true, false, 33, 20, 1100, -2.0f, 0.25f});  // three K blocks, beta on the first only
}

TEST_F(GemmBf16Test, ManyColumnBlocksAndThreads) {
  Check({false, true, 130, 2100, 40, 1.0f, 0.0f});   // two column blocks of 2048
  Check({false, false, 256, 256, 256, 1.0f, 0.0f});  // big enough to run on the OpenMP team
}

// Each row of a product is the same bits whatever M it is computed in (the micro-kernel for a
// few rows must not change the arithmetic), with and without packed weights; one-row products
// with packed weights run in bf16 too.
TEST_F(GemmBf16Test, RowsAreIndependentOfMAndPackedWeightsGiveTheSameBits) {
  const int64_t in = 300, out = 70, M = 37;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> d(-1, 1);
  std::vector<float> x(M * in), w(out * in), bias(out);
  for (float& v : x) v = d(rng);
  for (float& v : w) v = d(rng);
  for (float& v : bias) v = d(rng);
  PrecisionGuard guard(MatmulPrecision::kBf16);
  std::vector<float> full(M * out);
  LinearForward<float>(x.data(), w.data(), bias.data(), M, in, out, full.data());
  {
    PackedWeights packed({{w.data(), out, in}});
    ASSERT_EQ(packed.packed_matrices(), 1);
    std::vector<float> y(M * out);
    LinearForward<float>(x.data(), w.data(), bias.data(), M, in, out, y.data());
    EXPECT_EQ(std::memcmp(y.data(), full.data(), y.size() * sizeof(float)), 0);
    for (int64_t rows : {1, 2, 3, 5, 9, 16, 17}) {
      for (int64_t r0 = 0; r0 + rows <= M; r0 += 11) {
        std::vector<float> part(rows * out);
        LinearForward<float>(x.data() + r0 * in, w.data(), bias.data(), rows, in, out, part.data());
        EXPECT_EQ(std::memcmp(part.data(), full.data() + r0 * out, part.size() * sizeof(float)), 0)
            << rows << " rows from row " << r0;
      }
    }
    // A matrix with another shape at the same address is not taken for the packed one.
    std::vector<float> other(M * (out - 1));
    LinearForward<float>(x.data(), w.data(), nullptr, M, in, out - 1, other.data());
    std::vector<float> want(M * (out - 1));
    Gemm<float>(false, true, M, out - 1, in, 1.0f, x.data(), in, w.data(), in, 0.0f, want.data(),
                out - 1);
    EXPECT_EQ(std::memcmp(other.data(), want.data(), want.size() * sizeof(float)), 0);
  }
  // Several rows agree with unpacked products of several rows (M = 1 alone uses GEMV when
  // nothing is packed).
  std::vector<float> two(2 * out);
  LinearForward<float>(x.data() + 4 * in, w.data(), bias.data(), 2, in, out, two.data());
  EXPECT_EQ(std::memcmp(two.data(), full.data() + 4 * out, two.size() * sizeof(float)), 0);
}

TEST(PackedWeightsTest, PacksNothingUnderHighestPrecision) {
  ASSERT_EQ(GetMatmulPrecision(), MatmulPrecision::kHighest);
  std::vector<float> w(16 * 16, 0.5f);
  PackedWeights packed({{w.data(), 16, 16}});
  EXPECT_EQ(packed.packed_matrices(), 0);
}

TEST(MatmulPrecisionTest, ParsesNamesAndRejectsOthers) {
  MatmulPrecision p = MatmulPrecision::kBf16;
  ASSERT_TRUE(ParseMatmulPrecision("highest", &p).ok());
  EXPECT_EQ(p, MatmulPrecision::kHighest);
  ASSERT_TRUE(ParseMatmulPrecision("bf16", &p).ok());
  EXPECT_EQ(p, MatmulPrecision::kBf16);
  const absl::Status s = ParseMatmulPrecision("fp8", &p);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("'fp8'"), std::string::npos) << s;
}

TEST(MatmulPrecisionTest, HighestIsUnchangedFloat32) {
  // Under the default precision the product is the float32 one, not bf16-rounded.
  ASSERT_EQ(GetMatmulPrecision(), MatmulPrecision::kHighest);
  const float a[4] = {1.0f + 1.0f / 1024, 1, 1, 1}, b[4] = {1, 0, 0, 1};
  float c[4];
  Gemm<float>(false, false, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2);
  EXPECT_EQ(c[0], 1.0f + 1.0f / 1024);  // 1 + 2^-10 is not a bf16 number
}

}  // namespace
}  // namespace rlvr::kernels
