// exp for the hot loops of the CPU kernels (softmax, log-softmax, attention, SiLU), written so
// that GCC vectorizes it inside `#pragma omp simd` loops: std::exp on float compiles to a call
// per element (expf was ~8% of a training step). Double keeps std::exp (the finite-difference
// tests run in double).
//
// Exp(float): Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2, a degree-6 minimax
// polynomial for e^r (Cephes expf) and 2^n from the exponent bits. Max error 2 ulp on
// [-87.3, 88.3] (tests/kernels/cpu/fast_math_test.cc checks against std::exp in double);
// 0 below -87.34 (e^x is then under FLT_MIN; no subnormals), +inf above 88.72, NaN stays NaN.
#ifndef RLVR_KERNELS_CPU_FAST_MATH_H_
#define RLVR_KERNELS_CPU_FAST_MATH_H_

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace rlvr::kernels::internal {

inline float FastExp(float x) {
  // Clamp with compares, not std::fmin/fmax (those stay library calls and block vectorizing).
  float xc = x < -87.33f ? -87.33f : x;
  xc = xc > 88.3f ? 88.3f : xc;
  // n = round(x / ln2) by the 1.5 * 2^23 trick (std::floor stays a libm call without
  // -fno-trapping-math); its integer value is then in the low mantissa bits of t.
  constexpr float kMagic = 12582912.0f;
  const float t = xc * 1.44269504088896341f + kMagic;
  const float n = t - kMagic;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * r * r + r + 1.0f;
  const int32_t ni = std::bit_cast<int32_t>(t) - std::bit_cast<int32_t>(kMagic);
  const float two_n = std::bit_cast<float>((ni + 127) << 23);
  float y = er * two_n;
  y = x < -87.34f ? 0.0f : y;
  y = x > 88.72f ? std::numeric_limits<float>::infinity() : y;
  return x != x ? x : y;
}

// x rounded to the nearest bfloat16 value (ties to even), kept as a float: what a bf16 matrix
// product does to its operands. NaN stays NaN. Vectorizes in omp simd loops.
inline float RoundBf16(float x) {
  uint32_t u = std::bit_cast<uint32_t>(x);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
  const bool nan = (u & 0x7FFFFFFFu) > 0x7F800000u;
  u = nan ? (u | 0x00400000u) & 0xFFFF0000u : rounded;
  return std::bit_cast<float>(u);
}

template <typename T>
inline T Exp(T x) {
  return std::exp(x);
}
template <>
inline float Exp<float>(float x) {
  return FastExp(x);
}

}  // namespace rlvr::kernels::internal

#endif  // RLVR_KERNELS_CPU_FAST_MATH_H_
