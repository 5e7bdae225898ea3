#include "rollout/sampler_math.h"

#include <cmath>

namespace rlvr::rollout::internal {

double ExpSum(const double* z, double scale, double shift, int64_t n, double* out) {
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) {
    out[i] = std::exp(scale * z[i] - shift);
    sum += out[i];
  }
  return sum;
}

}  // namespace rlvr::rollout::internal
