// Row kernels: the log-softmax statistics and gradient against direct formulas and finite
// differences, SwiGLU and RMSNorm against finite differences.
#include "kernels/softmax.h"

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/elementwise.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"

namespace rlvr::kernels {
namespace {

std::vector<double> Rand(std::mt19937_64& rng, int64_t n) {
  std::normal_distribution<double> d(0, 1.5);
  std::vector<double> v(n);
  for (double& x : v) x = d(rng);
  return v;
}

// Central differences of f over every element of *x against `grad`; returns rel. max error.
double FdError(std::vector<double>* x, const std::vector<double>& grad,
               const std::function<double()>& f, int64_t* compared) {
  double err = 0, ref = 0;
  const double h = 1e-5;
  for (size_t i = 0; i < x->size(); ++i) {
    const double s = (*x)[i];
    (*x)[i] = s + h;
    const double fp = f();
    (*x)[i] = s - h;
    const double fm = f();
    (*x)[i] = s;
    const double num = (fp - fm) / (2 * h);
    err = std::max(err, std::abs(num - grad[i]));
    ref = std::max(ref, std::abs(num));
    ++*compared;
  }
  EXPECT_GT(ref, 1e-6);
  return err / ref;
}

TEST(LogSoftmaxTest, GradientMatchesFiniteDifferencesWithMaskAndScale) {
  std::mt19937_64 rng(40);
  const int64_t R = 3, V = 10, valid = 8;
  const double scale = 0.7;
  auto z = Rand(rng, R * V), a = Rand(rng, R), b = Rand(rng, R);
  const int32_t tgt[R] = {0, 7, 3};
  auto f = [&] {
    std::vector<double> lse(R), lp(R), ent(R);
    LogSoftmaxStats<double>(z.data(), tgt, R, V, valid, scale, lse.data(), lp.data(), ent.data());
    double s = 0;
    for (int64_t r = 0; r < R; ++r) s += a[r] * lp[r] + b[r] * ent[r];
    return s;
  };
  std::vector<double> lse(R), lp(R), ent(R);
  LogSoftmaxStats<double>(z.data(), tgt, R, V, valid, scale, lse.data(), lp.data(), ent.data());
  // Direct check of the statistics on row 1.
  double m = -1e300, sum = 0;
  for (int64_t j = 0; j < valid; ++j) m = std::max(m, scale * z[V + j]);
  for (int64_t j = 0; j < valid; ++j) sum += std::exp(scale * z[V + j] - m);
  EXPECT_NEAR(lse[1], m + std::log(sum), 1e-12);
  EXPECT_NEAR(lp[1], scale * z[V + 7] - lse[1], 1e-12);
  std::vector<double> g = z;
  LogSoftmaxGradInPlace<double>(tgt, lse.data(), ent.data(), a.data(), b.data(), R, V, valid,
                                scale, g.data());
  int64_t compared = 0;
  EXPECT_LT(FdError(&z, g, f, &compared), 1e-7);
  EXPECT_EQ(compared, R * V);
  EXPECT_EQ(g[V + 9], 0.0);  // masked entries get no gradient
}

TEST(SoftmaxTest, BackwardMatchesFiniteDifferences) {
  std::mt19937_64 rng(41);
  const int64_t R = 2, V = 6;
  auto z = Rand(rng, R * V), w = Rand(rng, R * V);
  auto f = [&] {
    std::vector<double> p(R * V);
    SoftmaxForward<double>(z.data(), R, V, p.data());
    double s = 0;
    for (int64_t i = 0; i < R * V; ++i) s += p[i] * w[i];
    return s;
  };
  std::vector<double> p(R * V), dz(R * V, 0.0);
  SoftmaxForward<double>(z.data(), R, V, p.data());
  SoftmaxBackward<double>(p.data(), w.data(), R, V, dz.data());
  int64_t compared = 0;
  EXPECT_LT(FdError(&z, dz, f, &compared), 1e-8);
}

TEST(SwigluTest, BackwardMatchesFiniteDifferences) {
  std::mt19937_64 rng(42);
  const int64_t n = 40;
  auto g = Rand(rng, n), u = Rand(rng, n), w = Rand(rng, n);
  auto f = [&] {
    std::vector<double> o(n);
    SwigluForward<double>(g.data(), u.data(), n, o.data());
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += o[i] * w[i];
    return s;
  };
  std::vector<double> dg(n), du(n);
  SwigluBackward<double>(w.data(), g.data(), u.data(), n, dg.data(), du.data());
  int64_t compared = 0;
  EXPECT_LT(FdError(&g, dg, f, &compared), 1e-8);
  EXPECT_LT(FdError(&u, du, f, &compared), 1e-8);
  EXPECT_EQ(compared, 2 * n);
}

TEST(RopeTest, MatchesRotateHalfAndBackwardInverts) {
  const int32_t pos[2] = {0, 5};
  RopeTable<double> t;
  BuildRopeTable<double>(pos, 2, 4, 100.0, &t);
  std::vector<double> x = {1, 2, 3, 4, 1, 2, 3, 4};
  std::vector<double> orig = x;
  RopeForward<double>(t, 1, 4, x.data());
  for (int i = 0; i < 4; ++i) EXPECT_DOUBLE_EQ(x[i], orig[i]);  // position 0: identity
  // Position 5, pair j = 1: angle 5 * 100^(-1/2) = 0.5.
  EXPECT_NEAR(x[5], 2 * std::cos(0.5) - 4 * std::sin(0.5), 1e-15);
  EXPECT_NEAR(x[7], 4 * std::cos(0.5) + 2 * std::sin(0.5), 1e-15);
  RopeBackward<double>(t, 1, 4, x.data());
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(x[i], orig[i], 1e-15);
}

}  // namespace
}  // namespace rlvr::kernels
