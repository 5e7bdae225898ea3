// Helpers of the CUDA kernel tests (dense, attention, MoE): random data, bf16 round trips, comparisons that fail
// loudly (NaN from a poisoned, unwritten element; an all-zero reference), bad-argument checks
// that hold with and without the CUDA backend.
#ifndef RLVR_TESTS_KERNELS_CUDA_DENSE_TEST_UTIL_H_
#define RLVR_TESTS_KERNELS_CUDA_DENSE_TEST_UTIL_H_

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/dtype.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace rlvr::kernels::cuda::testing {

inline std::vector<float> Randn(size_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

inline std::vector<uint16_t> ToBf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = F32ToBf16(v[i]);
  return out;
}
inline std::vector<float> FromBf16(const std::vector<uint16_t>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = Bf16ToF32(v[i]);
  return out;
}
// v rounded to bf16 and back: the inputs the CPU reference sees for a bf16 kernel.
inline std::vector<float> RoundedBf16(const std::vector<float>& v) { return FromBf16(ToBf16(v)); }
// Rounds *v to bf16 in place and returns the bit patterns (the device copy of the same values).
inline std::vector<uint16_t> RoundBf16(std::vector<float>* v) {
  std::vector<uint16_t> bits = ToBf16(*v);
  *v = FromBf16(bits);
  return bits;
}

// Expects max |got - ref| / max |ref| <= tol over all elements, a non-zero reference and no NaN
// (poisoned outputs that were never written are NaN); prints the worst element otherwise.
template <typename A, typename B>
void ExpectClose(const std::vector<A>& got, const std::vector<B>& ref, double tol,
                 const std::string& what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  ASSERT_FALSE(ref.empty()) << what;
  double scale = 0, worst = -1;
  size_t worst_i = 0;
  for (size_t i = 0; i < ref.size(); ++i) scale = std::max(scale, std::abs(double(ref[i])));
  ASSERT_GT(scale, 0.0) << what << ": all-zero reference (the test would be vacuous)";
  for (size_t i = 0; i < ref.size(); ++i) {
    const double g = double(got[i]);
    const double e = std::isnan(g) ? INFINITY : std::abs(g - double(ref[i]));
    if (e > worst) {
      worst = e;
      worst_i = i;
    }
  }
  EXPECT_LE(worst / scale, tol) << what << ": worst element " << worst_i << " got "
                                << double(got[worst_i]) << " want " << double(ref[worst_i])
                                << " (max |ref| " << scale << ", " << ref.size() << " elements)";
}

// A host-validated bad argument: InvalidArgument naming `needle` with the backend, Unimplemented
// without it. Needs no GPU.
inline void ExpectBadArg(const absl::Status& s, const std::string& needle) {
  if (!BuiltWithCuda()) {
    EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
    return;
  }
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr(needle));
}

}  // namespace rlvr::kernels::cuda::testing

#endif  // RLVR_TESTS_KERNELS_CUDA_DENSE_TEST_UTIL_H_
