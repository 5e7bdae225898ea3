// Finite-difference gradient checks for the layer tests (float64).
#ifndef RLVR_TESTS_POLICY_LAYERS_GRAD_CHECK_H_
#define RLVR_TESTS_POLICY_LAYERS_GRAD_CHECK_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace rlvr::testing {

inline std::vector<double> RandomVec(std::mt19937_64& rng, int64_t n, double scale = 1.0) {
  std::normal_distribution<double> d(0.0, scale);
  std::vector<double> v(n);
  for (double& x : v) x = d(rng);
  return v;
}

inline double Dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Compares the analytic gradient `grad` of `loss` with respect to `param` against central
// differences (step h) on up to `max_checks` evenly spread elements. The error measure is
// max |analytic - numeric| / max |numeric| over the checked elements, which must be below `tol`;
// the reference must be non-zero and at least min(param.size(), max_checks) elements compared.
inline void ExpectGradMatches(const std::string& name, std::vector<double>* param,
                              const std::vector<double>& grad,
                              const std::function<double()>& loss, double tol = 1e-6,
                              int64_t max_checks = 300, double h = 1e-5) {
  ASSERT_EQ(param->size(), grad.size()) << name;
  const int64_t n = static_cast<int64_t>(param->size());
  const int64_t step = std::max<int64_t>(1, n / max_checks);
  double max_err = 0, max_ref = 0;
  int64_t compared = 0, worst = -1;
  for (int64_t i = 0; i < n; i += step) {
    const double saved = (*param)[i];
    (*param)[i] = saved + h;
    const double lp = loss();
    (*param)[i] = saved - h;
    const double lm = loss();
    (*param)[i] = saved;
    const double num = (lp - lm) / (2 * h);
    const double err = std::abs(num - grad[i]);
    if (err > max_err) {
      max_err = err;
      worst = i;
    }
    max_ref = std::max(max_ref, std::abs(num));
    ++compared;
  }
  EXPECT_GE(compared, std::min<int64_t>(n, max_checks)) << name;
  ASSERT_GT(max_ref, 1e-8) << name << ": the numeric gradient is zero, the check is vacuous";
  EXPECT_LT(max_err / max_ref, tol) << name << ": worst element " << worst << " analytic "
                                    << grad[worst] << " max |ref| " << max_ref << " over "
                                    << compared << " elements";
}

// max |a - b| / max |b|, asserting the sizes agree and b is non-zero.
inline double RelMaxErr(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double err = 0, ref = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    err = std::max(err, std::abs(a[i] - b[i]));
    ref = std::max(ref, std::abs(b[i]));
  }
  EXPECT_GT(ref, 0.0) << "reference is all zero";
  return ref > 0 ? err / ref : err;
}

}  // namespace rlvr::testing

#endif  // RLVR_TESTS_POLICY_LAYERS_GRAD_CHECK_H_
