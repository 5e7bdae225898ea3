#include "kernels/matmul.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace rlvr::kernels {
namespace {

template <typename T>
std::vector<T> Rand(std::mt19937_64& rng, int64_t n) {
  std::uniform_real_distribution<double> d(-1, 1);
  std::vector<T> v(n);
  for (T& x : v) x = static_cast<T>(d(rng));
  return v;
}

template <typename T>
void CheckGemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double tol) {
  SCOPED_TRACE(testing::Message() << "ta=" << ta << " tb=" << tb << " M=" << M << " N=" << N
                                  << " K=" << K);
  std::mt19937_64 rng(M * 1000 + N * 10 + K);
  // Padded leading dimensions exercise the ld arguments.
  const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 1;
  auto A = Rand<T>(rng, (ta ? K : M) * lda), B = Rand<T>(rng, (tb ? N : K) * ldb),
       Cm = Rand<T>(rng, M * ldc);
  std::vector<T> C0 = Cm;
  const T alpha = T(0.75), beta = T(0.5);
  Gemm<T>(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, Cm.data(), ldc);
  double max_err = 0, max_ref = 0;
  int64_t compared = 0;
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double a = ta ? A[k * lda + i] : A[i * lda + k];
        const double b = tb ? B[j * ldb + k] : B[k * ldb + j];
        acc += a * b;
      }
      const double ref = alpha * acc + beta * static_cast<double>(C0[i * ldc + j]);
      max_err = std::max(max_err, std::abs(ref - static_cast<double>(Cm[i * ldc + j])));
      max_ref = std::max(max_ref, std::abs(ref));
      ++compared;
    }
  }
  EXPECT_EQ(compared, M * N);
  EXPECT_GT(max_ref, 0.0);
  EXPECT_LT(max_err / max_ref, tol);
}

TEST(GemmTest, AllTransposesAndGemvPathsMatchNaive) {
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (auto [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{7, 9, 5}, {1, 33, 17},
                             {1, 1, 8}, {13, 1, 6}, {64, 48, 40}}) {
        CheckGemm<double>(ta, tb, M, N, K, 1e-14);
        CheckGemm<float>(ta, tb, M, N, K, 1e-5);
      }
    }
  }
}

TEST(GemmTest, BetaZeroIgnoresNaNsInOutput) {
  std::vector<float> A = {1, 2, 3, 4}, B = {1, 0, 0, 1}, C(4, std::nanf(""));
  Gemm<float>(false, false, 2, 2, 2, 1.0f, A.data(), 2, B.data(), 2, 0.0f, C.data(), 2);
  EXPECT_EQ(C, (std::vector<float>{1, 2, 3, 4}));
  std::vector<float> c1(2, std::nanf(""));
  Gemm<float>(false, false, 1, 2, 2, 1.0f, A.data(), 2, B.data(), 2, 0.0f, c1.data(), 2);
  EXPECT_EQ(c1, (std::vector<float>{1, 2}));
}

TEST(MatmulTest, TensorEntryChecksShapes) {
  std::vector<double> a(6, 1.0), b(12, 2.0), c(8);
  Tensor ta = Tensor::View(a.data(), {2, 3}, DType::kF64);
  Tensor tb = Tensor::View(b.data(), {3, 4}, DType::kF64);
  Tensor tc = Tensor::View(c.data(), {2, 4}, DType::kF64);
  ASSERT_TRUE(Matmul(ta, false, tb, false, &tc).ok());
  EXPECT_EQ(c[7], 6.0);
  absl::Status s = Matmul(ta, true, tb, false, &tc);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("[2, 3] f64^T"), std::string_view::npos) << s;
}

}  // namespace
}  // namespace rlvr::kernels
