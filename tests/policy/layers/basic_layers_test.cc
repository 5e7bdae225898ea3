// Embedding, RMSNorm and SwiGLU MLP: forward against naive loops, backward against central
// finite differences in float64.
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "policy/layers/embedding.h"
#include "policy/layers/mlp.h"
#include "policy/layers/rmsnorm.h"
#include "tests/policy/layers/grad_check.h"

namespace rlvr::policy::layers {
namespace {

using ::rlvr::testing::Dot;
using ::rlvr::testing::ExpectGradMatches;
using ::rlvr::testing::RandomVec;
using ::rlvr::testing::RelMaxErr;

TEST(RmsNormTest, ForwardMatchesNaive) {
  std::mt19937_64 rng(1);
  const int64_t N = 5, C = 24;
  auto x = RandomVec(rng, N * C), w = RandomVec(rng, C);
  std::vector<double> y(N * C), ref(N * C);
  RmsNormActivations<double> act;
  RmsNormForward(x.data(), w.data(), N, C, 1e-6, &act, y.data());
  for (int64_t n = 0; n < N; ++n) {
    double ss = 0;
    for (int64_t c = 0; c < C; ++c) ss += x[n * C + c] * x[n * C + c];
    const double r = 1 / std::sqrt(ss / C + 1e-6);
    for (int64_t c = 0; c < C; ++c) ref[n * C + c] = x[n * C + c] * r * w[c];
  }
  EXPECT_LT(RelMaxErr(y, ref), 1e-14);
}

TEST(RmsNormTest, BackwardMatchesFiniteDifferences) {
  std::mt19937_64 rng(2);
  const int64_t N = 6, C = 16;
  auto x = RandomVec(rng, N * C), w = RandomVec(rng, C), r = RandomVec(rng, N * C);
  auto loss = [&] {
    std::vector<double> y(N * C);
    RmsNormActivations<double> act;
    RmsNormForward(x.data(), w.data(), N, C, 1e-5, &act, y.data());
    return Dot(y, r);
  };
  std::vector<double> y(N * C), dx(N * C, 0.0), dw(C, 0.0);
  RmsNormActivations<double> act;
  RmsNormForward(x.data(), w.data(), N, C, 1e-5, &act, y.data());
  RmsNormBackward(x.data(), w.data(), N, C, act, r.data(), dx.data(), dw.data());
  ExpectGradMatches("rmsnorm dx", &x, dx, loss);
  ExpectGradMatches("rmsnorm dw", &w, dw, loss);
}

TEST(EmbeddingTest, ForwardGathersAndBackwardScatters) {
  const int64_t V = 7, C = 3, N = 4;
  std::vector<double> table(V * C);
  for (int64_t i = 0; i < V * C; ++i) table[i] = static_cast<double>(i);
  const int32_t ids[N] = {3, 0, 3, 6};
  std::vector<double> out(N * C);
  ASSERT_TRUE(EmbeddingForward(ids, table.data(), N, V, C, out.data()).ok());
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t c = 0; c < C; ++c) EXPECT_EQ(out[n * C + c], table[ids[n] * C + c]);
  }
  std::vector<double> dout(N * C, 1.0), dtable(V * C, 0.0);
  EmbeddingBackward(ids, dout.data(), N, C, dtable.data());
  EXPECT_EQ(dtable[3 * C], 2.0);  // id 3 appears twice
  EXPECT_EQ(dtable[0], 1.0);
  EXPECT_EQ(dtable[1 * C], 0.0);
  EXPECT_EQ(dtable[6 * C + 2], 1.0);
}

TEST(EmbeddingTest, OutOfRangeIdIsAnErrorNamingThePosition) {
  std::vector<float> table(4 * 2), out(2 * 2);
  const int32_t ids[2] = {1, 4};
  absl::Status s = EmbeddingForward(ids, table.data(), 2, 4, 2, out.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("position 1"), std::string_view::npos) << s;
}

TEST(MlpTest, ForwardMatchesNaiveAndBackwardMatchesFiniteDifferences) {
  std::mt19937_64 rng(3);
  const int64_t N = 5, C = 8, I = 12;
  const MlpConfig cfg{C, I};
  auto x = RandomVec(rng, N * C), g = RandomVec(rng, I * C, 0.5), u = RandomVec(rng, I * C, 0.5),
       d = RandomVec(rng, C * I, 0.5), r = RandomVec(rng, N * C);
  auto run = [&](MlpActivations<double>* act) {
    std::vector<double> y(N * C);
    MlpForward(cfg, MlpWeights<double>{g.data(), u.data(), d.data()}, x.data(), N, act, y.data());
    return y;
  };
  MlpActivations<double> act;
  std::vector<double> y = run(&act), ref(N * C, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t i = 0; i < I; ++i) {
      double a = 0, b = 0;
      for (int64_t c = 0; c < C; ++c) {
        a += g[i * C + c] * x[n * C + c];
        b += u[i * C + c] * x[n * C + c];
      }
      const double h = a / (1 + std::exp(-a)) * b;
      for (int64_t c = 0; c < C; ++c) ref[n * C + c] += d[c * I + i] * h;
    }
  }
  EXPECT_LT(RelMaxErr(y, ref), 1e-13);

  std::vector<double> dx(N * C, 0.0), dg(I * C, 0.0), du(I * C, 0.0), dd(C * I, 0.0);
  MlpBackward(cfg, MlpWeights<double>{g.data(), u.data(), d.data()}, x.data(), N, act, r.data(),
              dx.data(), MlpGrads<double>{dg.data(), du.data(), dd.data()});
  auto loss = [&] {
    MlpActivations<double> a;
    return Dot(run(&a), r);
  };
  ExpectGradMatches("mlp dx", &x, dx, loss);
  ExpectGradMatches("mlp dgate", &g, dg, loss);
  ExpectGradMatches("mlp dup", &u, du, loss);
  ExpectGradMatches("mlp ddown", &d, dd, loss);
}

}  // namespace
}  // namespace rlvr::policy::layers
