#include "kernels/softmax.h"

#include <omp.h>

#include <cmath>
#include <limits>

#include "kernels/cpu/fast_math.h"

namespace rlvr::kernels {

template <typename T>
void LogSoftmaxStats(const T* logits, const int32_t* target, int64_t R, int64_t V, int64_t valid,
                     double scale, T* lse, T* logprob, T* entropy) {
  const T s = static_cast<T>(scale);
#pragma omp parallel for if (R * V >= (1 << 15) && !omp_in_parallel()) schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const T* z = logits + r * V;
    T m = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < valid; ++j) m = std::max(m, s * z[j]);
    // With shifted values u_j = s z_j - m: sum = sum e^u, entropy = log(sum) - sum e^u u / sum,
    // which avoids subtracting two large numbers.
    T sum = 0, eu = 0;
#pragma omp simd reduction(+ : sum, eu)
    for (int64_t j = 0; j < valid; ++j) {
      const T u = s * z[j] - m;
      const T e = internal::Exp<T>(u);
      sum += e;
      eu += e * u;
    }
    const T log_sum = std::log(sum);
    lse[r] = m + log_sum;
    if (logprob != nullptr) logprob[r] = s * z[target[r]] - lse[r];
    if (entropy != nullptr) entropy[r] = log_sum - eu / sum;
  }
}

template <typename T>
void LogSoftmaxGradInPlace(const int32_t* target, const T* lse, const T* entropy,
                           const T* dlogprob, const T* dentropy, int64_t R, int64_t V,
                           int64_t valid, double scale, T* logits) {
  const T s = static_cast<T>(scale);
#pragma omp parallel for if (R * V >= (1 << 15) && !omp_in_parallel()) schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    T* z = logits + r * V;
    const T dlp = dlogprob != nullptr ? dlogprob[r] : T(0);
    const T dh = dentropy != nullptr ? dentropy[r] : T(0);
    const T l0 = lse[r];
    const T H = dh != T(0) ? entropy[r] : T(0);
#pragma omp simd
    for (int64_t j = 0; j < valid; ++j) {
      const T l = s * z[j] - l0;
      const T p = internal::Exp<T>(l);
      z[j] = s * (-dlp * p - dh * p * (l + H));
    }
    for (int64_t j = valid; j < V; ++j) z[j] = 0;
    if (target != nullptr) z[target[r]] += s * dlp;
  }
}

template <typename T>
void SoftmaxForward(const T* z, int64_t R, int64_t V, T* p) {
#pragma omp parallel for if (R * V >= (1 << 15) && !omp_in_parallel()) schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const T* zr = z + r * V;
    T* pr = p + r * V;
    T m = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < V; ++j) m = std::max(m, zr[j]);
    T sum = 0;
    for (int64_t j = 0; j < V; ++j) {
      pr[j] = internal::Exp<T>(zr[j] - m);
      sum += pr[j];
    }
    const T inv = T(1) / sum;
    for (int64_t j = 0; j < V; ++j) pr[j] *= inv;
  }
}

template <typename T>
void SoftmaxBackward(const T* p, const T* dp, int64_t R, int64_t V, T* dz) {
#pragma omp parallel for if (R * V >= (1 << 15) && !omp_in_parallel()) schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const T* pr = p + r * V;
    const T* dpr = dp + r * V;
    T dot = 0;
    for (int64_t j = 0; j < V; ++j) dot += pr[j] * dpr[j];
    T* dzr = dz + r * V;
    for (int64_t j = 0; j < V; ++j) dzr[j] += pr[j] * (dpr[j] - dot);
  }
}

#define RLVR_INSTANTIATE(T)                                                                     \
  template void LogSoftmaxStats<T>(const T*, const int32_t*, int64_t, int64_t, int64_t, double, \
                                   T*, T*, T*);                                                 \
  template void LogSoftmaxGradInPlace<T>(const int32_t*, const T*, const T*, const T*,          \
                                         const T*, int64_t, int64_t, int64_t, double, T*);      \
  template void SoftmaxForward<T>(const T*, int64_t, int64_t, T*);                              \
  template void SoftmaxBackward<T>(const T*, const T*, int64_t, int64_t, T*);
RLVR_INSTANTIATE(float)
RLVR_INSTANTIATE(double)
#undef RLVR_INSTANTIATE

}  // namespace rlvr::kernels
