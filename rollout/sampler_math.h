// The sampler's hot loop, in its own translation unit compiled with -ffast-math so that GCC
// vectorizes exp() through glibc's libmvec (8 doubles per AVX-512 call, within 4 ulp). Nothing
// else may live here: fast-math assumes no NaN, and the NaN checks stay in sampler.cc.
#ifndef RLVR_ROLLOUT_SAMPLER_MATH_H_
#define RLVR_ROLLOUT_SAMPLER_MATH_H_

#include <cstdint>

namespace rlvr::rollout::internal {

// out[i] = exp(scale * z[i] - shift) for i < n; returns the sum of out. z holds no NaN (-inf is
// fine: its term is 0).
double ExpSum(const double* z, double scale, double shift, int64_t n, double* out);

}  // namespace rlvr::rollout::internal

#endif  // RLVR_ROLLOUT_SAMPLER_MATH_H_
